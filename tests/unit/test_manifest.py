"""URL manifests: parsing (CSV, JSON lines, JSON), and downloads from a real HTTP server on 127.0.0.1 —
http(s) only, size and time limits, non-image content refused."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from artsearch.catalogue.folder import CatalogueError
from artsearch.catalogue.manifest import is_url, load_manifest
from artsearch.image_formats import sniff_image_format as image_format
from artsearch.ingest_download import Downloader, DownloadLimits, DownloadRejected, check_url


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
    }

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            time.sleep(2)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok.png")
            self.end_headers()
            return
        if self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
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


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
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
        "/redirect",
        "/page.html",
        "/lying.png",
        "/big.png",
        "/chunked-big.png",
        "/missing.png",
        "/to-file",
    ]
    limits = DownloadLimits(max_bytes=len(PNG) + 100, timeout_s=5, concurrency=3)
    results = dict(zip(paths, asyncio.run(_fetch_all([server + p for p in paths], limits)), strict=True))
    assert results["/ok.png"] == PNG and results["/octet.png"] == PNG and results["/redirect"] == PNG
    assert results["/page.html"] == "content type 'text/html' is not an image"
    assert results["/lying.png"].startswith("content is not a JPEG, PNG")
    assert "more than the limit" in results["/big.png"]
    assert "larger than the limit" in results["/chunked-big.png"]
    assert results["/missing.png"] == "HTTP 404 Not Found"
    assert results["/to-file"] == "redirected to a URL that is not http or https"


def test_a_slow_server_hits_the_time_limit(server: str):
    started = time.monotonic()
    [result] = asyncio.run(_fetch_all([server + "/slow.png"], DownloadLimits(timeout_s=0.5)))
    assert result == "download took longer than 0.5 s"
    assert time.monotonic() - started < 1.9


def test_a_closed_port_is_a_rejection_not_a_crash():
    [result] = asyncio.run(_fetch_all(["http://127.0.0.1:9/x.png"], DownloadLimits(timeout_s=2)))
    assert isinstance(result, str) and result.startswith("download failed")
