"""artsearch.safe_fetch, the SSRF-safe image fetch shared by the gateway and ingest: what it adds to the
gateway's policy (tests/unit/test_image_fetch.py) — operator-allowed networks, refusals that say whether
the opt-out would help and after which redirect they happened — and that the gateway's adapter answers
exactly what the shared module refuses. A real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from artsearch import safe_fetch
from artsearch.safe_fetch import FetchRefused, FetchSettings, fetch_image, refusal_reason, vetted_address
from services.gateway import image_fetch as gateway_fetch
from services.gateway.errors import ApiError

TEN_TWENTY = ipaddress.ip_network("10.20.0.0/16")
TEST_SERVER_ONLY = (ipaddress.ip_network("127.0.0.1/32"),)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


def test_the_shared_module_does_not_import_the_gateway():
    check = (
        "import sys, artsearch.safe_fetch; print(sorted(m for m in sys.modules if m.startswith('services')))"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- operator-allowed networks ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["10.20.0.1", "10.20.255.254", "::ffff:10.20.3.4", "64:ff9b::a14:101"])
def test_an_allowed_network_lets_its_addresses_through(address: str):
    assert refusal_reason(address) is not None
    assert refusal_reason(address, allowed_networks=[TEN_TWENTY]) is None


@pytest.mark.parametrize(
    ("address", "networks", "reason"),
    [
        ("10.21.0.1", ["10.20.0.0/16"], "private"),  # outside the allowed network
        ("127.0.0.1", ["10.20.0.0/16"], "loopback"),
        ("169.254.169.254", ["169.254.0.0/16"], "cloud metadata"),  # metadata: never
        ("::ffff:169.254.169.254", ["169.254.0.0/16"], "cloud metadata"),
        ("100.100.100.200", ["100.64.0.0/10"], "cloud metadata"),
        ("0.0.0.0", ["0.0.0.0/0"], "unspecified"),  # only local kinds are lifted, nothing else
        ("224.0.0.1", ["0.0.0.0/0"], "multicast"),
        ("192.0.2.1", ["192.0.2.0/24"], "special-purpose"),
        ("240.0.0.1", ["240.0.0.0/4"], "reserved"),
    ],
)
def test_allowed_networks_never_open_more_than_local_addresses(
    address: str, networks: list[str], reason: str
):
    found = refusal_reason(address, allowed_networks=[ipaddress.ip_network(n) for n in networks])
    assert found is not None and found.startswith(reason), found


async def test_refusals_say_whether_the_local_network_opt_out_would_help():
    with pytest.raises(FetchRefused) as loopback:
        await vetted_address("127.0.0.1", 80)
    assert (loopback.value.status, loopback.value.code, loopback.value.local_network) == (
        400,
        "url_forbidden",
        True,
    )
    with pytest.raises(FetchRefused) as metadata:
        await vetted_address("169.254.169.254", 80, allow_private=True)
    assert metadata.value.code == "url_forbidden" and metadata.value.local_network is False
    assert await vetted_address("127.0.0.1", 80, allowed_networks=TEST_SERVER_ONLY) == "127.0.0.1"
    with pytest.raises(FetchRefused) as bad:
        safe_fetch.parse_url("gopher://example.com/")
    assert (bad.value.status, bad.value.code, bad.value.local_network) == (400, "invalid_url", False)


# --- a real server, allowed by its address alone ------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    user_agents: list[str] = []

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        self.user_agents.append(self.headers.get("User-Agent", ""))
        port = self.server.server_port
        redirects = {
            "/same-host": "/image.png",
            "/to-private": "http://10.0.0.1/image.png",
            "/to-other-loopback": f"http://127.0.0.2:{port}/image.png",
            "/to-localhost-v6": f"http://[::1]:{port}/image.png",
            "/to-missing": "/missing",
            "/to-ftp": "ftp://example.com/image.png",
        }
        if self.path in redirects:
            self._answer(302, b"", {"Location": redirects[self.path]})
        elif self.path == "/image.png":
            self._answer(200, PNG, {"Content-Type": "image/png"})
        else:
            self._answer(404, b"no", {"Content-Type": "text/plain"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


ONLY_THE_SERVER = FetchSettings(timeout_s=5.0, allowed_networks=TEST_SERVER_ONLY)


async def test_an_allowed_server_is_fetched_and_its_redirects_to_elsewhere_refused(server: str):
    fetched = await fetch_image(f"{server}/same-host", ONLY_THE_SERVER)
    assert fetched.data == PNG and fetched.url == f"{server}/image.png"
    port = server.rsplit(":", 1)[1]
    refused = {
        "/to-private": ("http://10.0.0.1/image.png", "10.0.0.1 is a private address"),
        "/to-other-loopback": (f"http://127.0.0.2:{port}/image.png", "127.0.0.2 is a loopback address"),
        "/to-localhost-v6": (f"http://[::1]:{port}/image.png", "::1 is a loopback address"),
    }
    for path, (location, message) in refused.items():
        with pytest.raises(FetchRefused) as caught:
            await fetch_image(server + path, ONLY_THE_SERVER)
        error = caught.value
        assert (error.status, error.code, error.local_network) == (400, "url_forbidden", True), path
        assert error.message.startswith(message) and error.redirected_to == location, path


async def test_only_failures_after_a_redirect_name_the_redirect(server: str):
    with pytest.raises(FetchRefused) as direct:
        await fetch_image(f"{server}/missing", ONLY_THE_SERVER)
    assert direct.value.code == "url_fetch_failed" and direct.value.redirected_to is None
    with pytest.raises(FetchRefused) as after:
        await fetch_image(f"{server}/to-missing", ONLY_THE_SERVER)
    assert after.value.code == "url_fetch_failed" and after.value.redirected_to == f"{server}/missing"
    with pytest.raises(FetchRefused) as ftp:
        await fetch_image(f"{server}/to-ftp", ONLY_THE_SERVER)
    assert ftp.value.code == "invalid_url" and ftp.value.redirected_to == "ftp://example.com/image.png"


async def test_the_gateway_adapter_answers_what_the_shared_module_refuses(server: str):
    gateway_settings = gateway_fetch.FetchSettings(timeout_s=5.0, allowed_networks=TEST_SERVER_ONLY)
    assert isinstance(gateway_settings, FetchSettings)
    for url in (f"{server}/to-private", f"{server}/missing", "file:///etc/passwd", "http://169.254.169.254/"):
        with pytest.raises(FetchRefused) as shared:
            await fetch_image(url, ONLY_THE_SERVER)
        with pytest.raises(ApiError) as gateway:
            await gateway_fetch.fetch_image(url, gateway_settings)
        expected = (shared.value.status, shared.value.code, shared.value.message)
        assert (gateway.value.status, gateway.value.code, gateway.value.message) == expected, url


async def test_each_caller_names_itself_to_the_server(server: str):
    _Handler.user_agents.clear()
    await fetch_image(f"{server}/image.png", ONLY_THE_SERVER)
    await gateway_fetch.fetch_image(f"{server}/image.png", gateway_fetch.FetchSettings(allow_private=True))
    assert _Handler.user_agents == [
        "artsearch/1.0 (+image fetch by URL)",
        "artsearch-gateway/1.0 (+image search by URL)",
    ]


# --- cloud metadata addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, ...
        "fd00:ec2::254",  # AWS over IPv6
        "169.254.170.2",  # AWS ECS
        "169.254.170.23",  # AWS EKS Pod Identity
        "fd00:ec2::23",
        "fd20:ce::254",  # GCP over IPv6
        "168.63.129.16",  # Azure WireServer: a public address
        "100.100.100.200",  # Alibaba
        "192.0.0.192",  # Oracle
        "fd00:c1::a9fe:a9fe",  # Oracle over IPv6
        "169.254.0.23",  # Tencent
        "::ffff:168.63.129.16",  # inside IPv6
        "64:ff9b::a83f:8110",  # NAT64 of 168.63.129.16
    ],
)
def test_cloud_metadata_addresses_are_refused_whatever_the_operator_allows(address: str):
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    for reason in (
        refusal_reason(address),
        refusal_reason(address, allow_private=True),
        refusal_reason(address, allowed_networks=everything),
    ):
        assert reason is not None and reason.startswith("cloud metadata"), (address, reason)


# --- name lookups: their own deadline, their own threads ----------------------------------------------------


@pytest.fixture
def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fault: every name lookup hangs (as with a resolver that never answers) until the test ends; the
    names asked are recorded."""
    release = threading.Event()
    asked: list[str] = []

    def hang(host: str, *_: object, **__: object) -> list:
        asked.append(host)
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "resolver gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    yield asked
    release.set()


async def test_a_hanging_lookup_ends_at_its_own_deadline_well_within_the_fetch(hanging_dns: list[str]):
    settings = FetchSettings(timeout_s=20.0, dns_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(FetchRefused) as caught:
        await fetch_image("http://slow-dns.example.org/a.png", settings)
    elapsed = time.monotonic() - started
    assert (caught.value.status, caught.value.code) == (422, "url_timeout")
    assert "resolving host 'slow-dns.example.org'" in caught.value.message
    assert elapsed < 2.0, f"the lookup took {elapsed:.1f} s: no deadline of its own"
    assert hanging_dns == ["slow-dns.example.org"]


async def test_many_hanging_lookups_leave_the_shared_threads_free(hanging_dns: list[str]):
    """A burst of URLs whose names never resolve must not take the default executor, which the rest of the
    process (thumbnails, file reads, ...) shares: a small job there still runs at once."""
    settings = FetchSettings(timeout_s=5.0, dns_timeout_s=1.5)
    fetches = [
        asyncio.create_task(fetch_image(f"http://host{n}.slow-dns.example.org/a.png", settings))
        for n in range(40)
    ]
    await asyncio.sleep(0.2)
    started = time.monotonic()
    assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), timeout=5) == 42
    assert time.monotonic() - started < 0.5, "the default executor is held by name lookups"
    outcomes = await asyncio.gather(*fetches, return_exceptions=True)
    assert all(isinstance(o, FetchRefused) and o.code == "url_timeout" for o in outcomes), outcomes
    # Lookups waiting for a lookup thread when their time ran out never started.
    assert len(hanging_dns) <= safe_fetch.DNS_THREADS


def test_the_gateway_reads_the_lookup_deadline_from_its_environment():
    from artsearch.config import ConfigError, Env
    from services.gateway.config import _fetch_settings

    assert _fetch_settings(Env({})).dns_timeout_s == 3.0
    assert _fetch_settings(Env({"URL_FETCH_DNS_TIMEOUT_S": "0.5"})).dns_timeout_s == 0.5
    with pytest.raises(ConfigError, match="URL_FETCH_DNS_TIMEOUT_S"):
        _fetch_settings(Env({"URL_FETCH_DNS_TIMEOUT_S": "soon"}))
