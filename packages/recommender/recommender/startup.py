"""Building the service's `Recommender` from its settings: model, rescorer, catalog and index, behaviour."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path

from recommender.behaviour import Behaviour
from recommender.catalog import ItemCatalog, Progress
from recommender.database import Database
from recommender.index_files import indexed_model
from recommender.model import TextInterestModel
from recommender.model_folders import MODEL_FILE
from recommender.rescoring import Rescorer
from recommender.serving import Recommender
from recommender.settings import RecommenderSettings
from recommender.torch_threads import intra_op_threads
from textcore import InvalidInput


def load_model(settings: RecommenderSettings) -> TextInterestModel:
    """The trained model of `settings.model_path`, or the base encoder zero-shot when there is none."""
    encoder = settings.encoder
    if settings.model_path is not None:
        return TextInterestModel.load(settings.model_path, device=encoder.device, precision=encoder.precision)
    return TextInterestModel.from_base(encoder.model, device=encoder.device, precision=encoder.precision)


def serving_min_rating(settings: RecommenderSettings, model: TextInterestModel) -> float | None:
    """The rating that makes an event a positive: ``REC_MIN_RATING`` when it is set, else the one the model
    was trained with (`recommender train --min-rating`), so that served histories and co-occurrence count the
    positives the model learned from; None: every rating counts."""
    if "min_rating" in settings.model_fields_set:
        return settings.min_rating
    trained = model.meta.get("sources", {}).get("min_rating")
    return None if trained is None else float(trained)


def load_rescorer(settings: RecommenderSettings) -> Rescorer | None:
    """The model's rescorer when re-scoring is on and its fitted weight is above 0, else None."""
    if settings.model_path is None or not settings.rescore:
        return None
    encoder = settings.encoder
    rescorer = Rescorer.load(settings.model_path, device=encoder.device, precision=encoder.precision)
    return rescorer if rescorer is not None and rescorer.active else None


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


def model_of_index(settings: RecommenderSettings) -> RecommenderSettings:
    """`settings` that embed with the model whose vectors the index file holds, for a command given no model.

    Without a model path, a command would embed with the base encoder: beside an index built by a trained
    model (the service's ``REC_MODEL_PATH``) it would discard the index, embed the whole catalog again with
    the other model and save that in place of the service's vectors. Its sidecar names the model
    (`model_fingerprint`): a trained model's folder is taken from there.

    Raises:
        InvalidInput: The index was built by a trained model whose folder holds no model now, or by another
            base encoder than the settings name.
    """
    recorded = indexed_model(settings.index_path)
    if settings.model_path is not None or recorded is None or recorded == model_fingerprint(settings):
        return settings
    fix = (
        "give --model-path (the service's REC_MODEL_PATH), or remove the index file to embed every item again"
    )
    if recorded.startswith("trained:"):
        folder = Path(recorded.removeprefix("trained:").rsplit(":", 1)[0])
        if not (folder / MODEL_FILE).is_file():
            raise InvalidInput(
                f"index {settings.index_path} holds the vectors of the trained model {folder}, which has no "
                f"{MODEL_FILE} now; no model path was given, and the base encoder's vectors would replace "
                f"them: {fix}"
            )
        return settings.model_copy(update={"model_path": folder})
    raise InvalidInput(
        f"index {settings.index_path} holds the vectors of the base encoder "
        f"{recorded.removeprefix('base:')!r}, not of {settings.encoder.model!r} (REC_ENCODER__MODEL): set "
        f"REC_ENCODER__MODEL as the service has it, {fix}"
    )


def open_catalog(
    settings: RecommenderSettings,
    db: Database,
    model: TextInterestModel,
    progress: Progress | None = None,
    *,
    save_after_s: float = 0.0,
) -> ItemCatalog:
    """The catalog over `db`, its index loaded and brought up to date with the database.

    `save_after_s`: see `ItemCatalog` (a command saves at every write; the service defers its saves).
    """
    catalog = ItemCatalog(
        db,
        model.item_vectors,
        model.dim,
        settings.index_path,
        model_fingerprint(settings),
        batch_size=settings.encoder.batch_size,
        save_after_s=save_after_s,
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
        with intra_op_threads(settings.embed_threads or None):
            catalog = open_catalog(settings, db, model, save_after_s=settings.index_save_s)
        with closing(catalog):  # saves what the index file lacks at shutdown
            yield serving(settings, db, model, catalog)
    finally:
        db.dispose()


def serving(
    settings: RecommenderSettings, db: Database, model: TextInterestModel, catalog: ItemCatalog
) -> Recommender:
    """The service's `Recommender` over an opened catalog, its behaviour counted from the stored events."""
    behaviour = Behaviour(shrink=model.config.knn_shrink, alpha=model.config.knn_alpha)
    recommender = Recommender(
        db,
        model,
        catalog,
        behaviour,
        min_rating=serving_min_rating(settings, model),
        candidates=settings.candidates,
        max_items=settings.max_items_per_request,
        max_events=settings.max_events_per_request,
        torch_threads=settings.torch_threads or None,
        embed_threads=settings.embed_threads or None,
        rescorer=load_rescorer(settings),
        refresh_s=settings.refresh_s,
        future_tolerance=timedelta(seconds=settings.event_future_tolerance_s),
    )
    recommender.refresh(now=True)  # counts the stored events (the catalog is in line already)
    return recommender
