"""Visitor photos through the whole stack with >= 5,000 distractors: `make eval-photos`.

Starts the four services on their embedded defaults in a state folder of its own (free loopback ports),
ingests the demo catalogue and the distractor catalogues (OpenClipart, Tux Paint stamps, Wesnoth
portraits; built from Debian packages where missing) with `artsearch ingest`, timing each, then runs
`artsearch eval photos` against the gateway and writes the result with the stack's facts beside it.

    python -m bench.visitor_photos                                   # report seeds, this checkout
    python -m bench.visitor_photos --code-dir /work/before --output bench/results/visitor_photos_before.json

--code-dir runs the services and the ingest from another checkout (e.g. a `git worktree` of an older
commit) with this checkout's evaluation, so that two versions are measured with the same photos.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from artsearch_tools.evaluation.visitor_photos import REPORT_SEEDS
from artsearch_tools.evaluation.visitor_search import markdown_table, prepare_photos, run_photo_evaluation
from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = ".artsearch-eval-photos"  # the state folder is ours to empty only when it carries this
DISTRACTORS = ("openclipart", "tuxpaint", "wesnoth")

log = logging.getLogger("bench.visitor_photos")


def build_distractors(folder: Path, limit: int, debs: Path) -> dict[str, Path]:
    """The distractor catalogue folders, built with `artsearch catalogue` where missing."""
    built = {}
    for name in DISTRACTORS:
        target = folder / name
        if not (target / "metadata.csv").is_file():
            log.info("building the %s catalogue in %s ...", name, target)
            command = [
                "-m",
                "artsearch_tools.cli",
                "catalogue",
                name,
                "--output",
                str(target),
                "--limit",
                str(limit),
            ]
            subprocess.run([sys.executable, *command, "--cache-dir", str(debs)], cwd=REPO_ROOT, check=True)
        info = target / "catalogue.json"
        if not info.is_file():  # built before the builders declared it: their labels are subject categories
            info.write_text(json.dumps({"style_labels": "category"}, indent=2) + "\n")
        built[name] = target
    return built


def fresh_state_dir(path: Path, keep: bool = False) -> None:
    """An empty state folder: created, or emptied when an earlier run of this bench made it (kept as it is
    with `keep`: the services start on the stored index and the ingest skips what is stored)."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).is_file():
            raise SystemExit(
                f"{path} is not empty and was not made by this bench; choose another --state-dir"
            )
        if keep:
            return
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by bench/visitor_photos.py\n")


def cli_module(code_dir: Path) -> str:
    """The CLI's module in `code_dir`: a checkout from before 212b091 has it in the core package (its own
    `artsearch` would otherwise meet this checkout's `artsearch_tools`, which it does not fit)."""
    return "artsearch_tools.cli" if (code_dir / "artsearch_tools").is_dir() else "artsearch.cli"


def ingest(
    code_dir: Path, settings: StackSettings, folder: Path, report: Path, extra: list[str]
) -> dict[str, Any]:
    """`artsearch ingest` of one catalogue folder, run from `code_dir` (its ingest code), timed."""
    command = [
        sys.executable,
        "-m",
        cli_module(code_dir),
        "ingest",
        str(folder.resolve()),
        "--encoder",
        settings.address("encoder"),
        "--search",
        settings.address("search"),
        "--influence",
        settings.address("influence"),
        "--no-state",
        "--report",
        str(report),
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=code_dir, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summary = json.loads(report.read_text())
    counts = {key: summary.get(key, 0) for key in ("added", "updated", "skipped")}
    return {
        "folder": str(folder),
        **counts,
        "in_index": sum(counts.values()),
        "rejected": len(summary.get("rejected", [])),
        "seconds": round(seconds, 1),
        "arguments": extra,
        "report": str(report),
    }


def code_version(code_dir: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=code_dir, capture_output=True, text=True).stdout.strip()

    return {
        "dir": str(code_dir),
        "commit": git("rev-parse", "HEAD"),
        "dirty_files": len(git("status", "--porcelain").splitlines()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    code_dir = args.code_dir.resolve()
    distractors = build_distractors(args.distractors_dir, args.distractor_limit, args.debs_dir)
    from artsearch_tools.catalogue.folder import load_catalogue

    # The photos are made (or found in the cache) while the stack starts and ingests: on a shared 2-core
    # machine doing both one after the other took too long. The ingest time is measured under that load.
    photos = ThreadPoolExecutor(1).submit(
        prepare_photos, load_catalogue(args.catalogue), args.seeds, args.kinds, args.cache_dir, args.workers
    )
    state = args.state_dir.resolve()
    fresh_state_dir(state, keep=args.keep_state)
    settings = StackSettings(
        model_path=args.model.resolve(),
        state_dir=state,
        ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
        # Every photo encoded: the warm-up photos come again in the run (the gateway's picture cache).
        extra_env={"QUERY_CACHE_ENTRIES": "0"},
        image_root=args.catalogue.resolve().parent,
        older_listen_names=code_dir != REPO_ROOT,  # another checkout may predate ARTSEARCH_PORT
    )
    stack = ServiceStack(settings)
    try:
        # The services are `python -m services.<name>`: started from code_dir, they run its code.
        with contextlib.chdir(code_dir):
            stack.start()
        stack.wait_ready(timeout=180)
        log.info("stack of %s ready at %s", code_dir, settings.gateway_url)
        ingests = {"demo": ingest(code_dir, settings, args.catalogue, state / "ingest-demo.json", [])}
        for name, folder in distractors.items():
            log.info("ingesting %s ...", name)
            report = state / f"ingest-{name}.json"
            extra = [] if name in args.default_ingest_for else args.distractor_ingest_arg
            ingests[name] = ingest(code_dir, settings, folder, report, extra)
            log.info("ingested %s: %s", name, ingests[name])
        photos_pending_after_ingest = not photos.done()
        photos.result()
        result = run_photo_evaluation(
            settings.gateway_url,
            args.catalogue,
            seeds=args.seeds,
            kinds=args.kinds,
            cache_dir=args.cache_dir,
            search_address=settings.address("search"),
            workers=args.workers,
        )
    finally:
        stack.stop()
    distractor_runs = [ingests[name] for name in distractors]
    result["stack"] = {
        "code": code_version(code_dir),
        "backends": "embedded defaults (onnxruntime encoder, embedded search engine, in-memory graph)",
        "ingest": ingests,
        "distractors": {
            "catalogues": {name: ingests[name]["in_index"] for name in distractors},
            "images": sum(run["in_index"] for run in distractor_runs),
            "ingest_seconds": round(sum(run["seconds"] for run in distractor_runs), 1),
        },
        "cpus": os.cpu_count(),
        "photos_still_being_made_when_ingest_ended": photos_pending_after_ingest,
        "load_average_at_end": os.getloadavg(),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    from artsearch_tools.evaluation.cli import _seed_list
    from artsearch_tools.evaluation.visitor_photos import VISITOR_KINDS

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--code-dir", type=Path, default=REPO_ROOT, help="checkout whose services run")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / "var/eval-photos/state")
    parser.add_argument("--catalogue", type=Path, default=REPO_ROOT / "data/catalogues/gcompris")
    parser.add_argument("--distractors-dir", type=Path, default=REPO_ROOT / "var/eval-photos/catalogues")
    parser.add_argument("--distractor-limit", type=int, default=5000, help="per catalogue (--limit)")
    parser.add_argument("--debs-dir", type=Path, default=REPO_ROOT / ".cache/debs")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--seeds", type=_seed_list, default=REPORT_SEEDS, help="default: the report seeds")
    parser.add_argument("--kinds", nargs="+", default=list(VISITOR_KINDS), choices=list(VISITOR_KINDS))
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache/visitor-photos")
    parser.add_argument("--workers", type=int, default=1, help="processes making the photos")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/visitor_photos.json")
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="start on the index an earlier run of this bench left in --state-dir (the ingest skips what is "
        "stored): another version of the services against the same index",
    )
    parser.add_argument(
        "--distractor-ingest-arg",
        action="append",
        default=[],
        help="an argument for the distractors' `artsearch ingest` (repeatable), e.g. --regions=off",
    )
    parser.add_argument(
        "--default-ingest-for",
        action="append",
        default=[],
        choices=DISTRACTORS,
        help="a distractor catalogue ingested without --distractor-ingest-arg (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per query
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result))
    distractors = result["stack"]["distractors"]
    print(f"distractors: {distractors['images']} images ingested in {distractors['ingest_seconds']} s")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
