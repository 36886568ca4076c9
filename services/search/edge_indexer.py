"""`python -m services.search.edge_indexer SHARD_DIR`: build the HNSW index of a qdrant-edge shard copy.

Run by `EdgeArtworkStore` as a child process, because `EdgeShard.optimize()` holds the GIL for the whole
build and would freeze the serving process. Runs at low CPU priority so that serving keeps the cores it
needs. Prints one JSON line (what was done) and exits 0, or exits 1 with the error on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time

# Below the serving process: on a shared machine the build takes longer, queries do not.
NICENESS = 10


def build(shard_dir: str) -> dict[str, object]:
    import qdrant_edge

    started = time.monotonic()
    shard = qdrant_edge.EdgeShard.load(shard_dir)
    try:
        optimized = shard.optimize()
        info = shard.info()
        report = {
            "optimized": optimized,
            "build_seconds": round(time.monotonic() - started, 2),
            "points": info.points_count,
            "indexed_points": info.indexed_vectors_count,
            "segments": info.segments_count,
        }
    finally:
        shard.close()
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m services.search.edge_indexer SHARD_DIR", file=sys.stderr)
        return 2
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
