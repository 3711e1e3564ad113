"""Debian's chromium driven by Playwright (the Python package; no browser download) for the
browser tests: one headless browser with a fresh profile, pages whose console errors, page
errors and dialogs are collected, and screenshots under the test's output.

    async with Chromium(tmp_path) as browser:
        page = await browser.page("admin")
        await page.goto(base_url + "/admin/")
        await browser.shot(page, "01-login")
    assert browser.problems == []

Screenshots go to ``<tmp_path>/screenshots``; with ``WXB_SCREENSHOTS`` set they are copied to
``test-output/screenshots/`` at the repository's root too (to look at them after a run).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
#: What a headless kiosk-like chromium needs here: no sandbox (root in a container), no GPU,
#: and none of the browser's own network chatter (updates, sync, QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
#: How long one wait for the page may take (ms): generous on a loaded 2-core machine.
TIMEOUT_MS = 10_000


async def _stand_in_photo(route: Any) -> None:
    icon = (REPO_ROOT / "wxbackend" / "web" / "favicon.ico").read_bytes()
    await route.fulfill(status=200, content_type="image/png", body=icon[22:])  # its one PNG


class Chromium:
    """One browser (a persistent context on a fresh user-data dir) for a test module."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.shots = out / "screenshots"
        self.problems: list[str] = []  # console errors, page errors, dialogs (an alert = XSS)
        self.refusals: list[str] = []  # paths whose next error answer is the test's intent
        self.wanted_dialogs: list[str] = []  # how the next dialogs the test causes begin
        self.dialogs: list[str] = []  # the messages of those dialogs (each then dismissed)
        self._playwright: Any = None
        self.context: Any = None

    async def __aenter__(self) -> Chromium:
        if not Path(CHROMIUM).exists():
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium fonts-noto-cjk")
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self.context = await self._playwright.chromium.launch_persistent_context(
            str(self.out / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            viewport={"width": 1400, "height": 900},
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        # The example catalogue's staff photos are https://example.org/… and this machine has
        # no way out: the browser gets a small picture instead (a failed load is a console
        # error). Only that host is answered so; every request to the server under test is real.
        await self.context.route("https://example.org/**", _stand_in_photo)
        self.shots.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self.context is not None:
                await self.context.close()
        finally:
            if self._playwright is not None:
                await self._playwright.stop()
            self._copy_shots()

    async def page(self, name: str) -> Any:
        """A new tab whose console errors, uncaught errors and dialogs land in ``problems``."""
        page = await self.context.new_page()

        def on_console(message: Any) -> None:
            if message.type != "error":
                return
            url = message.location.get("url", "")
            if message.text.startswith("Failed to load resource: the server responded"):
                path = url.split("?")[0]
                for expected in self.refusals:
                    if path.endswith(expected):
                        self.refusals.remove(expected)
                        return
            self.problems.append(f"{name}: console error: {message.text} {url}")

        async def on_dialog(dialog: Any) -> None:
            wanted = [start for start in self.wanted_dialogs if dialog.message.startswith(start)]
            if wanted:
                self.wanted_dialogs.remove(wanted[0])
                self.dialogs.append(dialog.message)
            else:
                self.problems.append(f"{name}: dialog {dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"{name}: page error: {error}"))
        page.on("dialog", on_dialog)
        return page

    def expect_refusal(self, path: str) -> None:
        """The next error answer of ``path`` is wanted by the test: the browser logs every
        4xx as a console error, that one is not a problem."""
        self.refusals.append(path)

    def expect_dialog(self, start: str) -> None:
        """The next dialog beginning with ``start`` is the test's doing (a confirm): it is
        dismissed and kept in ``dialogs``, not a problem."""
        self.wanted_dialogs.append(start)

    async def shot(self, page: Any, name: str) -> Path:
        """A full-page screenshot ``<name>.png``."""
        path = self.shots / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    def _copy_shots(self) -> None:
        if not os.environ.get("WXB_SCREENSHOTS") or not self.shots.exists():
            return
        target = REPO_ROOT / "test-output" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        for shot in self.shots.glob("*.png"):
            shutil.copy2(shot, target / shot.name)


#: A run of characters a code, id, path or address is made of.
_TOKEN = re.compile(r"[A-Za-z0-9_.\-/:@#*+=%&?]+")
_WORD = re.compile(r"[A-Za-z_]+")


def english_words(text: str, allowed: set[str]) -> set[str]:
    """The words of ``text`` made of Latin letters (and ``_``: a field name is English too)
    that are not in ``allowed``; codes, ids, paths and numbers, which hold a digit, a dot or a
    dash, are not words."""
    return {
        token
        for token in _TOKEN.findall(text)
        if _WORD.fullmatch(token) and len(token) > 1 and token not in allowed
    }


#: Latin words the console may show: WeChat's and formats' own names, the command line, the
#: test's usernames and configuration values shown beside their Chinese names. Anything else
#: in Latin letters on a console page is an English leftover, snake_case field names included
#: (codes and ids hold a digit, a dot or a dash and are not words).
LATIN_ALLOWED = {
    *("AppID", "AppSecret", "Token", "EncodingAESKey", "Webhook", "key", "ID", "JSON", "JSONL"),
    *("CSV", "HTTP", "https", "Ctrl", "wxbackend", "catalog", "import", "root", "sandbox"),
    *("release", "trial", "develop", "access_token", "key_id"),
    # the values a subscribe-message template's fields take (the configuration's vocabulary)
    *("item_name", "completed_at", "center_name", "outcome", "outcome_text", "closed_at"),
}


async def no_english_leftovers(page: Any, where: str) -> None:
    """The visible text of the console (comments and notes, which citizens and admins wrote,
    left out) holds no Latin word outside :data:`LATIN_ALLOWED`."""
    text = await page.evaluate(
        """() => {
            const copy = document.querySelector("#console-view").cloneNode(true);
            copy.querySelectorAll(".comment, .note, [hidden]").forEach((n) => n.remove());
            document.body.appendChild(copy);
            const text = copy.innerText;
            copy.remove();
            return document.querySelector(".topbar").innerText + "\\n" + text;
        }"""
    )
    assert english_words(text, LATIN_ALLOWED) == set(), (where, english_words(text, LATIN_ALLOWED))
