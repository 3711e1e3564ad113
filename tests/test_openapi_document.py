"""The served /openapi.json is a valid OpenAPI 3.1 document that says what the handlers check
(issue 15, item 7), and every 405 names the allowed methods (RFC 9110)."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate

from handlers.openapi import WELL_KNOWN_QUERY, build_document
from handlers.openapi_shapes import answer_schema
from handlers.routes import all_routes
from tests.support.admins import admin_token


def _document() -> dict:
    return build_document(all_routes(), "test")


def test_the_document_validates():
    validate(_document())  # raises on the first error (GET /wechat/push's echostr had no schema)


def test_every_operation_documents_what_any_request_of_its_kind_can_get():
    for path, entry in _document()["paths"].items():
        for method, op in entry.items():
            statuses = set(op["responses"])
            if "requestBody" in op:
                assert {"400", "413"} <= statuses, (method, path)  # not JSON, too large
            if op.get("security"):
                assert "401" in statuses, (method, path)
            if "{" in path:
                assert "404" in statuses, (method, path)


def test_well_known_query_parameters_say_what_the_handlers_check():
    stats = _document()["paths"]["/admin/api/stats"]["get"]["parameters"]
    schema = {p["name"]: p["schema"] for p in stats}
    assert schema["to"] == WELL_KNOWN_QUERY["to"]
    tickets = _document()["paths"]["/admin/api/tickets"]["get"]["parameters"]
    status = next(p["schema"] for p in tickets if p["name"] == "status")
    assert "verified" in status["enum"] and "" in status["enum"]


@pytest.mark.asyncio
async def test_every_405_carries_allow(http_client, base_url):
    for rule in all_routes():
        path = re.sub(r"\{\w+\}", "x", rule.name)
        response = await http_client.fetch(
            base_url + path, method="TRACE", raise_error=False, allow_nonstandard_methods=True
        )
        assert response.code == 405, path
        allowed = response.headers.get("Allow", "")
        assert allowed and "TRACE" not in allowed, path
    response = await http_client.fetch(
        base_url + "/api/v1/public/levels", method="PATCH", body="{}", raise_error=False
    )
    assert response.code == 405 and response.headers["Allow"] == "GET"
    assert json.loads(response.body)["error"]["message_zh"]


@pytest.mark.asyncio
async def test_an_empty_export_bound_means_no_bound_like_an_absent_one(api, ctx, base_url):
    token = await admin_token(api, ctx)
    answers = []
    for query in ("", "?to=", "?from=", "?from=&to="):
        answers.append(await api("GET", "/admin/api/export" + query, token=token))
    assert all(status == 200 for status, _ in answers)
    assert len({str(body) for _, body in answers}) == 1
    status, body = await api("GET", "/admin/api/export?to=2026-13-01", token=token)
    assert status == 400 and body["error"]["code"] == "invalid_query"


def test_building_the_document_twice_gives_the_same_document():
    """Each app builds it; a second build once repeated the path parameters (invalid)."""
    assert _document() == _document()


def _parameter(path: str, method: str, name: str) -> dict:
    op = _document()["paths"][path][method]
    return next(p["schema"] for p in op["parameters"] if p["name"] == name)


def _body(path: str, method: str) -> dict:
    op = _document()["paths"][path][method]
    return op["requestBody"]["content"]["application/json"]["schema"]


#: Inputs the document once allowed and the handlers refused (400, schemathesis found them):
#: the document now refuses them too, and still allows what the handlers take.
SCHEMA_CASES = [
    (("/admin/api/centers", "get", "limit"), "abc", False),
    (("/admin/api/centers", "get", "limit"), 20, True),
    (("/admin/api/stats", "get", "to"), "", True),  # empty: no bound
    (("/admin/api/stats", "get", "to"), "9471-08-24", False),
    (("/admin/api/stats", "get", "to"), "2026-03-01", True),
    (("/admin/api/staff-ranking", "get", "month"), "", False),
    (("/admin/api/staff-ranking", "get", "month"), "2026-03", True),
    (("/admin/api/messages", "get", "status"), "nope", False),
    (("/admin/api/tickets", "get", "status"), "verified", True),
    (("/admin/api/audit-log", "get", "cursor"), "%%%", False),
    (("/admin/api/windows", "get", "cursor"), "HL.W01", True),  # a catalogue cursor is a code
    (("/admin/api/windows", "get", "cursor"), "HL W01", False),
    (("/admin/api/items", "get", "department"), "D" * 65, False),
    (("/wechat/push", "post", "encrypt_type"), "rot13", False),
    (("/api/v1/evaluations/{evaluation_id}/follow-up", "post", "Idempotency-Key"), "short", False),
]
_CENTER = {"code": "C", "name": "中心", "area_code": "440103"}
_STAFF = {"staff_no": "S1", "name": "张三", "role": "window", "department": "D", "center": "C"}
_ROBOT = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key="
_CALL = {
    "case_no": "C1",
    "channel": "phone",
    "overall": 2,
    "contact_at": "2026-12-01T10:00:00+08:00",
    "reference": "CALL-1",
}
_WHO = {"name": "黎明", "id_number": "110105199001010011"}
_CASE = {
    "case_no": "CASE-1.a",
    "item_code": "I",
    "center_code": "C",
    "department_code": "D",
    "applicant": _WHO,
    "accepted_at": "2026-12-01T09:00:00+08:00",
    "completed_at": "2026-12-01T10:00:00+08:00",
}
BODY_CASES = [
    (("/api/v1/evaluations", "post"), {"overall": 1}, False),  # neither scene nor case_id
    (("/api/v1/evaluations", "post"), {"overall": 1, "scene": "s", "case_id": "1"}, False),
    (("/api/v1/evaluations", "post"), {"overall": 1, "scene": "s"}, True),
    (("/admin/api/evaluations/{evaluation_id}/reveal", "post"), {"reason": "  "}, False),
    (("/admin/api/tickets/{ticket_id}/contact", "post"), {"reason": "回访"}, True),
    (("/admin/api/wechat-config", "put"), {"push_token": None}, False),
    (("/admin/api/wechat-config", "put"), {"env_version": "beta"}, False),
    (("/admin/api/windows", "post"), {"code": "W1", "name": "1\x9f", "center": "C"}, False),
    (("/admin/api/windows", "post"), {"code": "W1", "name": "1号窗口", "center": "C"}, True),
    # found by the fuzz run once schema-valid input refused as malformed counted for 422 too
    (("/admin/api/partners", "post"), {"name": "  "}, False),
    (("/admin/api/partners", "post"), {"name": "x" * 201}, False),
    (("/admin/api/partners", "post"), {"name": "办件系统"}, True),
    (("/admin/api/centers", "post"), {"code": "C", "name": "中", "area_code": "440103"}, True),
    (("/admin/api/centers", "post"), {**_CENTER, "wecom_webhook_key": "short"}, False),
    (
        ("/admin/api/centers", "post"),
        {**_CENTER, "wecom_webhook_key": _ROBOT + "abcd-1234-efgh"},
        True,
    ),
    (("/admin/api/staff", "post"), {**_STAFF, "photo_url": "https://a b"}, False),
    (("/admin/api/staff", "post"), {**_STAFF, "photo_url": "https://example.org/p.png"}, True),
    (
        ("/admin/api/departments", "post"),
        {"code": "D", "name": "部门", "center": "C", "credit_code": "91\x05"},
        False,
    ),
    (("/api/v1/identity/face/start", "post"), {"name": "John", "id_number": "x"}, False),
    (
        ("/api/v1/identity/face/start", "post"),
        {"name": "迪丽热巴·迪力木拉提", "id_number": "x"},
        True,
    ),
    (("/admin/api/wechat-config", "put"), {"api_base": "sandbox"}, False),
    (("/admin/api/wechat-config", "put"), {"templates": {"reminder_fields": {}}}, False),
    (
        ("/admin/api/wechat-config", "put"),
        {"templates": {"reminder_fields": {"x": "case_no"}}},
        False,
    ),
    (
        ("/admin/api/wechat-config", "put"),
        {"templates": {"reminder_fields": {"thing1": "outcome"}}},
        False,
    ),
    (
        ("/admin/api/wechat-config", "put"),
        {"templates": {"rectified_fields": {"thing1": "outcome"}}},
        True,
    ),
    (("/admin/api/callback-evaluations", "post"), {**_CALL, "stages": {"TG": 1}}, False),
    (("/admin/api/callback-evaluations", "post"), {**_CALL, "reference": "\x05"}, False),
    (("/admin/api/callback-evaluations", "post"), {**_CALL, "stages": {"handling": 1}}, True),
    (("/api/v1/device/pair", "post"), {"window_code": "W1", "device_key": "k" * 65}, False),
    (("/api/v1/partner/cases", "post"), {**_CASE, "case_no": "NO 1"}, False),
    (("/api/v1/partner/cases", "post"), {**_CASE, "window_code": ""}, True),
    (("/api/v1/partner/cases", "post"), {**_CASE, "accepted_at": "yesterday"}, False),
    (
        ("/api/v1/partner/cases", "post"),
        {**_CASE, "applicant": {"name": " ", "id_number": "x"}},
        False,
    ),
    (("/api/v1/partner/cases", "post"), {**_CASE, "applicant": {**_WHO, "phone": "12"}}, False),
    (("/api/v1/partner/cases", "post"), {**_CASE, "applicant": {**_WHO, "phone": None}}, True),
    (("/api/v1/partner/cases", "post"), _CASE, True),
]


@pytest.mark.parametrize(("where", "value", "allowed"), SCHEMA_CASES)
def test_parameters_allow_what_the_handlers_take(where, value, allowed):
    validator = Draft202012Validator(_parameter(*where), format_checker=FormatChecker())
    assert validator.is_valid(value) is allowed


@pytest.mark.parametrize(("where", "value", "allowed"), BODY_CASES)
def test_bodies_allow_what_the_handlers_take(where, value, allowed):
    validator = Draft202012Validator(_body(*where), format_checker=FormatChecker())
    assert validator.is_valid(value) is allowed


@pytest.mark.asyncio
async def test_the_served_document_validates(http_client, base_url):
    served = await http_client.fetch(base_url + "/openapi.json")
    validate(json.loads(served.body))


@pytest.mark.asyncio
async def test_catalogue_lists_check_their_filters_and_cursor_as_documented(api, ctx):
    """Schemathesis found a 65-character ``department`` and a cursor outside the documented
    pattern answered 200 (an empty page); a code with a dot is a cursor the server gives."""
    token = await admin_token(api, ctx)
    for query in (
        "?department=" + "D" * 65,
        "?center=" + "C" * 65,
        "?cursor=%C3%9E",
        "?cursor=a%20b",
    ):
        status, body = await api("GET", "/admin/api/items" + query, token=token)
        assert status == 400 and body["error"]["code"] == "invalid_query", query
    status, body = await api(
        "GET", "/admin/api/items?cursor=HL.W01&department=HL-LABOR", token=token
    )
    assert status == 200, body


def test_an_answer_in_the_contracts_notation_gets_its_schema():
    schema = answer_schema("{token, expires_in?, user:{id, name}, items:[{code}], ok: true} etc.")
    assert schema is not None
    assert schema["required"] == ["token", "user", "items", "ok"]
    user = schema["properties"]["user"]["anyOf"]
    assert user == [
        {"type": "object", "properties": {"id": {}, "name": {}}, "required": ["id", "name"]},
        {"type": "null"},
    ]
    items = schema["properties"]["items"]
    assert items["type"] == "array" and items["items"]["required"] == ["code"]
    assert schema["properties"]["ok"] == {"const": True}
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"token": "t", "user": None, "items": [], "ok": True})
    assert not validator.is_valid({"token": "t", "user": {"id": 1}, "items": [], "ok": True})
    assert not validator.is_valid({"user": None, "items": [], "ok": True})
    # said in words only: no schema, or no constraint where it is said so
    assert answer_schema("the row") is None and answer_schema("{'1'..'5'}") is None
    assert answer_schema("{by_level:{'1'..'5'}, total}")["properties"]["by_level"] == {}


def test_every_success_in_the_contracts_notation_documents_its_shape():
    described = 0
    for entry in _document()["paths"].values():
        for op in entry.values():
            for code, answer in op["responses"].items():
                if code[0] == "2" and answer.get("description", "").startswith("{"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema["type"] == "object" and schema["required"], answer
                    described += 1
    assert described >= 55  # schemathesis checks each such answer against it (59 today)
