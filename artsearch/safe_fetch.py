"""Fetches an image from a URL somebody else chose, without letting them reach what they should not (SSRF).

Used by the gateway (search by image URL) and by `artsearch ingest --manifest` (image URLs of a manifest).

- Only http and https, no credentials in the URL.
- The host is resolved off the event loop, on a few threads of its own and within a deadline of its own
  (slow lookups cannot hold the threads the rest of the process shares); every address it resolves to
  must be public: loopback, private, link-local, CGNAT, multicast, reserved, unspecified and cloud
  metadata addresses are refused, also when they hide inside an IPv6 address (IPv4-mapped,
  IPv4-compatible, NAT64, 6to4, Teredo). An operator may let
  loopback, private, link-local and CGNAT addresses through, all of them (`allow_private`) or those inside
  given networks (`allowed_networks`); metadata, multicast, reserved and unspecified addresses stay refused.
- The connection goes to the vetted address itself (no second DNS lookup, so no rebinding window), while
  the request carries the real Host header and TLS checks the real name (SNI and certificate).
- Redirects are followed by hand, at most `max_redirects`, and every hop is vetted again.
- The body is streamed and cut off past `max_bytes`; the whole fetch, DNS included, has one deadline.
- A declared Content-Type other than an image (or a generic binary type) is refused before the body is
  read; the bytes themselves must then look like an accepted image format.

Every failure is a `FetchRefused` whose `status` is the HTTP status it means for a client: 400 (bad or
forbidden URL), 413 (too large), 415 (not an image), 422 (the remote server failed, timed out or redirected
too often).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import typing
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import certifi
import httpcore

from artsearch.image_formats import ACCEPTED_FORMATS, sniff_image_format

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
_REDIRECTS = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Cloud instance metadata and platform endpoints: refused always, whatever an operator allows. Most are in
# ranges refused anyway (link-local, private, CGNAT), which `allow_private` or an allowed network would
# open; Azure's is a public address that nothing else would refuse.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack, ... instance metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity credentials
        "fd00:ec2::23",  # the same over IPv6
        "fd20:ce::254",  # GCP metadata server over IPv6
        "168.63.129.16",  # Azure WireServer / platform endpoint (a public address)
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud (OCI classic) metadata
        "fd00:c1::a9fe:a9fe",  # Oracle Cloud metadata over IPv6
        "169.254.0.23",  # Tencent Cloud metadata
    )
)
# Name lookups run on threads of their own (getaddrinfo blocks and cannot be cancelled): slow or hanging
# lookups then hold at most these threads, never the event loop's default executor that the rest of the
# process shares; a lookup still waiting for a thread when its time is up is dropped unstarted.
DNS_THREADS = 4
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# RFC 1918, unique local (RFC 4193) and the deprecated site-local IPv6 ranges.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_BINARY_TYPES = {"application/octet-stream", "binary/octet-stream"}


class FetchRefused(Exception):
    """The URL was not fetched as an image. `status` is the HTTP status this means for a client (400, 413,
    415, 422), `code` a stable machine-readable reason, `message` what was wrong, for people.

    `local_network`: refused only because the address is loopback, private, link-local or CGNAT (the
    operator's opt-out would let it through). `redirected_to`: the URL of the hop that failed, when the
    original URL redirected."""

    def __init__(self, status: int, code: str, message: str, *, local_network: bool = False) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.local_network = local_network
        self.redirected_to: str | None = None


@dataclass(frozen=True)
class FetchSettings:
    timeout_s: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    # Lets loopback, private, link-local and CGNAT addresses through (metadata, multicast, reserved and
    # unspecified addresses stay refused): the gateway's tests; an ingest from an internal network.
    allow_private: bool = False
    # The same, only for addresses inside these networks (e.g. an internal object store's subnet).
    allowed_networks: tuple[IPNetwork, ...] = ()
    # Certificate authorities trusted for https URLs (PEM file); None: the certifi bundle.
    ca_file: str | None = None
    # Longest a name lookup may take (each hop's; within the whole fetch's `timeout_s` in any case).
    dns_timeout_s: float = 3.0
    user_agent: str = "artsearch/1.0 (+image fetch by URL)"


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    # The URL the image finally came from, after redirects.
    url: str
    content_type: str | None


@dataclass(frozen=True)
class FetchTarget:
    """A checked, normalised URL (parse_url)."""

    scheme: str
    host: str  # ASCII (IDNA), no brackets
    port: int
    path: str  # path and query, ASCII

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


# --- the address policy --------------------------------------------------------------------------------


def refusal_reason(
    address: str | IPAddress, *, allow_private: bool = False, allowed_networks: Iterable[IPNetwork] = ()
) -> str | None:
    """Why a connection to this address is refused, or None when it is allowed."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = refusal_reason(embedded, allow_private=allow_private, allowed_networks=allowed_networks)
            return f"{reason} (IPv4 {embedded} inside IPv6)" if reason else None
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    local = _local_kind(ip)
    if local is not None:
        allowed = allow_private or any(ip in network for network in allowed_networks)
        return None if allowed else local
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "special-purpose (not globally routable)"
    return None


def _local_kind(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "carrier-grade NAT"
    if any(ip in network for network in _PRIVATE_NETWORKS):
        return "private"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """An IPv4 address an IPv6 one carries (and may be routed to), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


# --- URLs and name resolution --------------------------------------------------------------------------


def parse_url(url: str) -> FetchTarget:
    """Checks and normalises a URL; raises FetchRefused(400, "invalid_url")."""
    if not isinstance(url, str) or not url.strip():
        raise FetchRefused(400, "invalid_url", "the url is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefused(400, "invalid_url", f"the url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise FetchRefused(400, "invalid_url", "the url contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise FetchRefused(400, "invalid_url", f"malformed url: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FetchRefused(
            400, "invalid_url", f"only http and https urls are fetched, not {scheme or 'none'!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise FetchRefused(400, "invalid_url", "urls with credentials are not fetched")
    if port == 0:
        raise FetchRefused(400, "invalid_url", "port 0 is not a valid port")
    host = _ascii_host(parts.hostname or "")
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return FetchTarget(scheme, host, port or _DEFAULT_PORTS[scheme], path)


def _ascii_host(host: str) -> str:
    if not host:
        raise FetchRefused(400, "invalid_url", "the url has no host")
    if "%" in host:
        raise FetchRefused(400, "invalid_url", "IPv6 zone ids are not accepted")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise FetchRefused(400, "invalid_url", f"invalid host name {host!r}") from None


async def vetted_address(
    host: str,
    port: int,
    *,
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
    dns_timeout_s: float = FetchSettings.dns_timeout_s,
) -> str:
    """The address to connect to for `host`: resolved on the lookup threads within `dns_timeout_s`
    (FetchRefused 422 `url_timeout` after); refused (FetchRefused 400) when any address the name resolves
    to is not allowed, so a name cannot mix a public and a private answer."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _resolve(host, port, dns_timeout_s)
    networks = tuple(allowed_networks)
    for address in addresses:
        reason = refusal_reason(address, allow_private=allow_private, allowed_networks=networks)
        if reason is not None:
            shown = host if str(address) == host else f"{host} resolves to {address}, which"
            raise FetchRefused(
                400,
                "url_forbidden",
                f"{shown} is a {reason} address; it is not fetched",
                local_network=refusal_reason(address, allow_private=True) is None,
            )
    return str(addresses[0])


@lru_cache(maxsize=1)
def _dns_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="safe-fetch-dns")


def _getaddrinfo(host: str, port: int) -> list[tuple[typing.Any, ...]]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def _resolve(host: str, port: int, timeout_s: float) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.run_in_executor(_dns_executor(), _getaddrinfo, host, port)
    except TimeoutError:
        raise FetchRefused(
            422, "url_timeout", f"resolving host {host!r} took longer than {timeout_s:g} s"
        ) from None
    except (socket.gaierror, UnicodeError) as error:
        raise FetchRefused(422, "url_unresolvable", f"cannot resolve host {host!r} ({error})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchRefused(422, "url_unresolvable", f"host {host!r} has no address")
    return addresses


# --- fetching ------------------------------------------------------------------------------------------


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to one vetted address whatever host name the request names (Host and SNI keep the name)."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_tcp(
            self._address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@lru_cache(maxsize=4)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or certifi.where())


async def fetch_image(url: str, settings: FetchSettings) -> FetchedImage:
    """Downloads the image at `url` under the policy above; raises FetchRefused."""
    target = parse_url(url)
    redirected_to: str | None = None
    try:
        async with asyncio.timeout(settings.timeout_s):
            for _ in range(settings.max_redirects + 1):
                fetched, location = await _fetch_once(target, settings)
                if fetched is not None:
                    return fetched
                redirected_to = urllib.parse.urljoin(target.url, location)
                target = parse_url(redirected_to)
    except TimeoutError:
        raise FetchRefused(
            422, "url_timeout", f"fetching the url took longer than {settings.timeout_s:g} s"
        ) from None
    except FetchRefused as refused:
        refused.redirected_to = redirected_to
        raise
    raise FetchRefused(422, "too_many_redirects", f"more than {settings.max_redirects} redirects")


async def _fetch_once(target: FetchTarget, settings: FetchSettings) -> tuple[FetchedImage | None, str]:
    """One hop: the image, or (None, the redirect's Location)."""
    address = await vetted_address(
        target.host,
        target.port,
        allow_private=settings.allow_private,
        allowed_networks=settings.allowed_networks,
        dns_timeout_s=settings.dns_timeout_s,
    )
    headers = [
        (b"Host", target.host_header.encode("ascii")),
        (b"User-Agent", settings.user_agent.encode("ascii")),
        (b"Accept", b"image/*"),
        (b"Accept-Encoding", b"identity"),
    ]
    extensions: dict[str, object] = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), None)}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    url = httpcore.URL(scheme=target.scheme, host=target.host, port=target.port, target=target.path)
    pool = httpcore.AsyncConnectionPool(
        ssl_context=_tls_context(settings.ca_file),
        network_backend=_PinnedBackend(address),
        max_connections=1,
        retries=0,
    )
    try:
        async with pool, pool.stream("GET", url, headers=headers, extensions=extensions) as response:
            return await _read_response(response, target, settings)
    except httpcore.TimeoutException:
        raise TimeoutError from None
    except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError, OSError) as error:
        raise FetchRefused(
            422, "url_unreachable", f"could not fetch from {target.host_header}: {type(error).__name__}"
        ) from None


async def _read_response(
    response: httpcore.Response, target: FetchTarget, settings: FetchSettings
) -> tuple[FetchedImage | None, str]:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
    if response.status in _REDIRECTS:
        location = headers.get("location", "").strip()
        if not location:
            raise FetchRefused(422, "url_fetch_failed", f"redirect {response.status} without a Location")
        return None, location
    if not 200 <= response.status < 300:
        raise FetchRefused(422, "url_fetch_failed", f"the server answered HTTP {response.status}")
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower() or None
    if content_type and not (content_type.startswith("image/") or content_type in _BINARY_TYPES):
        raise FetchRefused(415, "unsupported_media_type", f"the url serves {content_type}, not an image")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_bytes:
        raise FetchRefused(413, "too_large", f"the image is larger than {settings.max_bytes} bytes")
    data = await _read_at_most(response, settings.max_bytes)
    if sniff_image_format(data) is None:
        raise FetchRefused(
            415,
            "unsupported_media_type",
            f"the url does not serve an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})",
        )
    return FetchedImage(data, target.url, content_type), ""


async def _read_at_most(response: httpcore.Response, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_stream():
        body += chunk
        if len(body) > max_bytes:
            raise FetchRefused(413, "too_large", f"the image is larger than {max_bytes} bytes")
    return bytes(body)
