"""The sandbox's own tests run it alone (no server): ``sandbox`` here is `Sandbox`, the
WeChat side of a sandbox started on a free port, and ``clock`` replaces its clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient

from tests.support.sandbox import FakeClock, Sandbox
from wxbackend.sandbox import start_sandbox, stop_sandbox


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    server, state = await start_sandbox(port=0)
    client = AsyncHTTPClient(force_instance=True)
    try:
        yield Sandbox(state, client)
    finally:
        client.close()
        await stop_sandbox(server, state)


@pytest.fixture
def clock(sandbox: Sandbox) -> FakeClock:
    fake = FakeClock()
    sandbox.state.clock = fake
    return fake
