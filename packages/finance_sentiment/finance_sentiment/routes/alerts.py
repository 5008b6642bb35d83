"""`/v1/alert-rules` (what to watch and whom to notify) and `/v1/alerts` (what fired)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status

from finance_sentiment import rules
from finance_sentiment.deps import MonitorDep, RowId, RowIdFilter
from finance_sentiment.monitor import Monitor
from finance_sentiment.schemas import AlertOut, AlertRuleIn, AlertRuleOut, AlertRulePatch
from finance_sentiment.vocabulary import NameIndex

router = APIRouter(tags=["alerts"])


@router.get("/v1/alert-rules")
def list_rules(monitor: MonitorDep) -> list[AlertRuleOut]:
    """Every alert rule (secrets are never returned), each with a warning per watched name no story is
    tagged with now."""
    with monitor.db.session() as session:
        names = NameIndex.read(session, monitor.vocabulary)
        return [rules.rule_out(rule, names) for rule in rules.list_rules(session)]


@router.post("/v1/alert-rules", status_code=status.HTTP_201_CREATED)
async def create_rule(body: AlertRuleIn, monitor: MonitorDep) -> AlertRuleOut:
    """Add a rule; its webhook URL must pass the address guard, and an enabled rule's window may not be
    shorter than the evaluation interval (`FIN_ALERT_INTERVAL_S`). An alias, ticker or other case of a
    configured entity or topic in `match` is stored as its canonical name; a name no story is tagged with
    now is kept and answered with a warning. It is judged from the next evaluation on."""
    await monitor.admit_url(body.webhook_url, "webhook_url")
    return await asyncio.to_thread(_create, monitor, body)


@router.get("/v1/alert-rules/{rule_id}")
def get_rule(rule_id: RowId, monitor: MonitorDep) -> AlertRuleOut:
    """One rule."""
    with monitor.db.session() as session:
        return rules.rule_out(rules.get_rule(session, rule_id), NameIndex.read(session, monitor.vocabulary))


@router.patch("/v1/alert-rules/{rule_id}")
async def update_rule(
    rule_id: RowId, body: AlertRulePatch, monitor: MonitorDep, background: BackgroundTasks
) -> AlertRuleOut:
    """Change some fields of a rule; a new webhook URL must pass the address guard; `match` is resolved
    as on creation. The rule is then judged at once by this process, after the answer (on an API replica
    run with --no-scheduler too): disabled or regrouped, its firing alerts resolve now, each with its
    "resolved" webhook."""
    if body.webhook_url is not None:
        await monitor.admit_url(body.webhook_url, "webhook_url")
    updated = await asyncio.to_thread(_update, monitor, rule_id, body)
    background.add_task(monitor.settle, rule_id=rule_id)
    return updated


@router.delete("/v1/alert-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: RowId, monitor: MonitorDep, background: BackgroundTasks) -> Response:
    """Remove a rule. Its firing alerts are resolved first, and each gets a "resolved" notification, sent
    by the outbox to the rule's webhook (signed with its secret) after the alert's earlier ones, so the
    receiver closes what it opened: by this process, after the answer (on an API replica run with
    --no-scheduler too), or, if that fails, by a later outbox pass. The rule is gone at once (404, its name
    free); its alerts stay listed as history, marked `rule_deleted`, until the retention deletes them."""
    if await monitor.delete_rule(rule_id):
        background.add_task(monitor.settle)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/alerts")
def list_alerts(
    request: Request,
    response: Response,
    monitor: MonitorDep,
    status: Literal["firing", "resolved"] | None = None,
    rule_id: RowIdFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The next page: the cursor of the previous page's Link header."),
    ] = None,
) -> list[AlertOut]:
    """Alerts, newest first, with their evidence and delivery state; a deleted rule's too (`rule_deleted`,
    under the name the rule had, `rule_id` filtering them still). When more match, the response has a
    `Link: <...?cursor=...>; rel="next"` header: the URL of the next page (same filters)."""
    with monitor.db.session() as session:
        found, next_cursor = rules.alerts_page(
            session, status=status, rule_id=rule_id, limit=limit, cursor=cursor
        )
        listed = rules.alerts_out(session, found)
    if next_cursor is not None:
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
    return listed


def _create(monitor: Monitor, body: AlertRuleIn) -> AlertRuleOut:
    with monitor.db.session() as session:
        names = NameIndex.read(session, monitor.vocabulary)
        window = monitor.settings.alert_interval_s
        return rules.rule_out(rules.create_rule(session, body, min_window_s=window, names=names), names)


def _update(monitor: Monitor, rule_id: int, body: AlertRulePatch) -> AlertRuleOut:
    with monitor.db.session() as session:
        names = NameIndex.read(session, monitor.vocabulary)
        window = monitor.settings.alert_interval_s
        rule = rules.update_rule(session, rule_id, body, min_window_s=window, names=names)
        return rules.rule_out(rule, names)
