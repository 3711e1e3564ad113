"""Mini-program codes: ``POST wxa/getwxacodeunlimit``.

``POST wxa/getwxacodeunlimit`` ``{scene, page?, check_path? (true), env_version? (release),
width? (430)}``
    A PNG (``image/png``, ``width`` px square, see `wxbackend.sandbox.png`). ``40169`` scene
    empty, longer than 32 or not a string; ``40129`` scene characters outside
    ``[0-9A-Za-z!#$&'()*+,/:;=?@-._~]``; ``41030`` page with a leading ``/`` or a ``?``, or
    (check_path true) not a published page; ``40097`` env_version not release|trial|develop,
    width not an integer 280–1280, page/check_path of the wrong type. An empty page is the
    home page. Errors are WeChat's JSON.
"""

from __future__ import annotations

import re

from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.errors import JSONDict, WeChatError, bad_args
from wxbackend.sandbox.paths import WXACODE_PATH
from wxbackend.sandbox.png import code_png

DEFAULT_PAGES: tuple[str, ...] = ("pages/evaluate/index",)
_SCENE_CHARS_RE = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+")
_ENV_VERSIONS = ("release", "trial", "develop")


class WxaCodeState:
    """The published pages (kept over a reset) and how many codes were made."""

    def __init__(self, published_pages: tuple[str, ...] = DEFAULT_PAGES) -> None:
        self.published_pages = tuple(published_pages)
        self.made = 0

    def make_code(self, body: JSONDict) -> bytes:
        """``POST wxa/getwxacodeunlimit``: the PNG bytes."""
        scene = body.get("scene")
        if not isinstance(scene, str) or not 0 < len(scene) <= 32:
            raise WeChatError(40169)
        if not _SCENE_CHARS_RE.fullmatch(scene):
            raise WeChatError(40129)
        page, check_path = body.get("page", ""), body.get("check_path", True)
        if not isinstance(page, str) or not isinstance(check_path, bool):
            raise bad_args("page must be a string and check_path a boolean")
        if page.startswith("/") or "?" in page:
            raise WeChatError(41030, "invalid page: no leading / and no query")
        if check_path and page and page not in self.published_pages:
            raise WeChatError(41030, "invalid page: not a published page")
        if body.get("env_version", "release") not in _ENV_VERSIONS:
            raise bad_args("env_version")
        width = body.get("width", 430)
        if isinstance(width, bool) or not isinstance(width, int) or not 280 <= width <= 1280:
            raise bad_args("width must be 280-1280")
        self.made += 1
        return code_png(scene, width)


# --- HTTP -------------------------------------------------------------------------------------


class WxaCodeHandler(WeChatHandler):
    """``POST wxa/getwxacodeunlimit``: PNG bytes, or WeChat's error JSON."""

    wechat_path = WXACODE_PATH

    def post(self) -> None:
        try:
            image = self.state.wxacode.make_code(self.json_body())
        except WeChatError as exc:
            self.write_json(exc.as_dict())
            return
        self.set_header("Content-Type", "image/png")
        self.finish(image)


HANDLERS: tuple[type[WeChatHandler], ...] = (WxaCodeHandler,)
