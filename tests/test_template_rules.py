"""WeChat's rule per subscribe-message field type (product rule 23), checked twice: by the
server before any send (``services/messaging/template_data.py``) and, independently, by the
sandbox (``wxbackend/sandbox/subscribe.py``, as WeChat answers 47003). One table of values
per type drives both: ``ok`` fits as is, ``cut`` is too long but a prefix fits (the server
cuts it; WeChat would refuse it whole), ``bad`` cannot be sent (the server: config_error).

The rules: https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
(订阅消息参数值内容限制说明).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.support.admins import admin_token
from wxbackend.sandbox.subscribe import check_template_value
from wxbackend.services.messaging import template_data
from wxbackend.services.messaging.template_data import TemplateFieldsError, check_value

OK, CUT, BAD = "ok", "cut", "bad"

TABLE: list[tuple[str, str, str]] = [
    # thing: ≤20 characters of any kind
    ("thing", "失业登记", OK),
    ("thing", "A-1 办理（加急）", OK),
    ("thing", "一" * 20, OK),
    ("thing", "一" * 21, CUT),
    ("thing", "两行\n文字", BAD),
    # phrase: ≤5 Chinese characters only
    ("phrase", "已整改", OK),
    ("phrase", "已办结五字", OK),
    ("phrase", "劳动和社会保障", CUT),
    ("phrase", "OK", BAD),
    ("phrase", "已整改!", BAD),
    ("phrase", "正常 结束", BAD),
    # name: ≤10 Chinese characters, or ≤20 letters
    ("name", "黎明", OK),
    ("name", "迪丽热巴·迪力木拉提", OK),
    ("name", "John Smith", OK),
    ("name", "欧" * 11, CUT),
    ("name", "A" * 21, CUT),
    ("name", "黎明1", BAD),
    # character_string: ≤32 of digits, letters, symbols (no Chinese, no space)
    ("character_string", "T000123-1700000000", OK),
    ("character_string", "C" * 32, OK),
    ("character_string", "C" * 33, CUT),
    ("character_string", "测试订阅消息1", BAD),
    ("character_string", "AB 12", BAD),
    # number: ≤32 digits, a decimal point allowed
    ("number", "42", OK),
    ("number", "3.14", OK),
    ("number", "1" * 33, BAD),
    ("number", "12a", BAD),
    # letter: ≤32 letters
    ("letter", "abcXYZ", OK),
    ("letter", "a" * 33, CUT),
    ("letter", "abc1", BAD),
    # symbol: ≤5 symbols
    ("symbol", "+-*", OK),
    ("symbol", "!!!!!!", BAD),
    ("symbol", "a!", BAD),
    # amount: a currency sign, ≤10 digits, decimals, maybe 元
    ("amount", "¥29.90", OK),
    ("amount", "100元", OK),
    ("amount", "¥12345678901", BAD),
    ("amount", "abc", BAD),
    # phone_number: ≤17 digits and symbols
    ("phone_number", "+86-0766-66888866", OK),
    ("phone_number", "13800138000", OK),
    ("phone_number", "1" * 18, BAD),
    ("phone_number", "call me", BAD),
    # car_number: ≤8, Chinese allowed first and last
    ("car_number", "粤A8Z888挂", OK),
    ("car_number", "粤A8Z8888挂", BAD),
    ("car_number", "A8-Z88", BAD),
    # time: a 24-hour time, a date before it allowed; ranges with ~
    ("time", "15:01", OK),
    ("time", "2026-03-02 10:05", OK),
    ("time", "2019年10月1日 15:01", OK),
    ("time", "2026-03-02 10:05~2026-03-02 11:00", OK),
    ("time", "2026-03-02", BAD),
    ("time", "25:00", BAD),
    ("time", "下午三点", BAD),
    # date: a date, a time after it allowed; ranges with ~
    ("date", "2026-03-02", OK),
    ("date", "2019年10月1日", OK),
    ("date", "2026-03-02 10:05", OK),
    ("date", "2026-03-02~2026-03-05", OK),
    ("date", "10:05", BAD),
    ("date", "昨天", BAD),
]


@pytest.mark.parametrize(("kind", "value", "verdict"), TABLE)
def test_server_rule(kind, value, verdict):
    if verdict == BAD:
        with pytest.raises(TemplateFieldsError) as raised:
            check_value(f"{kind}1", kind, value)
        assert value not in str(raised.value)  # the field is named, never the value
        return
    sent = check_value(f"{kind}1", kind, value)
    if verdict == OK:
        assert sent == value
    else:
        assert sent != value and len(sent) < len(value)
        assert check_template_value(kind, sent) is None  # the cut value passes at WeChat
        if kind == "thing":
            assert sent.endswith("…") and len(sent) == 20


@pytest.mark.parametrize(("kind", "value", "verdict"), TABLE)
def test_sandbox_rule(kind, value, verdict):
    problem = check_template_value(kind, value)
    assert (problem is None) == (verdict == OK), problem


@pytest.mark.parametrize("kind", ["enum", "unknown", "thing_x"])
def test_types_we_cannot_fill_are_config_errors(kind):
    with pytest.raises(TemplateFieldsError):
        check_value(f"{kind}1", kind, "已整改")


def test_empty_values_are_config_errors():
    with pytest.raises(TemplateFieldsError):
        check_value("thing1", "thing", "")
    values = {"item_name": None}
    with pytest.raises(TemplateFieldsError):  # nothing becomes "-", not a phrase
        template_data.render_data({"phrase1": "item_name"}, values, "Asia/Shanghai")


def test_the_rectified_notice_fills_a_result_template():
    fields = {"thing1": "item_name", "phrase2": "outcome", "thing3": "outcome_text"}
    fields["time4"] = "closed_at"
    values = {
        "item_name": "失业登记",
        "outcome": template_data.OUTCOME,
        "outcome_text": template_data.OUTCOME_TEXT,
        "closed_at": datetime(2026, 3, 2, 2, 5),
    }
    attributes = template_data.ATTRIBUTES + template_data.RECTIFIED_ATTRIBUTES
    data = template_data.render_data(fields, values, "Asia/Shanghai", attributes)
    assert data == {
        "thing1": {"value": "失业登记"},
        "phrase2": {"value": "已整改"},
        "thing3": {"value": "您反映的问题已整改办结"},
        "time4": {"value": "2026-03-02 10:05"},
    }
    types = {name: template_data.field_type(name) for name in fields}
    assert all(check_template_value(types[k], v["value"]) is None for k, v in data.items())
    # the reminder's map knows no outcome: the rectified attributes are the notice's own
    with pytest.raises(TemplateFieldsError):
        template_data.render_data({"phrase2": "outcome"}, values, "Asia/Shanghai")


# ---- the maps in the WeChat configuration (GET/PUT /admin/api/wechat-config) ----------------


@pytest.mark.asyncio
async def test_field_maps_are_part_of_the_wechat_configuration(api, ctx):
    token = await admin_token(api, ctx)
    status, config = await api("GET", "/admin/api/wechat-config", token=token)
    assert status == 200
    maps = config["templates"]
    assert maps["rectified_fields"] == dict(ctx.settings.templates.rectified_fields)
    assert maps["reminder_fields"] == dict(ctx.settings.reminders.template_fields)
    result = {"thing1": "item_name", "phrase2": "outcome", "date3": "closed_at"}
    change = {"templates": {"rectified_fields": result}}
    status, config = await api("PUT", "/admin/api/wechat-config", change, token=token)
    assert status == 200, config
    assert config["templates"]["rectified_fields"] == result
    assert ctx.wechat_config.config().rectified_fields == result  # in force, no restart
    assert config["templates"]["reminder_fields"] == maps["reminder_fields"]  # untouched
    for key, bad in [
        ("rectified_fields", {"number1": "applicant_name"}),  # not an attribute we send
        ("reminder_fields", {"phrase1": "outcome"}),  # the outcome is the notice's own
        ("rectified_fields", {"enum1": "outcome"}),  # a type we cannot fill
        ("rectified_fields", {"thing": "item_name"}),  # not <type><n>
        ("rectified_fields", {}),
        ("rectified_fields", "thing1=item_name"),
    ]:
        status, answer = await api(
            "PUT", "/admin/api/wechat-config", {"templates": {key: bad}}, token=token
        )
        assert (status, answer["error"]["code"]) == (400, "invalid_config"), bad
        assert answer["error"]["field"] == f"templates.{key}"
