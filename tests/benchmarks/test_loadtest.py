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
    # The fp32 model is served: its raw speed is the fixed yardstick too.
    assert report["model_variant"] == "fp32"
    assert report["fp32_raw_images_per_s"] == report["encoder_raw_images_per_s"]
    assert report["ratio_to_fp32_raw_at_16"] == report["ratio_at_16"]
    # The in-process yardstick ran the same levels, alternating with the stack, without a failure.
    assert set(report["in_process"]) == {"1", "16"}
    assert all(level["errors"] == 0 and level["qps"] > 0 for level in report["in_process"].values())
    assert report["in_process_qps"] == {key: level["qps"] for key, level in report["in_process"].items()}
    in_process_ratio = report["concurrency"]["16"]["qps"] / report["in_process"]["16"]["qps"]
    assert report["ratio_to_in_process_at_16"] == pytest.approx(in_process_ratio, abs=1e-3)
    assert report["single_p50_ratio_to_in_process"] > 0
    assert report["in_process_cpu_ms_per_query"]["16"]["in_process"] > 0


def test_only_calls_inside_the_measured_window_count():
    record = LevelRecord(concurrency=2, measure_from=10.0, measure_until=20.0)
    record.record(9.5, 10.5, RuntimeError("started in the warm-up"))
    record.record(19.5, 20.5, RuntimeError("ended after the window"))
    record.record(11.0, 11.1, RuntimeError("refused"))
    assert (record.completed, record.errors) == (1, 1)
    report = build_report(_settings(), [record], 100.0, {"stored": 1}, 0.5, {})
    assert report["concurrency"]["2"]["qps"] == pytest.approx(0.1)
    assert report["ratio_at_16"] is None and report["errors_total"] == 1


def test_the_report_compares_the_stack_with_the_in_process_yardstick_and_the_fp32_model():
    stack, peer = _level(16, calls=40), _level(16, calls=50)
    stack_single, peer_single = _level(1, calls=10, ms=30.0), _level(1, calls=10, ms=20.0)
    report = build_report(
        _settings(),
        [stack_single, stack],
        100.0,
        {"stored": 1},
        0.5,
        {},
        in_process=[peer_single, peer],
        fp32_raw_images_per_s=50.0,
        model_variant="int8",
    )
    assert report["model_variant"] == "int8" and report["fp32_raw_images_per_s"] == 50.0
    assert report["ratio_at_16"] == pytest.approx(4.0 / 100.0)  # 40 calls in a 10 s window
    assert report["ratio_to_fp32_raw_at_16"] == pytest.approx(4.0 / 50.0)
    assert report["in_process_qps"] == {"1": 1.0, "16": 5.0}
    assert report["ratio_to_in_process_at_16"] == pytest.approx(0.8)
    assert report["single_p50_ratio_to_in_process"] == pytest.approx(1.5)


def _level(concurrency: int, calls: int, ms: float = 10.0) -> LevelRecord:
    """`calls` successful calls of `ms` each inside a 10 s window."""
    record = LevelRecord(concurrency=concurrency, measure_from=0.0, measure_until=10.0)
    record.completed = record.calls = calls
    record.latencies_ms = [ms] * calls
    return record


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
