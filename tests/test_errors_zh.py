"""Every error code has a Chinese message (``message_zh``) beside its English one, and every
error answer carries it (issue 15, item 5: the console shows admins Chinese)."""

from __future__ import annotations

import re

import pytest

from wxbackend import errors

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _error_classes() -> list[type[errors.ContractError]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.ContractError)
        and value is not errors.ContractError
    ]


def test_every_code_has_a_chinese_message():
    classes = _error_classes()
    assert len(classes) > 50
    for cls in classes:
        assert CHINESE.search(cls.message_zh), cls.__name__
        assert errors.message_zh(cls.code), cls.code
    for code, text in errors.all_codes().items():
        assert CHINESE.search(text), code
    for code in ("method_not_allowed", "internal_error", "not_found", "bad_request"):
        assert CHINESE.search(errors.message_zh(code)), code


@pytest.mark.asyncio
async def test_error_answers_carry_message_zh(api):
    status, body = await api("GET", "/api/v1/me")
    assert status == 401
    assert body["error"]["message_zh"] == errors.Unauthenticated.message_zh
    status, body = await api("POST", "/api/v1/auth/login", raw=b"{not json")
    assert status == 400 and body["error"]["message_zh"] == errors.InvalidBody.message_zh
    status, body = await api("GET", "/api/v1/no-such-route")
    assert status == 404 and CHINESE.search(body["error"]["message_zh"])


def _every_error_class() -> set[type[errors.ContractError]]:
    """Every ContractError subclass of the served code, wherever it is defined."""
    import handlers.routes

    handlers.routes.all_routes()  # imports every handler module (and the services they use)
    found: set[type[errors.ContractError]] = set()
    todo = [errors.ContractError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def test_errors_defined_beside_their_handlers_have_their_own_chinese_message():
    """An answer's ``message_zh`` comes from the code's table entry: a code missing from it
    (handlers.live's ``too_many_streams`` once was) would answer the generic 无法处理此请求."""
    generic = errors.ContractError.message_zh
    outside = [c for c in _every_error_class() if c.__module__ != errors.__name__]
    assert any(c.code == "too_many_streams" for c in outside)
    for cls in _every_error_class():
        if cls.code != "bad_request":
            assert errors.message_zh(cls.code) != generic, (cls.__module__, cls.code)
