"""Schemathesis against the served /openapi.json of a running server (issue 15, item 7).

A citizen token, an admin session and a paired evaluator's device token are sent where the
document asks for them, and partner operations are signed as a partner signs them (a negative
case that leaves the ``Authorization`` header out goes without one: 401). Every answer must be
no 5xx, carry a documented status and content type, and match the documented schema (the errors'
and, through handlers/openapi_shapes.py, every success the contract describes in its notation);
schema-valid requests (positive mode) must not be refused as malformed (400), and requests
outside the schema (negative mode) must be refused, with documented answers. Operations with a
path parameter are also aimed at rows that exist (a seeded 差评, the example catalogue), so their
successes are checked too. The run is derandomized (fixed examples per operation, no example
database), so CI sends the same requests every time: ~2100 of them in 20–30 s. Every 405's
``Allow`` is checked in tests/test_openapi_document.py."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.admins import admin_token
from tests.support.tickets import seed_rating
from wxbackend.services.admin.accounts import create_partner

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.asyncio]

#: Examples per operation and mode (107 operations), then per operation with a path
#: parameter aimed at rows that exist (``REAL``): ~2000 requests in all.
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}
REAL_EXAMPLES = 6
#: Path parameters naming rows that exist (the example catalogue, a seeded 差评, an extra
#: admin): a random id only ever finds 404, these reach the handlers' answers. A code names
#: the row of the section in its path.
CODES = {
    "/admin/api/centers/": "440103-HL",
    "/admin/api/departments/": "HL-GENERAL",
    "/admin/api/items/": "440103-SB-002",
    "/admin/api/windows/": "HL-W03",
}
#: Server-Sent Events never end: tests/test_live.py and tests/test_devices.py cover them.
STREAMS = {"/api/v1/public/live", "/api/v1/device/stream"}
#: Ending the session would leave the rest of the run without one (they still get 401s).
LOGOUTS = {"/api/v1/auth/logout", "/admin/api/logout"}
#: Refusals of schema-valid input that no schema can express: a cursor is opaque (only the
#: server's own is accepted), ``from`` after ``to`` compares two parameters, a
#: transparency-log index or size must lie within the log's size at the time of asking, a
#: reference must name a row that exists, a row's key cannot change under its path, a field
#: required by another's value (a role's center, a hidden comment's reason, a step's note),
#: a password's strength and a check digit (ID number, credit code).
BEYOND_SCHEMA = (
    re.compile(r'"(parameter|field)": "cursor"'),
    re.compile(r"Parameter from is after to\."),
    re.compile(r"(leaf_index|tree_size|first|second|start|end) must be an integer from \d+ to"),
    re.compile(r"[Uu]nknown (center|department|item|staff|window|indicator)|no such staff"),
    re.compile(r"contact_at: the ISO time \(with offset\) of the call or SMS, not in the future"),
    re.compile(r"(code|staff_no) cannot change"),
    re.compile(r"an? \w+ (needs an?|has no) (center|department)"),
    re.compile(r"Hiding a comment needs a reason|note is required for this step"),
    re.compile(r"password: mix at least two of"),
    re.compile(r"invalid (id_number|credit_code)|not a valid unified social credit code"),
    re.compile(r"accepted_at is after completed_at|completed_at is in the future"),
)


#: The refusals that say a value's form is wrong (what a schema can say), unlike the domain's
#: (``invalid_id_number``, 403, 404, 409, 410 …).
MALFORMED = ("invalid_body", "invalid_query", "invalid_field", "invalid_config", "invalid_name")


@pytest.fixture
def without_local_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis mixes constants from the source modules imported so far into what it
    draws, so the requests would depend on the code base and on which tests ran before in
    the session; without them they depend only on the document (and the library versions)."""
    from hypothesis.internal.conjecture import providers

    if hasattr(providers, "_get_local_constants"):
        empty = providers.Constants(
            integers=providers.SortedSet(),
            floats=providers.SortedSet(key=providers.float_to_int),
            bytes=providers.SortedSet(),
            strings=providers.SortedSet(),
        )
        monkeypatch.setattr(providers, "_get_local_constants", lambda: empty)


@schemathesis.check
def valid_input_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid request is never refused as malformed (400 ``invalid_body`` or
    ``invalid_query``): the document must say what the handler checks. Refusals by the domain
    rules (``invalid_id_number``, 403, 404, 409, 410, 422 …) are answers, not schema gaps."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 422):
        return None
    text = response.text
    malformed = any(f'"{code}"' in text for code in MALFORMED)
    if not malformed or any(reason.search(text) for reason in BEYOND_SCHEMA):
        return None
    raise AssertionError(f"schema-valid input refused: {text[:300]}")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    valid_input_accepted,
    negative_data_rejection,
]


def _credentials(case: Any, mode: GenerationMode, headers: dict[str, str]) -> dict[str, str]:
    """The real token in place of the generated one, except where a negative case leaves the
    ``Authorization`` header out on purpose: that request goes without one (401 expected)."""
    if mode is GenerationMode.NEGATIVE and "Authorization" not in (case.headers or {}):
        return {}
    return headers


def _signed_call(case: Any, base_url: str, session: Any, partner: Any) -> Any:
    """Send ``case`` signed as ``partner`` signs (the path and query as sent, the body's
    bytes): the partner API's answers beyond its 401s."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    fields = ("method", "url", "headers", "params", "json", "data", "cookies")
    request = requests.Request(**{k: kwargs[k] for k in fields if k in kwargs}).prepare()
    body = request.body or b""
    body = body.encode() if isinstance(body, str) else body
    request.headers.update(partner.headers(request.method, request.path_url, body))
    return session.send(request, timeout=10)


def _aimed(case: Any, real: dict[str, str]) -> None:
    """The case's path parameters replaced by rows that exist (those ``real`` names)."""
    values = dict(case.path_parameters or {})
    for name in values:
        code = next((c for prefix, c in CODES.items() if case.path.startswith(prefix)), None)
        if name == "code" and code:
            values[name] = code
        elif name in real:
            values[name] = real[name]
    case.path_parameters = values


def _fuzz(
    document: dict, base_url: str, tokens: dict[str, str], real: dict[str, str], partner: Any
) -> tuple[list[str], int]:
    """Every operation of ``document`` in both modes, and aimed at real rows: the failures
    and the request count."""
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    failures: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in STREAMS:
            continue
        schemes = [name for entry in operation.definition.raw.get("security", []) for name in entry]
        headers = {}
        if operation.path not in LOGOUTS and schemes and schemes[0] in tokens:
            headers["Authorization"] = f"Bearer {tokens[schemes[0]]}"
        negatable = operation.body or operation.query or operation.headers
        signed = schemes[:1] == ["partner"]
        passes = [(mode, examples, False) for mode, examples in EXAMPLES.items()]
        if "{" in operation.path:
            passes.append((GenerationMode.POSITIVE, REAL_EXAMPLES, True))
        for mode, examples, aimed in passes:
            if mode is GenerationMode.NEGATIVE and not negatable:
                continue  # nothing the client sends could break the schema

            @hypothesis.settings(
                max_examples=examples,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def one(case: Any) -> None:
                nonlocal sent
                sent += 1
                if aimed:
                    _aimed(case, real)
                sent_headers = _credentials(case, mode, headers)
                if signed and "X-Partner-Key" in (case.headers or {}):
                    response = _signed_call(case, base_url, session, partner)
                else:
                    response = case.call(
                        base_url=base_url, session=session, headers=sent_headers, timeout=10
                    )
                case.validate_response(response, checks=CHECKS)

            try:
                one()
            except hypothesis.errors.Unsatisfiable:
                continue  # every parameter is a path segment: no invalid one exists
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # one finding per operation and mode is enough to act on
                label = f"{mode.value}, real rows" if aimed else mode.value
                failures.append(f"{operation.label} [{label}]: {str(exc)[:1500]}")
    session.close()
    return failures, sent


async def test_the_api_answers_every_generated_request_as_documented(
    api, ctx, sandbox, partner, base_url, http_client, without_local_constants
):
    citizen, _ = await api.login(sandbox)
    admin = await admin_token(api, ctx)
    await admin_token(api, ctx, "fuzzed", "viewer")  # the one /admins/{username} may change
    paired = await api.expect("POST", "/admin/api/windows/HL-W02/device-key", token=admin)
    device = await api.expect("POST", "/api/v1/device/pair", {"window_code": "HL-W02", **paired})
    tokens = {"citizen": citizen, "admin": admin, "device": device["device_token"]}
    seeded = await seed_rating(ctx, overall=1)
    real = {
        "case_no": seeded.case_no,
        "case_id": seeded.case_id,
        "evaluation_id": seeded.evaluation_id,
        "ticket_id": str(seeded.ticket_id),
        "staff_no": "HL004",
        "window_code": "HL-W03",
        "username": "fuzzed",
        "key_id": (await ctx.db.run(create_partner, "待吊销的系统", ctx.cipher)).key_id,
        "path": "site.css",
    }
    served = await http_client.fetch(base_url + "/openapi.json")
    document = json.loads(served.body)

    started = time.monotonic()
    failures, sent = await asyncio.to_thread(_fuzz, document, base_url, tokens, real, partner)
    print(f"\nfuzz: {sent} requests in {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(failures)
