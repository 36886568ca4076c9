"""`python -m services.search.edge_indexer SHARD_DIR [PARENT_PID]`: build the HNSW indexes of a copy of a
collection's shard folder (its one engine shard, or the artworks' and the region points': edge_files).

Run by `EdgeArtworkStore` as a child process, because `EdgeShard.optimize()` holds the GIL for the whole
build and would freeze the serving process. Runs at low CPU priority so that serving keeps the cores it
needs. Prints one JSON line (what was done) and exits 0, or exits 1 with the error on stderr. The built
copy is fsync'd before the exit, so that once swapped in it is as durable as the shard it replaces.

Given the parent's pid, it dies with the parent: a build orphaned by a killed service would otherwise go on
writing into `shard.building`, which the restarted service clears and copies into again for its own build.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

# Below the serving process: on a shared machine the build takes longer, queries do not.
NICENESS = 10
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def build(shard_dir: str) -> dict[str, object]:
    from services.search.edge_files import engine_shard_folders, fsync_tree

    started = time.monotonic()
    reports = [_optimized(folder) for folder in engine_shard_folders(Path(shard_dir))]
    fsync_tree(Path(shard_dir))
    return {
        "optimized": any(report["optimized"] for report in reports),
        "build_seconds": round(time.monotonic() - started, 2),
        **{
            key: sum(int(report[key]) for report in reports)
            for key in ("points", "indexed_points", "segments")
        },
    }


def _optimized(folder: Path) -> dict[str, int | bool]:
    """Optimises one engine shard; what it did."""
    import qdrant_edge

    shard = qdrant_edge.EdgeShard.load(str(folder))
    try:
        optimized = shard.optimize()
        info = shard.info()
        return {
            "optimized": bool(optimized),
            "points": info.points_count,
            "indexed_points": info.indexed_vectors_count,
            "segments": info.segments_count,
        }
    finally:
        shard.close()


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exits now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        sys.exit(1)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and not argv[1].isdigit()):
        print("usage: python -m services.search.edge_indexer SHARD_DIR [PARENT_PID]", file=sys.stderr)
        return 2
    if len(argv) == 2:
        die_with_parent(int(argv[1]))
    os.nice(NICENESS)
    try:
        report = build(argv[0])
    except Exception as exc:  # the parent reads stderr and keeps its live shard
        print(f"index build of {argv[0]} failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
