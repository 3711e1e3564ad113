"""Ratings (好差评): evaluations, their reasons (indicators), likes and public replies."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.case import Case
from models.catalog import Center, Department, ServiceItem, Staff
from models.user import User

#: The values of ``overall`` and of each stage/target level; which ones are a 差评 is
#: the rule of ``wxbackend.services.ratings.levels``.
LEVELS = (1, 2, 3, 4, 5)
CHANNELS = ("qr", "miniprogram", "phone", "sms", "default")
COMMENT_STATUSES = ("visible", "pending_review", "hidden")
STAGES = ("appointment", "handling", "delivery")
TARGETS = ("window_staff", "approver", "department")


class Indicator(BaseModel):
    """A reason a citizen can pick (未一次性告知, 服务态度差 …); kept in the database."""

    code = peewee.CharField(max_length=32, unique=True)
    label = peewee.CharField(max_length=64)
    sort_order = peewee.IntegerField(default=0)
    active = peewee.BooleanField(default=True)


class Evaluation(BaseModel):
    """One rating of a case. ``assess_number`` 1 is the rating (一事一评), 2 the follow-up (追评).

    The unique (case, assess_number) index is the final word on "one rating per case": a
    second first rating cannot be stored, whatever Redis says. Catalogue references are
    copied from the case so lists and figures filter and group without joins.
    """

    case = peewee.ForeignKeyField(Case, backref="evaluations", on_delete="RESTRICT")
    assess_number = peewee.SmallIntegerField(default=1)
    channel = peewee.CharField(max_length=12)
    user = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    rater_id_hash = peewee.CharField(max_length=64, null=True)
    name_masked = peewee.CharField(max_length=8, null=True)
    overall = peewee.SmallIntegerField()
    stage_appointment = peewee.SmallIntegerField(null=True)
    stage_handling = peewee.SmallIntegerField(null=True)
    stage_delivery = peewee.SmallIntegerField(null=True)
    target_window_staff = peewee.SmallIntegerField(null=True)
    target_approver = peewee.SmallIntegerField(null=True)
    target_department = peewee.SmallIntegerField(null=True)
    comment = peewee.TextField(null=True)
    comment_status = peewee.CharField(max_length=16, default="visible")
    moderation_reason = peewee.CharField(max_length=200, null=True)
    like_count = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    # A callback rating (phone/sms): when the call or SMS took place and its record's id.
    contact_at = peewee.DateTimeField(null=True)
    contact_reference = peewee.CharField(max_length=64, null=True)
    # Copied from the case:
    center = peewee.ForeignKeyField(Center, on_delete="RESTRICT")
    item = peewee.ForeignKeyField(ServiceItem, on_delete="RESTRICT")
    department = peewee.ForeignKeyField(Department, on_delete="RESTRICT")
    window_staff = peewee.ForeignKeyField(Staff, null=True, on_delete="SET NULL", backref="+")
    approver = peewee.ForeignKeyField(Staff, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        indexes = (
            (("case", "assess_number"), True),
            # keyset pagination, newest first, per filter
            (("assess_number", "id"), False),
            (("center", "assess_number", "id"), False),
            (("item", "assess_number", "id"), False),
            (("window_staff", "assess_number", "id"), False),
            (("overall", "assess_number", "id"), False),
            (("user", "id"), False),
            (("created_at",), False),
        )


def catalogue_refs(source: Case | Evaluation) -> dict[str, int | None]:
    """The catalogue references an evaluation copies from its case (or from the first
    rating, for a follow-up): ``Evaluation.create(..., **catalogue_refs(case))``."""
    return {
        "center": source.center_id,
        "item": source.item_id,
        "department": source.department_id,
        "window_staff": source.window_staff_id,
        "approver": source.approver_id,
    }


class EvaluationIndicator(BaseModel):
    """A reason chosen in an evaluation (one row per code, for per-indicator figures)."""

    evaluation = peewee.ForeignKeyField(Evaluation, backref="indicator_rows", on_delete="CASCADE")
    indicator = peewee.ForeignKeyField(Indicator, on_delete="RESTRICT")

    class Meta:
        indexes = ((("evaluation", "indicator"), True),)


class Like(BaseModel):
    """A like by a verified citizen; one per identity (``liker_id_hash``) and evaluation."""

    evaluation = peewee.ForeignKeyField(Evaluation, backref="likes", on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    liker_id_hash = peewee.CharField(max_length=64)
    name_masked = peewee.CharField(max_length=8)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("evaluation", "liker_id_hash"), True), (("evaluation", "id"), False))


class Reply(BaseModel):
    """A public reply of the center to an evaluation."""

    evaluation = peewee.ForeignKeyField(Evaluation, backref="replies", on_delete="CASCADE")
    text = peewee.TextField()
    admin_id = peewee.IntegerField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)


# Seeded by the migration (product.md rule 4: Guangdong's most chosen reasons, the article's).
DEFAULT_INDICATORS = (
    ("not_told_at_once", "未一次性告知所需材料"),
    ("extra_materials", "要求提供办事指南以外的材料"),
    ("extra_conditions", "增加办事指南以外的条件"),
    ("repeat_visits", "跑动两次以上"),
    ("overdue", "超时办理"),
    ("poor_attitude", "服务态度差"),
    ("long_queue", "排队时间长"),
    ("efficiency", "服务效率"),
    ("service_level", "服务水平"),
    ("service_attitude", "服务态度"),
)
