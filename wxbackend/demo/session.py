"""The demo's session: the running server, the clients every actor uses, and what the steps
hand each other (`State`). The steps (prepare, office, window, citizen) take a `Demo`; the
order they run in is `flow`'s."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from wxbackend.clients.admin import AdminClient
from wxbackend.clients.citizen import Citizen
from wxbackend.clients.http import ApiClient
from wxbackend.clients.partner import DEFAULT_CASE, PartnerClient
from wxbackend.clients.sandbox import SandboxClient
from wxbackend.demo.output import DemoError, Skip
from wxbackend.settings import Settings

WAIT_SECONDS = 20.0
#: The demo cases' codes: an item of conf/catalog.example.json with its center, department,
#: window and staff.
CASE_CODES = {key: code for key, code in DEFAULT_CASE.items() if key != "item_code"}

#: What `Demo.need` names when a step's input is missing.
NEEDS = {
    "case1": "step 3 (the case)",
    "citizen": "step 4.1 (login)",
    "evaluation_id": "step 4.7 (the rating)",
    "templates": "step 2 (templates)",
    "screen": "step 2.1 (the evaluator screen)",
}


@dataclass
class State:
    """What the steps hand each other."""

    admin_password: str = ""
    admin_password_new: bool = False
    admin: AdminClient | None = None
    templates: bool = False
    case1: dict[str, Any] | None = None
    citizen: Citizen | None = None
    evaluation_id: str | None = None
    robot_key: str = ""  # the demo center's WeCom robot in the sandbox (demo/alerts.py)
    #: The paired evaluator screen: its device token and open stream (demo.screen).
    screen: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)


class Demo:
    """The running server, the clients every actor uses, and the steps' `State`."""

    def __init__(self, server: Any, api: ApiClient, sandbox: SandboxClient, data_dir: str) -> None:
        self.server = server
        self.ctx = server.ctx
        self.settings: Settings = server.settings
        self.api = api
        self.sandbox = sandbox
        self.data_dir = data_dir
        self.s = State()
        self._partner: PartnerClient | None = None

    def use_partner(self, key_id: str, secret: str) -> None:
        """The window system's credentials (step 1)."""
        self._partner = PartnerClient(self.api, key_id, secret)

    def partner(self) -> PartnerClient:
        """The window system's signed client (Skip before step 1 made its key)."""
        if self._partner is None:
            raise Skip("needs step 1 (the partner key), which did not run")
        return self._partner

    def need(self, *what: str) -> None:
        """Skip unless the earlier steps that give ``what`` ran."""
        for attr in what:
            if not getattr(self.s, attr):
                raise Skip(f"needs {NEEDS[attr]}, which did not run")

    async def wait_for_message(self, openid: str, template_id: str, page_suffix: str) -> dict:
        """The subscribe message to ``openid`` whose page ends with ``page_suffix``, once
        WeChat (the sandbox) has it; DemoError after `WAIT_SECONDS`."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            for item in await self.sandbox.messages(openid, template_id):
                if (item.get("page") or "").endswith(page_suffix):
                    return item
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no {template_id} message for …{page_suffix} reached the sandbox within "
                    f"{WAIT_SECONDS:.0f} s (is the worker running? worker.embedded)"
                )
            await asyncio.sleep(0.2)

    async def public_item(self) -> dict[str, Any] | None:
        """The demo's rating on the public list of its center, if shown."""
        center = CASE_CODES["center_code"]
        path = f"/api/v1/public/evaluations?center={center}&limit=20"
        answer = await self.api.expect("GET", path)
        return next((i for i in answer["items"] if str(i["id"]) == self.s.evaluation_id), None)
