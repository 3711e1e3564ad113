"""A share of the database threads for heavy reads (figures, admin statistics, exports), so a
flood of them queues here instead of taking every thread from ratings, logins and scans."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from wxbackend import errors
from wxbackend.context import Context

T = TypeVar("T")

#: Longest wait for a free slot before answering 503 ``unavailable``.
SLOT_WAIT_SECONDS = 10.0


def share(ctx: Context) -> int:
    """How many heavy reads run at once: a quarter of the database threads, at least one."""
    return max(1, ctx.settings.database.threads // 4)


async def run_in_share(
    ctx: Context, slots: asyncio.Semaphore, fn: Callable[..., T], *args: Any
) -> T:
    """``fn(*args)`` on the database pool once one of ``slots`` is free; none within
    :data:`SLOT_WAIT_SECONDS` → 503 ``unavailable`` (``retry``)."""
    try:
        await asyncio.wait_for(slots.acquire(), SLOT_WAIT_SECONDS)
    except TimeoutError:
        raise errors.Unavailable(
            "Busy with other reports; try again shortly.", retry=True
        ) from None
    try:
        return await ctx.db.run(fn, *args)
    finally:
        slots.release()


def report_slots(ctx: Context) -> asyncio.Semaphore:
    """The admin reports' own share (statistics, ranking, export chunks): apart from the
    public figures' share, so neither starves the other, and both leave ratings their threads."""
    if ctx.report_slots is None:
        ctx.report_slots = asyncio.Semaphore(share(ctx))
    return ctx.report_slots
