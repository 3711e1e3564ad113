"""Who may read ``/metrics``: the addresses of ``metrics.allow`` or the ``metrics.token``.

The figures say how the service runs (routes, error rates, WeChat errcodes): operators' data,
not the public's. Behind nginx, ``/metrics`` is best not proxied at all (see the README);
this check holds whatever the proxy does.
"""

from __future__ import annotations

import hmac
from typing import Any

from wxbackend.services.common.clientaddr import in_networks


def allowed(settings: Any, client: str, bearer: str | None) -> bool:
    """True for a client address inside ``settings.allow`` or the right bearer token."""
    token_ok = bool(settings.token) and bearer is not None
    if token_ok and hmac.compare_digest(settings.token.encode(), bearer.encode()):
        return True
    return in_networks(client, tuple(settings.allow))
