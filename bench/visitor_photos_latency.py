"""Single-query latency of two versions of the stack, measured in the same minutes: the issue's latency target
(p50 at most 1.5 x before) compared fairly on a shared machine whose load changes from run to run.

Starts both stacks at once, each from its checkout on the index an earlier `bench/visitor_photos.py` run left
in its state folder (nothing is ingested), then sends every visitor photo to one and then the other (which
goes first alternates), one query at a time, and reports each one's client-side p50/p90, the ratio, the
gateway's step medians, and each kind's p50 (a mix's p50 depends on how many of its photos take the longer
path: a painting located, a detail matched against the regions).

    python -m bench.visitor_photos_latency --before-code /work/before \\
        --before-state var/eval-photos/state-before --after-code /work/after \\
        --after-state var/eval-photos/state-after
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.evaluation.visitor_photos import REPORT_SEEDS, VISITOR_KINDS
from artsearch_tools.evaluation.visitor_search import (
    TOP_K,
    Outcome,
    PhotoQuery,
    prepare_photos,
    search_photo,
    summarise,
)
from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports
from bench.visitor_photos import MARKER, REPO_ROOT, code_version

log = logging.getLogger("bench.visitor_photos_latency")
WARM_UP = 10


def start_stack(
    code_dir: Path, state: Path, model: Path, catalogue: Path, env: dict[str, str] | None = None
) -> ServiceStack:
    if not (state / MARKER).is_file():
        raise SystemExit(f"{state} holds no index of bench/visitor_photos.py; run it first")
    settings = StackSettings(
        model_path=model.resolve(),
        state_dir=state.resolve(),
        ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
        # Every photo encoded: the warm-up photos come again in the run (the gateway's picture cache).
        extra_env={"QUERY_CACHE_ENTRIES": "0", **(env or {})},
        image_root=catalogue.resolve().parent,
        older_listen_names=code_dir.resolve() != REPO_ROOT,  # another checkout may predate ARTSEARCH_PORT
    )
    stack = ServiceStack(settings)
    with contextlib.chdir(code_dir):  # `python -m services.<name>` from code_dir runs its code
        stack.start()
    return stack


def spread_over_kinds(queries: list[PhotoQuery], limit: int) -> list[PhotoQuery]:
    """At most `limit` photos, as many of each kind (every n-th of the whole list would take only some kinds:
    the photos come painting by painting, each with every kind in turn)."""
    by_kind: dict[str, list[PhotoQuery]] = {}
    for query in queries:
        by_kind.setdefault(query.kind, []).append(query)
    each = max(1, limit // len(by_kind))
    chosen: list[PhotoQuery] = []
    for number, kind in enumerate(by_kind.values()):
        step = max(1, len(kind) // each)
        chosen += kind[number % step :: step][:each]  # the kinds start apart: other paintings too
    position = {id(query): number for number, query in enumerate(queries)}
    return sorted(chosen, key=lambda query: position[id(query)])[:limit]


def p50_p90(outcomes: list[Outcome]) -> dict[str, float]:
    values = sorted(o.latency_ms for o in outcomes if o.error is None)
    return {
        "p50": round(statistics.median(values), 1),
        "p90": round(values[min(len(values) - 1, round(0.9 * (len(values) - 1)))], 1),
        "queries": len(values),
    }


def p50_by_kind(outcomes: list[Outcome], kinds: list[str]) -> dict[str, float | None]:
    """Each kind's median latency (answered queries): which photos the mix's p50 depends on."""
    by_kind = {}
    for kind in kinds:
        values = [o.latency_ms for o in outcomes if o.kind == kind and o.error is None]
        by_kind[kind] = round(statistics.median(values), 1) if values else None
    return by_kind


def run(args: argparse.Namespace) -> dict[str, Any]:
    catalogue = load_catalogue(args.catalogue)
    queries = prepare_photos(catalogue, args.seeds, args.kinds, args.cache_dir, args.workers)
    if args.limit:
        queries = spread_over_kinds(queries, args.limit)
    versions = {"before": (args.before_code, args.before_state), "after": (args.after_code, args.after_state)}
    envs = {"before": {}, "after": dict(args.after_env)}
    stacks = {
        name: start_stack(code, state, args.model, args.catalogue, envs[name])
        for name, (code, state) in versions.items()
    }
    params = {"k": str(TOP_K)}
    outcomes: dict[str, list[Outcome]] = {name: [] for name in stacks}
    try:
        for stack in stacks.values():
            stack.wait_ready(timeout=180)
        with httpx.Client(timeout=60) as client:
            for stack in stacks.values():
                for query in queries[:WARM_UP]:
                    search_photo(client, stack.settings.gateway_url, query, params)
            started = time.perf_counter()
            for number, query in enumerate(queries):
                order = list(stacks) if number % 2 == 0 else list(reversed(stacks))
                for name in order:
                    outcomes[name].append(
                        search_photo(client, stacks[name].settings.gateway_url, query, params)
                    )
            seconds = time.perf_counter() - started
    finally:
        for stack in stacks.values():
            stack.stop()
    result: dict[str, Any] = {
        "what": "client-side single-query latency of two stacks, queries alternated one by one",
        "queries_each": len(queries),
        "seconds": round(seconds, 1),
        "load_average_at_end": os.getloadavg(),
    }
    for name, (code, _) in versions.items():
        summary = summarise(outcomes[name], args.kinds)
        result[name] = {
            "code": code_version(code),
            **({"env": envs[name]} if envs[name] else {}),
            "latency_ms": p50_p90(outcomes[name]),
            "p50_ms_by_kind": p50_by_kind(outcomes[name], args.kinds),
            "gateway_steps_p50_ms": summary["gateway_steps_p50_ms"],
            "top1": summary["overall"]["top1"],
            "errors": summary["overall"]["errors"],
        }
    result["p50_ratio_after_over_before"] = round(
        result["after"]["latency_ms"]["p50"] / result["before"]["latency_ms"]["p50"], 2
    )
    before_kinds, after_kinds = result["before"]["p50_ms_by_kind"], result["after"]["p50_ms_by_kind"]
    result["p50_ratio_by_kind"] = {
        kind: round(after_kinds[kind] / before_kinds[kind], 2)
        if before_kinds[kind] and after_kinds[kind]
        else None
        for kind in args.kinds
    }
    return result


def _env_setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    from artsearch_tools.evaluation.cli import _seed_list

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before-code", type=Path, required=True)
    parser.add_argument("--before-state", type=Path, required=True)
    parser.add_argument("--after-code", type=Path, default=REPO_ROOT)
    parser.add_argument("--after-state", type=Path, required=True)
    parser.add_argument("--catalogue", type=Path, default=REPO_ROOT / "data/catalogues/gcompris")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--seeds", type=_seed_list, default=REPORT_SEEDS)
    parser.add_argument("--kinds", nargs="+", default=list(VISITOR_KINDS), choices=list(VISITOR_KINDS))
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos, spread over all")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache/visitor-photos")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--after-env",
        type=_env_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the 'after' stack only (repeat): what one setting does to the latency",
    )
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "bench/results/visitor_photos_latency.json"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    for name in ("before", "after"):
        print(
            name,
            result[name]["code"]["commit"][:7],
            result[name]["latency_ms"],
            result[name]["gateway_steps_p50_ms"],
        )
    print(f"p50 after / before: {result['p50_ratio_after_over_before']}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
