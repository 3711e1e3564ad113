"""Service windows as the public sees them (窗口): what a window's evaluator screen (评价器) shows.

``GET /api/v1/public/windows/{window_code}`` answers the window, its center and the clerk who
staffs it. Staff names, numbers and photos are public by design (the evaluator displays them
to every citizen at the window); nothing else about staff (ID hash, department internals) and
nothing about citizens is included. A deactivated clerk is not shown (``staff: null``).
"""

from __future__ import annotations

from typing import Any

from models.catalog import Center, Staff, Window
from wxbackend import errors
from wxbackend.context import Context

MAX_CODE_LENGTH = 64


def window_card(window_code: str) -> dict[str, Any]:
    """``{window:{code,name}, center:{code,name}, staff:{name, staff_no, photo_url}|null}``.

    404 ``not_found`` for an unknown code. Synchronous: call it through ``ctx.db.run``.
    """
    if not window_code or len(window_code) > MAX_CODE_LENGTH:
        raise errors.NotFound("No such window.")
    window = (
        Window.select(Window, Center)
        .join(Center, on=Window.center == Center.id)
        .where(Window.code == window_code)
        .first()
    )
    if window is None:
        raise errors.NotFound("No such window.")
    staff = None
    if window.staff_id is not None:
        clerk = Staff.get_or_none((Staff.id == window.staff_id) & (Staff.active == True))  # noqa: E712
        if clerk is not None:
            staff = {
                "name": clerk.name,
                "staff_no": clerk.staff_no,
                "photo_url": clerk.photo_url or None,
            }
    return {
        "window": {"code": window.code, "name": window.name},
        "center": {"code": window.center.code, "name": window.center.name},
        "staff": staff,
    }


async def public_window(ctx: Context, window_code: str) -> dict[str, Any]:
    """``GET /api/v1/public/windows/{window_code}``."""
    return await ctx.db.run(window_card, window_code)
