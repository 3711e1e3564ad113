"""The catalogue: service centers, departments, service items (事项), staff and windows."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow

STAFF_ROLES = ("window", "approver")


class Center(BaseModel):
    """A government service center (政务服务中心)."""

    code = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    area_code = peewee.CharField(max_length=12)
    # The key of the center's WeCom group robot (staff alerts), encrypted (FieldCipher,
    # context ``center.wecom_webhook_key``): the key is the robot's only credential. The mask
    # ("****abcd") is what the console shows; the key itself is never answered.
    wecom_key_enc = peewee.TextField(null=True)
    wecom_key_mask = peewee.CharField(max_length=16, null=True)
    updated_at = peewee.DateTimeField(default=utcnow)


class Department(BaseModel):
    """A department or dedicated window group (部门 / 专窗) of a center."""

    code = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    center = peewee.ForeignKeyField(Center, backref="departments", on_delete="RESTRICT")
    credit_code = peewee.CharField(max_length=18, default="")
    updated_at = peewee.DateTimeField(default=utcnow)


class ServiceItem(BaseModel):
    """A service item, identified by its 事项编码."""

    code = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    department = peewee.ForeignKeyField(Department, backref="items", on_delete="RESTRICT")
    updated_at = peewee.DateTimeField(default=utcnow)


class Staff(BaseModel):
    """A member of staff: a window clerk (窗口人员) or a back-office approver (审批人员)."""

    staff_no = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=64)
    role = peewee.CharField(max_length=16)
    department = peewee.ForeignKeyField(Department, backref="staff", on_delete="RESTRICT")
    center = peewee.ForeignKeyField(Center, backref="staff", on_delete="RESTRICT")
    photo_url = peewee.CharField(max_length=500, default="")
    # Keyed hash (HMAC) of the ID number, to stop staff rating their own cases. Never the number.
    id_hash = peewee.CharField(max_length=64, null=True, index=True)
    active = peewee.BooleanField(default=True)
    updated_at = peewee.DateTimeField(default=utcnow)


class Window(BaseModel):
    """A service window (窗口) of a center, with the clerk who staffs it."""

    code = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    center = peewee.ForeignKeyField(Center, backref="windows", on_delete="RESTRICT")
    staff = peewee.ForeignKeyField(Staff, null=True, backref="windows", on_delete="SET NULL")
    updated_at = peewee.DateTimeField(default=utcnow)
