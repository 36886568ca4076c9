"""How many CPUs this process may really use: its affinity, capped by a cgroup CPU quota.

In a container `os.cpu_count()` and `os.sched_getaffinity(0)` report the node's cores (64 on a big node)
while `--cpus` / a Kubernetes CPU limit gives the container a quota of, say, one core: a thread pool sized
to the node then runs 64 threads on one core's quota, is throttled, and holds 64 workers' memory at once.
The quota is in `cpu.max` (cgroup v2: "<quota> <period>" or "max <period>") or in `cpu.cfs_quota_us` and
`cpu.cfs_period_us` (cgroup v1, quota -1 for none).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use: its affinity, capped by the cgroup quota rounded up; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The container's CPU quota in CPUs (1.5 for `--cpus 1.5`), or None when there is none or it cannot
    be read."""
    v2 = _read(cgroup_root / "cpu.max")
    if v2 is not None:
        fields = v2.split()
        if len(fields) == 2 and fields[0] != "max":
            return _ratio(fields[0], fields[1])
        return None
    for name in _V1_CPU_DIRS:
        quota = _read(cgroup_root / name / "cpu.cfs_quota_us")
        period = _read(cgroup_root / name / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return _ratio(quota, period)
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # -1: no quota (cgroup v1)
        return None
    return quota_us / period_us


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
