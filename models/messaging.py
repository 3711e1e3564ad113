"""WeChat subscribe messages: what each citizen accepted, and every message sent."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.case import Case
from models.user import User


class Subscription(BaseModel):
    """A citizen's subscription to one template (from ``wx.requestSubscribeMessage`` or the
    ``subscribe_msg_*`` push events). One-time subscriptions add to ``quota``; each message
    sent spends one. ``long_term`` templates (政务民生) need no quota."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    template_id = peewee.CharField(max_length=64)
    quota = peewee.IntegerField(default=0)
    long_term = peewee.BooleanField(default=False)
    last_result = peewee.CharField(max_length=16, default="accept")  # accept, reject, ban
    updated_at = peewee.DateTimeField(default=utcnow)
    # One popup "accept" is reported twice (POST /subscriptions and the push event
    # subscribe_msg_popup_event): > 0 = API reports not yet matched by an event, < 0 = the
    # reverse; pairs only within a window from popup_balance_at (services/subscriptions.py).
    popup_balance = peewee.IntegerField(default=0)
    popup_balance_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("user", "template_id"), True),)


class Message(BaseModel):
    """One subscribe message the server means to send, exactly once (``key`` is its
    idempotency key, e.g. ``reminder:<case_id>:1``), with its outcome."""

    key = peewee.CharField(max_length=128, unique=True)
    kind = peewee.CharField(max_length=16)  # reminder, rectified
    user = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    case = peewee.ForeignKeyField(Case, null=True, on_delete="SET NULL")
    template_id = peewee.CharField(max_length=64, default="")
    # pending → sending → sent | no_quota | config_error | failed | skipped
    status = peewee.CharField(max_length=16, default="pending")
    errcode = peewee.CharField(max_length=16, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    sent_at = peewee.DateTimeField(null=True)
    # WeChat's msgid from subscribe/send, and the delivery result that the push event
    # subscribe_msg_sent_event reports later (ErrorCode: "0" delivered, else not).
    msgid = peewee.CharField(max_length=32, null=True, index=True)
    delivery_errcode = peewee.CharField(max_length=16, null=True)
    delivery_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("case", "kind"), False), (("status",), False))


class MessageAttempt(BaseModel):
    """Every attempt to send a message: status, errcode, time."""

    message = peewee.ForeignKeyField(Message, backref="attempts", on_delete="CASCADE")
    status = peewee.CharField(max_length=16)
    errcode = peewee.CharField(max_length=16, null=True)
    at = peewee.DateTimeField(default=utcnow)


class PushReceipt(BaseModel):
    """A message-push delivery already applied (WeChat retries deliveries: apply once)."""

    key = peewee.CharField(max_length=128, unique=True)
    event = peewee.CharField(max_length=64, default="")
    received_at = peewee.DateTimeField(default=utcnow)
