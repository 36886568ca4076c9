"""available_cpus: the process's affinity, capped by a cgroup CPU quota (v2 cpu.max, v1 cfs quota/period),
read from a fake cgroup tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artsearch.cpu_quota import available_cpus, cgroup_cpu_quota

AFFINITY = len(os.sched_getaffinity(0))


def v2(root: Path, cpu_max: str) -> Path:
    (root / "cpu.max").write_text(f"{cpu_max}\n")
    return root


def v1(root: Path, quota: int, period: int = 100_000, folder: str = "cpu,cpuacct") -> Path:
    (root / folder).mkdir()
    (root / folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "quota"), [("150000 100000", 1.5), ("50000 100000", 0.5), ("max 100000", None)]
)
def test_cgroup_v2_quota(tmp_path, cpu_max, quota):
    assert cgroup_cpu_quota(v2(tmp_path, cpu_max)) == quota


@pytest.mark.parametrize(("quota_us", "quota"), [(200_000, 2.0), (-1, None)])
@pytest.mark.parametrize("folder", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota(tmp_path, quota_us, quota, folder):
    assert cgroup_cpu_quota(v1(tmp_path, quota_us, folder=folder)) == quota


def test_no_cgroup_files_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == AFFINITY


def test_a_quota_caps_the_affinity_rounded_up_and_never_below_one(tmp_path):
    assert available_cpus(v2(tmp_path, "50000 100000")) == 1
    assert available_cpus(v2(tmp_path, f"{100_000 * (AFFINITY + 4)} 100000")) == AFFINITY
    if AFFINITY >= 2:
        assert available_cpus(v2(tmp_path, "150000 100000")) == 2


def test_garbage_is_no_quota(tmp_path):
    assert cgroup_cpu_quota(v2(tmp_path, "lots 100000")) is None
