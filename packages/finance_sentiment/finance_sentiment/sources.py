"""Sources: create, read, change and delete the feeds, pages and JSON APIs the monitor fetches.

Every function works inside the caller's session (one transaction, `Database.session()`); none commits.
Fetch state (`etag`, `last_run_at`, failures, ...) is written by the fetch job, not here, except that a
changed URL forgets its HTTP validators and re-enabling a source forgets why it was disabled.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from finance_sentiment.credentials import unmasked
from finance_sentiment.crontab import never_fires
from finance_sentiment.schemas import SourceIn, SourceOut, SourcePatch, describe_errors, escape_url
from finance_sentiment.tables import Source
from textcore.errors import Conflict, InvalidInput, NotFound

VALID_CRON = "0 0 * * *"  # stands in for a stored cron that never fires while the rest of a patch is checked
# Why a source the config file provisioned is disabled once the file no longer declares it.
DROPPED_FROM_CONFIG = "removed from the config file that provisioned it"
DROPPED_SOURCE = (
    f"{DROPPED_FROM_CONFIG}: disabled at start, its documents kept; add it back to the file, or enable it "
    "through the API to keep it without the file"
)


def source_out(source: Source) -> SourceOut:
    """The response body of a source, with a warning for a stored setting that keeps it from running."""
    warning = cron_warning(source)
    return SourceOut.model_validate(source).model_copy(update={"warnings": [warning] if warning else []})


def cron_warning(source: Source) -> str | None:
    """The warning for a source whose stored cron never fires (taken before such a cron was refused): the
    scheduler never fetches it. None for any other source."""
    if not source.cron:
        return None
    try:
        if not never_fires(source.cron):
            return None
    except ValueError as exc:
        why = f"is no crontab expression ({exc})"
    else:
        why = "names a date that never exists (no month it names has that day)"
    return (
        f"cron: {source.cron!r} {why}, so the scheduler never fetches this source; set a cron that fires, "
        "or interval_seconds"
    )


def list_sources(session: Session) -> list[Source]:
    """Every source, oldest first."""
    return list(session.scalars(select(Source).order_by(Source.id)))


def get_source(session: Session, source_id: int) -> Source:
    """The source with this id.

    Raises:
        NotFound: No source has this id.
    """
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"expected an existing source id, found no source with id {source_id}")
    return source


def create_source(session: Session, data: SourceIn) -> Source:
    """Store a new source.

    Raises:
        Conflict: Another source already has this name.
    """
    _require_free_name(session, data.name)
    source = Source()
    _assign(source, data)
    session.add(source)
    _flush(session, data.name)
    return source


def update_source(session: Session, source_id: int, patch: SourcePatch) -> Source:
    """Apply the fields sent in `patch` and check the result as a whole.

    Setting `cron` clears `interval_seconds` and the other way round (unless both are sent). The source's
    URL as listed (its password masked) keeps the stored URL; the mask in any other URL is refused.
    Re-enabling clears `disabled_reason` and `consecutive_failures`; a new URL clears the stored
    ETag/Last-Modified.

    Raises:
        NotFound: No source has this id.
        Conflict: The new name belongs to another source.
        InvalidInput: The patched source breaks a cross-field rule (e.g. a link pattern on an RSS feed).
    """
    source = get_source(session, source_id)
    data = _patched(source, patch)
    if data.name != source.name:
        _require_free_name(session, data.name)
    _assign(source, data)
    _flush(session, data.name)
    return source


def delete_source(session: Session, source_id: int) -> None:
    """Delete a source; its documents stay, no longer linked to it.

    Raises:
        NotFound: No source has this id.
    """
    session.delete(get_source(session, source_id))
    session.flush()


def upsert_source(session: Session, data: SourceIn, config_file: str) -> Source:
    """Create the source named `data.name`, or make the stored one match `data` (for the config file); either
    way the config file manages it from now on (``managed_by = "config"``, `config_file` its path), one
    created through the API or provisioned by another file too.

    A source the monitor disabled itself (it has a `disabled_reason`) stays disabled when the config says
    `enabled = true` but its URL and kind are unchanged, so that a restart does not resume hammering a
    failing feed; fixing the URL in the file, or re-enabling through the API, resumes it. One disabled
    because the file had dropped it (`release_undeclared`) follows the file again, `enabled` included.
    """
    source = session.scalars(select(Source).where(Source.name == data.name)).one_or_none()
    if source is None:
        source = create_source(session, data)
    else:
        if dropped_by_config(source.disabled_reason):
            source.disabled_reason = None  # declared again: the file decides, as for any source it declares
        auto_disabled = not source.enabled and source.disabled_reason is not None
        unchanged = (data.url, data.kind) == (escape_url(source.url), source.kind)  # stored unescaped before
        if auto_disabled and data.enabled and unchanged:
            data = data.model_copy(update={"enabled": False})
        _assign(source, data)
    if (source.managed_by, source.config_file) != ("config", config_file):
        source.managed_by, source.config_file = "config", config_file
    _flush(session, data.name)
    return source


def release_undeclared(session: Session, declared: Collection[str], config_file: str) -> list[Source]:
    """Disable the sources the config file `config_file` provisioned but no longer declares (names not in
    `declared`), and hand them to the API (``managed_by = "api"``): kept with their documents, never fetched
    until enabled through the API or declared again. An enabled one gets `DROPPED_SOURCE` as its
    `disabled_reason`; one already disabled keeps its reason (a 410 stays a 410), or gets that one if it had
    none. Another file's sources are left alone; one stored before the file was recorded counts as this one's.

    Returns:
        The sources released, oldest first.
    """
    mine = or_(Source.config_file == config_file, Source.config_file.is_(None))
    query = select(Source).where(Source.managed_by == "config", mine).order_by(Source.id)
    released = [source for source in session.scalars(query) if source.name not in declared]
    for source in released:
        if source.enabled or source.disabled_reason is None:
            source.enabled, source.disabled_reason = False, DROPPED_SOURCE
        source.managed_by, source.config_file = "api", None
    session.flush()
    return released


def dropped_by_config(reason: str | None) -> bool:
    """Whether a `disabled_reason` says the config file dropped the row (see `release_undeclared`)."""
    return reason is not None and reason.startswith(DROPPED_FROM_CONFIG)


def _patched(source: Source, patch: SourcePatch) -> SourceIn:
    """The stored source's settings with the patch applied, checked by `SourceIn`."""
    values: dict[str, Any] = {field: getattr(source, field) for field in SourceIn.model_fields}
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("url") is not None:  # the URL as listed, password masked, keeps the stored password
        changes["url"] = unmasked(changes["url"], escape_url(source.url))
    # One schedule at a time: switching to the other kind replaces the stored one.
    if changes.get("cron") is not None and "interval_seconds" not in changes:
        values["interval_seconds"] = None
    if changes.get("interval_seconds") is not None and "cron" not in changes:
        values["cron"] = None
    # A cron stored before it was refused (`cron_warning`) stays until a patch changes the schedule.
    kept = values["cron"] if values["cron"] and "cron" not in changes and cron_warning(source) else None
    if kept is not None:
        values["cron"] = VALID_CRON
    try:
        data = SourceIn.model_validate(values | changes)
    except ValidationError as exc:
        problems = describe_errors(exc, "source")
        raise InvalidInput(
            f"cannot apply the change to source {source.id} ({source.name!r}): {problems}"
        ) from None
    return data if kept is None else data.model_copy(update={"cron": kept})


def _assign(source: Source, data: SourceIn) -> None:
    """Copy the settings onto the row, touching only what changed (so an unchanged row is not updated)."""
    values = data.model_dump()
    if source.url is not None and values["url"] != source.url:
        source.etag = None
        source.last_modified = None
    if values["enabled"] and not source.enabled:
        source.disabled_reason = None
        source.consecutive_failures = 0
    for field, value in values.items():
        if getattr(source, field) != value:
            setattr(source, field, value)


def _require_free_name(session: Session, name: str) -> None:
    taken = session.scalars(select(Source.id).where(Source.name == name)).first()
    if taken is not None:
        raise Conflict(f"expected a new source name, found {name!r} already used by source {taken}")


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent writer took the name between our check and the insert
        raise Conflict(f"expected a new source name, found {name!r} already used") from exc
