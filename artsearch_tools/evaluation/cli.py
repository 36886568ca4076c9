"""`artsearch eval descriptors`: measure the descriptor's aspects and weightings, publish the numbers.

    artsearch eval descriptors                     # from the repository root
    python -m artsearch_tools.evaluation.cli descriptors # the same, without the artsearch entry point

Writes the full result (every method, every grid weighting, the chosen defaults) as JSON and prints the
published tables as Markdown. Exit status 1 when the descriptor's default weights miss the targets.

`artsearch eval style-blocks` compares which network blocks should feed the style aspect (it exports one
model per candidate, so it needs torch, and takes a few minutes per candidate).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from artsearch_tools.cli_output import add_json_options, emit
from artsearch_tools.settings import LOCAL_GATEWAY_HELP, local_gateway_url

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models/efficientnet-lite0/model.onnx"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `eval descriptors` and `eval style-blocks` to a parent command's subparsers."""
    evaluation = subparsers.add_parser("eval", help="measure retrieval quality")
    commands = evaluation.add_subparsers(dest="eval_command", required=True)

    descriptors = commands.add_parser(
        "descriptors",
        help="detail→painting, bad photo→painting and category retrieval per aspect and weighting",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_arguments(descriptors)
    descriptors.add_argument("--output", type=Path, default=Path("bench/results/descriptors.json"))
    descriptors.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    descriptors.set_defaults(run=run_descriptors)

    study = commands.add_parser(
        "style-blocks",
        help="compare which blocks feed the style aspect (exports a model per candidate; needs torch)",
    )
    _common_arguments(study)
    study.add_argument(
        "--candidates",
        nargs="+",
        type=_block_list,
        default=[(4, 10), (7, 10), (14,), (4, 7, 10, 14)],
        help="comma-separated block lists to compare (default: 4,10 7,10 14 4,7,10,14)",
    )
    study.add_argument("--output", type=Path, default=Path("bench/results/descriptors_style_blocks.json"))
    study.set_defaults(run=run_style_blocks)

    retrieval = commands.add_parser(
        "retrieval",
        help="leave-one-out per aspect, clustering purity, ANN recall/latency, style prediction, influence "
        "re-rank on/off, and pictures (PR curves, t-SNE maps)",
    )
    _common_arguments(retrieval)
    retrieval.add_argument("--sets", nargs="+", default=["gcompris", "tuxpaint", "openclipart"])
    retrieval.add_argument("--output", type=Path, default=Path("bench/results/retrieval.json"))
    retrieval.add_argument("--images", type=Path, default=Path("docs/img"), help="where the PNGs go")
    retrieval.set_defaults(run=run_retrieval)

    retrain = commands.add_parser("retrain", help="base vs retrained model on the same catalogue tasks")
    retrain.add_argument("--base", type=Path, default=DEFAULT_MODEL)
    retrain.add_argument("--retrained", type=Path, required=True, help="model.onnx of `artsearch retrain`")
    retrain.add_argument("--catalogue", type=Path, default=Path("data/catalogues/gcompris"))
    retrain.add_argument("--cache-dir", type=Path, default=Path(".cache/training"))
    retrain.add_argument("--seed", type=int, default=1000, help="augmentation seed (training uses another)")
    retrain.add_argument("--output", type=Path, default=Path("bench/results/retrain.json"))
    retrain.set_defaults(run=run_retrain_comparison)

    _register_photos(commands)


def _register_photos(commands: argparse._SubParsersAction) -> None:
    # Nothing of the photo generator (numpy) is imported to build the parser: the CLI image, which has no
    # numpy, builds it for every command. argparse converts a string default with `type` only when the
    # command is chosen, and the kinds are checked then too.
    photos = commands.add_parser(
        "photos",
        help="visitor photos (gallery wall, grey print, detail, ...) of each painting through a running "
        "gateway: top-1/top-5 per kind, p50 latency",
        description="Sends every visitor photo of every catalogue painting to POST /v1/search of a running "
        "gateway and reports per kind whether the painting comes first / in the top 5. Tune on the "
        "development seeds (the default); --seeds report gives the published numbers.",
    )
    photos.add_argument("--gateway", default=None, help=LOCAL_GATEWAY_HELP)
    photos.add_argument("--catalogue", type=Path, default=Path("data/catalogues/gcompris"))
    photos.add_argument(
        "--seeds",
        type=_seed_list,
        default="development",
        help="'development' (default), 'report' (published numbers only), or comma-separated integers",
    )
    photos.add_argument("--kinds", type=_visitor_kind, nargs="+", default=None, help="default: every kind")
    photos.add_argument("--paintings", type=int, default=None, help="only the first N paintings")
    photos.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a query parameter of /v1/search for every query (repeatable), e.g. rerank=false",
    )
    photos.add_argument("--search", default=None, help="search service address, to record the index size")
    photos.add_argument("--cache-dir", type=Path, default=Path(".cache/visitor-photos"))
    photos.add_argument("--workers", type=int, default=1, help="processes making the photos")
    photos.add_argument("--output", type=Path, default=None, help="write the result as JSON here")
    photos.set_defaults(run=run_photos)

    compare = commands.add_parser("photos-compare", help="two `eval photos` results side by side (Markdown)")
    compare.add_argument("before", type=Path)
    compare.add_argument("after", type=Path)
    compare.set_defaults(run=run_photos_compare)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the exported ONNX model")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/eval"), help="described sets")
    parser.add_argument("--debs-dir", type=Path, default=Path(".cache/debs"), help="downloaded .deb files")
    parser.add_argument("--seed", type=int, default=0, help="photo variants and category sampling")
    parser.add_argument(
        "--max-category-images", type=int, default=2000, help="stratified sample size per category set"
    )
    parser.add_argument("--min-per-category", type=int, default=10)
    parser.add_argument("--grid-step", type=float, default=0.1, help="weight grid resolution")


def _visitor_kind(text: str) -> str:
    from artsearch_tools.evaluation.visitor_photos import VISITOR_KINDS

    if text not in VISITOR_KINDS:
        raise argparse.ArgumentTypeError(f"unknown kind {text!r}; one of {', '.join(VISITOR_KINDS)}")
    return text


def _seed_list(text: str) -> tuple[int, ...]:
    from artsearch_tools.evaluation.visitor_photos import DEVELOPMENT_SEEDS, REPORT_SEEDS

    named = {"development": DEVELOPMENT_SEEDS, "report": REPORT_SEEDS}
    if text in named:
        return named[text]
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'development', 'report' or a comma-separated list of integers"
        ) from None


def _query_params(pairs: Sequence[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise ValueError(f"--param {pair!r} is not NAME=VALUE")
        params[name] = value
    return params


def _block_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of block indices") from None


def _settings(args: argparse.Namespace) -> Any:
    from artsearch_tools.evaluation.descriptors import EvalSettings

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"{args.model} is missing: export the model with `make model`")
    return EvalSettings(
        model_path=args.model,
        cache_dir=args.cache_dir,
        debs_dir=args.debs_dir,
        seed=args.seed,
        max_category_images=args.max_category_images,
        min_per_category=args.min_per_category,
        grid_step=args.grid_step,
    )


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1) + "\n")


def run_descriptors(args: argparse.Namespace) -> int:
    from artsearch_tools.evaluation.descriptors import markdown_report, run_evaluation

    result = run_evaluation(_settings(args))
    _write_json(args.output, result)
    report = markdown_report(result)
    if args.markdown:
        args.markdown.write_text(report)
    selection = result["selection"]
    summary = (
        f"{report}\ngrid choice: {selection['chosen']} (meets targets: {selection['meets_targets']})\n"
        f"wrote {args.output} in {result['timing_s']['total']:.0f} s"
    )
    emit(args, summary, result)
    if not selection["defaults_are_chosen"]:
        print("note: the descriptor's default weights are not the grid's choice", file=sys.stderr)
    if not selection["defaults_meet_targets"]:
        print("the default weights miss the targets", file=sys.stderr)
        return 1
    return 0


def run_style_blocks(args: argparse.Namespace) -> int:
    from artsearch_tools.evaluation.descriptors import style_block_markdown, style_block_study

    study = style_block_study(_settings(args), args.candidates)
    _write_json(args.output, study)
    emit(args, f"{style_block_markdown(study)}\nwrote {args.output}", study)
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    from artsearch_tools.evaluation.quality import SET_CHOICES, quality_markdown, run_quality

    unknown = sorted(set(args.sets) - set(SET_CHOICES))
    if unknown:
        raise ValueError(f"unknown sets {unknown}; choose from {list(SET_CHOICES)}")
    result = run_quality(_settings(args), args.sets, args.images)
    _write_json(args.output, result)
    written = f"wrote {args.output} and {', '.join(result['pictures'])} in {result['timing_s']:.0f} s"
    emit(args, f"{quality_markdown(result)}\n{written}", result)
    return 0


def run_retrain_comparison(args: argparse.Namespace) -> int:
    from artsearch_tools.evaluation.retraining import compare_models, retrain_markdown

    for role, model in (("base", args.base), ("retrained", args.retrained)):
        if not Path(model).is_file():
            raise FileNotFoundError(f"the {role} model {model} is missing (`make retrain` makes one)")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = compare_models(args.base, args.retrained, args.catalogue, args.cache_dir, args.seed)
    _write_json(args.output, result)
    emit(args, f"{retrain_markdown(result)}\nwrote {args.output}", result)
    return 0


def run_photos(args: argparse.Namespace) -> int:
    from artsearch_tools.evaluation.visitor_photos import VISITOR_KINDS
    from artsearch_tools.evaluation.visitor_search import markdown_table, run_photo_evaluation

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per query
    result = run_photo_evaluation(
        args.gateway or local_gateway_url(),
        args.catalogue,
        seeds=args.seeds,
        kinds=args.kinds or list(VISITOR_KINDS),
        cache_dir=args.cache_dir,
        params=_query_params(args.param),
        search_address=args.search,
        paintings=args.paintings,
        workers=args.workers,
    )
    if args.output:
        _write_json(args.output, result)
    written = f"\nwrote {args.output}" if args.output else ""
    emit(args, markdown_table(result) + written, result)
    return 0


def run_photos_compare(args: argparse.Namespace) -> int:
    from artsearch_tools.evaluation.visitor_search import comparison_table

    before, after = (json.loads(Path(path).read_text()) for path in (args.before, args.after))
    emit(args, comparison_table(before, after), {"before": before, "after": after})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artsearch_tools.evaluation.cli")
    register(parser.add_subparsers(dest="command", required=True))
    add_json_options(parser)
    # `python -m artsearch_tools.evaluation.cli descriptors` reads naturally; accept it as `eval descriptors`.
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] != ["eval"]:
        arguments = ["eval", *arguments]
    args = parser.parse_args(arguments)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
