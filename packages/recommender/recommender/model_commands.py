"""`recommender` commands that train and evaluate models: train, evaluate, train-rescorer."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recommender.command_options import (
    DeviceOpt,
    IdCol,
    InteractionsOpt,
    ItemCol,
    ItemsOpt,
    MinRating,
    ModelMinRating,
    PrecisionOpt,
    RatingCol,
    TextCols,
    TimeCol,
    TitleCol,
    UserCol,
    print_report,
)
from recommender.model_folders import MODEL_FILE, check_base_model, check_model_folder, require_model_file
from textcore import CoreError, InvalidInput
from textcore import cli as core_cli

if TYPE_CHECKING:
    from recommender.data import Catalog, Interactions


def _read_data(
    interactions: Path,
    items: Path,
    event_columns: tuple[str, str, str, str, float | None],
    item_columns: tuple[str, str, list[str] | None],
    *,
    model: Path | None = None,
) -> tuple[Interactions, Catalog, float | None]:
    """Interactions (user, item, time, rating columns and the rating threshold), the item catalog, and the
    threshold applied: without one given, that of `model` (`trained_min_rating`), as the service does."""
    from recommender.data import read_catalog, read_interactions  # noqa: PLC0415 - imports numpy
    from recommender.events import MAX_VALUE  # noqa: PLC0415 - imports sqlalchemy

    user, item, time, rating, min_rating = event_columns
    if min_rating is not None and not abs(min_rating) <= MAX_VALUE:  # NaN too: every rating below it
        raise InvalidInput(
            f"--min-rating: expected a number from {-MAX_VALUE:.0f} to {MAX_VALUE:.0f}, as a rating and "
            f"REC_MIN_RATING are; found {min_rating}"
        )
    inherited = min_rating is None and model is not None
    if inherited and model is not None:
        min_rating = trained_min_rating(model)
        if min_rating is not None:
            core_cli.say(
                f"the model was trained with --min-rating {min_rating:g}: a rating below it is no positive "
                "here either (give --min-rating to choose another threshold)"
            )
    data = read_interactions(
        interactions,
        user_column=user,
        item_column=item,
        time_column=time,
        rating_column=rating,
        min_rating=min_rating,
        min_rating_if_rated=inherited,
    )
    id_column, title, texts = item_columns
    catalog = read_catalog(
        items, id_column=id_column, title_column=title, text_columns=tuple(texts or ["text"])
    )
    _report_outside_catalog(data, catalog, (interactions, item), (items, id_column))
    return data, catalog, min_rating


def _report_outside_catalog(
    data: Interactions, catalog: Catalog, interactions: tuple[Path, str], items: tuple[Path, str]
) -> None:
    """Say on stderr how many interaction rows are left out because their item is not in the items file
    (e.g. the interactions name SKUs and the catalog internal ids); refuse when that leaves none."""
    from recommender.data import outside_catalog  # noqa: PLC0415 - imports numpy

    rows, ids = outside_catalog(data, catalog)
    if rows == 0:
        return
    (interactions_path, item_column), (items_path, id_column) = interactions, items
    examples = ", ".join(repr(i) for i in ids[:3]) + (", ..." if len(ids) > 3 else "")
    which = (
        f"{len(ids)} distinct item id{'s' if len(ids) != 1 else ''} ({examples}) in column {item_column!r} "
        f"not among the ids of {items_path} (column {id_column!r})"
    )
    if rows == len(data):
        raise InvalidInput(
            f"{interactions_path}: expected interactions with items in the items file; found none: "
            f"all {rows} rows name {which}"
        )
    core_cli.say(
        f"warning: left out {rows} of {len(data)} interaction rows of {interactions_path}: they name {which}"
    )


def trained_min_rating(model: Path) -> float | None:
    """The --min-rating the model in `model` was trained with (its `recommender.json`); None when it had none,
    or when the folder holds no readable model (loading it then says what is wrong)."""
    from textcore.artifacts import read_json  # noqa: PLC0415

    try:
        trained = read_json(model / MODEL_FILE)["meta"]["sources"]["min_rating"]
        return None if trained is None else float(trained)
    except (CoreError, KeyError, TypeError, ValueError):
        return None


def _sources(interactions: Path, items: Path, min_rating: float | None) -> dict[str, Any]:
    """Where training data came from, for a model's metadata: the paths and their files' SHA-256."""
    from textcore.data import file_sha256  # noqa: PLC0415 - imports numpy

    return {
        "interactions": str(interactions),
        "interactions_file_sha256": file_sha256(interactions),
        "items": str(items),
        "items_file_sha256": file_sha256(items),
        "min_rating": min_rating,
    }


def train(
    interactions: InteractionsOpt,
    items: ItemsOpt,
    output: Annotated[
        Path,
        typer.Option(
            "--output", help="model folder to write (new, empty, or an earlier model's, replaced whole)"
        ),
    ],
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    min_rating: MinRating = None,
    id_column: IdCol = "item_id",
    title_column: TitleCol = "title",
    text_column: TextCols = None,
    base_model: Annotated[str, typer.Option(help="alias, local folder or trained model")] = "minilm",
    epochs: Annotated[int, typer.Option(help="passes over the behaviour pairs (0: no fine-tuning)")] = 1,
    max_pairs: Annotated[int, typer.Option(help="behaviour pairs to fine-tune on")] = 20_000,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[float, typer.Option()] = 5e-5,
    max_length: Annotated[int, typer.Option(help="tokens per text")] = 96,
    hold_out_last: Annotated[
        bool, typer.Option(help="leave each user's last interaction out (--no-hold-out-last: serve-only)")
    ] = True,
    max_validation_users: Annotated[
        int, typer.Option(help="users the blend is fitted on (memory grows with users x items)")
    ] = 6000,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Fine-tune the text-interest model on behaviour, fit its blend on validation users, and save it."""

    def action() -> dict[str, Any]:
        # the output folder, the base model's name and the data are checked before torch is imported, so
        # that a bad one fails in about a second
        check_model_folder(output)  # before the data is read; train_model empties it before writing
        check_base_model(base_model, output)
        data, catalog, _ = _read_data(
            interactions,
            items,
            (user_column, item_column, time_column, rating_column, min_rating),
            (id_column, title_column, text_column),
        )
        from recommender.training import RecTrainConfig, train_model  # noqa: PLC0415 - heavy imports

        config = RecTrainConfig(
            base_model=base_model,
            epochs=epochs,
            max_pairs=max_pairs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
            seed=seed,
            hold_out_last=hold_out_last,
            max_validation_users=max_validation_users,
            device=device,
            precision=precision,
        )
        sources = _sources(interactions, items, min_rating)
        # an earlier model in --output is set aside until the run succeeds, and put back when it fails
        with core_cli.replacing_output(output, inputs=(interactions, items)):
            _, report = train_model(
                data, catalog, output, config, progress=sys.stderr.isatty(), sources=sources
            )
        return report

    report = core_cli.run_or_exit(action)
    print(f"saved {output}")
    print_report({"output": str(output), **report})


def evaluate(
    model: Annotated[Path, typer.Option("--model", help="trained model folder")],
    interactions: InteractionsOpt,
    items: ItemsOpt,
    protocol: Annotated[str, typer.Option(help="leave-last-out (the only one)")] = "leave-last-out",
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    min_rating: ModelMinRating = None,
    id_column: IdCol = "item_id",
    title_column: TitleCol = "title",
    text_column: TextCols = None,
    rescorer: Annotated[
        bool, typer.Option(help="re-score with the model's rescorer when it has an active one")
    ] = True,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Leave-last-out: rank each user's last item among all they have not seen, for the model and baselines.

    The last stdout line is one JSON object: {"model": {"hr@10", "ndcg@10", "mrr"}, "popularity": {...},
    "item_knn": {...}, "n_users": N, "n_held_out_outside_catalog": M}: N users ranked, M more whose held-out
    item is not in the items file (so cannot be ranked). When the model's rescorer re-scores, "model" is
    the re-scored ranking, "blend" the model without it, and "rescorer" its settings.
    """

    def action() -> dict[str, Any]:
        if protocol != "leave-last-out":
            raise InvalidInput(f"--protocol: expected leave-last-out; found {protocol!r}")
        data, catalog, _ = _read_data(
            interactions,
            items,
            (user_column, item_column, time_column, rating_column, min_rating),
            (id_column, title_column, text_column),
            model=model,
        )
        require_model_file(model)  # before torch is imported: a wrong --model fails in about a second
        from recommender.baselines import ItemKNN, Popularity  # noqa: PLC0415 - heavy imports
        from recommender.model import TextInterestModel  # noqa: PLC0415
        from recommender.protocol import Scorer, evaluate, leave_last_out  # noqa: PLC0415
        from recommender.provenance import leaked_test_users  # noqa: PLC0415
        from recommender.rescoring import Rescorer  # noqa: PLC0415

        loaded = TextInterestModel.load(model, device=device, precision=precision)
        found = Rescorer.load(model, device=device, precision=precision) if rescorer else None
        active = found if found is not None and found.active else None
        split = leave_last_out(data.sequences())
        records = [loaded.meta] + ([active.meta] if active is not None else [])
        leaked = max(leaked_test_users(meta, data) for meta in records)
        if leaked:
            core_cli.say(
                f"warning: the model saw the test interactions of {leaked} of {len(split.test)} tested users "
                "(it was trained on them: train with --hold-out-last on these interactions); the model's "
                "figures below overstate how it does on unseen behaviour"
            )
        blend = loaded.scorer(catalog, split.train)
        scorers: dict[str, Scorer] = {
            "model": active.scorer(blend, catalog) if active is not None else blend,
            "popularity": Popularity(split.train, catalog),
            "item_knn": ItemKNN(split.train, catalog),
        }
        if active is not None:
            scorers["blend"] = blend
        results = {name: evaluate(scorer, split, catalog) for name, scorer in scorers.items()}
        n_users = int(results["model"]["n_users"])
        extra = {"rescorer": dataclasses.asdict(active.rescoring)} if active is not None else {}
        return {
            **{
                name: {k: v for k, v in figures.items() if k != "n_users"}
                for name, figures in results.items()
            },
            **extra,
            "n_users": n_users,
            # tested users whose held-out item is not in the items file: not ranked, not in n_users
            "n_held_out_outside_catalog": sum(item not in catalog.index for item in split.test.values()),
        }

    print_report(core_cli.run_or_exit(action))


def train_rescorer(
    model: Annotated[Path, typer.Option("--model", help="model folder from `recommender train`")],
    interactions: InteractionsOpt,
    items: ItemsOpt,
    user_column: UserCol = "user_id",
    item_column: ItemCol = "item_id",
    time_column: TimeCol = "timestamp",
    rating_column: RatingCol = "rating",
    min_rating: ModelMinRating = None,
    id_column: IdCol = "item_id",
    title_column: TitleCol = "title",
    text_column: TextCols = None,
    base_model: Annotated[
        str, typer.Option(help="cross-encoder start (default: the model's own fine-tuned encoder)")
    ] = "",
    max_queries: Annotated[int, typer.Option(help="(history, next item) queries to train on")] = 2000,
    negatives: Annotated[int, typer.Option(help="hard negatives per query")] = 3,
    candidates: Annotated[int, typer.Option(help="the model's top items negatives are drawn from")] = 30,
    epochs: Annotated[int, typer.Option()] = 1,
    batch_size: Annotated[int, typer.Option()] = 16,
    learning_rate: Annotated[float, typer.Option()] = 5e-5,
    max_length: Annotated[int, typer.Option(help="tokens of a (history, item) pair")] = 192,
    max_validation_users: Annotated[
        int, typer.Option(help="users the re-scored count and weight are fitted on")
    ] = 1000,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Train the optional cross-encoder that re-scores the model's top candidates; saved in MODEL/rescorer.

    Its weight beside the blend is fitted on the model's validation users; 0 (saved, but never used) when
    re-scoring does not improve their NDCG@10.
    """

    def action() -> dict[str, Any]:
        data, catalog, threshold = _read_data(
            interactions,
            items,
            (user_column, item_column, time_column, rating_column, min_rating),
            (id_column, title_column, text_column),
            model=model,
        )
        require_model_file(model)  # before torch is imported: a wrong --model fails in about a second
        from recommender.rescorer_training import (  # noqa: PLC0415 - heavy imports
            RescorerTrainConfig,
        )
        from recommender.rescorer_training import train_rescorer as train  # noqa: PLC0415

        config = RescorerTrainConfig(
            base_model=base_model,
            max_queries=max_queries,
            negatives=negatives,
            candidates=candidates,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=max_length,
            max_validation_users=max_validation_users,
            seed=seed,
            device=device,
            precision=precision,
        )
        sources = _sources(interactions, items, threshold)
        rescoring, report = train(model, data, catalog, config, progress=sys.stderr.isatty(), sources=sources)
        return {"output": str(model / "rescorer"), "rescoring": dataclasses.asdict(rescoring), **report}

    print_report(core_cli.run_or_exit(action))
