"""Webhook delivery: Alertmanager-v4 bodies, HMAC signatures and the outbox worker.

Notifications are written to the outbox in the same transaction as the alert change (see `alerting`), and
`deliver_pending` sends them later, at least once, in order per alert fingerprint and webhook:

    claim    one short transaction: mark expired messages, pick due ones, push their next_attempt_at a lease
             ahead (FOR UPDATE SKIP LOCKED on PostgreSQL; a conditional UPDATE everywhere) so no other
             replica sends them meanwhile
    POST     outside any transaction, to the rule's webhook URL as it is now (a corrected URL reaches the
             messages already waiting; a "resolved" owed to a former webhook, `fixed_url`, goes to its own),
             with an Idempotency-Key that stays the same on every retry; several at once (the claimed
             messages are about different alerts), none started once half the lease is gone (those are
             handed back)
    record   one short transaction per message: delivered_at and the URL it went to, or attempts + 1 and an
             exponential backoff

A message is only picked once every older message with the same fingerprint for the same webhook URL (the
one it is sent to) is delivered or expired, so a receiver never sees an alert's "resolved" before its
"firing", nor, for a rule deleted and created again under its name (same labels: same fingerprint and
groupKey, the receiver's incident), the old alert's "resolved" after the new one's "firing". A crash
between POST and record resends after the lease; the receiver drops the duplicate by its Idempotency-Key.

A message is given up on (marked expired) once past its ``expires_at``, 24 hours after it was queued, except
a "resolved" whose alert's "firing" (or a repeat) reached the receiver: the receiver then holds an incident
open (PagerDuty, Grafana OnCall) that only this message closes, so, as Alertmanager keeps retrying resolved
notifications, it is tried until ``resolved_ttl`` after it was queued (7 days by default; the setting as
it is at each pass).

The claim also clears the secret of each rule deleted (`rules.delete_rule`) once none of its notifications
waits, and removes the deleted rule once the retention has deleted its alerts, which stay listed till then.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Delete,
    Exists,
    Select,
    SQLColumnExpression,
    Update,
    and_,
    case,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.util import AliasedClass

from finance_sentiment.credentials import redact
from finance_sentiment.database import Database
from finance_sentiment.tables import Alert, AlertRule, OutboxMessage
from textcore.printable import CONTROL
from textcore.sql import utcnow

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Alertmanager's "zero time", sent as endsAt while an alert fires.
ZERO_TIME = "0001-01-01T00:00:00Z"
# How long a claimed message is hidden from other senders; longer than any sane webhook timeout.
CLAIM_LEASE = timedelta(minutes=5)
SEND_WINDOW_S = CLAIM_LEASE.total_seconds() / 2  # no POST starts later than this after the claim
CONCURRENT_POSTS = 8
MAX_ERROR_CHARS = 500
# How long a "resolved" whose alert's "firing" was delivered is tried, from when it was queued.
RESOLVED_TTL = timedelta(days=7)


@dataclass(frozen=True)
class DeliveryReport:
    """What one `deliver_pending` call did.

    Attributes:
        delivered: Messages the receiver accepted (2xx).
        failed: Messages sent but refused or not answered; they are retried after a backoff.
        expired: Messages given up on because they passed their expiry time.
    """

    delivered: int
    failed: int
    expired: int


@dataclass(frozen=True)
class _Claimed:
    id: int
    url: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int
    secret: str | None


def rfc3339(moment: datetime) -> str:
    """A timezone-aware time as RFC 3339 in UTC with a ``Z`` suffix, e.g. ``2026-03-01T12:00:00.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_alert(
    *,
    status: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    starts_at: datetime,
    ends_at: datetime | None,
    generator_url: str,
    fingerprint: str,
) -> dict[str, Any]:
    """One entry of an Alertmanager webhook's ``alerts`` list; ``endsAt`` is the zero time while firing."""
    return {
        "status": status,
        "labels": dict(labels),
        "annotations": dict(annotations),
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at) if ends_at is not None else ZERO_TIME,
        "generatorURL": generator_url,
        "fingerprint": fingerprint,
    }


def alertmanager_payload(
    *, receiver: str, status: str, alert: dict[str, Any], group_labels: dict[str, str], external_url: str
) -> dict[str, Any]:
    """The Alertmanager webhook body (version 4) notifying one alert.

    Args:
        receiver: The rule's receiver name.
        status: ``"firing"`` or ``"resolved"``.
        alert: One alert as built by `alertmanager_alert`.
        group_labels: The labels the notification is grouped by.
        external_url: Where this monitor is reachable, for links back.

    Returns:
        A JSON-ready dict with ``version``, ``groupKey``, ``status``, ``alerts`` and the common fields.
    """
    pairs = ",".join(f"{key}={json.dumps(value)}" for key, value in sorted(group_labels.items()))
    return {
        "version": "4",
        "groupKey": "{}:{" + pairs + "}",  # Alertmanager's form: route path, then the group labels
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": dict(group_labels),
        "commonLabels": dict(alert["labels"]),
        "commonAnnotations": dict(alert["annotations"]),
        "externalURL": external_url,
        "alerts": [alert],
    }


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``"sha256="`` + hex HMAC-SHA256 of the body under the secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


async def deliver_pending(
    db: Database,
    client: httpx.AsyncClient,
    *,
    now: datetime | None = None,
    limit: int = 50,
    backoff_base_s: float = 5.0,
    backoff_max_s: float = 900.0,
    send_window_s: float = SEND_WINDOW_S,
    resolved_ttl: timedelta = RESOLVED_TTL,
) -> DeliveryReport:
    """Send due outbox messages once, oldest first, and record each outcome.

    Database work runs in threads so the event loop never blocks on it.

    Args:
        db: The monitor's database.
        client: The HTTP client to send with (its timeouts bound each POST).
        now: The current time (timezone-aware); defaults to the clock.
        limit: Most messages sent by this call.
        backoff_base_s: Delay before the first retry, in seconds; doubled after every failure.
        backoff_max_s: Longest delay between retries, in seconds.
        send_window_s: No POST starts later than this after the claim (well inside the lease, so no other
            sender can claim the same message meanwhile); the messages left are handed back, due at once.
        resolved_ttl: How long a "resolved" whose alert's "firing" was delivered is tried, from when it was
            queued (the others expire at their ``expires_at``, 24 hours after they were queued).

    Returns:
        How many messages were delivered, failed and expired.
    """
    now = now or utcnow()
    expired, claimed = await asyncio.to_thread(_claim, db, now, limit, resolved_ttl)
    if expired:
        logger.warning("%d webhook notification(s) given up on: still undelivered at their expiry", expired)
    deadline = time.monotonic() + send_window_s
    slots = asyncio.Semaphore(CONCURRENT_POSTS)

    async def send(message: _Claimed) -> bool | None:
        """True delivered, False failed, None not sent (handed back for the next call)."""
        async with slots:
            if time.monotonic() >= deadline:
                await asyncio.to_thread(_release, db, message.id, now)
                return None
            error = await _post(client, message)
        if error is None:
            await asyncio.to_thread(_record_delivered, db, message.id, message.url, now)
            return True
        attempts = message.attempts + 1
        delay = min(backoff_base_s * 2 ** (attempts - 1), backoff_max_s)
        retry_at = now + timedelta(seconds=delay)
        await asyncio.to_thread(_record_failure, db, message.id, attempts, retry_at, error)
        logger.warning(
            "%s",
            redact(
                f"webhook notification {message.id} to {message.url} failed (try {attempts}), retried at "
                f"{rfc3339(retry_at)}: {error}"
            ),
        )
        return False

    outcomes = await asyncio.gather(*(send(message) for message in claimed))
    return DeliveryReport(
        delivered=sum(o is True for o in outcomes), failed=sum(o is False for o in outcomes), expired=expired
    )


def _claim(db: Database, now: datetime, limit: int, resolved_ttl: timedelta) -> tuple[int, list[_Claimed]]:
    """Mark expired messages and lease up to ``limit`` due ones to this sender, in one transaction."""
    with db.session() as session:
        expired = _expire(session, now, resolved_ttl)
        _forget_deleted_rules(session)
        claimed = []
        for message, secret, url in session.execute(_due(now, limit)).all():
            # Conditional, so two senders that both read the row (SQLite has no row locks) claim it once.
            lease = (
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message.id,
                    OutboxMessage.delivered_at.is_(None),
                    OutboxMessage.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + CLAIM_LEASE)
            )
            if _rowcount(session, lease) == 1:
                claimed.append(
                    _Claimed(
                        id=message.id,
                        url=url,
                        payload=message.payload,
                        idempotency_key=message.idempotency_key,
                        attempts=message.attempts,
                        secret=secret,
                    )
                )
        return expired, claimed


def _expire(session: Session, now: datetime, resolved_ttl: timedelta) -> int:
    """Mark the messages past their expiry expired; a "resolved" whose alert's "firing" was delivered only
    ``resolved_ttl`` after it was queued (its ``expires_at`` then says when it was given up on)."""
    kept = _closes_an_incident()
    expired = _rowcount(
        session,
        update(OutboxMessage).where(pending(), OutboxMessage.expires_at <= now, ~kept).values(expired=True),
    )
    # Read, then written one by one: a portable SQL sum of a time and an interval there is not.
    over = select(OutboxMessage.id, OutboxMessage.created_at).where(
        pending(), OutboxMessage.expires_at <= now, OutboxMessage.created_at <= now - resolved_ttl, kept
    )
    for message_id, created_at in session.execute(over).all():
        given_up = update(OutboxMessage).where(OutboxMessage.id == message_id, pending())
        expired += _rowcount(session, given_up.values(expired=True, expires_at=created_at + resolved_ttl))
    return expired


def _closes_an_incident() -> ColumnElement[bool]:
    """Whether the message is a "resolved" (of a resolved alert, and none but those owed to its former
    webhooks is queued after it; those are all "resolved" ones) whose alert had a notification (a "firing"
    or a repeat) delivered, so its receiver holds an incident open that only this message closes."""
    alert, newer, delivered = aliased(Alert), aliased(OutboxMessage), aliased(OutboxMessage)
    return and_(
        exists().where(alert.id == OutboxMessage.alert_id, alert.status == "resolved"),
        ~exists().where(
            newer.alert_id == OutboxMessage.alert_id, newer.id > OutboxMessage.id, newer.fixed_url.is_(False)
        ),
        exists().where(delivered.alert_id == OutboxMessage.alert_id, delivered.delivered_at.is_not(None)),
    )


def pending(
    message: type[OutboxMessage] | AliasedClass[OutboxMessage] = OutboxMessage,
) -> ColumnElement[bool]:
    """Whether `message` (the table, or an alias of it) is still to be sent: neither delivered nor expired."""
    return and_(message.delivered_at.is_(None), message.expired.is_(False))


def _forget_deleted_rules(session: Session) -> None:
    """Clear the secret of each deleted rule with no notification left to sign, and remove the ones whose
    alerts the retention has deleted (their alerts are history, listed until then)."""
    done = and_(AlertRule.deleted_at.is_not(None), ~waiting_for(AlertRule.id))
    session.execute(update(AlertRule).where(done, AlertRule.secret.is_not(None)).values(secret=None))
    _rowcount(session, delete(AlertRule).where(done, ~exists().where(Alert.rule_id == AlertRule.id)))


def waiting_for(rule_id: int | SQLColumnExpression[int]) -> Exists:
    """Whether any notification of the rule is still to be sent (neither delivered nor expired)."""
    return exists().where(OutboxMessage.rule_id == rule_id, pending())


def destination(
    message: type[OutboxMessage] | AliasedClass[OutboxMessage],
    rule: type[AlertRule] | AliasedClass[AlertRule],
) -> ColumnElement[str]:
    """Where `message` (the table, or an alias) goes: its own URL when fixed (a "resolved" owed to a former
    webhook of the rule), otherwise `rule`'s webhook URL as it is now."""
    return case((message.fixed_url.is_(True), message.url), else_=rule.webhook_url)


def signing_secret(
    message: type[OutboxMessage] | AliasedClass[OutboxMessage],
    rule: type[AlertRule] | AliasedClass[AlertRule],
) -> ColumnElement[str | None]:
    """What `message` is signed with: for a "resolved" owed to a former webhook, the secret that went with
    that webhook ("" for none) when it was kept; otherwise `rule`'s secret as it is now."""
    own = and_(message.fixed_url.is_(True), message.secret.is_not(None))
    return case((own, message.secret), else_=rule.secret)


def _due(now: datetime, limit: int) -> Select[OutboxMessage, str | None, str]:
    """Due, undelivered, unexpired messages with the secret they are signed with and the URL they go to,
    oldest first, at most one per alert fingerprint and destination (the oldest waiting), so the messages of
    one call can be sent at once."""
    alert, earlier, earlier_alert, earlier_rule = (
        aliased(Alert),
        aliased(OutboxMessage),
        aliased(Alert),
        aliased(AlertRule),
    )
    # An older message about the same fingerprint still waits to go to the same webhook: keep the order.
    # Not only one alert's: a rule deleted and created again under its name raises alerts with the old
    # fingerprint, and the old alert's "resolved" must not reach the receiver after the new one's "firing".
    blocked = exists().where(
        earlier.id < OutboxMessage.id,
        pending(earlier),
        earlier_alert.id == earlier.alert_id,
        earlier_alert.fingerprint == alert.fingerprint,
        earlier_rule.id == earlier.rule_id,
        destination(earlier, earlier_rule) == destination(OutboxMessage, AlertRule),
    )
    return (
        select(OutboxMessage, signing_secret(OutboxMessage, AlertRule), destination(OutboxMessage, AlertRule))
        .join(AlertRule, AlertRule.id == OutboxMessage.rule_id)
        .join(alert, alert.id == OutboxMessage.alert_id)
        .where(
            pending(),
            OutboxMessage.next_attempt_at <= now,
            ~blocked,
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OutboxMessage)  # PostgreSQL only; SQLite omits it
    )


def _rowcount(session: Session, statement: Update | Delete) -> int:
    """Rows an UPDATE or DELETE changed (ORM session sync is off: these rows are not loaded as objects)."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount


async def _post(client: httpx.AsyncClient, message: _Claimed) -> str | None:
    """POST one message; None when the receiver accepted it, otherwise what went wrong."""
    body = canonical_json(message.payload)
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: message.idempotency_key}
    if message.secret:
        headers[SIGNATURE_HEADER] = sign(message.secret, body)
    try:
        response = await client.post(message.url, content=body, headers=headers)
    except Exception as exc:
        # Transport errors, an oversized answer, a URL the client cannot send to: each is recorded on the
        # message and retried later; one bad message never stops the others.
        return f"{type(exc).__name__}: {_one_line(str(exc))}"[:MAX_ERROR_CHARS]
    if response.is_success:
        return None
    return f"HTTP {response.status_code}: {_one_line(response.text)}"[:MAX_ERROR_CHARS]


def _one_line(text: str) -> str:
    """A receiver's answer as one readable line: control characters (a NUL, which PostgreSQL cannot store,
    an escape sequence that would garble the log) and line breaks become single spaces."""
    return " ".join(CONTROL.sub(" ", text).split())


def _record_delivered(db: Database, message_id: int, url: str, now: datetime) -> None:
    with db.session() as session:
        _rowcount(
            session,
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(delivered_at=now, url=url, last_error=None),
        )


def _release(db: Database, message_id: int, now: datetime) -> None:
    """Hand a claimed message that was not sent back: due again at once, its attempts unchanged."""
    with db.session() as session:
        _rowcount(
            session,
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.delivered_at.is_(None))
            .values(next_attempt_at=now),
        )


def _record_failure(db: Database, message_id: int, attempts: int, retry_at: datetime, error: str) -> None:
    with db.session() as session:
        _rowcount(
            session,
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(attempts=attempts, next_attempt_at=retry_at, last_error=error),
        )
