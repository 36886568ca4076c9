"""`artsearch catalogue <dataset>`: write a catalogue folder (images + metadata.csv) from a dataset.

    artsearch catalogue gcompris    --output data/catalogues/gcompris      # the demo paintings
    artsearch catalogue openclipart --output data/catalogues/openclipart --limit 500
    artsearch catalogue tuxpaint    --output data/catalogues/tuxpaint    --limit 500
    artsearch catalogue wesnoth     --output data/catalogues/wesnoth
    artsearch catalogue cifar10     --source cifar-10-batches-py --output data/catalogues/cifar10 --limit 1000

The Debian sets are downloaded once into --cache-dir (apt-get download; nothing is installed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artsearch_tools.cli_output import emit

DATASETS = ("gcompris", "openclipart", "tuxpaint", "wesnoth", "cifar10")
DEFAULT_LIMIT = 2000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalogue",
        help="build a labelled catalogue folder from a dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", choices=DATASETS, help="where the images come from")
    parser.add_argument("--output", default=None, help="catalogue folder (default data/catalogues/<dataset>)")
    parser.add_argument("--cache-dir", default=".cache/debs", help="where downloaded .deb files are kept")
    parser.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_LIMIT,
        help=f"at most this many images, sampled evenly across labels (default {DEFAULT_LIMIT}; "
        "gcompris is always whole)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--source", default=None, help="cifar10: the cifar-10-batches-py folder")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all", help="cifar10 batches")
    parser.set_defaults(run=run_catalogue)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run_catalogue(args: argparse.Namespace) -> int:
    from artsearch_tools.catalogue.debian import DebianPackageError

    try:
        return _build(args)
    except DebianPackageError as error:
        print(f"artsearch catalogue: {error}", file=sys.stderr)
        return 1


def _build(args: argparse.Namespace) -> int:
    output = Path(args.output or f"data/catalogues/{args.dataset}")
    cache = Path(args.cache_dir)
    if args.dataset == "gcompris":
        from artsearch_tools.catalogue.gcompris import build_gcompris_catalogue

        entries = build_gcompris_catalogue(output, cache_dir=cache)
        artists = {entry.artist for entry in entries}
        summary = f"wrote {len(entries)} paintings by {len(artists)} artists to {output}"
        emit(args, summary, _built(args.dataset, output, len(entries), artists=len(artists)))
        return 0
    if args.dataset == "cifar10":
        from artsearch_tools.catalogue.cifar import build_cifar10_catalogue

        if not args.source:
            raise ValueError("cifar10 needs --source, the cifar-10-batches-py folder")
        entries = build_cifar10_catalogue(Path(args.source), output, args.limit, args.split, args.seed)
    elif args.dataset == "wesnoth":
        from artsearch_tools.catalogue.wesnoth import build_wesnoth_catalogue

        entries = build_wesnoth_catalogue(output, cache, args.limit, args.seed)
    else:
        from artsearch_tools.catalogue.category_sets import build_category_catalogue

        entries = build_category_catalogue(args.dataset, output, cache, args.limit, args.seed)
    labels = {entry.style for entry in entries}
    summary = f"wrote {len(entries)} {args.dataset} images in {len(labels)} labels to {output}"
    emit(args, summary, _built(args.dataset, output, len(entries), labels=sorted(labels)))
    return 0


def _built(dataset: str, output: Path, entries: int, **counts: object) -> dict[str, object]:
    return {"dataset": dataset, "output": str(output), "entries": entries, **counts}
