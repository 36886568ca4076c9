"""The `artsearch` command: build catalogues, ingest them, run the demo, query a running gateway."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import io
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from artsearch.config import ConfigError
from artsearch_tools.cli_output import add_json_options
from artsearch_tools.settings import LOCAL_GATEWAY_HELP, demo_ports, local_gateway_url

if TYPE_CHECKING:
    from artsearch_tools.catalogue.folder import Catalogue
    from artsearch_tools.launcher import ServiceStack, StackSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models/efficientnet-lite0/model.onnx"


def cmd_query(args: argparse.Namespace) -> int:
    from artsearch_client import ArtsearchClient, ArtsearchError

    data = Path(args.image).read_bytes()
    try:
        with ArtsearchClient(args.gateway or local_gateway_url(), timeout=30) as client:
            answer = client.search(data, k=args.k, source_artist=args.artist)
    except ArtsearchError as error:
        print(f"error {error.status}: {error.body}" if error.status else f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(answer.raw, indent=2) if args.json else format_results(answer.raw))
    return 0


def format_results(answer: dict) -> str:
    source = answer["source_artist"]
    lines = [f"source artist: {source['name'] or '-'} ({_how_chosen(source)})"]
    if answer.get("degraded"):
        lines.append(f"degraded: {', '.join(answer['degraded'])}")
    lines.append(f"{'#':>3}  {'score':>6}  {'visual':>6}  {'hops':>4}  {'w':>5}  artist — title")
    for rank, result in enumerate(answer["results"], 1):
        scores = result["scores"]
        hops = "-" if scores["influence_hops"] is None else str(scores["influence_hops"])
        lines.append(
            f"{rank:>3}  {result['score']:6.3f}  {scores['visual']:6.3f}  {hops:>4}  "
            f"{scores['influence_weight']:5.3f}  {result['artist']} — {result['title']}"
        )
    return "\n".join(lines)


def _how_chosen(source: dict) -> str:
    """ "inferred by vote, confidence 0.62, runner-up Utagawa Hiroshige 0.38", "explicit", ..."""
    if source.get("method") != "vote":
        return f"{source['how']} by the nearest candidate" if source.get("method") else source["how"]
    text = f"inferred by vote, confidence {source['confidence']:.2f}"
    if source.get("runner_up"):
        text += f", runner-up {source['runner_up']['name']} {source['runner_up']['share']:.2f}"
    return text


def sample_query_image(image_path: Path, fraction: float = 0.6) -> bytes:
    """A centred crop of a catalogue painting, as a visitor's photo of a detail would be."""
    from PIL import Image

    with Image.open(image_path) as image:
        width, height = image.size
        crop_w, crop_h = int(width * fraction), int(height * fraction)
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        buffer = io.BytesIO()
        image.convert("RGB").crop((left, top, left + crop_w, top + crop_h)).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def cmd_demo(args: argparse.Namespace) -> int:
    from artsearch_tools.catalogue.folder import load_catalogue
    from artsearch_tools.launcher import (
        DemoStateDir,
        ServiceStack,
        StackSettings,
        StateDirRefused,
        taken_ports,
    )

    catalogue = load_catalogue(Path(args.catalogue))
    pictures = REPO_ROOT / "docs" / "img"
    settings = StackSettings(
        model_path=Path(args.model).resolve(),
        state_dir=Path(args.state_dir).resolve(),
        ports=demo_ports(),
        image_root=catalogue.root.resolve().parent,
        evaluation_dir=pictures if pictures.is_dir() else None,
    )
    # Before the state folder is touched: a second demo must leave the first one's data alone.
    taken = taken_ports(settings)
    if taken:
        print(f"artsearch demo: cannot start: {'; '.join(taken)}.\n{PORTS_HINT}", file=sys.stderr)
        return 2
    state = DemoStateDir(settings.state_dir)
    try:
        state.claim()
    except StateDirRefused as refused:
        print(f"artsearch demo: {refused}", file=sys.stderr)
        return 2
    try:
        return _run_demo(ServiceStack(settings), catalogue)
    finally:
        state.release()


PORTS_HINT = (
    "Is another `make demo` running? Stop it (Ctrl-C), or give this one other ports: ARTSEARCH_PORT, "
    "ENCODER_PORT, SEARCH_PORT, INFLUENCE_PORT."
)


def _run_demo(stack: ServiceStack, catalogue: Catalogue) -> int:
    # Progress must show as it happens also when the output is a pipe (`make demo | tee demo.log`).
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # Both stop the demo in order. SIGINT explicitly: a process started as a background job of a
    # non-interactive shell (`make demo &` in a script, CI steps) inherits SIGINT ignored, and Python then
    # leaves it ignored -- Ctrl-C or `kill -INT` would do nothing (seen in the test suite run that way).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    started = time.perf_counter()
    try:
        stack.start()
        print(f"starting encoder, search, influence and gateway (logs in {stack.log_dir}) ...")
        stack.wait_ready()
        print(f"all services ready in {time.perf_counter() - started:.1f} s")
        _ingest_and_query(stack.settings, catalogue)
        url = stack.settings.gateway_url
        print(f"\ngateway serving on {url}  (web UI at /, API docs at /docs) — Ctrl-C stops")
        _supervise(stack)
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping services ...")
        stack.stop()


def _ingest_and_query(settings: StackSettings, catalogue: Catalogue) -> None:
    from artsearch_client import ArtsearchClient
    from artsearch_tools.ingest import IngestTargets, ingest_catalogue

    targets = IngestTargets(
        settings.address("encoder"), settings.address("search"), settings.address("influence")
    )
    print(asyncio.run(ingest_catalogue(catalogue, targets)).summary())
    sample = next((e for e in catalogue.entries if "gogh" in e.artist.lower()), catalogue.entries[0])
    print(f"\nsample query: a 60 % crop of “{sample.title}” by {sample.artist}")
    query = sample_query_image(catalogue.root / sample.filename)
    with ArtsearchClient(settings.gateway_url, timeout=60) as client:
        print(format_results(client.search(query, k=10).raw))


def _supervise(stack: ServiceStack) -> NoReturn:
    """Until Ctrl-C: a service that exits is started again, with backoff (the gateway meanwhile answers
    degraded or 503), so one crash does not end the demo."""
    from artsearch_tools.launcher import Supervisor

    supervisor = Supervisor(stack, notify=_say)
    while True:
        supervisor.poll()
        time.sleep(0.25)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def installed_version() -> str:
    """The installed distribution's version; a source checkout that was never installed says so."""
    try:
        return importlib.metadata.version("artsearch")
    except importlib.metadata.PackageNotFoundError:
        return "(source checkout, not installed)"


def build_parser() -> argparse.ArgumentParser:
    from artsearch_tools.catalogue.cli import register as register_catalogue
    from artsearch_tools.ingest_cli import register as register_ingest

    parser = argparse.ArgumentParser(prog="artsearch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"artsearch {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    register_catalogue(commands)
    register_ingest(commands)

    query = commands.add_parser("query", help="search a running gateway with an image file")
    query.add_argument("image")
    query.add_argument("--k", type=int, default=10)
    query.add_argument("--artist", default=None, help="source artist (inferred when absent)")
    query.add_argument("--gateway", default=None, help=LOCAL_GATEWAY_HELP)
    query.add_argument("--json", action="store_true", help="print the gateway's JSON answer as it came")
    query.set_defaults(run=cmd_query)

    demo = commands.add_parser("demo", help="start all services, ingest the demo catalogue, query, serve")
    demo.add_argument("--catalogue", default="data/catalogues/gcompris")
    demo.add_argument("--model", default=str(DEFAULT_MODEL))
    demo.add_argument("--state-dir", default="var/demo")
    demo.set_defaults(run=cmd_demo)

    from artsearch_tools.evaluation.cli import register as register_eval
    from artsearch_tools.influence import importers
    from artsearch_tools.training.cli import register as register_training

    register_eval(commands)
    register_training(commands)
    importers.register(commands)
    add_json_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, ConfigError) as error:
        print(f"artsearch: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
