"""Who is calling: the client address the per-client limits count by (public image routes, failed admin
keys).

The client is the peer address of the connection. Behind proxies (an ingress controller, a load balancer)
the peer is the proxy: with TRUSTED_PROXIES (comma-separated addresses or CIDR networks) a peer inside
them is taken to append the address it got the request from to X-Forwarded-For, and the client is the
right-most X-Forwarded-For address that is not a trusted proxy (addresses left of it were written by the
client itself and prove nothing). Without TRUSTED_PROXIES, X-Forwarded-For is ignored: a client cannot
choose its own identity. (uvicorn's own proxy-header handling is switched off in __main__, so that this is
the only place that reads the header.)

An IPv6 client counts as its /64 network: one host usually holds a whole /64 and could otherwise change
address for every request."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import Scope

from artsearch.config import ConfigError, Env
from services.gateway import settings as declared

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV6_CLIENT_PREFIX = 64
# An X-Forwarded-For entry that is not an address still names a client (as itself), cut to this length.
MAX_UNPARSED_CHARS = 64
UNKNOWN_CLIENT = "unknown"


def trusted_proxies_from_env(env: Env) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES: addresses or networks, comma-separated; ConfigError naming a malformed entry."""
    networks = []
    for entry in declared.TRUSTED_PROXIES.read(env).split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(f"TRUSTED_PROXIES: {entry!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_name(address: IPAddress) -> str:
    """The key a client is counted under: its IPv4 address, or its IPv6 /64 network."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def _trusted(address: IPAddress, proxies: Iterable[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_of(scope: Scope, trusted_proxies: tuple[IPNetwork, ...] = ()) -> str:
    """The client a request comes from (see the module doc)."""
    peer_text = (scope.get("client") or (UNKNOWN_CLIENT, 0))[0]
    peer = _address(peer_text)
    if peer is None:
        return str(peer_text)[:MAX_UNPARSED_CHARS] or UNKNOWN_CLIENT
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return client_name(peer)
    hops = [
        hop.strip()
        for header in Headers(scope=scope).getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return hop[:MAX_UNPARSED_CHARS]
        if not _trusted(address, trusted_proxies):
            return client_name(address)
    # Every hop is a trusted proxy: the request started inside them.
    first = _address(hops[0]) if hops else None
    return client_name(first or peer)
