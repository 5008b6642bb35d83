"""Online scoring and recommendation: profiles from stored behaviour, candidates, the model's blend, reasons.

A request's profile comes from a user's stored events (their positives, oldest first), from a history of item
ids, or from free-text interests (cold start), or from interests together with either (a user with no stored
events yet is then scored on the interests alone). Each candidate gets a content score (its vector against
the profile), a co-occurrence score (item-kNN against the history) and its popularity;
`TextInterestModel.blend` standardises each component and weighs them. The components are standardised over
the candidates together with a fixed sample of the catalog, so a score does not depend much on which other
candidates were sent (and a single candidate still gets a meaningful score); the sample is drawn from the ids
in id order, so every replica and restart over one catalog draws the same.

`recommend` takes its candidates from the vector index (nearest items to the profile), the history's
co-occurrence neighbours and the most popular items. Every result explains itself: the history items most
similar to it (by content and co-occurrence) and the interest phrases it matched best. Scores and reasons are
computed for all candidates at once with matrix products; only the few named reasons per result are Python
objects, so a request for 1,000 candidates stays within a few milliseconds.

When the model has a rescorer fitted to help (`recommender.rescoring`), the blend's best few candidates of a
request with a history are then re-ordered by it: their texts come from the database and each (history,
item) pair is one cross-encoder pass, which costs far more than the rest of the request (bench/rescoring.py).

Other processes may write the same database (`recommender ingest-items` / `ingest-events`, another replica on
PostgreSQL). Before a score or recommend request, at most every ``refresh_s`` seconds, the service reads the
change counters (`recommender.changes`, one small query); when they moved, it embeds the items changed
elsewhere (re-reading the catalog's texts to find them) and counts the new events into co-occurrence and
popularity, so such writes are served without a restart.

Erasing a user (`erase_user`, or `recommender erase-user` in another process) deletes their events; a
service that sees the erasures counter move counts every remaining event again (`Behaviour.recount`, the
work of a start-up's count: 0.6 s for MovieLens-100k's 100,000 events on SQLite, 4.9 s for 1,000,000), so
the erased events stop counting in co-occurrence and popularity for every other user too. Other requests are
served from the counts so far meanwhile; they do not wait for the recount. A user's profile is read from
their events at each request and kept nowhere else, so an erased user is then unknown. A trained model is
not changed: what it learned from the user's behaviour stays in its weights until it is trained again
without them.

Threads: the service answers requests in a pool of worker threads (``max_workers``), so the small numpy/BLAS
and torch calls of a request are best left single-threaded. On a 2-core machine with the other core busy, a
multi-threaded call spins waiting for it, far longer than the call itself takes: a score request took 40 ms
with the default 2 BLAS threads and 7.5 ms with 1; a (5,000, 384) mat-vec had p95 8 ms with 2 threads and
0.08 ms with 1; encoding one interest text took 14-500 ms with 2 torch threads and 5.7 ms with 1 (6.5 ms
either way with the other core idle). The app limits the BLAS pools (process-wide, ``REC_BLAS_THREADS``);
`intra_op_threads` sets torch's threads around a request's encoder calls (``REC_TORCH_THREADS``). Catalog
embedding is a bulk job that gains from every idle core (MiniLM: ~330 items/s with 2 threads, ~185 with 1,
on an idle machine; 60-125 against ~210 with the other core busy): ``REC_EMBED_THREADS``, torch's own by
default.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from recommender.behaviour import Behaviour, BehaviourSnapshot
from recommender.catalog import ItemCatalog
from recommender.changes import ERASURES, EVENTS, ITEMS, read_counters
from recommender.database import Database
from recommender.events import (
    FUTURE_TOLERANCE,
    EventCursor,
    EventRecord,
    disliked,
    erase_user,
    ingest_events,
    positive_history,
    positives_after,
    user_events,
)
from recommender.explanations import EXPLAINED_HISTORY, Explanation, history_reasons, matched_phrases
from recommender.item_records import ItemRecord, UpsertReport, id_listing
from recommender.model import TextInterestModel, max_similarities, zscore
from recommender.profiles import Profile, Query, interest_phrases
from recommender.rescoring import Rescorer
from recommender.torch_threads import intra_op_threads
from textcore import InvalidInput, NotFound, PayloadTooLarge

REFERENCE_ITEMS = 256  # catalog sample that scores are standardised against


@dataclass(frozen=True)
class ScoredItem:
    """One result, best first in every list returned."""

    item_id: str
    title: str
    score: float
    explanation: Explanation
    # the user's latest rating of the item is below the threshold: `score` ranks it after every other item
    rated_below_threshold: bool = False


class Recommender:
    """Scores and recommends catalog items; every method blocks (run them in worker threads).

    Args:
        db: The migrated database.
        model: The text-interest model.
        catalog: Items and their vectors.
        behaviour: Co-occurrence and popularity; `refresh` counts the stored events into it (every one the
            first time, then those stored since).
        min_rating: Ratings at or above count as positives (None: all).
        candidates: Items taken from the vector index and from co-occurrence per recommendation.
        max_items: Most candidates per score request.
        max_events: Most events per ingest batch.
        torch_threads: torch threads of the encoder calls answering a request (None: as the thread has them).
        embed_threads: torch threads of catalog embedding in `upsert_items` (None: as the thread has them).
        rescorer: Re-scores the blend's top candidates of requests with a history (None: the blend alone).
        refresh_s: How often, at most, a request looks for items and events other processes wrote (0: before
            every request).
        future_tolerance: How far an ingested event's time may be after the server's clock.
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
        torch_threads: int | None = None,
        embed_threads: int | None = None,
        rescorer: Rescorer | None = None,
        refresh_s: float = 1.0,
        future_tolerance: timedelta = FUTURE_TOLERANCE,
    ) -> None:
        self.db, self.model, self.catalog, self.behaviour = db, model, catalog, behaviour
        self.rescorer = rescorer
        self.min_rating, self.candidates = min_rating, candidates
        self.max_items, self.max_events = max_items, max_events
        self.future_tolerance = future_tolerance
        self.torch_threads, self.embed_threads = torch_threads, embed_threads
        self._reference: tuple[int, list[str], np.ndarray] | None = None  # (catalog version, ids, vectors)
        self._reference_lock = threading.Lock()
        self.refresh_s = refresh_s
        self._looked_at = -math.inf  # time.monotonic() of the last look at the change counters
        self._events = EventCursor()  # the last event counted into `behaviour`
        self._events_seen = -1  # the events change counter `behaviour` reflects
        self._erasures_seen = -1  # the erasures change counter `behaviour` reflects
        self._events_lock = threading.Lock()

    def refresh(self, *, now: bool = False) -> None:
        """Take in the items and events other processes wrote, once `refresh_s` passed since the last look.

        Args:
            now: Look whatever the time since the last look.
        """
        moment = time.monotonic()
        if not now and moment - self._looked_at < self.refresh_s:
            return
        self._looked_at = moment
        counters = read_counters(self.db)
        with intra_op_threads(self.embed_threads):
            self.catalog.refresh(counters[ITEMS])
        if counters[EVENTS] > self._events_seen or counters[ERASURES] != self._erasures_seen:
            self._count_events(wait=now)

    def _count_events(self, *, wait: bool = True) -> None:
        """Count the positives of the events stored since the last count into co-occurrence and popularity,
        and take back the likes their users' later low ratings undid; after an erasure, count those of every
        stored event instead of the counts so far.

        Args:
            wait: Wait for a count under way in another thread, then count; else leave it to that one (a
                request serves the counts so far rather than wait for a recount).
        """
        if not self._events_lock.acquire(blocking=wait):
            return
        try:
            counters = read_counters(self.db)  # read first: the events read next are at least as new
            seen, erased = counters[EVENTS], counters[ERASURES]
            if erased == self._erasures_seen:
                low: set[tuple[str, str]] = set()  # a later low rating takes back what was counted before
                self.behaviour.add(positives_after(self.db, self._events, self.min_rating, disliked_out=low))
                self.behaviour.retract(low)
            else:
                cursor = EventCursor()
                self.behaviour.recount(positives_after(self.db, cursor, self.min_rating))
                self._events = cursor
            self._events_seen, self._erasures_seen = seen, erased
        finally:
            self._events_lock.release()

    def ingest(self, events: Sequence[EventRecord]) -> int:
        """Store a batch of events (all or nothing), then count its positives into co-occurrence."""
        stored = ingest_events(self.db, events, self.max_events, future_tolerance=self.future_tolerance)
        self._count_events()  # read back from the database: whatever else was stored meanwhile counts too
        return stored

    def erase_user(self, user_id: str) -> int:
        """Delete every stored event of a user and stop counting them; returns how many were deleted.

        Raises:
            NotFound: If the user has no stored events.
        """
        erased = erase_user(self.db, user_id)
        self._count_events()  # sees the erasure: counts the remaining events again
        return erased

    def delete_item(self, item_id: str) -> None:
        """Remove an item from the catalog and detach its events from the id (`item_deletion.delete_items`):
        they stop counting for it at once, and an item created later under the id starts with none.

        Raises:
            NotFound: If no item has this id.
        """
        self.catalog.delete(item_id)
        self._count_events()  # sees the erasures counter moved when the item had events: counts them again

    def upsert_items(self, items: Sequence[ItemRecord]) -> UpsertReport:
        """Create or replace catalog items; they are recommendable as soon as this returns.

        Raises:
            PayloadTooLarge: More than `max_items` items.
            InvalidInput: An id repeated.
        """
        if len(items) > self.max_items:
            raise PayloadTooLarge(f"expected at most {self.max_items} items per request, found {len(items)}")
        with intra_op_threads(self.embed_threads):
            return self.catalog.upsert(items)

    def score(self, query: Query, items: Sequence[str]) -> list[ScoredItem]:
        """Score the given catalog items for the query, best first; but an item the user's latest rating puts
        below `min_rating` goes after every other one (`recommend` never offers it), its score the model's,
        flagged `rated_below_threshold`.

        Raises:
            PayloadTooLarge: More than `max_items` items.
            InvalidInput: No items, or an id repeated.
            NotFound: Listing the item ids (or history ids) not in the catalog, or a user with no events and
                no interests sent.
        """
        if len(items) > self.max_items:
            raise PayloadTooLarge(f"expected at most {self.max_items} items per request, found {len(items)}")
        if not items:
            raise InvalidInput("expected at least one item id to score, found none")
        self.refresh()
        if len(set(items)) != len(items):
            repeated = sorted(i for i, n in Counter(items).items() if n > 1)
            raise InvalidInput(f"expected each item id once; repeated: {id_listing(repeated)}")
        try:
            vectors = self.catalog.vectors(items)  # (n, dim); raises NotFound listing unknown ids
        except NotFound as exc:  # the history's unknown ids too, so that one answer names all to fix
            in_history = [i for i in dict.fromkeys(query.history or ()) if i not in self.catalog]
            if not in_history:
                raise
            raise NotFound(f"{exc.message}; in history, unknown: {id_listing(in_history)}") from None
        return self._rank(self.profile(query), list(items), vectors, len(items))

    def recommend(
        self, query: Query, k: int, *, exclude_seen: bool = True, offset: int = 0
    ) -> list[ScoredItem]:
        """The `k` best catalog items for the query (without the user's own items when `exclude_seen`, and
        never an item the user's latest rating puts below `min_rating`); items that score alike in id order.

        Args:
            offset: How many of the best to skip first: places `offset + 1` to `offset + k` of the ranking
                that the same request with `k = offset + k` and no offset returns (pages of a ranking shown
                `k` at a time). The candidates are drawn for the last place, so a page past the 50 best
                may rank among them a popular item that the earlier pages did not draw.
        """
        self.refresh()
        profile = self.profile(query)
        excluded = profile.seen if exclude_seen else profile.disliked  # a disliked item is not offered again
        places = offset + k  # the pool holds everything up to the page's last place
        wanted = max(self.candidates, places)
        snapshot = self.behaviour.snapshot()
        pool: list[str] = []
        if np.any(profile.vector):
            hits = self.catalog.index.search(profile.vector, wanted + len(excluded))
            pool.extend(hit.id for hit in hits)
        pool.extend(snapshot.top(snapshot.knn_row(profile.history), wanted + len(excluded)))
        pool.extend(snapshot.top(snapshot.counts, max(places, min(wanted, 50)) + len(excluded)))
        chosen = [i for i in dict.fromkeys(pool) if i not in excluded and i in self.catalog]
        if len(chosen) < places:
            chosen += self._unliked(places - len(chosen), excluded.union(chosen))
        # In id order: `_rank` keeps equal scores in the order given, and the pool's order is the index's
        # (how this service came to hold the items), which differs between replicas and restarts.
        ids, vectors = self.catalog.present(sorted(chosen))
        if not ids:
            return []
        return self._rank(profile, ids, vectors, k, skip=offset)

    def _unliked(self, count: int, excluded: frozenset[str]) -> list[str]:
        """`count` catalog items not in `excluded`, in id order: when a recommendation found too few.

        Only a request without a profile (a user whose events say nothing of what they like: ratings below
        `min_rating`, items since deleted) finds fewer than `k` candidates while the catalog has more: it
        takes the items others liked, all of them when fewer than `k`, most liked first (`_rank`), and every
        other item scores alike.
        """
        return heapq.nsmallest(count, (i for i in self.catalog.index.ids() if i not in excluded))

    def profile(self, query: Query) -> Profile:
        """The profile of a query.

        Raises:
            InvalidInput: Neither a user, a history of at least one item nor interests; or both a user and
                a history; or interests naming nothing or too many phrases (`interest_phrases`).
            NotFound: A user without events and without interests, or history ids not in the catalog.
        """
        if query.user_id is not None and query.history is not None:
            raise InvalidInput("expected user_id or history, not both")
        if query.user_id is None and not query.history and not (query.interests or "").strip():
            # An empty history tells nothing either: every candidate would score 0 in the order sent.
            found = "an empty history" if query.history is not None else "none"
            raise InvalidInput(
                f"expected user_id, a history of at least one item id, or interests; found {found}"
            )
        interests = (query.interests or "").strip()
        phrases = interest_phrases(interests) if interests else []  # refused before any work
        history, seen, vetoed = self._history(query)
        parts = []
        config = self.model.config
        recent, recent_vectors = self.catalog.present(
            history[-max(config.history_items, config.text_history_items) :]
        )
        with intra_op_threads(self.torch_threads):  # a text profile and interests run the encoder
            if history:
                parts.append(self.model.profile(recent_vectors, self.catalog.titles(recent)))
            phrase_vectors = np.zeros((0, self.model.dim), dtype=np.float32)
            if interests:
                parts.append(self.model.interest_vector(interests))
                phrase_vectors = self.model.encoder.encode(phrases)
        vector = np.sum(parts, axis=0) if parts else np.zeros(self.model.dim, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        vector = (vector / norm if norm > 0 else vector).astype(np.float32)
        return Profile(
            vector, history, recent_vectors, frozenset(seen), phrases, phrase_vectors, frozenset(vetoed)
        )

    def _history(self, query: Query) -> tuple[list[str], set[str], set[str]]:
        """The liked items (oldest first), every item interacted with, and the disliked items of a query."""
        if query.history is not None:
            unknown = [i for i in dict.fromkeys(query.history) if i not in self.catalog]
            if unknown:
                raise NotFound(f"expected catalog item ids in history; unknown: {id_listing(unknown)}")
            history = list(dict.fromkeys(reversed(query.history)))[::-1]  # each once, at its latest place
            return history, set(history), set()
        if query.user_id is None:
            return [], set(), set()
        events = user_events(self.db, query.user_id)
        if not events and (query.interests or "").strip():
            return [], set(), set()  # a new user who told their interests: scored on those alone
        if not events:
            raise NotFound(
                f"expected a user with events, found none for user_id {query.user_id!r} "
                "(send history or interests for a new user)"
            )
        liked = positive_history(events, self.min_rating)
        seen = {e.item_id for e in events}
        return [i for i in liked if i in self.catalog], seen, disliked(events, self.min_rating)

    def _rank(
        self, profile: Profile, ids: list[str], vectors: np.ndarray, k: int, *, skip: int = 0
    ) -> list[ScoredItem]:
        """The best `k` of `ids` after the `skip` best, best first, with their reasons."""
        snapshot = self.behaviour.snapshot()
        ref_ids, ref_vectors = self._reference_sample()
        all_ids = ids + ref_ids
        content = self._content(profile, np.concatenate([vectors, ref_vectors]))  # (n + r,)
        positions = snapshot.positions(all_ids)
        decay = self.model.config.knn_decay
        knn = snapshot.at(snapshot.knn_row(profile.history, decay), positions) if profile.history else None
        popularity = snapshot.at(snapshot.counts, positions)
        if profile.history or np.any(profile.vector):
            scores = self.model.blend(content, knn, popularity)[: len(ids)]
        else:  # nothing known of what they like: the items others liked most first, whatever weight the
            # blend, fitted on users with a profile, gives popularity (a trained model's may be 0)
            scores = zscore(popularity)[: len(ids)]
        # an item the user rated below the threshold (only `score` is sent one) goes after every other item
        low = np.fromiter((i in profile.disliked for i in ids), dtype=bool, count=len(ids))
        if self.rescorer is not None and profile.history:
            recent = profile.history[-self.rescorer.rescoring.history_items :]  # all the query reads
            query = self.rescorer.query(self.catalog.titles(recent))
            with intra_op_threads(self.torch_threads):  # -inf: a low-rated item takes no re-scored place
                rescored = self.rescorer.rescore(
                    np.where(low, -np.inf, scores),
                    query,
                    lambda top: self.catalog.encoder_texts([ids[i] for i in top]),
                )
            scores = np.where(low, scores, rescored)
        # best first, ties in given order (lexsort is stable; its last key, the low ones last, is primary)
        order = np.lexsort((-scores, low))[skip : skip + k]
        chosen = [ids[i] for i in order.tolist()]
        reasons = self._explain(profile, snapshot, chosen, vectors[order])
        titles = self.catalog.titles(chosen)
        return list(map(ScoredItem, chosen, titles, scores[order].tolist(), reasons, low[order].tolist()))

    def _content(self, profile: Profile, candidates: np.ndarray) -> np.ndarray:
        """(m,) content scores: profile cosine, sharing with the closest history item as the model chose."""
        scores: np.ndarray = candidates @ profile.vector
        share = self.model.config.max_share
        if share > 0 and profile.history:
            recent = profile.recent_vectors[-self.model.config.history_items :]  # already fetched
            closest = max_similarities(
                [range(len(recent))],
                recent,
                candidates,
                self.model.config.recency_decay,
                self.model.config.history_items,
            )[0]
            scores = (1 - share) * scores + share * closest
        return scores

    def _explain(
        self, profile: Profile, snapshot: BehaviourSnapshot, ids: list[str], vectors: np.ndarray
    ) -> list[Explanation]:
        because = history_reasons(self.catalog, profile.history[-EXPLAINED_HISTORY:], snapshot, ids, vectors)
        matched = matched_phrases(profile.phrases, profile.phrase_vectors, vectors)
        return list(map(Explanation, because, matched))

    def _reference_sample(self) -> tuple[list[str], np.ndarray]:
        """A fixed random sample of the catalog (re-drawn when the catalog changes) and its vectors.

        Drawn from the ids in id order, not the index's storage order: that order is how this service came
        to hold the items (a replica started later reads them in the database's order, which PostgreSQL
        changes when a row is updated), and every replica and restart must standardise against one sample.
        """
        with self._reference_lock:
            version = self.catalog.version
            if self._reference is None or self._reference[0] != version:
                ids = sorted(self.catalog.index.ids())
                rng = np.random.default_rng(0)
                chosen = sorted(rng.choice(len(ids), size=min(REFERENCE_ITEMS, len(ids)), replace=False))
                self._reference = (version, *self.catalog.present([ids[int(i)] for i in chosen]))
            return self._reference[1], self._reference[2]
