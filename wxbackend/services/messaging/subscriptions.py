"""Subscribe-message subscriptions (订阅消息): per-user, per-template quotas.

Sources of truth, all updating :class:`~models.messaging.Subscription`:

* ``POST /api/v1/subscriptions`` — what ``wx.requestSubscribeMessage`` answered in the
  mini-program (:func:`record_results`);
* the message-push events ``subscribe_msg_popup_event``, ``subscribe_msg_change_event`` and
  ``subscribe_msg_sent_event`` (:func:`apply_push`).

Rules
-----
* Only templates the server knows count: the configured ``reminder`` and ``rectified``
  template ids and ``wechat.long_term_templates``. Others are ignored (no row, and omitted
  from the answer), so a mini-program asking for more templates than we send never fails.
* ``POST /subscriptions`` takes at most 3 templates per call, like
  ``wx.requestSubscribeMessage`` (more → 400 ``invalid_body``). Values: ``accept``,
  ``reject``, ``ban``; ``filter`` (WeChat's "duplicate title filtered out") is accepted and
  changes nothing; a key ``errMsg`` (the mini-program passing WeChat's whole answer) is dropped.
* ``accept`` of a one-time template adds one quota; of a long-term template (政务民生) it sets
  ``long_term`` (no quota needed). ``reject`` records ``last_result`` (WeChat keeps quotas
  earlier accepts gave) and ends a long-term subscription. ``ban`` (notifications turned
  off / template banned) sets the quota to 0 and ends a long-term subscription.
* The answer's ``quota`` per known template is the one-time quota left, or **-1 for a
  long-term subscription** (unlimited).
* **One popup, counted once.** The mini-program reports a popup through the API *and* WeChat
  pushes ``subscribe_msg_popup_event`` for the same popup. Each accept is paired across the
  two sources per (user, template): ``popup_balance`` counts accepts reported by one source
  and not yet by the other (positive: API ahead; negative: push ahead). An accept whose
  counterpart is already there (the balance leans the other way) is the second report of
  that popup and adds nothing; otherwise it adds one quota. Pairs form only within
  :data:`PAIR_WINDOW` of the last unmatched report, so the quota grows by
  max(API accepts, pushed accepts). Without message push configured, every API accept
  counts; with only push, every event counts.
* ``subscribe_msg_change_event`` (the user changed settings): ``reject`` → quota 0,
  ``last_result`` reject, not long-term; ``accept`` of a long-term template → long-term.
* ``subscribe_msg_sent_event``: a :class:`~models.messaging.Message` of that user with that
  ``msgid`` gets ``delivery_errcode`` (``"0"`` = delivered) and ``delivery_at``; other msgids
  are ignored.
* An event whose ``FromUserName`` is no known user creates nothing.

For the reminder sender (sync; call on a database thread, **inside your transaction**)
-------------------------------------------------------------------------------------
* ``spend_quota(user_id, template_id) -> bool`` — True when a message may be sent: a
  long-term subscription (nothing spent), or one one-time quota spent atomically
  (``UPDATE … SET quota = quota - 1 WHERE … AND quota > 0``). False: nothing to spend.
* ``restore_quota(user_id, template_id)`` — gives back what ``spend_quota`` took, for a send
  WeChat certainly did not accept (no-op for long-term).
* ``zero_quota(user_id, template_id)`` — WeChat answered ``43101``: quota 0, not long-term.
* ``has_quota(user_id, template_id) -> bool`` — a long-term subscription or quota > 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from models.base import utcnow
from models.messaging import Message, PushReceipt, Subscription
from models.user import User
from wxbackend import errors
from wxbackend.db import database
from wxbackend.wechat.push import event_items

log = logging.getLogger("wxbackend.subscriptions")

MAX_PER_CALL = 3
RESULTS = ("accept", "reject", "ban", "filter")
PAIR_WINDOW = timedelta(minutes=10)
LONG_TERM = -1  # the quota shown for a long-term subscription
API, PUSH = 1, -1  # the two sources of a popup's result, as signs of popup_balance

POPUP = "subscribe_msg_popup_event"
CHANGE = "subscribe_msg_change_event"
SENT = "subscribe_msg_sent_event"
_WRAPPERS = {
    POPUP: "SubscribeMsgPopupEvent",
    CHANGE: "SubscribeMsgChangeEvent",
    SENT: "SubscribeMsgSentEvent",
}


@dataclass(frozen=True)
class Templates:
    """The template ids this server sends, and which of them it holds as long-term."""

    known: frozenset[str]
    long_term: frozenset[str]


def templates_of(ctx: Any) -> Templates:
    """The templates in force (WeChat configuration + ``wechat.long_term_templates``)."""
    config = ctx.wechat_config.config()
    long_term = frozenset(t for t in ctx.settings.wechat.long_term_templates if t)
    known = frozenset(t for t in (config.template_reminder, config.template_rectified) if t)
    return Templates(known | long_term, long_term)


# ---- POST /api/v1/subscriptions ---------------------------------------------------------------


def check_results(results: dict[str, Any]) -> dict[str, str]:
    """Validate ``results`` (template id → accept|reject|ban|filter; at most 3)."""
    cleaned = {k: v for k, v in results.items() if k != "errMsg"}
    if len(cleaned) > MAX_PER_CALL:
        raise errors.InvalidBody(
            f"At most {MAX_PER_CALL} templates per call, as wx.requestSubscribeMessage.",
            field="results",
        )
    for template_id, result in cleaned.items():
        if result not in RESULTS:
            raise errors.InvalidBody(
                "Each result is accept, reject, ban or filter.", field=f"results.{template_id}"
            )
    return cleaned


def record_results(user_id: int, results: dict[str, Any], templates: Templates) -> dict[str, int]:
    """Apply the citizen's popup results (sync, one transaction) → ``{template_id: quota}``."""
    cleaned = check_results(results)
    mine = {t: r for t, r in cleaned.items() if t in templates.known}
    now = utcnow()
    with database.atomic():
        for template_id, result in mine.items():
            apply_result(user_id, template_id, result, API, templates, now)
        return quotas(user_id, list(mine))


def quotas(user_id: int, template_ids: list[str]) -> dict[str, int]:
    """``{template_id: one-time quota, or -1 when long-term}`` (0 when no row)."""
    rows = {
        r.template_id: r
        for r in Subscription.select().where(
            Subscription.user == user_id, Subscription.template_id.in_(template_ids)
        )
    }
    answer = {}
    for template_id in template_ids:
        row = rows.get(template_id)
        answer[template_id] = (
            0 if row is None else LONG_TERM if row.long_term else max(row.quota, 0)
        )
    return answer


def apply_result(
    user_id: int,
    template_id: str,
    result: str,
    source: int,
    templates: Templates,
    now: datetime,
) -> None:
    """One popup result for one template (inside a transaction)."""
    if result == "filter":
        return
    _ensure_row(user_id, template_id)
    if result == "accept":
        if template_id in templates.long_term:
            _update(user_id, template_id, long_term=True, last_result="accept", updated_at=now)
        else:
            _accept_once(user_id, template_id, source, now)
    elif result == "reject":
        _update(user_id, template_id, long_term=False, last_result="reject", updated_at=now)
    elif result == "ban":
        _turn_off(user_id, template_id, "ban", now)


def _ensure_row(user_id: int, template_id: str) -> None:
    Subscription.insert(
        user=user_id, template_id=template_id, quota=0, last_result="accept"
    ).on_conflict_ignore().execute()


def _where(user_id: int, template_id: str) -> peewee.Expression:
    return (Subscription.user == user_id) & (Subscription.template_id == template_id)


def _update(user_id: int, template_id: str, **values: Any) -> int:
    return Subscription.update(**values).where(_where(user_id, template_id)).execute()


def _turn_off(user_id: int, template_id: str, result: str, now: datetime) -> None:
    _update(
        user_id,
        template_id,
        quota=0,
        long_term=False,
        last_result=result,
        popup_balance=0,
        updated_at=now,
    )


def _locked_row(user_id: int, template_id: str) -> Subscription:
    query = Subscription.select().where(_where(user_id, template_id))
    if getattr(database, "for_update", False):  # PostgreSQL; SQLite's IMMEDIATE locks it all
        query = query.for_update()
    return query.get()


def _accept_once(user_id: int, template_id: str, source: int, now: datetime) -> None:
    """One accept of a one-time template, paired across the API and push (see the module)."""
    row = _locked_row(user_id, template_id)
    fresh = row.popup_balance_at is not None and row.popup_balance_at >= now - PAIR_WINDOW
    balance = row.popup_balance if fresh else 0
    second_report = balance * source < 0  # the other source already reported this popup
    values: dict[str, Any] = {
        "popup_balance": balance + source,
        "popup_balance_at": now,
        "last_result": "accept",
        "updated_at": now,
    }
    if not second_report:
        values["quota"] = Subscription.quota + 1
    Subscription.update(**values).where(Subscription.id == row.id).execute()


# ---- for the reminder sender ------------------------------------------------------------------


def spend_quota(user_id: int, template_id: str) -> bool:
    """Take one message's worth (sync, inside the caller's transaction). See the module."""
    spent = (
        Subscription.update(quota=Subscription.quota - 1, updated_at=utcnow())
        .where(_where(user_id, template_id), Subscription.quota > 0, ~Subscription.long_term)
        .execute()
    )
    if spent:
        return True
    return (
        Subscription.select().where(_where(user_id, template_id), Subscription.long_term).exists()
    )


def restore_quota(user_id: int, template_id: str) -> None:
    """Give back one quota that :func:`spend_quota` took (the send surely failed)."""
    Subscription.update(quota=Subscription.quota + 1, updated_at=utcnow()).where(
        _where(user_id, template_id), ~Subscription.long_term
    ).execute()


def zero_quota(user_id: int, template_id: str) -> None:
    """WeChat says 43101 (no quota): nothing left to send, long-term or not."""
    _update(user_id, template_id, quota=0, long_term=False, popup_balance=0, updated_at=utcnow())


def has_quota(user_id: int, template_id: str) -> bool:
    """A long-term subscription, or one-time quota left."""
    return (
        Subscription.select()
        .where(
            _where(user_id, template_id),
            (Subscription.quota > 0) | Subscription.long_term,
        )
        .exists()
    )


# ---- message-push events ----------------------------------------------------------------------


def event_name(message: dict[str, Any]) -> str:
    if str(message.get("MsgType", "")).lower() != "event":
        return ""
    return str(message.get("Event", "")).lower()


def apply_push(message: dict[str, Any], receipt_key: str, templates: Templates) -> str:
    """Apply one authenticated push message (sync, one transaction with its receipt).

    Returns ``"applied"``, ``"duplicate"`` (a retry of a delivery already applied: nothing
    changes) or ``"ignored"`` (not an event handled here, or an unknown user).
    """
    event = event_name(message)
    if event not in _WRAPPERS:
        return "ignored"
    openid = message.get("FromUserName")
    user = User.get_or_none(User.openid == openid) if isinstance(openid, str) else None
    if user is None:
        return "ignored"
    items = event_items(message, _WRAPPERS[event])
    now = utcnow()
    with database.atomic():
        try:
            with database.atomic():
                PushReceipt.create(key=receipt_key, event=event, received_at=now)
        except peewee.IntegrityError:
            return "duplicate"
        for item in items:
            if event == SENT:
                _delivery_result(user.id, item, now)
            else:
                template_id = item.get("TemplateId")
                status = str(item.get("SubscribeStatusString", "")).lower()
                if template_id in templates.known:
                    _subscription_event(event, user.id, template_id, status, templates, now)
    log.info("push event applied", extra={"fields": {"event": event, "items": len(items)}})
    return "applied"


def _subscription_event(
    event: str, user_id: int, template_id: str, status: str, templates: Templates, now: datetime
) -> None:
    if event == POPUP:
        if status in ("accept", "reject"):
            apply_result(user_id, template_id, status, PUSH, templates, now)
        return
    # CHANGE: the user changed the template's switch in the mini-program's settings.
    if status == "reject":
        _ensure_row(user_id, template_id)
        _turn_off(user_id, template_id, "reject", now)
    elif status == "accept":
        _ensure_row(user_id, template_id)
        values: dict[str, Any] = {"last_result": "accept", "updated_at": now}
        if template_id in templates.long_term:
            values["long_term"] = True
        _update(user_id, template_id, **values)


def _delivery_result(user_id: int, item: dict[str, Any], now: datetime) -> None:
    msgid = item.get("MsgID")
    if msgid is None or str(msgid) == "":
        return
    Message.update(delivery_errcode=str(item.get("ErrorCode", ""))[:16], delivery_at=now).where(
        Message.msgid == str(msgid), Message.user == user_id
    ).execute()


def prune_receipts(before: datetime) -> int:
    """Delete push receipts older than ``before`` (WeChat retries within seconds)."""
    return PushReceipt.delete().where(PushReceipt.received_at < before).execute()
