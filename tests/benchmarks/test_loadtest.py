"""The load test in miniature: the real stack, a small collection, two short levels; the report has the
keys `bench/results/loadtest.json` promises and no request failed."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from bench.loadtest import LevelRecord, build_report, child_pids, main

pytestmark = pytest.mark.slow


def test_a_short_run_reports_every_level_without_errors(
    model_path: Path, gcompris_catalogue: Path, tmp_path: Path
):
    output = tmp_path / "loadtest.json"
    argv = ["--model", str(model_path), "--catalogue", str(gcompris_catalogue), "--output", str(output)]
    argv += ["--artworks", "300", "--concurrency", "1", "16", "--seconds", "1.5", "--warmup", "0.5"]
    assert main([*argv, "--raw-seconds", "1"]) == 0
    report = json.loads(output.read_text())
    assert set(report["concurrency"]) == {"1", "16"}
    for level in report["concurrency"].values():
        assert set(level) == {"qps", "p50_ms", "p95_ms", "p99_ms", "errors"}
        assert level["errors"] == 0 and level["qps"] > 0
        assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"]
    assert report["artworks"]["stored"] == 300
    assert report["encoder_raw_images_per_s"] > 0
    ratio = report["concurrency"]["16"]["qps"] / report["encoder_raw_images_per_s"]
    assert report["ratio_at_16"] == pytest.approx(ratio, abs=1e-3)
    assert set(report["single_query"]["stage_p50_ms"]) >= {"encode", "search"}


def test_only_calls_inside_the_measured_window_count():
    record = LevelRecord(concurrency=2, measure_from=10.0, measure_until=20.0)
    record.record(9.5, 10.5, RuntimeError("started in the warm-up"))
    record.record(19.5, 20.5, RuntimeError("ended after the window"))
    record.record(11.0, 11.1, RuntimeError("refused"))
    assert (record.completed, record.errors) == (1, 1)
    report = build_report(_settings(), [record], 100.0, {"stored": 1}, 0.5, {})
    assert report["concurrency"]["2"]["qps"] == pytest.approx(0.1)
    assert report["ratio_at_16"] is None and report["errors_total"] == 1


def _settings():
    from bench.loadtest import LoadSettings

    return LoadSettings(model_path=Path("m"), catalogue_dir=Path("c"), output=Path("o"))


def test_child_pids_sees_a_child_started_from_another_thread():
    started: list[subprocess.Popen] = []
    thread = threading.Thread(target=lambda: started.append(subprocess.Popen(["sleep", "5"])))
    thread.start()
    thread.join()
    try:
        assert started[0].pid in child_pids(os.getpid())
    finally:
        started[0].kill()
        started[0].wait()
    assert started[0].pid not in child_pids(os.getpid())
