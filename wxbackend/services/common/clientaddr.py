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


def is_https(
    protocol: str,
    peer: str,
    forwarded_proto: str | None,
    trusted_proxies: Sequence[str],
    public_url: str = "",
) -> bool:
    """Did the client reach us over TLS? Directly (``protocol``), through a trusted proxy
    that says so in ``X-Forwarded-Proto`` (nginx ending TLS, as the README's example), or by
    configuration (``server.public_url`` starting with ``https://``)."""
    if protocol == "https" or public_url.startswith("https://"):
        return True
    if not forwarded_proto or not _trusted(peer, _networks(tuple(trusted_proxies))):
        return False
    return forwarded_proto.split(",")[0].strip().lower() == "https"
