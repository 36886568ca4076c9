"""What a picture sent again costs: the web UI sends the same picture when a weight slider moves, a client
asks for page 2 with the same upload. The four services run as processes on their embedded defaults with the
demo catalogue ingested (regions included, as `artsearch ingest` makes them); each of --photos visitor photos
of the demo paintings (every kind, development seeds) is searched once, then again with other aspect weights,
then with those weights by the `picture_id` the first answer gave (what the web UI sends when a slider moves:
no upload), then again with those weights through a gateway whose picture cache is off
(`QUERY_CACHE_ENTRIES=0`, the same services: the yardstick, measured in the same run, alternating). Reports
the medians and the ratios.

    python -m bench.repeated_query [--photos 60]

Writes bench/results/repeated_query.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.evaluation.visitor_photos import DEVELOPMENT_SEEDS, VISITOR_KINDS
from artsearch_tools.evaluation.visitor_search import PhotoQuery, prepare_photos, search_photo
from artsearch_tools.ingest import IngestTargets, ingest_catalogue
from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports
from bench.visitor_photos import REPO_ROOT, code_version

REWEIGHTED = {"w_content": "0.2", "w_style": "0.5", "w_colour": "0.3"}


def timed_search(client: httpx.Client, url: str, photo: PhotoQuery, params: dict[str, str]) -> float:
    """One search as a client sends it (visitor_search.search_photo); its wall time in ms."""
    outcome = search_photo(client, url, photo, {"k": "10", **params})
    if outcome.error is not None:
        raise SystemExit(f"search failed: {outcome.error}")
    return outcome.latency_ms


def timed_by_picture_id(client: httpx.Client, url: str, photo: PhotoQuery, params: dict[str, str]) -> float:
    """The photo searched again by its picture_id (JSON body, no upload); its wall time in ms. The id is the
    one the photo's first answer gave (SHA-256 of its bytes, analysed: services/gateway/query_cache.py);
    checked against the answer's own."""
    picture_id = hashlib.sha256(photo.path.read_bytes()).hexdigest() + "-a"
    started = time.perf_counter()
    reply = client.post(f"{url}/v1/search", json={"picture_id": picture_id, "k": 10, **params})
    elapsed = (time.perf_counter() - started) * 1000
    if reply.status_code != 200 or reply.json().get("picture_id") != picture_id:
        raise SystemExit(f"search by picture_id failed: HTTP {reply.status_code}: {reply.text[:200]}")
    return elapsed


@contextlib.contextmanager
def second_gateway(settings: StackSettings, port: int) -> Iterator[ServiceStack]:
    """Only a gateway, picture cache off, over the running encoder, search and influence."""
    ports = {**settings.ports, "gateway": port}
    env = {**settings.extra_env, "QUERY_CACHE_ENTRIES": "0"}
    gateway = ServiceStack(
        StackSettings(settings.model_path, settings.state_dir / "plain", ports=ports, extra_env=env)
    )
    gateway.start(services=("gateway",))
    try:
        yield gateway
    finally:
        gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--catalogue", type=Path, default=REPO_ROOT / "data/catalogues/gcompris")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache/visitor-photos")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/repeated_query.json")
    args = parser.parse_args(argv)
    catalogue = load_catalogue(args.catalogue)
    photos = prepare_photos(catalogue, DEVELOPMENT_SEEDS, VISITOR_KINDS, args.cache_dir)
    photos = photos[:: max(1, len(photos) // args.photos)][: args.photos]
    first, repeated, by_id, uncached = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="artsearch-repeated-") as state:
        ports = free_ports(len(SERVICES) + 1)
        settings = StackSettings(
            model_path=args.model.resolve(),
            state_dir=Path(state),
            ports=dict(zip(SERVICES, ports, strict=False)),
            extra_env={"LOG_LEVEL": "WARNING"},
        )
        with ServiceStack(settings) as stack, second_gateway(settings, ports[-1]) as plain:
            stack.wait_ready(timeout=180)
            plain.wait_ready(timeout=180)
            targets = IngestTargets(*(settings.address(name) for name in ("encoder", "search", "influence")))
            asyncio.run(ingest_catalogue(catalogue, targets))
            cached_url, plain_url = stack.settings.gateway_url, f"http://{settings.host}:{ports[-1]}"
            with httpx.Client(timeout=60) as client:
                for photo in photos[:5]:  # warm-up, other weights than the run's
                    timed_search(client, plain_url, photo, {"w_style": "0.9"})
                for photo in photos:
                    first.append(timed_search(client, cached_url, photo, {}))
                    repeated.append(timed_search(client, cached_url, photo, REWEIGHTED))
                    by_id.append(timed_by_picture_id(client, cached_url, photo, REWEIGHTED))
                    uncached.append(timed_search(client, plain_url, photo, REWEIGHTED))
    medians = {name: round(statistics.median(values), 1) for name, values in
               (("first", first), ("repeated", repeated), ("repeated_by_picture_id", by_id),
                ("repeated_without_cache", uncached))}  # fmt: skip
    report: dict[str, Any] = {
        "what": "single-query latency of a picture sent again with new weights (uploaded again, or by its "
        "picture_id), picture cache on and off",
        "code": code_version(REPO_ROOT),
        "photos": len(photos),
        "machine": f"{os.cpu_count()} cores, load average at end {os.getloadavg()[0]:.1f}",
        "p50_ms": medians,
        "first_over_repeated": round(medians["first"] / medians["repeated"], 2),
        "first_over_repeated_by_picture_id": round(medians["first"] / medians["repeated_by_picture_id"], 2),
        "repeated_without_cache_over_repeated": round(
            medians["repeated_without_cache"] / medians["repeated"], 2
        ),
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
