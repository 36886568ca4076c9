"""`artsearch ingest`: load a catalogue folder or a URL manifest into running services.

    artsearch ingest data/catalogues/gcompris
    artsearch ingest wikiart/ --metadata wikiart/wikiart.csv --name wikiart --batch-size 32
    artsearch ingest --manifest artworks.jsonl --name museum --report report.json
    artsearch ingest --manifest internal.csv --allow-download-network 10.20.0.0/16   # an internal store
    artsearch ingest big/ --shard-index $JOB_COMPLETION_INDEX --shard-count 8 --state-dir /state

Re-running adds nothing twice; after a crash or Ctrl-C the same command resumes without re-encoding what is
stored. Exit status: 0 done (rejections are in the report), 130 interrupted, 1 a service kept failing,
2 bad arguments or an unreadable catalogue.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from artsearch import settings as core
from artsearch.config import Env
from artsearch_tools import settings
from artsearch_tools.cli_output import emit
from artsearch_tools.regions import DEFAULT_REGION_GRID, RegionGrid, parse_region_grid
from artsearch_tools.settings import service_address, service_address_help

if TYPE_CHECKING:
    from collections.abc import Callable

    from artsearch.safe_fetch import IPNetwork
    from artsearch_tools.catalogue.folder import Catalogue
    from artsearch_tools.ingest import IngestOptions, IngestRun, IngestTargets
    from artsearch_tools.ingest_progress import Progress

EXIT_INTERRUPTED = 130
EXIT_SERVICE_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="load a catalogue folder (images + metadata) or a URL manifest into the services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("what to ingest")
    source.add_argument("folder", nargs="?", help="catalogue folder (metadata.csv/.json inside, or none)")
    source.add_argument("--metadata", help="metadata file (CSV, JSON, JSONL), e.g. a WikiArt CSV")
    source.add_argument("--manifest", help="CSV/JSONL/JSON of image URLs with metadata, instead of a folder")
    source.add_argument("--name", help="catalogue name (default: the folder's or manifest's name)")
    source.add_argument(
        "--style-labels",
        choices=("art", "category"),
        help="what the catalogue's style labels are: art styles (they vote in style predictions) or "
        "subject categories (they never do); default: the folder's catalogue.json, else art",
    )
    how = parser.add_argument_group("how")
    how.add_argument("--collection", default="", help="target collection (default: the search service's)")
    how.add_argument("--batch-size", type=_at_least(1), default=16, help="artworks per batch (default 16)")
    how.add_argument("--concurrency", type=_at_least(1), default=2, help="batches in flight (default 2)")
    how.add_argument("--shard-index", type=_at_least(0), default=0, help="this process's shard (0-based)")
    how.add_argument("--shard-count", type=_at_least(1), default=1, help="shards in all (default 1)")
    how.add_argument(
        "--state-dir",
        default=settings.INGEST_STATE_DIR.read(Env()),
        help="where progress is recorded (default $INGEST_STATE_DIR or var/ingest)",
    )
    how.add_argument("--no-state", action="store_true", help="keep no state file")
    how.add_argument("--report", help="also write the report to this JSON file")
    how.add_argument(
        "--reencode", action="store_true", help="encode and store every artwork again, even if stored"
    )
    how.add_argument(
        "--regions",
        type=_region_grid,
        default=settings.INGEST_REGIONS.read(Env()),
        help="windows encoded beside each whole picture, so that a photo of a detail finds the artwork: "
        f"scales NxN@S (default $INGEST_REGIONS or {DEFAULT_REGION_GRID}); 'off' for none "
        "(each window costs one more encoding per artwork: see docs/ingest.md)",
    )
    how.add_argument("--max-rate", type=float, default=None, help="at most this many artworks per second")
    how.add_argument("--progress-interval", type=float, default=5.0, help="seconds between progress lines")
    how.add_argument("--timeout", type=float, default=120.0, help="deadline of each service call, seconds")
    downloads = parser.add_argument_group("downloads (--manifest)")
    downloads.add_argument("--download-timeout", type=float, default=30.0, help="seconds per image")
    downloads.add_argument("--max-download-bytes", type=_at_least(1), default=50 * 1024 * 1024)
    downloads.add_argument("--download-concurrency", type=_at_least(1), default=8)
    downloads.add_argument(
        "--allow-private-downloads",
        action="store_true",
        help="also fetch from loopback, private, link-local and CGNAT addresses, e.g. an internal object "
        "store (cloud metadata addresses stay refused)",
    )
    downloads.add_argument(
        "--allow-download-network",
        action="append",
        type=_network,
        default=[],
        metavar="CIDR",
        help="the same for this network only, e.g. 10.20.0.0/16 (repeatable)",
    )
    services = parser.add_argument_group("services")
    for service in ("encoder", "search", "influence"):
        services.add_argument(f"--{service}", default=None, help=service_address_help(service))
    parser.set_defaults(run=run_ingest)


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def _region_grid(text: str) -> RegionGrid | None:
    try:
        return parse_region_grid(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _network(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_ingest(args: argparse.Namespace) -> int:
    from artsearch_tools.ingest import IngestRun, ServiceFailed
    from artsearch_tools.ingest_progress import make_progress

    run = IngestRun(_load(args), _targets(args), _options(args))
    progress = make_progress(f"ingest {run.catalogue.name}", interval_s=args.progress_interval)
    status = 0
    try:
        asyncio.run(_run_until_signalled(run, progress))
    except ServiceFailed as error:
        print(f"\nartsearch ingest: {error}", file=sys.stderr)
        status = EXIT_SERVICE_FAILED
    finally:
        progress.close()
    report = run.report
    emit(args, report.summary(), report.to_json())
    if args.report:
        report.write(Path(args.report))
    if report.interrupted or status:
        status = status or EXIT_INTERRUPTED
        print(_resume_hint(report.state_file), file=sys.stderr)
    return status


async def _run_until_signalled(run: IngestRun, progress: Progress) -> None:
    """The first SIGINT/SIGTERM lets the batches in flight finish, the second abandons them."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print("\nstopping after the batches in flight (again to abandon them) ...", file=sys.stderr)
            run.request_stop()
        elif main is not None:
            main.cancel()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal)
    try:
        await run.run(progress)
    except asyncio.CancelledError:
        run.report.interrupted = True
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


def _resume_hint(state_file: str) -> str:
    saved = f"progress saved in {state_file}" if state_file else "stored artworks are kept"
    command = shlex.join(["artsearch", *sys.argv[1:]])
    return f"ingest stopped early; {saved}. Resume with the same command:\n  {command}"


def _load(args: argparse.Namespace) -> Catalogue:
    if bool(args.folder) == bool(args.manifest):
        raise ValueError("give either a catalogue folder or --manifest FILE")
    if args.manifest:
        from artsearch_tools.catalogue.manifest import load_manifest

        catalogue = load_manifest(Path(args.manifest), name=args.name)
    else:
        from artsearch_tools.catalogue.folder import load_catalogue

        metadata = Path(args.metadata) if args.metadata else None
        catalogue = load_catalogue(Path(args.folder), name=args.name, metadata=metadata)
    if args.style_labels:
        catalogue.style_labels = args.style_labels
    return catalogue


def _targets(args: argparse.Namespace) -> IngestTargets:
    from artsearch_tools.ingest import IngestTargets

    return IngestTargets(
        encoder_addr=args.encoder or service_address("encoder"),
        search_addr=args.search or service_address("search"),
        influence_addr=args.influence or service_address("influence"),
        collection=args.collection,
        # What `--collection ""` stands for on the search service (its SEARCH_COLLECTION): the model alias
        # recorded after the run is named after it.
        default_collection=core.SEARCH_COLLECTION.read(Env()),
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
    )


def _options(args: argparse.Namespace) -> IngestOptions:
    from artsearch_tools.ingest import IngestOptions
    from artsearch_tools.ingest_download import DownloadLimits
    from artsearch_tools.ingest_state import Shard

    return IngestOptions(
        state_dir=None if args.no_state else Path(args.state_dir),
        shard=Shard(args.shard_index, args.shard_count),
        max_rate=args.max_rate,
        reencode=args.reencode,
        regions=args.regions,
        download=DownloadLimits(
            max_bytes=args.max_download_bytes,
            timeout_s=args.download_timeout,
            concurrency=args.download_concurrency,
            allow_private_addresses=args.allow_private_downloads,
            allowed_networks=tuple(args.allow_download_network),
        ),
    )
