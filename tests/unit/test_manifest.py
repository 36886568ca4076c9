"""URL manifests: parsing (CSV, JSON lines, JSON), and downloads from a real HTTP server on 127.0.0.1 —
http(s) only, size and time limits, non-image content refused, and the gateway's SSRF policy: local and
metadata addresses refused per item (also after a redirect) unless the operator allows local networks."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from artsearch.image_formats import sniff_image_format as image_format
from artsearch_tools.catalogue.folder import CatalogueError
from artsearch_tools.catalogue.manifest import is_url, load_manifest
from artsearch_tools.ingest_cli import _options as ingest_options
from artsearch_tools.ingest_download import Downloader, DownloadLimits, DownloadRejected, check_url


def png_bytes(size: int = 32, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, "PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------


def test_csv_manifest_rows_become_entries_and_bad_rows_problems(tmp_path: Path):
    manifest = tmp_path / "museum.csv"
    manifest.write_text(
        "url,id,title,artist,date,museum\n"
        "https://example.org/a/starry-night.jpg,vg-1,The Starry Night,Vincent van Gogh,1889,MoMA\n"
        "https://example.org/b/1.jpg,,,,,\n"
        "ftp://example.org/c.jpg,x,,,,\n"
        ",y,,,,\n"
        "https://example.org/d.jpg,z,,,no date here,\n"
        "https://example.org/e.jpg,vg-1,,,,\n"
    )
    catalogue = load_manifest(manifest)
    assert catalogue.name == "museum"
    first, second = catalogue.entries
    assert (first.id, first.title, first.artist, first.year) == (
        "vg-1",
        "The Starry Night",
        "Vincent van Gogh",
        1889,
    )
    assert first.filename == "https://example.org/a/starry-night.jpg"
    assert first.extra == {"museum": "MoMA"}
    assert second.id.startswith("1-") and second.title == "1"  # stem plus a hash of the URL
    reasons = {problem.row: problem.reason for problem in catalogue.problems}
    assert reasons == {
        3: "url must be an absolute http or https URL",
        4: "no url",
        5: "bad year 'no date here'",
        6: "duplicate id 'vg-1'",
    }


def test_jsonl_and_json_manifests(tmp_path: Path):
    lines = [
        {"url": "http://127.0.0.1/x.png", "title": "X", "year": 1900, "tags": ["a", "b"]},
        "not an object",
        {"image_url": "https://example.org/y.webp", "id": "y"},
    ]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n{broken\n")
    catalogue = load_manifest(jsonl, name="mine")
    assert catalogue.name == "mine"
    assert [entry.title for entry in catalogue.entries] == ["X", "y"]
    assert catalogue.entries[0].year == 1900 and catalogue.entries[0].extra == {"tags": '["a", "b"]'}
    assert [problem.reason for problem in catalogue.problems] == ["no url", "no url"]
    as_json = tmp_path / "m.json"
    as_json.write_text(json.dumps([line for line in lines if isinstance(line, dict)]))
    assert [entry.id for entry in load_manifest(as_json).entries] == [catalogue.entries[0].id, "y"]


def test_unreadable_manifests_are_errors(tmp_path: Path):
    with pytest.raises(CatalogueError, match="does not exist"):
        load_manifest(tmp_path / "missing.csv")
    no_url = tmp_path / "m.csv"
    no_url.write_text("filename,title\na.jpg,A\n")
    with pytest.raises(CatalogueError, match="no image column"):
        load_manifest(no_url)
    other = tmp_path / "m.txt"
    other.write_text("http://x/y.jpg\n")
    with pytest.raises(CatalogueError, match=r"\.csv, \.jsonl or \.json"):
        load_manifest(other)


def test_url_checks_and_image_sniffing():
    assert is_url("https://a/b.jpg") and is_url("HTTP://a/b.jpg") and not is_url("a/b.jpg")
    for bad in ("file:///etc/passwd", "ftp://host/x.jpg", "relative/x.jpg", "http:///nohost.jpg"):
        with pytest.raises(DownloadRejected):
            check_url(bad)
    assert image_format(png_bytes()[:16]) == "PNG"
    assert image_format(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert image_format(b"<html><body>") is None


# --------------------------------------------------------------------------------------------------
# Downloads from a real local server
# --------------------------------------------------------------------------------------------------

PNG = png_bytes()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {
        "/ok.png": (200, "image/png", PNG),
        "/octet.png": (200, "application/octet-stream", PNG),
        "/page.html": (200, "text/html", b"<html>not an image</html>"),
        "/lying.png": (200, "image/png", b"<html>not an image either</html>"),
        "/big.png": (200, "image/png", PNG + b"\0" * 5000),
        "/my%20painting.png": (200, "image/png", PNG),
    }
    redirects: dict[str, str] = {
        "/redirect": "/ok.png",
        "/to-file": "file:///etc/passwd",
        "/to-private": "http://10.0.0.1/ok.png",
        "/to-other-loopback": "http://127.0.0.2:{port}/ok.png",
        "/to-mapped-loopback": "http://[::ffff:127.0.0.2]:{port}/ok.png",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
    }

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            time.sleep(2)
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path].format(port=self.server.server_port))
            self.end_headers()
            return
        if self.path == "/chunked-big.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()  # no Content-Length: the limit applies while reading
            self.wfile.write(PNG + b"\0" * 5000)
            return
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"no such thing"))
        if self.path == "/slow.png":
            status, content_type, body = 200, "image/png", PNG
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the downloader hangs up on oversize and slow answers on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def _fetch_all(urls: list[str], limits: DownloadLimits) -> list[bytes | str]:
    async with Downloader(limits) as downloader:

        async def one(url: str) -> bytes | str:
            try:
                return await downloader.fetch(url)
            except DownloadRejected as rejection:
                return rejection.reason

        return await asyncio.gather(*(one(url) for url in urls))


def test_downloads_keep_images_and_refuse_everything_else(server: str):
    paths = [
        "/ok.png",
        "/octet.png",
        "/my painting.png",
        "/redirect",
        "/page.html",
        "/lying.png",
        "/big.png",
        "/chunked-big.png",
        "/missing.png",
        "/to-file",
    ]
    limits = DownloadLimits(
        max_bytes=len(PNG) + 100, timeout_s=5, concurrency=3, allow_private_addresses=True
    )
    results = dict(zip(paths, asyncio.run(_fetch_all([server + p for p in paths], limits)), strict=True))
    assert results["/ok.png"] == PNG and results["/octet.png"] == PNG and results["/redirect"] == PNG
    assert results["/my painting.png"] == PNG  # a space left unencoded in a manifest is sent as %20
    assert results["/page.html"] == "the url serves text/html, not an image"
    assert results["/lying.png"].startswith("the url does not serve an image in an accepted format (JPEG")
    assert results["/big.png"] == f"the image is larger than {len(PNG) + 100} bytes"
    assert results["/chunked-big.png"] == f"the image is larger than {len(PNG) + 100} bytes"
    assert results["/missing.png"] == "the server answered HTTP 404"
    assert (
        results["/to-file"]
        == "redirected to file:///etc/passwd: only http and https urls are fetched, not 'file'"
    )


def test_a_slow_server_hits_the_time_limit(server: str):
    started = time.monotonic()
    limits = DownloadLimits(timeout_s=0.5, allow_private_addresses=True)
    [result] = asyncio.run(_fetch_all([server + "/slow.png"], limits))
    assert result == "fetching the url took longer than 0.5 s"
    assert time.monotonic() - started < 1.9


def test_a_closed_port_is_a_rejection_not_a_crash():
    limits = DownloadLimits(timeout_s=2, allow_private_addresses=True)
    [result] = asyncio.run(_fetch_all(["http://127.0.0.1:9/x.png"], limits))
    assert isinstance(result, str) and result.startswith("could not fetch from 127.0.0.1:9")


# --------------------------------------------------------------------------------------------------
# The SSRF policy: what a manifest may point at
# --------------------------------------------------------------------------------------------------

OPT_OUT_HINT = "an operator may allow local networks: --allow-private-downloads or --allow-download-network"


def test_local_and_metadata_urls_in_a_manifest_are_rejected_one_by_one(server: str, tmp_path: Path):
    port = server.rsplit(":", 1)[1]
    urls = {
        "loopback": f"{server}/ok.png",
        "private": "http://10.1.2.3/art.png",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/ok.png",
        "by-name": f"http://localhost:{port}/ok.png",
    }
    manifest = tmp_path / "internal.jsonl"
    manifest.write_text("".join(json.dumps({"url": url, "id": key}) + "\n" for key, url in urls.items()))
    entries = load_manifest(manifest).entries
    results = asyncio.run(_fetch_all([entry.filename for entry in entries], DownloadLimits(timeout_s=5)))
    why = dict(zip((entry.id for entry in entries), results, strict=True))
    assert why["loopback"] == f"127.0.0.1 is a loopback address; it is not fetched; {OPT_OUT_HINT}"
    assert why["private"] == f"10.1.2.3 is a private address; it is not fetched; {OPT_OUT_HINT}"
    # Metadata is never fetched, so no hint to allow it.
    assert why["metadata"] == "169.254.169.254 is a cloud metadata address; it is not fetched"
    # The host is shown as normalised (::ffff:7f00:1), with the IPv4 address it hides.
    assert why["mapped"] == (
        f"::ffff:7f00:1 is a loopback (IPv4 127.0.0.1 inside IPv6) address; it is not fetched; {OPT_OUT_HINT}"
    )
    assert why["by-name"].startswith("localhost resolves to ") and "loopback" in why["by-name"]


def test_the_opt_out_allows_local_networks_but_never_metadata(server: str):
    opted_out = DownloadLimits(timeout_s=5, allow_private_addresses=True)
    urls = [f"{server}/ok.png", "http://169.254.169.254/latest/meta-data/", f"{server}/to-metadata"]
    image, metadata, redirected = asyncio.run(_fetch_all(urls, opted_out))
    assert image == PNG
    assert metadata == "169.254.169.254 is a cloud metadata address; it is not fetched"
    assert redirected == f"redirected to http://169.254.169.254/latest/meta-data/: {metadata}"


def test_a_redirect_from_an_allowed_server_to_a_private_address_is_refused(server: str):
    # Only the test server's address is allowed: every hop is vetted again, so its redirects elsewhere fail.
    limits = DownloadLimits(timeout_s=5, allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    port = server.rsplit(":", 1)[1]
    paths = ["/ok.png", "/redirect", "/to-private", "/to-other-loopback", "/to-mapped-loopback"]
    results = dict(zip(paths, asyncio.run(_fetch_all([server + p for p in paths], limits)), strict=True))
    assert results["/ok.png"] == PNG and results["/redirect"] == PNG
    assert results["/to-private"] == (
        "redirected to http://10.0.0.1/ok.png: 10.0.0.1 is a private address; it is not fetched; "
        + OPT_OUT_HINT
    )
    assert results["/to-other-loopback"] == (
        f"redirected to http://127.0.0.2:{port}/ok.png: 127.0.0.2 is a loopback address; it is not fetched; "
        f"{OPT_OUT_HINT}"
    )
    assert results["/to-mapped-loopback"].startswith(
        f"redirected to http://[::ffff:127.0.0.2]:{port}/ok.png: ::ffff:7f00:2 is a loopback (IPv4 127.0.0.2 "
    )


def test_ingest_flags_become_the_download_policy():
    from artsearch_tools.cli import build_parser

    parser = build_parser()

    def limits(*flags: str) -> DownloadLimits:
        args = parser.parse_args(["ingest", "--manifest", "m.jsonl", "--no-state", *flags])
        return ingest_options(args).download

    default = limits()
    assert default.allow_private_addresses is False and default.allowed_networks == ()
    assert limits("--allow-private-downloads").allow_private_addresses is True
    networks = limits("--allow-download-network", "10.20.0.0/16", "--allow-download-network", "fd00::1/64")
    assert networks.allowed_networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd00::/64"),
    )
    assert networks.allow_private_addresses is False
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "--allow-download-network", "not-a-network"])
