"""The client's address: the peer, or X-Forwarded-For when the peer is a trusted proxy."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence


@functools.lru_cache(maxsize=32)
def _networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(addr: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def in_networks(addr: str, networks: tuple[str, ...]) -> bool:
    """Is ``addr`` inside one of ``networks`` (addresses or CIDR ranges)?"""
    return _trusted(addr, _networks(networks))


def client_address(peer: str, forwarded_for: str | None, trusted_proxies: Sequence[str]) -> str:
    """Walk X-Forwarded-For from the right, skipping trusted proxies; the first other hop wins.

    Without a trusted peer the header is ignored, so a client cannot pick its own address.
    """
    networks = _networks(tuple(trusted_proxies))
    if not forwarded_for or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
