"""Alert rules: create, read, change and delete them; list the alerts they raised.

Every function works inside the caller's session (one transaction, `Database.session()`); none commits.

A rule deleted after it raised alerts stays behind as a hidden row (`AlertRule.deleted_at`): its alerts are
the desk's record of what fired and who was told, so they stay listed (`rule_deleted`) until the retention
deletes them as any resolved alert, and the outbox can still send the notifications of it that wait (a
firing alert resolved by the deletion gets a "resolved" one) to its webhook, signed with its secret.
`delivery` clears its secret once none waits and removes the row once no alert of it is left. Every function
here but `list_alerts` sees such a rule as gone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from finance_sentiment.alerting import Transition, resolve_firing
from finance_sentiment.credentials import redact, unmasked
from finance_sentiment.delivery import pending
from finance_sentiment.documents import decode_cursor, encode_cursor
from finance_sentiment.schemas import (
    MIN_RESOLVE_FRACTION,
    AlertOut,
    AlertRuleIn,
    AlertRuleOut,
    AlertRulePatch,
    describe_errors,
    escape_url,
)
from finance_sentiment.tables import Alert, AlertRule, OutboxMessage
from finance_sentiment.vocabulary import NameIndex
from textcore.errors import Conflict, InvalidInput, NotFound
from textcore.sql import utcnow

ALERT_STATUSES = ("firing", "resolved")
_LIVE = AlertRule.deleted_at.is_(None)
MAX_ALERTS = 1000
# Why a rule the config file provisioned is disabled once the file no longer declares it.
DROPPED_RULE = (
    "removed from the config file that provisioned it: disabled at start, its alerts kept; add it back to "
    "the file, or enable it through the API to keep it without the file"
)
_ALERT_COLUMNS = (
    "id",
    "rule_id",
    "fingerprint",
    "labels",
    "annotations",
    "status",
    "starts_at",
    "ends_at",
    "last_sent_at",
)


def list_rules(session: Session) -> list[AlertRule]:
    """Every rule, oldest first."""
    return list(session.scalars(select(AlertRule).where(_LIVE).order_by(AlertRule.id)))


def get_rule(session: Session, rule_id: int, *, lock: bool = False) -> AlertRule:
    """The rule with this id; with ``lock``, its row is locked until the transaction ends (PostgreSQL).

    Raises:
        NotFound: No rule has this id.
    """
    query = select(AlertRule).where(AlertRule.id == rule_id, _LIVE)
    rule = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if rule is None:
        raise NotFound(f"expected an existing alert rule id, found no rule with id {rule_id}")
    return rule


def require_judged_window(data: AlertRuleIn, interval_s: int) -> None:
    """Refuse an enabled rule whose window is shorter than the interval between two evaluations.

    Each evaluation judges the window that ends at its own time, so with a shorter window the stories first
    seen between the end of one evaluation's window and the next evaluation would never be in any judged
    window: a burst among them would raise nothing.

    Raises:
        InvalidInput: The rule is enabled and ``data.window_seconds < interval_s``.
    """
    if data.enabled and data.window_seconds < interval_s:
        raise InvalidInput(
            f"alert rule {data.name!r}: expected window_seconds of at least the rule evaluation interval "
            f"(FIN_ALERT_INTERVAL_S = {interval_s} s), found {data.window_seconds}; stories seen between "
            "two evaluations would fall in no judged window. Lengthen the window or evaluate more often"
        )


def create_rule(
    session: Session, data: AlertRuleIn, *, min_window_s: int = 1, names: NameIndex | None = None
) -> AlertRule:
    """Store a new rule, its `match` resolved to the names stories are tagged with (`resolve_match`).

    Args:
        session: The caller's transaction.
        data: The rule.
        min_window_s: The rule evaluation interval: an enabled rule's window may not be shorter.
        names: The known names (the configured topics and entities and the sources' tags); without it,
            the sources' tags only.

    Raises:
        Conflict: Another rule already has this name.
        InvalidInput: The rule is enabled and its window is shorter than ``min_window_s``.
    """
    require_judged_window(data, min_window_s)
    _require_free_name(session, data.name)
    data = resolve_match(session, data, names)
    rule = AlertRule()
    _assign(rule, data)
    session.add(rule)
    _flush(session, data.name)
    return rule


def update_rule(
    session: Session,
    rule_id: int,
    patch: AlertRulePatch,
    *,
    min_window_s: int = 1,
    names: NameIndex | None = None,
) -> AlertRule:
    """Apply the fields sent in `patch` (`secret: null` removes the secret) and check the result as a whole;
    its `match` is resolved again for its `group_by` (`resolve_match`, with `names` as in `create_rule`).

    The rule's webhook URL as listed (its credentials masked) keeps the stored URL; the mask in any other
    URL is refused.

    Raises:
        NotFound: No rule has this id.
        Conflict: The new name belongs to another rule.
        InvalidInput: The patched rule breaks a cross-field rule (a match list with ``group_by = "all"``), or
            is enabled with a window shorter than ``min_window_s`` (see `create_rule`).
    """
    rule = get_rule(session, rule_id)
    values: dict[str, Any] = {field: getattr(rule, field) for field in AlertRuleIn.model_fields}
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("webhook_url") is not None:  # the URL as listed, credentials masked, keeps them
        changes["webhook_url"] = unmasked(changes["webhook_url"], escape_url(rule.webhook_url))
    # A resolve_fraction stored before its lower bound stays until a patch sends one (`fraction_warning`).
    stored_fraction = rule.resolve_fraction
    kept = "resolve_fraction" not in changes and stored_fraction < MIN_RESOLVE_FRACTION
    if kept:
        values["resolve_fraction"] = MIN_RESOLVE_FRACTION
    try:
        data = AlertRuleIn.model_validate(values | changes)
    except ValidationError as exc:
        raise InvalidInput(
            f"cannot apply the change to alert rule {rule.id} ({rule.name!r}): {describe_errors(exc, 'rule')}"
        ) from None
    if kept:
        data = data.model_copy(update={"resolve_fraction": stored_fraction})
    require_judged_window(data, min_window_s)
    if data.name != rule.name:
        _require_free_name(session, data.name)
    _assign(rule, resolve_match(session, data, names))
    _flush(session, data.name)
    return rule


def delete_rule(
    session: Session,
    rule_id: int,
    *,
    external_url: str = "http://127.0.0.1:8000",
    now: datetime | None = None,
) -> list[Transition]:
    """Delete a rule, resolving its firing alerts first: each gets a "resolved" notification.

    A receiver that opened an incident for an alert (PagerDuty, Grafana OnCall) closes it only when told
    the alert resolved. The outbox sends those notifications like any other, after the alert's earlier
    ones, to the rule's webhook with its secret. A rule that never raised an alert is deleted at once;
    otherwise it is hidden (gone from the API, its name free, never judged), its alerts kept as history,
    and removed once the retention has deleted them. Its id is answered 404 from now on.

    Args:
        session: The caller's transaction.
        rule_id: The rule to delete.
        external_url: Where this monitor is reachable, for the notifications' links.
        now: The deletion time (timezone-aware); defaults to the clock.

    Returns:
        The alerts resolved.

    Raises:
        NotFound: No rule has this id.
    """
    now = now or utcnow()
    rule = get_rule(session, rule_id, lock=True)  # an evaluation of the rule finishes first, or waits
    resolved = resolve_firing(session, rule, now, external_url)
    session.flush()
    if session.scalar(select(exists().where(Alert.rule_id == rule.id))):
        # Names are stripped of surrounding spaces on input, so this one is never a live rule's.
        rule.name, rule.enabled, rule.deleted_at = f" deleted rule {rule.id}", False, now
    else:
        session.delete(rule)
    session.flush()
    return resolved


def upsert_rule(
    session: Session, data: AlertRuleIn, config_file: str, names: NameIndex | None = None
) -> AlertRule:
    """Create the rule named `data.name`, or make the stored one match `data` (for the config file); its
    `match` is resolved as in `create_rule`. Either way the config file manages it from now on
    (``managed_by = "config"``, `config_file` its path), one created through the API or provisioned by
    another file too; one a file had dropped (`release_undeclared`) follows the file again, `enabled`
    included."""
    rule = session.scalars(select(AlertRule).where(AlertRule.name == data.name, _LIVE)).one_or_none()
    if rule is None:
        rule = create_rule(session, data, names=names)
    else:
        _assign(rule, resolve_match(session, data, names))
        if rule.disabled_reason is not None:  # only the file's dropping sets one: declared again, it goes
            rule.disabled_reason = None
    if (rule.managed_by, rule.config_file) != ("config", config_file):
        rule.managed_by, rule.config_file = "config", config_file
    _flush(session, data.name)
    return rule


def release_undeclared(session: Session, declared: Collection[str], config_file: str) -> list[AlertRule]:
    """Disable the rules the config file `config_file` provisioned but no longer declares (names not in
    `declared`), and hand them to the API (``managed_by = "api"``): kept with their alerts, never judged
    again until enabled through the API or declared again. Their firing alerts are resolved at the next
    evaluation, each with a "resolved" notification, as when a rule is disabled through the API
    (`alerting.evaluate_rules`). Another file's rules are left alone; one stored before the file was
    recorded counts as this one's.

    Returns:
        The rules released, oldest first.
    """
    mine = or_(AlertRule.config_file == config_file, AlertRule.config_file.is_(None))
    query = select(AlertRule).where(AlertRule.managed_by == "config", mine, _LIVE).order_by(AlertRule.id)
    released = [rule for rule in session.scalars(query) if rule.name not in declared]
    for rule in released:
        if rule.enabled or rule.disabled_reason is None:
            rule.enabled, rule.disabled_reason = False, DROPPED_RULE
        rule.managed_by, rule.config_file = "api", None
    session.flush()
    return released


def resolve_match(session: Session, data: AlertRuleIn, names: NameIndex | None = None) -> AlertRuleIn:
    """`data` with each `match` name replaced by the tag names it means: an alias, a ticker or another case
    of a configured entity or topic by its canonical name (see `finance_sentiment.vocabulary`). A name no
    story is tagged with now is kept as given: a source or a cashtag may bring it later (`rule_out` warns).
    """
    if data.group_by == "all" or not data.match:
        return data
    index = names or NameIndex.read(session)
    return data.model_copy(update={"match": index.resolve(data.group_by, data.match).names})


def rule_out(rule: AlertRule, names: NameIndex) -> AlertRuleOut:
    """The response body of a rule, with a warning for each name of its `match` no story is tagged with (or,
    stored before names were resolved, that stories are tagged under another name)."""
    checked = [names.check(rule.group_by, name, f"match[{i}]") for i, name in enumerate(rule.match)]
    warnings = [line for line in checked if line] if rule.group_by != "all" else []
    if (fraction := fraction_warning(rule)) is not None:
        warnings.append(fraction)
    return AlertRuleOut.model_validate(rule).model_copy(update={"warnings": warnings})


def fraction_warning(rule: AlertRule) -> str | None:
    """The warning for a rule stored with a `resolve_fraction` below `MIN_RESOLVE_FRACTION` (before that
    bound was kept): still judged as stored, but its alerts resolve only once the window falls almost to
    nothing. None for any other rule."""
    if rule.resolve_fraction >= MIN_RESOLVE_FRACTION:
        return None
    return (
        f"resolve_fraction: {rule.resolve_fraction!r} is below {MIN_RESOLVE_FRACTION}, so a firing alert of "
        f"this rule resolves only when its window falls to almost nothing; set it to {MIN_RESOLVE_FRACTION} "
        "or more (0.5 by default)"
    )


def list_alerts(
    session: Session, *, status: str | None = None, rule_id: int | None = None, limit: int = 100
) -> list[Alert]:
    """Alerts, newest first (by start), optionally of one status or one rule: the first page of
    `alerts_page`.

    Raises:
        InvalidInput: `status` is not "firing" or "resolved", or `limit` is outside 1..1000.
    """
    return alerts_page(session, status=status, rule_id=rule_id, limit=limit)[0]


def alerts_page(
    session: Session,
    *,
    status: str | None = None,
    rule_id: int | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[Alert], str | None]:
    """One page of alerts, newest first by ``(starts_at, id)``, optionally of one status or one rule, and
    the cursor of the next page (None on the last). A cursor neither skips nor repeats an alert (the alerts
    one evaluation opens share their start), and new alerts, being newer, never shift the pages after it.

    Raises:
        InvalidInput: `status` is not "firing" or "resolved", `limit` is outside 1..1000, or the cursor was
            not given by an earlier page.
    """
    if status is not None and status not in ALERT_STATUSES:
        raise InvalidInput(f"expected status 'firing' or 'resolved', found {status!r}")
    if not 1 <= limit <= MAX_ALERTS:
        raise InvalidInput(f"expected a limit in 1..{MAX_ALERTS}, found {limit}")
    query = select(Alert).order_by(Alert.starts_at.desc(), Alert.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Alert.status == status)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    if cursor is not None:
        starts_at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(Alert.starts_at < starts_at, and_(Alert.starts_at == starts_at, Alert.id < last_id))
        )
    rows = list(session.scalars(query))
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].starts_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def alerts_out(session: Session, alerts: Sequence[Alert]) -> list[AlertOut]:
    """The response bodies of `alerts`, with their rule's name, notification counts and why the notification
    being tried failed, if it did (three queries)."""
    ids = [alert.id for alert in alerts]
    rule_ids = {alert.rule_id for alert in alerts}
    named = session.execute(select(AlertRule.id, AlertRule.name).where(AlertRule.id.in_(rule_ids), _LIVE))
    names: dict[int, str] = dict(named.all())  # the live rules: an alert of any other is a deleted rule's
    counts: dict[int, dict[str, Any]] = {alert_id: {} for alert_id in ids}
    delivered = OutboxMessage.delivered_at.is_not(None)
    # Grouping by plain boolean expressions (no bound literals) keeps PostgreSQL's GROUP BY check happy.
    query = (
        select(OutboxMessage.alert_id, delivered, OutboxMessage.expired, func.count())
        .where(OutboxMessage.alert_id.in_(ids))
        .group_by(OutboxMessage.alert_id, delivered, OutboxMessage.expired)
    )
    for alert_id, is_delivered, is_expired, count in session.execute(query):
        state = "delivered" if is_delivered else "expired" if is_expired else "pending"
        counts[alert_id][state] = counts[alert_id].get(state, 0) + count
    for alert_id, error in _waiting_errors(session, ids).items():
        counts[alert_id]["last_error"] = redact(error)
    return [
        AlertOut.model_validate(
            {field: getattr(alert, field) for field in _ALERT_COLUMNS}
            # A deleted rule's alerts keep the name it had when they fired.
            | {
                "rule": names.get(alert.rule_id, alert.labels.get("rule", "")),
                "rule_deleted": alert.rule_id not in names,
                "deliveries": counts[alert.id],
            }
        )
        for alert in alerts
    ]


def _waiting_errors(session: Session, alert_ids: Collection[int]) -> dict[int, str]:
    """Alert id -> the last error of its oldest notification still to be sent (the one the outbox tries:
    the later ones wait for it), for the alerts whose one has failed."""
    first = (
        select(func.min(OutboxMessage.id))
        .where(OutboxMessage.alert_id.in_(alert_ids), pending())
        .group_by(OutboxMessage.alert_id)
    )
    query = select(OutboxMessage.alert_id, OutboxMessage.last_error).where(
        OutboxMessage.id.in_(first), OutboxMessage.last_error.is_not(None)
    )
    return {alert_id: error for alert_id, error in session.execute(query) if error is not None}


def _assign(rule: AlertRule, data: AlertRuleIn) -> None:
    """Copy the settings onto the row, touching only what changed (so an unchanged row is not updated);
    re-enabling forgets why the rule was disabled."""
    if data.enabled and not rule.enabled:
        rule.disabled_reason = None
    if rule.id is not None and data.webhook_url != rule.webhook_url:
        _keep_former_secret(rule)
    for field, value in data.model_dump().items():
        if getattr(rule, field) != value:
            setattr(rule, field, value)


def _keep_former_secret(rule: AlertRule) -> None:
    """Before the rule moves to another webhook: keep the secret that goes with the one it leaves ("" when
    none) on the messages delivered there, so that a "resolved" owed to it later (`alerting`) is signed as
    its receiver expects, not with a secret it may never have been given."""
    session = object_session(rule)
    if session is None:
        return
    delivered = update(OutboxMessage).where(
        OutboxMessage.rule_id == rule.id,
        OutboxMessage.url == rule.webhook_url,
        OutboxMessage.delivered_at.is_not(None),
        OutboxMessage.fixed_url.is_(False),
    )
    session.execute(delivered.values(secret=rule.secret or "").execution_options(synchronize_session=False))


def _require_free_name(session: Session, name: str) -> None:
    taken = session.scalars(select(AlertRule.id).where(AlertRule.name == name)).first()
    if taken is not None:
        raise Conflict(f"expected a new alert rule name, found {name!r} already used by rule {taken}")


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent writer took the name between our check and the insert
        raise Conflict(f"expected a new alert rule name, found {name!r} already used") from exc
