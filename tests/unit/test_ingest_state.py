"""Ingest bookkeeping: the state file survives torn writes, shards split a catalogue exactly, and the
report and progress say what happened."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from artsearch_tools.ingest_progress import LineProgress, format_duration, progress_line
from artsearch_tools.ingest_report import IngestReport
from artsearch_tools.ingest_services import encode_chunks, rejection_reasons
from artsearch_tools.ingest_state import IngestState, Shard, fingerprint, read_state_file, shard_of


def test_recorded_ids_are_read_back_by_a_new_run(tmp_path: Path):
    state = IngestState(tmp_path, "gcompris", "")
    state.record([("a", "fa"), ("b", "fb")])
    state.record([("b", "fb2")])  # a changed artwork: the later line wins
    state.close()
    again = IngestState(tmp_path, "gcompris", "").load()
    assert again.done == {"a": "fa", "b": "fb2"}
    assert again.path.name == "ingest-gcompris--default.jsonl"


def test_a_torn_last_line_is_ignored_and_the_next_write_starts_a_fresh_line(tmp_path: Path):
    state = IngestState(tmp_path, "cat", "main")
    state.record([("a", "fa")])
    state.close()
    with state.path.open("a") as handle:
        handle.write('{"id": "b", "finger')  # the crash happened mid-write
    assert read_state_file(state.path) == {"a": "fa"}
    resumed = IngestState(tmp_path, "cat", "main").load()
    resumed.record([("c", "fc")])
    resumed.close()
    assert read_state_file(state.path) == {"a": "fa", "c": "fc"}
    lines = state.path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"id": "c", "fingerprint": "fc"}


def test_state_is_per_catalogue_and_collection_but_shared_by_shards(tmp_path: Path):
    IngestState(tmp_path, "cat", "", Shard(0, 2)).record([("a", "1")])
    IngestState(tmp_path, "cat", "", Shard(1, 2)).record([("b", "2")])
    IngestState(tmp_path, "cat", "other").record([("c", "3")])
    IngestState(tmp_path, "cat-2", "").record([("d", "4")])
    assert IngestState(tmp_path, "cat", "").load().done == {"a": "1", "b": "2"}
    assert IngestState(tmp_path, "cat", "other").load().done == {"c": "3"}
    assert IngestState(tmp_path, "cat", "", Shard(1, 2)).path.name == "ingest-cat--default.shard-1-of-2.jsonl"


def test_names_cannot_escape_the_state_folder(tmp_path: Path):
    state = IngestState(tmp_path, "../../etc/passwd", "x/y")
    assert state.path.parent == tmp_path
    assert "/" not in state.path.name


def test_shards_cover_every_id_exactly_once():
    ids = [f"artwork-{i}" for i in range(1000)]
    shards = [Shard(index, 3) for index in range(3)]
    owners = [[shard.index for shard in shards if shard.owns(i)] for i in ids]
    assert all(len(owner) == 1 for owner in owners)
    sizes = [sum(owner == [index] for owner in owners) for index in range(3)]
    assert min(sizes) > 250  # roughly even
    assert shard_of("artwork-1", 3) == shard_of("artwork-1", 3)
    assert Shard(0, 1).owns("anything")


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
def test_bad_shards_are_refused(index: int, count: int):
    with pytest.raises(ValueError):
        Shard(index, count)


def test_fingerprint_changes_with_the_record_or_the_image():
    base = fingerprint(b"record", b"image")
    assert fingerprint(b"record", b"image") == base
    assert fingerprint(b"record", b"image2") != base
    assert fingerprint(b"record2", b"image") != base
    assert fingerprint(b"record") != base


def test_report_summary_and_json(tmp_path: Path):
    report = IngestReport("cat", total=5, added=2, updated=1, skipped=1, encoded=3, artists_added=1)
    report.reject("bad-one", "image is 1x1 pixels")
    assert report.processed == 5
    text = report.summary()
    assert "3 artworks stored, 1 rejected, 1 skipped (already stored)" in text
    assert "rejected bad-one: image is 1x1 pixels" in text
    report.write(tmp_path / "out" / "report.json")
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    assert document["stored"] == 3 and document["added"] == 2 and document["skipped"] == 1
    assert document["rejected"] == [{"item": "bad-one", "reason": "image is 1x1 pixels"}]


def test_line_progress_shows_rate_and_eta_at_most_every_interval():
    stream = io.StringIO()
    progress = LineProgress("ingest cat", stream, interval_s=3600)
    progress(1, 10)
    progress(5, 10)  # within the interval: not printed
    progress(10, 10)  # the end is always printed
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("ingest cat: 10/10 (100 %)") and "img/s" in lines[-1]
    assert progress_line("x", 25, 100, 5.0) == "x: 25/100 (25 %), 5.0 img/s, ETA 15s"
    assert format_duration(3725) == "1h02m" and format_duration(125) == "2m05s"


def test_encoder_rejection_messages_name_the_images():
    details = "image 0: empty image data; image 3: image is 1x1 pixels; each side must be at least 8"
    assert rejection_reasons(details) == {
        0: "empty image data",
        3: "image is 1x1 pixels; each side must be at least 8",
    }
    assert rejection_reasons("request has no images") == {}


def test_encode_requests_stay_within_count_and_byte_limits():
    assert encode_chunks([1] * 5, max_images=2, max_bytes=100) == [[0, 1], [2, 3], [4]]
    assert encode_chunks([60, 60, 10, 200, 5], max_images=10, max_bytes=100) == [[0], [1, 2], [3], [4]]
    assert encode_chunks([]) == []
