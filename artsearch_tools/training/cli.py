"""`artsearch retrain` and `artsearch reindex` (see `artsearch_tools.training.retrain` and `.reindex`).

python -m artsearch_tools.training.cli retrain --catalogue DIR --output models/NAME/model.onnx
python -m artsearch_tools.training.cli reindex --from artworks --to artworks-v2 --alias artworks --model M ...
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from artsearch.env import Env
from artsearch_tools.cli_output import add_json_options, emit
from artsearch_tools.settings import REINDEX_IMAGE_ROOT, service_address, service_address_help

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models/efficientnet-lite0/model.onnx"
# The --labels choices: artsearch_tools.training.retrain.LABEL_CHOICES, restated so that building the parser
# (`artsearch --help`, the CLI image's `ingest`) does not import retrain and its numpy (a unit test keeps
# the two equal).
LABEL_CHOICES = ("auto", "none", "style", "artist")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `retrain` and `reindex` to a parent command's subparsers."""
    retrain = subparsers.add_parser("retrain", help="train a projection head on a catalogue: a new model")
    retrain.add_argument("--catalogue", type=Path, required=True, help="catalogue folder (images + metadata)")
    retrain.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the base ONNX model")
    retrain.add_argument("--output", type=Path, required=True, help="where to write the new model.onnx")
    retrain.add_argument(
        "--labels",
        choices=LABEL_CHOICES,
        default="auto",
        help="positives: same style/artist label, or (none) views of the same artwork; auto: style, "
        "else artist, else none",
    )
    retrain.add_argument("--rounds", type=int, default=1, help="augmentation rounds (8 photo kinds each)")
    retrain.add_argument("--epochs", type=int, default=150)
    retrain.add_argument("--hidden", type=int, default=512)
    retrain.add_argument("--temperature", type=float, default=0.1)
    retrain.add_argument("--seed", type=int, default=0)
    retrain.add_argument("--holdout", type=float, default=0.0, help="fraction of artworks left out")
    retrain.add_argument("--cache-dir", type=Path, default=Path(".cache/training"))
    retrain.add_argument("--triton-repository", type=Path, default=None, help="also add it as a new version")
    retrain.add_argument("--triton-model-name", default="efficientnet-lite0")
    retrain.add_argument("--triton-python-backend", action="store_true")
    retrain.set_defaults(run=run_retrain)

    reindex = subparsers.add_parser(
        "reindex", help="re-encode a collection into a new one with a new model, then switch an alias"
    )
    reindex.add_argument("--from", dest="source", default="artworks", help="collection or alias to read")
    reindex.add_argument("--to", dest="target", required=True, help="the new collection")
    reindex.add_argument("--alias", default="", help="alias switched to --to at the end (e.g. artworks)")
    reindex.add_argument(
        "--model", type=Path, default=None, help="start an encoder on this model for the run"
    )
    reindex.add_argument("--encoder", default="", help="or: an encoder already running the new model")
    reindex.add_argument("--search", default=None, help=service_address_help("search"))
    reindex.add_argument(
        "--catalogue", type=Path, action="append", default=[], help="catalogue folder (repeatable)"
    )
    reindex.add_argument("--image-root", type=Path, default=None, help="default $IMAGE_ROOT")
    reindex.add_argument("--batch-size", type=int, default=16)
    reindex.add_argument(
        "--replace-collection",
        action="store_true",
        help="the alias name is a collection (ingested before aliases): drop it, the alias takes its place",
    )
    reindex.add_argument("--allow-missing", action="store_true", help="switch even if some images failed")
    reindex.add_argument(
        "--source-model-version",
        default="",
        help="the model version --from was encoded with, when no model alias records it",
    )
    reindex.add_argument(
        "--switch-only",
        action="store_true",
        help="only point --alias (and its model aliases for --to's model) at --to (rollback)",
    )
    reindex.set_defaults(run=run_reindex)


def _image_root() -> Path | None:
    root = REINDEX_IMAGE_ROOT.read(Env())
    return Path(root) if root else None


def _logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")


def run_retrain(args: argparse.Namespace) -> int:
    from artsearch_tools.training.features import ViewSettings
    from artsearch_tools.training.head import HeadSettings
    from artsearch_tools.training.retrain import RetrainSettings, retrain

    _logging()
    if not args.model.is_file():
        raise FileNotFoundError(f"{args.model} is missing: export the model with `make model`")
    settings = RetrainSettings(
        catalogue=args.catalogue,
        base_model=args.model,
        output=args.output,
        labels=args.labels,
        views=ViewSettings(seed=args.seed, rounds=args.rounds),
        head=HeadSettings(
            hidden=args.hidden, epochs=args.epochs, temperature=args.temperature, seed=args.seed
        ),
        holdout=args.holdout,
        cache_dir=args.cache_dir,
        triton_repository=args.triton_repository,
        triton_model_name=args.triton_model_name,
        triton_python_backend=args.triton_python_backend,
    )
    report = retrain(settings)
    emit(args, report.summary(), report.to_json())
    return 0


def run_reindex(args: argparse.Namespace) -> int:
    from artsearch_tools.catalogue.folder import load_catalogue
    from artsearch_tools.training.reindex import ReindexError, ReindexSettings, reindex, rollback

    _logging()
    if args.switch_only:
        if not args.alias:
            raise ValueError("--switch-only needs --alias")
        switch = asyncio.run(rollback(args.search or service_address("search"), args.alias, args.target))
        emit(args, switch.summary(), switch)
        return 0
    if not (args.model or args.encoder):
        raise ValueError("give --model (an encoder is started on it) or --encoder ADDR")
    catalogues = {load_catalogue(folder).name: folder for folder in args.catalogue}
    settings = ReindexSettings(
        search_addr=args.search or service_address("search"),
        source=args.source,
        target=args.target,
        alias=args.alias,
        encoder_addr=args.encoder,
        model=args.model,
        catalogues=catalogues,
        image_root=args.image_root or _image_root(),
        batch_size=args.batch_size,
        replace_collection=args.replace_collection,
        allow_missing=args.allow_missing,
        source_model_version=args.source_model_version,
    )
    try:
        report = asyncio.run(reindex(settings, _progress))
    except ReindexError as error:
        print(f"\nreindex stopped: {error}", file=sys.stderr)
        return 1
    print(file=sys.stderr)  # ends the progress line
    emit(args, report.summary(), report)
    return 0 if report.switched or not args.alias else 1


def _progress(done: int) -> None:
    print(f"\r  read {done} artworks", end="", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artsearch_tools.training.cli")
    register(parser.add_subparsers(dest="command", required=True))
    add_json_options(parser)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
