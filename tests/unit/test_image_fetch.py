"""Fetching an image by URL: the address policy, URL checks, and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from services.gateway.errors import ApiError
from services.gateway.image_fetch import FetchSettings, fetch_image, parse_url, refusal_reason, vetted_address


def png(size: tuple[int, int] = (16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, "PNG")
    return buffer.getvalue()


PNG = png()

# --- the address policy ----------------------------------------------------------------------------------

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "fec0::1": "private",  # deprecated site-local
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "169.254.169.254": "cloud metadata",
    "fd00:ec2::254": "cloud metadata",
    "169.254.170.2": "cloud metadata",
    "100.100.100.200": "cloud metadata",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.2.1": "special-purpose",  # documentation
    "198.18.0.1": "special-purpose",  # benchmarking
    "2001:db8::1": "special-purpose",
}
EMBEDDED = {
    "::ffff:127.0.0.1": "loopback",
    "::ffff:7f00:1": "loopback",
    "::ffff:169.254.169.254": "cloud metadata",
    "::ffff:10.0.0.1": "private",
    "::ffff:0.0.0.0": "unspecified",
    "::127.0.0.1": "loopback",  # IPv4-compatible
    "64:ff9b::a9fe:a9fe": "cloud metadata",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1": "loopback",
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1": "cloud metadata",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "loopback",  # Teredo, client 127.0.0.1 (obfuscated)
}
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "2606:4700::1111",
           "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]  # fmt: skip


@pytest.mark.parametrize(("address", "reason"), sorted({**REFUSED, **EMBEDDED}.items()))
def test_refused_addresses(address: str, reason: str):
    found = refusal_reason(address)
    assert found is not None and found.startswith(reason), (address, found)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str):
    assert refusal_reason(address) is None


def test_allow_private_lets_local_networks_through_but_never_metadata_or_unspecified():
    for address in (
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "192.168.0.7",
        "100.64.1.1",
        "fe80::1",
        "::ffff:127.0.0.1",
    ):
        assert refusal_reason(address, allow_private=True) is None, address
    for address in (
        "169.254.169.254",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "0.0.0.0",
        "::",
        "224.0.0.1",
    ):
        assert refusal_reason(address, allow_private=True) is not None, address


@pytest.mark.parametrize(
    "host", ["localhost", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "017700000001", "0.0.0.0"]
)
async def test_host_spellings_resolve_before_the_check(host: str):
    # Decimal, octal and short IPv4 spellings: whatever the resolver makes of them is what gets checked.
    with pytest.raises(ApiError) as caught:
        await vetted_address(host, 80)
    assert caught.value.status == 400 and caught.value.code == "url_forbidden"


async def test_ip_literals_are_checked_without_dns():
    assert await vetted_address("127.0.0.1", 80, allow_private=True) == "127.0.0.1"
    with pytest.raises(ApiError, match="cloud metadata"):
        await vetted_address("169.254.169.254", 80, allow_private=True)


async def test_unresolvable_host_is_422():
    with pytest.raises(ApiError) as caught:
        await vetted_address("no-such-host.invalid", 80)
    assert caught.value.status == 422 and caught.value.code == "url_unresolvable"


# --- URL checks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://example.com/",
        "javascript:alert(1)",
        "//example.com/a.png",
        "http://user:secret@example.com/a.png",
        "http://exa mple.com/a.png",
        "http://example.com:99999/a.png",
        "http://example.com:0/",
        "http:///a.png",
        "http://[fe80::1%25eth0]/",
        "http://example.com/" + "a" * 3000,
    ],
)
def test_bad_urls_are_400(url: str):
    with pytest.raises(ApiError) as caught:
        parse_url(url)
    assert caught.value.status == 400 and caught.value.code == "invalid_url"


def test_urls_are_normalised():
    target = parse_url("HTTPS://Exämple.COM/bild%20ä.png?q=ü#frag")
    assert (target.scheme, target.host, target.port) == ("https", "xn--exmple-cua.com", 443)
    assert target.path == "/bild%20%C3%A4.png?q=%C3%BC"
    assert parse_url("http://[::1]:8080/x").host_header == "[::1]:8080"


# --- a real HTTP server ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        routes = {
            "/image.png": lambda: self._send(200, PNG, "image/png"),
            "/untyped": lambda: self._send(200, PNG, None),
            "/hop1": lambda: self._redirect("/hop2"),
            "/hop2": lambda: self._redirect(f"http://127.0.0.1:{self.server.server_port}/image.png"),
            "/loop": lambda: self._redirect("/loop"),
            "/to-metadata": lambda: self._redirect("http://169.254.169.254/latest/meta-data/"),
            "/to-unspecified": lambda: self._redirect(f"http://0.0.0.0:{self.server.server_port}/image.png"),
            "/to-file": lambda: self._redirect("file:///etc/passwd"),
            "/big": lambda: self._send(200, PNG + b"\0" * 50_000, "image/png"),
            "/big-chunked": self._chunked,
            "/slow": self._slow,
            "/html": lambda: self._send(200, b"<html>hello</html>", "text/html"),
            "/fake": lambda: self._send(200, b"<html>not really</html>", "image/png"),
            "/missing": lambda: self._send(404, b"no", "text/plain"),
        }
        routes.get(self.path.split("?")[0], routes["/missing"])()

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _chunked(self) -> None:
        # No Content-Length: the limit must cut the stream itself.
        self.protocol_version = "HTTP/1.1"
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = PNG + b"\0" * 8192
        for _ in range(20):
            self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _slow(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(PNG[:10])
        self.wfile.flush()
        time.sleep(2)
        self.wfile.write(PNG[10:])


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the fetcher hangs up on oversize and slow answers on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


LOCAL = FetchSettings(timeout_s=5.0, max_bytes=20_000, allow_private=True)


async def test_loopback_is_refused_by_default(server: str):
    with pytest.raises(ApiError) as caught:
        await fetch_image(f"{server}/image.png", FetchSettings())
    assert caught.value.status == 400 and caught.value.code == "url_forbidden"
    localhost = server.replace("127.0.0.1", "localhost")
    with pytest.raises(ApiError, match=r"resolves to (127\.0\.0\.1|::1)"):
        await fetch_image(f"{localhost}/image.png", FetchSettings())


async def test_an_image_is_fetched_when_private_addresses_are_allowed(server: str):
    fetched = await fetch_image(f"{server}/image.png", LOCAL)
    assert fetched.data == PNG and fetched.content_type == "image/png"
    untyped = await fetch_image(f"{server}/untyped", LOCAL)
    assert untyped.data == PNG and untyped.content_type is None


async def test_the_host_header_names_the_host_not_the_address(server: str):
    # Connecting to the vetted address still sends the name the client gave (virtual hosting, TLS SNI).
    port = server.rsplit(":", 1)[1]
    fetched = await fetch_image(f"http://localhost:{port}/image.png", LOCAL)
    assert fetched.url == f"http://localhost:{port}/image.png" and fetched.data == PNG


async def test_redirects_are_followed_and_rechecked(server: str):
    fetched = await fetch_image(f"{server}/hop1", LOCAL)
    assert fetched.data == PNG and fetched.url == f"{server}/image.png"
    for path, code in [("/to-metadata", "url_forbidden"), ("/to-unspecified", "url_forbidden"),
                       ("/to-file", "invalid_url"), ("/loop", "too_many_redirects")]:  # fmt: skip
        with pytest.raises(ApiError) as caught:
            await fetch_image(f"{server}{path}", LOCAL)
        assert caught.value.code == code, path
    with pytest.raises(ApiError, match="more than 1 redirects"):
        await fetch_image(f"{server}/hop1", FetchSettings(max_redirects=1, allow_private=True))


async def test_oversize_is_refused_declared_or_streamed(server: str):
    for path in ("/big", "/big-chunked"):
        with pytest.raises(ApiError) as caught:
            await fetch_image(f"{server}{path}", LOCAL)
        assert caught.value.status == 413 and caught.value.code == "too_large", path


async def test_a_slow_server_times_out(server: str):
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        await fetch_image(f"{server}/slow", FetchSettings(timeout_s=0.5, allow_private=True))
    assert caught.value.status == 422 and caught.value.code == "url_timeout"
    assert time.monotonic() - started < 1.5


async def test_non_images_and_http_errors(server: str):
    expected = {"/html": (415, "unsupported_media_type"), "/fake": (415, "unsupported_media_type"),
                "/missing": (422, "url_fetch_failed")}  # fmt: skip
    for path, (status, code) in expected.items():
        with pytest.raises(ApiError) as caught:
            await fetch_image(f"{server}{path}", LOCAL)
        assert (caught.value.status, caught.value.code) == (status, code), path


async def test_a_closed_port_is_unreachable():
    from artsearch_tools.launcher import free_ports

    (port,) = free_ports(1)
    with pytest.raises(ApiError) as caught:
        await fetch_image(f"http://127.0.0.1:{port}/x.png", LOCAL)
    assert caught.value.code == "url_unreachable"


# --- https: the connection goes to the vetted address, TLS checks the name -------------------------------

# A test CA and a certificate for DNS:localhost only, valid until 2126 (openssl, EC P-256).
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBnzCCAUWgAwIBAgIUEJvIN4f6Du4rWiij9S/yC97v4twwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRYXJ0c2VhcmNoIHRlc3QgQ0EwIBcNMjYxMTI5MjMxNDIyWhgP
MjEyNjExMDUyMzE0MjJaMBwxGjAYBgNVBAMMEWFydHNlYXJjaCB0ZXN0IENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEcRlusLK08mv0KGB/6tvmvRnOBObVTSX2
/q3z+ue9SKfoVFlGgdQRq/radxfeBa6Tqjcvk47PnKElE46XpHjsZ6NjMGEwHQYD
VR0OBBYEFE/tXMaerhkBO6jaYOzHAVmcD8LIMB8GA1UdIwQYMBaAFE/tXMaerhkB
O6jaYOzHAVmcD8LIMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoG
CCqGSM49BAMCA0gAMEUCIGHxGy5Sn4f2e4/Ms3EFFFSR4MXhCeJqqIy67JoB+ecm
AiEAo23Txr2Dp7gDIxwyMgJkEZ26BuXJa3In0HQ+KqY4NKY=
-----END CERTIFICATE-----
"""
LOCALHOST_CERT = """-----BEGIN CERTIFICATE-----
MIIBrDCCAVKgAwIBAgIUbNm3Djg2Tcpbs7dBwPA6NDHV0q4wCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRYXJ0c2VhcmNoIHRlc3QgQ0EwIBcNMjYxMTI5MjMxNDIyWhgP
MjEyNjExMDUyMzE0MjJaMBQxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABMoLcCevUTF1Ik+kxQ8OizYg0/X78TxUNCcBBNtCnQUr
1adnmkCeRlQ35TVvSZpyHmbCsCVbC8n//9PX2rPF4gWjeDB2MBQGA1UdEQQNMAuC
CWxvY2FsaG9zdDAJBgNVHRMEAjAAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMB0GA1Ud
DgQWBBTTrw3W1gGe5q1bQwDCcJuCn1uffTAfBgNVHSMEGDAWgBRP7VzGnq4ZATuo
2mDsxwFZnA/CyDAKBggqhkjOPQQDAgNIADBFAiA6mnAaM240jq/8269kfRn0UbBP
Ch53AFUfYUzEIIUGnQIhAPQzrh5WqkBlM1BQFr+Lu6cgV+1zBvhyP///2QnlQr3A
-----END CERTIFICATE-----
"""
LOCALHOST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjiCvjTC4MpNXZTyi
tB/zfReXOrUiWQ66megMkcnu/x+hRANCAATKC3Anr1ExdSJPpMUPDos2INP1+/E8
VDQnAQTbQp0FK9WnZ5pAnkZUN+U1b0mach5mwrAlWwvJ///T19qzxeIF
-----END PRIVATE KEY-----
"""


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[str]]]:
    """An https server on 127.0.0.1 with the localhost certificate; yields (port, CA file, SNI names seen)."""
    folder = tmp_path_factory.mktemp("tls")
    for name, text in (("ca.pem", TEST_CA), ("cert.pem", LOCALHOST_CERT), ("key.pem", LOCALHOST_KEY)):
        (folder / name).write_text(text)
    seen: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    context.sni_callback = lambda _sock, name, _ctx: seen.append(name)
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield str(httpd.server_port), str(folder / "ca.pem"), seen
    httpd.shutdown()
    httpd.server_close()


async def test_https_sends_the_name_and_verifies_it_while_connecting_to_the_vetted_address(tls_server):
    port, ca_file, seen = tls_server
    trusted = FetchSettings(timeout_s=5.0, allow_private=True, ca_file=ca_file)
    fetched = await fetch_image(f"https://localhost:{port}/image.png", trusted)
    assert fetched.data == PNG and seen[-1] == "localhost"
    # The same server by address: the certificate does not name 127.0.0.1, so TLS refuses it.
    with pytest.raises(ApiError) as by_address:
        await fetch_image(f"https://127.0.0.1:{port}/image.png", trusted)
    assert by_address.value.code == "url_unreachable"
    # An untrusted certificate is refused too (the default bundle does not know the test CA).
    with pytest.raises(ApiError) as untrusted:
        await fetch_image(
            f"https://localhost:{port}/image.png", FetchSettings(timeout_s=5.0, allow_private=True)
        )
    assert untrusted.value.code == "url_unreachable"
