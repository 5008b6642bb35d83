"""Online scoring and recommendation: profiles from stored behaviour, candidates, the model's blend, reasons.

A request's profile comes from a user's stored events (their positives, oldest first), from a history of item
ids, or from free-text interests (cold start), or from interests together with either. Each candidate gets a
content score (its vector against the profile), a co-occurrence score (item-kNN against the history) and its
popularity; `TextInterestModel.blend` standardises each component and weighs them. The components are
standardised over the candidates together with a fixed sample of the catalog, so a score does not depend
much on which other candidates were sent (and a single candidate still gets a meaningful score).

`recommend` takes its candidates from the vector index (nearest items to the profile), the history's
co-occurrence neighbours and the most popular items. Every result explains itself: the history items most
similar to it (by content and co-occurrence) and the interest phrases it matched best.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from recommender.behaviour import Behaviour, BehaviourSnapshot
from recommender.catalog import ItemCatalog, ItemRecord, Progress, UpsertReport, id_listing
from recommender.database import Database
from recommender.events import (
    EventRecord,
    all_positives,
    ingest_events,
    is_positive,
    positive_history,
    user_events,
)
from recommender.model import MODEL_FILE, TextInterestModel
from recommender.settings import RecommenderSettings
from textcore import InvalidInput, NotFound, PayloadTooLarge

REFERENCE_ITEMS = 256  # catalog sample that scores are standardised against
EXPLAINED_HISTORY = 50  # newest history items an explanation may name
REASONS = 3  # history items / interest phrases named per result
MIN_PHRASE_SIMILARITY = 0.2  # below this cosine a phrase did not match (unrelated MiniLM texts score ~0-0.15)
_PHRASE_SPLIT = re.compile(r"[,;\n]|\band\b", re.IGNORECASE)


@dataclass(frozen=True)
class Query:
    """Whom to score for: a stored user, or a history of item ids, and/or free-text interests."""

    user_id: str | None = None
    history: tuple[str, ...] | None = None
    interests: str | None = None


@dataclass(frozen=True)
class HistoryMatch:
    """A history item that speaks for a result, with its similarity to it."""

    item_id: str
    title: str
    similarity: float


@dataclass(frozen=True)
class Explanation:
    """Why an item scored as it did."""

    because: list[HistoryMatch]
    matched_interests: list[str]


@dataclass(frozen=True)
class ScoredItem:
    """One result, best first in every list returned."""

    item_id: str
    title: str
    score: float
    explanation: Explanation


@dataclass(frozen=True)
class Profile:
    """A request's interests: a (dim,) vector, the history behind it, what to exclude, the phrases."""

    vector: np.ndarray  # (dim,) float32, L2-normalised, or zeros when nothing is known
    history: list[str]  # liked catalog items, oldest first
    seen: frozenset[str]  # every item the user interacted with
    phrases: list[str]
    phrase_vectors: np.ndarray  # (n_phrases, dim) float32


def interest_phrases(interests: str) -> list[str]:
    """Free text split into phrases on commas, semicolons, line breaks and the word "and"."""
    phrases = (p.strip(" .\t") for p in _PHRASE_SPLIT.split(interests))
    return list(dict.fromkeys(p for p in phrases if p))


class Recommender:
    """Scores and recommends catalog items; every method blocks (run them in worker threads).

    Args:
        db: The migrated database.
        model: The text-interest model.
        catalog: Items and their vectors.
        behaviour: Co-occurrence and popularity, filled from the events table.
        min_rating: Ratings at or above count as positives (None: all).
        candidates: Items taken from the vector index and from co-occurrence per recommendation.
        max_items: Most candidates per score request.
        max_events: Most events per ingest batch.
    """

    def __init__(
        self,
        db: Database,
        model: TextInterestModel,
        catalog: ItemCatalog,
        behaviour: Behaviour,
        *,
        min_rating: float | None = None,
        candidates: int = 200,
        max_items: int = 1000,
        max_events: int = 10_000,
    ) -> None:
        self.db, self.model, self.catalog, self.behaviour = db, model, catalog, behaviour
        self.min_rating, self.candidates = min_rating, candidates
        self.max_items, self.max_events = max_items, max_events
        self._reference: tuple[int, list[str], np.ndarray] | None = None  # (catalog version, ids, vectors)
        self._reference_lock = threading.Lock()

    def ingest(self, events: Sequence[EventRecord]) -> int:
        """Store a batch of events (all or nothing), then count its positives into co-occurrence."""
        stored = ingest_events(self.db, events, self.max_events)
        self.behaviour.add(
            (e.user_id, e.item_id) for e in events if is_positive(e.type, e.value, self.min_rating)
        )
        return stored

    def upsert_items(self, items: Sequence[ItemRecord]) -> UpsertReport:
        """Create or replace catalog items; they are recommendable as soon as this returns.

        Raises:
            PayloadTooLarge: More than `max_items` items.
            InvalidInput: An id repeated.
        """
        if len(items) > self.max_items:
            raise PayloadTooLarge(f"expected at most {self.max_items} items per request, found {len(items)}")
        return self.catalog.upsert(items)

    def score(self, query: Query, items: Sequence[str]) -> list[ScoredItem]:
        """Score the given catalog items for the query, best first.

        Raises:
            PayloadTooLarge: More than `max_items` items.
            InvalidInput: No items, or an id repeated.
            NotFound: Listing the item ids (or history ids) not in the catalog, or a user with no events.
        """
        if len(items) > self.max_items:
            raise PayloadTooLarge(f"expected at most {self.max_items} items per request, found {len(items)}")
        if not items:
            raise InvalidInput("expected at least one item id to score, found none")
        repeated = sorted(i for i, n in Counter(items).items() if n > 1)
        if repeated:
            raise InvalidInput(f"expected each item id once; repeated: {id_listing(repeated)}")
        vectors = self.catalog.vectors(items)  # (n, dim); raises NotFound listing unknown ids
        return self._rank(self.profile(query), list(items), vectors, len(items))

    def recommend(self, query: Query, k: int, *, exclude_seen: bool = True) -> list[ScoredItem]:
        """The `k` best catalog items for the query (without the user's own items when `exclude_seen`)."""
        profile = self.profile(query)
        excluded = profile.seen if exclude_seen else frozenset()
        wanted = max(self.candidates, k)
        snapshot = self.behaviour.snapshot()
        pool: list[str] = []
        if np.any(profile.vector):
            hits = self.catalog.index.search(profile.vector, wanted + len(excluded))
            pool.extend(hit.id for hit in hits)
        pool.extend(snapshot.top(snapshot.knn_row(profile.history), wanted + len(excluded)))
        pool.extend(snapshot.top(snapshot.counts, min(wanted, 50) + len(excluded)))
        if not pool:  # no profile and no behaviour at all: any items, so the answer is not empty
            pool = self.catalog.index.ids()[: wanted + len(excluded)]
        ids = [i for i in dict.fromkeys(pool) if i not in excluded and i in self.catalog]
        if not ids:
            return []
        return self._rank(profile, ids, self.catalog.vectors(ids), k)

    def profile(self, query: Query) -> Profile:
        """The profile of a query.

        Raises:
            InvalidInput: Neither a user, a history nor interests; or both a user and a history.
            NotFound: A user without events, or history ids not in the catalog.
        """
        if query.user_id is not None and query.history is not None:
            raise InvalidInput("expected user_id or history, not both")
        if query.user_id is None and query.history is None and not (query.interests or "").strip():
            raise InvalidInput("expected user_id, history or interests; found none")
        history, seen = self._history(query)
        parts = []
        if history:
            recent = history[-max(self.model.config.history_items, self.model.config.text_history_items) :]
            titles = [self.catalog.title(i) for i in recent]
            parts.append(self.model.profile(self.catalog.vectors(recent), titles))
        phrases: list[str] = []
        phrase_vectors = np.zeros((0, self.model.dim), dtype=np.float32)
        if query.interests and query.interests.strip():
            parts.append(self.model.interest_vector(query.interests))
            phrases = interest_phrases(query.interests) or [query.interests.strip()]
            phrase_vectors = self.model.encoder.encode(phrases)
        vector = np.sum(parts, axis=0) if parts else np.zeros(self.model.dim, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        vector = (vector / norm if norm > 0 else vector).astype(np.float32)
        return Profile(vector, history, frozenset(seen), phrases, phrase_vectors)

    def _history(self, query: Query) -> tuple[list[str], set[str]]:
        if query.history is not None:
            unknown = [i for i in dict.fromkeys(query.history) if i not in self.catalog]
            if unknown:
                raise NotFound(f"expected catalog item ids in history; unknown: {id_listing(unknown)}")
            history = list(dict.fromkeys(reversed(query.history)))[::-1]  # each once, at its latest place
            return history, set(history)
        if query.user_id is None:
            return [], set()
        events = user_events(self.db, query.user_id)
        if not events:
            raise NotFound(
                f"expected a user with events, found none for user_id {query.user_id!r} "
                "(send history or interests for a new user)"
            )
        liked = positive_history(events, self.min_rating)
        return [i for i in liked if i in self.catalog], {e.item_id for e in events}

    def _rank(self, profile: Profile, ids: list[str], vectors: np.ndarray, k: int) -> list[ScoredItem]:
        snapshot = self.behaviour.snapshot()
        ref_ids, ref_vectors = self._reference_sample()
        all_ids = ids + ref_ids
        all_vectors = np.concatenate([vectors, ref_vectors])  # (n + r, dim)
        content = all_vectors @ profile.vector
        knn = snapshot.pick(snapshot.knn_row(profile.history), all_ids) if profile.history else None
        scores = self.model.blend(content, knn, snapshot.popularity(all_ids))[: len(ids)]
        order = np.lexsort((np.arange(len(ids)), -scores))[:k]  # best first, ties in given order
        chosen = [ids[int(i)] for i in order]
        reasons = self._explain(profile, snapshot, chosen, vectors[order])
        return [
            ScoredItem(item_id, self.catalog.title(item_id), float(scores[i]), reason)
            for item_id, i, reason in zip(chosen, order, reasons, strict=True)
        ]

    def _explain(
        self, profile: Profile, snapshot: BehaviourSnapshot, ids: list[str], vectors: np.ndarray
    ) -> list[Explanation]:
        history = profile.history[-EXPLAINED_HISTORY:]
        because: list[list[HistoryMatch]] = [[] for _ in ids]
        if history:
            # content cosine plus co-occurrence similarity: both in [-1, 1], both reasons to show an item
            strength = self.catalog.vectors(history) @ vectors.T + snapshot.pair_similarity(history, ids)
            itself = np.array(history)[:, None] == np.array(ids)[None, :]  # (h, n) bool
            strength[itself] = -np.inf  # an item is no reason for itself
            best = np.argsort(-strength, axis=0, kind="stable")[:REASONS]  # (<= REASONS, n) history rows
            values = np.round(np.take_along_axis(strength, best, axis=0), 4)  # (<= REASONS, n)
            titles = [self.catalog.title(h) for h in history]
            because = [
                [
                    HistoryMatch(history[h], titles[h], v)
                    for h, v in zip(rows, sims, strict=True)
                    if v > -np.inf
                ]
                for rows, sims in zip(best.T.tolist(), values.T.tolist(), strict=True)
            ]
        matched: list[list[str]] = [[] for _ in ids]
        if profile.phrases:
            similarity = vectors @ profile.phrase_vectors.T  # (n, n_phrases)
            order = np.argsort(-similarity, axis=1, kind="stable")[:, :REASONS]  # (n, <= REASONS)
            # phrases close to the best one and similar enough at all
            floor = np.maximum(similarity.max(axis=1) - 0.05, MIN_PHRASE_SIMILARITY)
            for row in range(len(ids)):
                matched[row] = [
                    profile.phrases[p] for p in order[row].tolist() if similarity[row, p] >= floor[row]
                ]
        return [Explanation(b, m) for b, m in zip(because, matched, strict=True)]

    def _reference_sample(self) -> tuple[list[str], np.ndarray]:
        """A fixed random sample of the catalog (re-drawn when the catalog changes) and its vectors."""
        with self._reference_lock:
            version = self.catalog.version
            if self._reference is None or self._reference[0] != version:
                ids = self.catalog.index.ids()
                rng = np.random.default_rng(0)
                chosen = sorted(rng.choice(len(ids), size=min(REFERENCE_ITEMS, len(ids)), replace=False))
                sample = [ids[int(i)] for i in chosen]
                present = [i for i in sample if i in self.catalog]
                self._reference = (version, present, self.catalog.vectors(present))
            return self._reference[1], self._reference[2]


def load_model(settings: RecommenderSettings) -> TextInterestModel:
    """The trained model of `settings.model_path`, or the base encoder zero-shot when there is none."""
    encoder = settings.encoder
    if settings.model_path is not None:
        return TextInterestModel.load(settings.model_path, device=encoder.device, precision=encoder.precision)
    return TextInterestModel.from_base(encoder.model, device=encoder.device, precision=encoder.precision)


def model_fingerprint(settings: RecommenderSettings) -> str:
    """Identifies the model whose vectors an index holds: a retrained or other model invalidates it."""
    if settings.model_path is None:
        return f"base:{settings.encoder.model}"
    folder = settings.model_path.resolve()
    digest = hashlib.sha256((folder / MODEL_FILE).read_bytes())
    for weights in sorted(folder.glob("*.safetensors")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"trained:{folder}:{digest.hexdigest()[:16]}"


def open_catalog(
    settings: RecommenderSettings, db: Database, model: TextInterestModel, progress: Progress | None = None
) -> ItemCatalog:
    """The catalog over `db`, its index loaded and brought up to date with the database."""
    catalog = ItemCatalog(
        db,
        model.item_vectors,
        model.dim,
        settings.index_path,
        model_fingerprint(settings),
        batch_size=settings.encoder.batch_size,
    )
    catalog.sync(progress)
    return catalog


@contextmanager
def open_recommender(settings: RecommenderSettings) -> Iterator[Recommender]:
    """Build the database (migrated), model, catalog and behaviour; dispose of the database afterwards."""
    db = Database(settings.database_url)
    try:
        db.migrate()
        model = load_model(settings)
        catalog = open_catalog(settings, db, model)
        behaviour = Behaviour()
        behaviour.add(all_positives(db, settings.min_rating))
        yield Recommender(
            db,
            model,
            catalog,
            behaviour,
            min_rating=settings.min_rating,
            candidates=settings.candidates,
            max_items=settings.max_items_per_request,
            max_events=settings.max_events_per_request,
        )
    finally:
        db.dispose()
