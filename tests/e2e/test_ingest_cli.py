"""`artsearch ingest` as a process against the four real services: the report, idempotent re-runs, Ctrl-C
and resume without re-encoding, a URL manifest served over HTTP on 127.0.0.1, and sharding.

The catalogue is small: 20 GCompris paintings copied to a temporary folder, one of them credited to an
artist the influence graph does not know, plus a corrupt image and a metadata row naming a missing file.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from artsearch.v1 import influence_pb2, influence_pb2_grpc, search_pb2, search_pb2_grpc
from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports

pytestmark = pytest.mark.slow

PAINTINGS = 20
NEW_ARTIST = "Zyzzyva Testpainter"
CATALOGUE = "smallcat"


@pytest.fixture(scope="module")
def catalogue_dir(gcompris_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalogues") / CATALOGUE
    folder.mkdir()
    with (gcompris_catalogue / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:PAINTINGS]
    for row in rows:
        shutil.copyfile(gcompris_catalogue / row["filename"], folder / row["filename"])
    rows[-1]["artist"] = NEW_ARTIST
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    rows.append({**rows[0], "id": "corrupt", "filename": "corrupt.jpg", "title": "Corrupt"})
    rows.append({**rows[0], "id": "ghost", "filename": "not-there.jpg", "title": "Missing"})
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture(scope="module")
def stack(
    model_path: Path, catalogue_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceStack]:
    settings = StackSettings(
        model_path=model_path,
        image_root=catalogue_dir.parent,
        state_dir=tmp_path_factory.mktemp("stack"),
        ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
    )
    with ServiceStack(settings) as running:
        running.wait_ready(timeout=120)
        yield running


@dataclass
class Ingest:
    status: int
    stdout: str
    stderr: str
    report: dict


def _command(stack: ServiceStack, state_dir: Path, report: Path, *args: str) -> list[str]:
    settings = stack.settings
    return [
        sys.executable,
        "-m",
        "artsearch_tools.cli",
        "ingest",
        *args,
        "--encoder",
        settings.address("encoder"),
        "--search",
        settings.address("search"),
        "--influence",
        settings.address("influence"),
        "--state-dir",
        str(state_dir),
        "--report",
        str(report),
    ]


def ingest(stack: ServiceStack, tmp_path: Path, *args: str, name: str = "report") -> Ingest:
    report = tmp_path / f"{name}.json"
    done = subprocess.run(
        _command(stack, tmp_path / "state", report, *args), capture_output=True, text=True, timeout=240
    )
    assert report.is_file(), done.stdout + done.stderr
    return Ingest(done.returncode, done.stdout, done.stderr, json.loads(report.read_text()))


def count(stack: ServiceStack, collection: str) -> int:
    with grpc.insecure_channel(stack.settings.address("search")) as channel:
        reply = search_pb2_grpc.SearchServiceStub(channel).Count(
            search_pb2.CountRequest(collection=collection), timeout=30
        )
    return reply.count


def reasons(report: dict) -> dict[str, str]:
    return {rejection["item"]: rejection["reason"] for rejection in report["rejected"]}


def test_ingest_reports_and_a_rerun_adds_nothing(stack: ServiceStack, catalogue_dir: Path, tmp_path: Path):
    assert count(stack, "") == 0
    first = ingest(stack, tmp_path, str(catalogue_dir), name="first")
    assert first.status == 0, first.stderr
    report = first.report
    assert (report["total"], report["added"], report["skipped"], report["updated"]) == (22, PAINTINGS, 0, 0)
    assert report["encoded"] == PAINTINGS + 1
    assert set(reasons(report)) == {"corrupt", "not-there.jpg"}
    assert (
        "corrupt.jpg" in reasons(report)["corrupt"] and reasons(report)["not-there.jpg"] == "file not found"
    )
    assert report["artists_added"] >= 1
    assert f"{PAINTINGS} artworks stored, 2 rejected, 0 skipped" in first.stdout
    assert count(stack, "") == PAINTINGS

    again = ingest(stack, tmp_path, str(catalogue_dir), "--json", name="again")
    assert again.status == 0, again.stderr
    assert json.loads(again.stdout) == again.report  # --json: the report itself on stdout, for scripts
    assert (again.report["added"], again.report["updated"], again.report["skipped"]) == (0, 0, PAINTINGS)
    assert again.report["encoded"] == 1  # only the corrupt file, which is never stored
    assert again.report["artists_added"] == 0
    assert count(stack, "") == PAINTINGS


def test_new_artworks_are_searchable_and_new_artists_in_the_graph_without_a_restart(
    stack: ServiceStack, catalogue_dir: Path
):
    # Runs after the first test ingested into the default collection, which the gateway searches.
    rows = list(csv.DictReader((catalogue_dir / "metadata.csv").open(encoding="utf-8")))
    painting = next(row for row in rows if row["artist"] == NEW_ARTIST)
    with httpx.Client(base_url=stack.settings.gateway_url, timeout=60) as gateway:
        image = (catalogue_dir / painting["filename"]).read_bytes()
        answer = gateway.post("/v1/search", params={"k": 3}, files={"image": ("q.jpg", image)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["id"] == painting["id"]
    with grpc.insecure_channel(stack.settings.address("influence")) as channel:
        found = influence_pb2_grpc.InfluenceServiceStub(channel).GetArtists(
            influence_pb2.GetArtistsRequest(names=[NEW_ARTIST]), timeout=30
        )
    assert [artist.name for artist in found.artists] == [NEW_ARTIST]


def test_ctrl_c_saves_progress_and_the_rerun_resumes_without_reencoding(
    stack: ServiceStack, catalogue_dir: Path, tmp_path: Path
):
    report_file = tmp_path / "interrupted.json"
    slow = ["--collection", "resume", "--batch-size", "1", "--concurrency", "1", "--max-rate", "4"]
    command = _command(
        stack, tmp_path / "state", report_file, str(catalogue_dir), *slow, "--progress-interval", "0"
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        for line in process.stderr:
            seen.append(line)
            progress = re.search(r": (\d+)/22 ", line)
            if progress and int(progress.group(1)) >= 6:
                process.send_signal(signal.SIGINT)
                break
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, "".join(seen) + stderr
    assert "Resume with the same command" in stderr and "--collection resume" in stderr
    interrupted = json.loads(report_file.read_text())
    stored = interrupted["added"]
    assert interrupted["interrupted"] is True and 5 <= stored < PAINTINGS, interrupted
    assert count(stack, "resume") == stored
    state_file = Path(interrupted["state_file"])
    assert len(state_file.read_text().splitlines()) == stored

    resumed = ingest(stack, tmp_path, str(catalogue_dir), "--collection", "resume", name="resumed")
    assert resumed.status == 0, resumed.stderr
    assert resumed.report["skipped"] == stored and resumed.report["added"] == PAINTINGS - stored
    assert resumed.report["encoded"] == PAINTINGS - stored + 1  # the rest, and the corrupt file again
    assert count(stack, "resume") == PAINTINGS

    # Without the state file the search service says what is stored: still nothing encoded again.
    state_file.unlink()
    rebuilt = ingest(stack, tmp_path, str(catalogue_dir), "--collection", "resume", name="rebuilt")
    assert (rebuilt.report["skipped"], rebuilt.report["added"], rebuilt.report["encoded"]) == (
        PAINTINGS,
        0,
        1,
    )
    assert len(state_file.read_text().splitlines()) == PAINTINGS


def test_a_changed_image_is_encoded_again(stack: ServiceStack, catalogue_dir: Path, tmp_path: Path):
    copy = tmp_path / CATALOGUE
    shutil.copytree(catalogue_dir, copy)
    assert (
        ingest(stack, tmp_path, str(copy), "--collection", "changes", name="one").report["added"] == PAINTINGS
    )
    rows = list(csv.DictReader((copy / "metadata.csv").open(encoding="utf-8")))
    shutil.copyfile(copy / rows[1]["filename"], copy / rows[0]["filename"])  # same file name, other picture
    again = ingest(stack, tmp_path, str(copy), "--collection", "changes", name="two").report
    assert (again["updated"], again["skipped"], again["encoded"]) == (1, PAINTINGS - 1, 2)
    forced = ingest(stack, tmp_path, str(copy), "--collection", "changes", "--reencode", name="three").report
    assert (forced["updated"], forced["skipped"], forced["encoded"]) == (PAINTINGS, 0, PAINTINGS + 1)
    assert count(stack, "changes") == PAINTINGS


def stored_items(
    stack: ServiceStack, collection: str, ids: list[str]
) -> dict[str, search_pb2.IndexedArtwork]:
    with grpc.insecure_channel(stack.settings.address("search")) as channel:
        reply = search_pb2_grpc.SearchServiceStub(channel).Get(
            search_pb2.GetRequest(collection=collection, ids=ids, with_embeddings=True), timeout=30
        )
    return {item.artwork.id: item for item in reply.items}


def test_without_a_state_file_a_changed_image_is_encoded_again(
    stack: ServiceStack, catalogue_dir: Path, tmp_path: Path
):
    """A new machine (or --no-state) has only what the search service stores to go by: the hash of the
    image stored with each record tells a changed picture under an unchanged record."""
    copy = tmp_path / CATALOGUE
    shutil.copytree(catalogue_dir, copy)
    args = (str(copy), "--collection", "stateless", "--no-state")
    first = ingest(stack, tmp_path, *args, name="one").report
    assert first["added"] == PAINTINGS and first["state_file"] == ""
    rows = list(csv.DictReader((copy / "metadata.csv").open(encoding="utf-8")))
    changed, other = rows[0], rows[1]
    before = stored_items(stack, "stateless", [changed["id"], other["id"]])
    original = (copy / changed["filename"]).read_bytes()
    picture = (copy / other["filename"]).read_bytes()

    (copy / changed["filename"]).write_bytes(picture)  # same file name and metadata, another picture
    again = ingest(stack, tmp_path, *args, name="two").report
    assert (again["updated"], again["skipped"], again["encoded"]) == (1, PAINTINGS - 1, 2)
    after = stored_items(stack, "stateless", [changed["id"]])[changed["id"]]
    assert before[changed["id"]].artwork.extra["image_sha256"] == hashlib.sha256(original).hexdigest()
    assert after.artwork.extra["image_sha256"] == hashlib.sha256(picture).hexdigest()
    # The stored vector is now the other picture's, not the stale one.
    np.testing.assert_allclose(after.embedding.values, before[other["id"]].embedding.values, atol=1e-5)
    assert not np.allclose(after.embedding.values, before[changed["id"]].embedding.values, atol=1e-3)

    settled = ingest(stack, tmp_path, *args, name="three").report
    assert (settled["updated"], settled["skipped"], settled["encoded"]) == (0, PAINTINGS, 1)
    assert count(stack, "stateless") == PAINTINGS


def test_a_record_stored_without_an_image_hash_is_trusted_only_with_the_state_file(
    stack: ServiceStack, catalogue_dir: Path, tmp_path: Path
):
    """Artworks stored before ingest kept image hashes: the state file's fingerprint (record + bytes) still
    vouches for them; without it the image cannot be vouched for, so it is encoded once more."""
    assert ingest(stack, tmp_path, str(catalogue_dir), "--collection", "legacy").report["added"] == PAINTINGS
    legacy_id = next(csv.DictReader((catalogue_dir / "metadata.csv").open(encoding="utf-8")))["id"]
    with grpc.insecure_channel(stack.settings.address("search")) as channel:
        search_pb2_grpc.SearchServiceStub(channel).UpdateArtwork(
            search_pb2.UpdateArtworkRequest(collection="legacy", id=legacy_id, remove_extra=["image_sha256"]),
            timeout=30,
        )
    with_state = ingest(stack, tmp_path, str(catalogue_dir), "--collection", "legacy", name="state").report
    assert (with_state["skipped"], with_state["encoded"]) == (PAINTINGS, 1)
    stateless = ingest(
        stack, tmp_path, str(catalogue_dir), "--collection", "legacy", "--no-state", name="nostate"
    ).report
    assert (stateless["updated"], stateless["skipped"], stateless["encoded"]) == (1, PAINTINGS - 1, 2)
    assert stored_items(stack, "legacy", [legacy_id])[legacy_id].artwork.extra["image_sha256"]


class _CountingHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def image_server(catalogue_dir: Path) -> Iterator[str]:
    (catalogue_dir / "notes.txt").write_text("not an image")
    handler = functools.partial(_CountingHandler, directory=str(catalogue_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_manifest_is_downloaded_checked_and_not_fetched_twice(
    stack: ServiceStack, catalogue_dir: Path, image_server: str, tmp_path: Path
):
    rows = list(csv.DictReader((catalogue_dir / "metadata.csv").open(encoding="utf-8")))[:5]
    lines = [{"url": f"{image_server}/{row['filename']}", "id": f"web-{row['id']}", "title": row["title"]}
             for row in rows]  # fmt: skip
    lines += [
        {"url": f"{image_server}/notes.txt", "id": "web-text"},
        {"url": f"{image_server}/gone.jpg", "id": "web-gone"},
        {"url": "file:///etc/passwd", "id": "web-file"},
    ]
    manifest = tmp_path / "web.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ("--manifest", str(manifest), "--collection", "web")
    # The server is on loopback: without the operator's opt-out every download is refused, item by item.
    _CountingHandler.requests.clear()
    refused = ingest(stack, tmp_path, *args, name="web0")
    assert refused.status == 0, refused.stderr
    assert refused.report["added"] == 0 and refused.report["encoded"] == 0 and _CountingHandler.requests == []
    refused_why = reasons(refused.report)
    assert len(refused_why) == len(lines)
    assert all("127.0.0.1 is a loopback address" in refused_why[f"web-{row['id']}"] for row in rows)
    assert "--allow-private-downloads" in refused_why["web-gone"]
    args += ("--allow-private-downloads",)
    first = ingest(stack, tmp_path, *args, name="web1")
    assert first.status == 0, first.stderr
    assert first.report["added"] == 5 and count(stack, "web") == 5
    why = reasons(first.report)
    assert "not an image" in why["web-text"] and "HTTP 404" in why["web-gone"]
    assert "http or https" in why["file:///etc/passwd"]
    _CountingHandler.requests.clear()
    again = ingest(stack, tmp_path, *args, name="web2")
    assert (again.report["skipped"], again.report["added"], again.report["encoded"]) == (5, 0, 0)
    assert sorted(_CountingHandler.requests) == ["/gone.jpg", "/notes.txt"]  # stored images not fetched again


def test_two_shards_cover_the_catalogue_exactly_once(
    stack: ServiceStack, catalogue_dir: Path, tmp_path: Path
):
    shards = [
        subprocess.Popen(
            _command(
                stack,
                tmp_path / "state",
                tmp_path / f"shard{index}.json",
                str(catalogue_dir),
                "--collection",
                "sharded",
                "--shard-index",
                str(index),
                "--shard-count",
                "2",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    for process in shards:
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr
    reports = [json.loads((tmp_path / f"shard{index}.json").read_text()) for index in range(2)]
    assert all(report["added"] > 0 for report in reports)
    assert sum(report["added"] for report in reports) == PAINTINGS
    assert sum(report["total"] for report in reports) == PAINTINGS + 2
    assert sorted(item for report in reports for item in reasons(report)) == ["corrupt", "not-there.jpg"]
    assert count(stack, "sharded") == PAINTINGS
    assert sorted(path.name for path in (tmp_path / "state").iterdir()) == [
        "ingest-smallcat--sharded.shard-0-of-2.jsonl",
        "ingest-smallcat--sharded.shard-1-of-2.jsonl",
    ]
    whole = ingest(stack, tmp_path, str(catalogue_dir), "--collection", "sharded", "--no-state", name="whole")
    assert (whole.report["skipped"], whole.report["added"]) == (PAINTINGS, 0)


def test_a_service_that_stays_down_stops_the_run_with_status_1(
    stack: ServiceStack, catalogue_dir: Path, tmp_path: Path
):
    [closed_port] = free_ports(1)
    command = _command(
        stack, tmp_path / "state", tmp_path / "down.json", str(catalogue_dir), "--timeout", "2"
    )
    command[command.index("--search") + 1] = f"127.0.0.1:{closed_port}"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "search Get failed: UNAVAILABLE" in done.stderr and "Resume with the same command" in done.stderr
    report = json.loads((tmp_path / "down.json").read_text())
    assert report["added"] == 0 and report["encoded"] == 0
