"""Injected failures for calls to WeChat endpoints (the control API's ``/_sandbox/faults``).

For calls to one WeChat path (or ``"*"``, every WeChat endpoint; never the control API): first
hang ``hang_seconds`` (asynchronous; ends early when the client disconnects or the sandbox
stops), then answer ``errcode`` (with WeChat's errmsg) or HTTP ``http_status`` with a text body;
a hang alone then answers normally. With none of the three the call hangs 3600 s. ``after``:
how many matching calls it lets through untouched first (so a test can arm a fault before the
load starts, instead of racing it); ``times``: how many calls it affects after those (default:
until cleared). An exact path wins over ``"*"``; older
faults first. The waiting itself is done by `wxbackend.sandbox.base.WeChatHandler`.
"""

from __future__ import annotations

from dataclasses import dataclass

from wxbackend.sandbox.errors import JSONDict

DEFAULT_HANG_SECONDS = 3600.0


@dataclass
class Fault:
    """An injected failure for calls to one WeChat path (or ``"*"``)."""

    path: str
    errcode: int | None = None
    http_status: int | None = None
    hang_seconds: float | None = None
    times: int | None = None
    after: int = 0

    def as_dict(self) -> JSONDict:
        """The fault as the control API lists it."""
        return {
            "path": self.path,
            "errcode": self.errcode,
            "http_status": self.http_status,
            "hang_seconds": self.hang_seconds,
            "times": self.times,
            "after": self.after,
        }

    def hang(self) -> float | None:
        """Seconds to hang first (3600 when the fault says nothing else to do)."""
        if self.hang_seconds is None and self.errcode is None and self.http_status is None:
            return DEFAULT_HANG_SECONDS
        return self.hang_seconds


class FaultState:
    """The faults in force, oldest first."""

    def __init__(self) -> None:
        self.items: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Add a fault after the existing ones."""
        self.items.append(fault)

    def clear(self) -> None:
        """Remove every fault."""
        self.items.clear()

    def take(self, path: str) -> Fault | None:
        """The fault that applies to this call (using up one of its ``after`` calls let through,
        else one of its ``times``), if any."""
        for wanted in (path, "*"):
            for fault in self.items:
                if fault.path != wanted:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.items.remove(fault)
                return fault
        return None
