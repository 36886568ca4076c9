"""`artsearch eval descriptors`: how well each aspect of the descriptor, and their weightings, retrieve.

Every image is described once — the exported ONNX model run in-process by `OnnxRuntimeBackend`, then the
encoder service's own descriptor code — and the per-aspect unit vectors are cached per set under the cache
directory, keyed by the model file, the descriptor revision and the set's parameters. Because a fused
descriptor's dot product is Σ w_a cos_a, any weighting is scored from per-aspect similarity matrices
computed once; a simplex grid then picks the defaults by the rule in `choose_weights`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from artsearch_tools.evaluation import datasets
from artsearch_tools.evaluation.baselines import rgb_histogram
from artsearch_tools.evaluation.datasets import EvalImage
from artsearch_tools.evaluation.metrics import (
    chance_leave_one_out,
    chance_top_k,
    first_match_ranks,
    leave_one_out_retrieval,
)

log = logging.getLogger(__name__)

# Bump when what is cached per image changes meaning in a way the code fingerprint cannot see.
CACHE_REVISION = 1
# The code that decides what an image of a set looks like and how it is described: any change to these files
# invalidates the cached sets (the model file is in the key separately).
_DESCRIBING_MODULES = (
    "artsearch_tools/evaluation/datasets.py",
    "artsearch_tools/evaluation/photo_variants.py",
    "artsearch_tools/evaluation/baselines.py",
    "artsearch_tools/catalogue/gcompris.py",
    "services/encoder/images.py",
    "services/encoder/aspect_builder.py",
    "artsearch/descriptor_layout.py",
)
_REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE = "colour_histogram"
DETAIL_KIND = "jigsaw"  # the target is on puzzle pieces; cut-out shapes and detail crops are reported too
TARGET_DETAIL_TOP1 = 0.85
CATEGORY_SETS = ("openclipart", "tuxpaint")


# --------------------------------------------------------------------------------------------------
# Describing images (cached)
# --------------------------------------------------------------------------------------------------


@dataclass
class DescribedSet:
    """Per-aspect unit vectors of every image of one set, plus the baseline's."""

    ids: np.ndarray  # str [N]
    labels: np.ndarray  # str [N]
    kinds: np.ndarray  # str [N]
    vectors: dict[str, np.ndarray]  # aspect name (and BASELINE) -> float32 [N, length], unit rows

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {f"vector_{name}": values for name, values in self.vectors.items()}
        np.savez(tmp, ids=self.ids, labels=self.labels, kinds=self.kinds, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> DescribedSet:
        with np.load(path) as data:
            vectors = {
                key.removeprefix("vector_"): data[key] for key in data.files if key.startswith("vector_")
            }
            return cls(ids=data["ids"], labels=data["labels"], kinds=data["kinds"], vectors=vectors)


class Describer:
    """The encoder's model and descriptor code, in-process."""

    def __init__(self, model_path: Path, batch_size: int = 32) -> None:
        from services.encoder.aspect_builder import DESCRIPTOR_REVISION, DescriptorAssembler
        from services.encoder.backends import OnnxRuntimeBackend

        self.backend = OnnxRuntimeBackend(Path(model_path))
        self.assembler = DescriptorAssembler(self.backend.info)
        self.batch_size = batch_size
        model = self.backend.info.onnx_sha256[:12]
        self.fingerprint = f"{model}-d{DESCRIPTOR_REVISION}-c{CACHE_REVISION}-{code_fingerprint()}"

    @property
    def aspects(self) -> tuple[str, ...]:
        return self.assembler.layout.names

    def describe(self, images: Iterable[EvalImage]) -> DescribedSet:
        return asyncio.run(self._describe(iter(images)))

    async def _describe(self, images: Iterator[EvalImage]) -> DescribedSet:
        ids: list[str] = []
        labels: list[str] = []
        kinds: list[str] = []
        chunks: dict[str, list[np.ndarray]] = {}
        # Decoding the next batch (a thread) overlaps running the model on this one.
        upcoming = asyncio.create_task(asyncio.to_thread(_take, images, self.batch_size))
        while batch := await upcoming:
            upcoming = asyncio.create_task(asyncio.to_thread(_take, images, self.batch_size))
            pixels = np.stack([image.pixels for image in batch])
            outputs = await self.backend.embed(pixels)
            vectors = self.assembler.parts(outputs, pixels)
            vectors[BASELINE] = rgb_histogram(pixels)
            for name, values in vectors.items():
                chunks.setdefault(name, []).append(values.astype(np.float32))
            ids.extend(image.id for image in batch)
            labels.extend(image.label for image in batch)
            kinds.extend(image.kind for image in batch)
        if not ids:
            raise ValueError("the set has no images")
        return DescribedSet(
            ids=np.array(ids),
            labels=np.array(labels),
            kinds=np.array(kinds),
            vectors={name: np.concatenate(values) for name, values in chunks.items()},
        )

    def close(self) -> None:
        asyncio.run(self.backend.close())


def code_fingerprint() -> str:
    digest = hashlib.sha256()
    for module in _DESCRIBING_MODULES:
        digest.update((_REPO_ROOT / module).read_bytes())
    return digest.hexdigest()[:12]


def _take(images: Iterator[EvalImage], count: int) -> list[EvalImage]:
    return list(itertools.islice(images, count))


def describe_category_set(
    name: str, settings: EvalSettings, describer: Describer
) -> tuple[datasets.CategorySelection, DescribedSet]:
    """One Debian category set as every `artsearch eval` command selects it (a seeded sample, stratified
    by category), described through the cache."""
    from artsearch_tools.catalogue.debian import fetch_deb_package

    source = datasets.CATEGORY_SOURCES[name]
    root = fetch_deb_package(source.package, settings.debs_dir) / source.images_dir
    selection = datasets.select_category_files(
        root,
        min_per_category=settings.min_per_category,
        max_images=settings.max_category_images,
        seed=settings.seed,
    )
    parameters = {
        "seed": settings.seed,
        "max_images": settings.max_category_images,
        "min_per_category": settings.min_per_category,
        "max_pixels": datasets.CATEGORY_MAX_PIXELS,
        "files": len(selection.files),
    }
    images = lambda: datasets.category_images(selection, root)  # noqa: E731 - read only on a cache miss
    return selection, cached_set(name, parameters, images, describer, Path(settings.cache_dir))


def cached_set(
    name: str,
    parameters: Mapping[str, Any],
    images: Callable[[], Iterable[EvalImage]],
    describer: Describer,
    cache_dir: Path,
) -> DescribedSet:
    """The described set from the cache, or described now and cached."""
    key = json.dumps({"set": name, **parameters, "describer": describer.fingerprint}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{name}-{digest}.npz"
    if path.is_file():
        log.info("%s: cached (%s)", name, path.name)
        return DescribedSet.load(path)
    started = time.perf_counter()
    described = describer.describe(images())
    described.save(path)
    log.info("%s: described %d images in %.1f s", name, len(described), time.perf_counter() - started)
    return described


# --------------------------------------------------------------------------------------------------
# Tasks: any weighting scored from per-aspect similarity matrices
# --------------------------------------------------------------------------------------------------


def fused(similarities: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Σ w_a S_a: the similarity matrix of descriptors stored with these weights."""
    total: np.ndarray | None = None
    for name, weight in weights.items():
        if weight == 0:
            continue
        term = similarities[name] * np.float32(weight)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("all weights are zero")
    return total


@dataclass
class GalleryTask:
    """Queries that should find their painting among the gallery's."""

    name: str
    queries: DescribedSet
    gallery: DescribedSet
    similarities: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.similarities = {
            name: self.queries.vectors[name] @ self.gallery.vectors[name].T for name in self.queries.vectors
        }

    def score(self, weights: Mapping[str, float]) -> dict[str, Any]:
        ranks = first_match_ranks(fused(self.similarities, weights), self.queries.labels, self.gallery.labels)
        return _top_k_summary(ranks, self.queries.kinds)

    def chance(self) -> dict[str, Any]:
        size = len(self.gallery)
        result: dict[str, Any] = {"queries": len(self.queries), "top1": chance_top_k(size, 1)}
        result["top5"] = chance_top_k(size, 5)
        return result


def _top_k_summary(ranks: np.ndarray, kinds: np.ndarray) -> dict[str, Any]:
    def top(k: int, mask: np.ndarray) -> float:
        selected = ranks[mask]
        return float(np.mean((selected > 0) & (selected <= k)))

    everything = np.ones(len(ranks), dtype=bool)
    return {
        "queries": len(ranks),
        "top1": top(1, everything),
        "top5": top(5, everything),
        "by_kind": {
            str(kind): {
                "queries": int((kinds == kind).sum()),
                "top1": top(1, kinds == kind),
                "top5": top(5, kinds == kind),
            }
            for kind in sorted(set(kinds.tolist()))
        },
    }


@dataclass
class CategoryTask:
    """Leave-one-out retrieval within a labelled set."""

    name: str
    items: DescribedSet
    k: int = 10
    similarities: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.similarities = {name: values @ values.T for name, values in self.items.vectors.items()}

    def score(self, weights: Mapping[str, float]) -> dict[str, Any]:
        scores = leave_one_out_retrieval(fused(self.similarities, weights), self.items.labels, self.k)
        return {
            "queries": scores.queries,
            "map": scores.mean_average_precision,
            "p_at_10": scores.precision_at_k,
        }

    def chance(self) -> dict[str, Any]:
        scores = chance_leave_one_out(self.items.labels.tolist(), self.k)
        return {
            "queries": scores.queries,
            "map": scores.mean_average_precision,
            "p_at_10": scores.precision_at_k,
        }


@dataclass
class Benchmark:
    detail: GalleryTask  # every piece of every kind; the target is on DETAIL_KIND
    photos: GalleryTask
    categories: dict[str, CategoryTask]

    def score(self, weights: Mapping[str, float]) -> dict[str, Any]:
        detail = self.detail.score(weights)
        return {
            "detail": {
                **detail["by_kind"][DETAIL_KIND],
                "all_pieces": _without_kinds(detail),
                "by_kind": detail["by_kind"],
            },
            "photos": self.photos.score(weights),
            **{name: task.score(weights) for name, task in self.categories.items()},
        }

    def chance(self) -> dict[str, Any]:
        detail = self.detail.chance()
        return {
            "detail": {**detail, "queries": int((self.detail.queries.kinds == DETAIL_KIND).sum())},
            "photos": self.photos.chance(),
            **{name: task.chance() for name, task in self.categories.items()},
        }


def _without_kinds(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in summary.items() if key != "by_kind"}


def headline(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The published numbers of a `Benchmark.score`, without the per-kind breakdowns."""
    return {
        task: {key: value for key, value in values.items() if key not in ("by_kind", "all_pieces")}
        for task, values in scores.items()
    }


# --------------------------------------------------------------------------------------------------
# Choosing the default weights
# --------------------------------------------------------------------------------------------------


def simplex_grid(names: Sequence[str], step: float) -> list[dict[str, float]]:
    """Every weighting of `names` with weights in multiples of `step` summing to 1."""
    parts = round(1 / step)
    if not np.isclose(parts * step, 1.0):
        raise ValueError(f"step {step} does not divide 1")
    grid = []
    for combination in itertools.product(range(parts + 1), repeat=len(names) - 1):
        if sum(combination) > parts:
            continue
        counts = (*combination, parts - sum(combination))
        grid.append({name: round(count / parts, 6) for name, count in zip(names, counts, strict=True)})
    return grid


def meets_targets(scores: Mapping[str, Any], content_only: Mapping[str, Any]) -> bool:
    """Detail → painting top-1 >= 0.85, and no category set's mAP below the content aspect alone."""
    return scores["detail"]["top1"] >= TARGET_DETAIL_TOP1 and all(
        scores[name]["map"] >= content_only[name]["map"] - 1e-9 for name in CATEGORY_SETS if name in scores
    )


def painting_score(scores: Mapping[str, Any]) -> float:
    """The mean of detail and photo top-1."""
    return (scores["detail"]["top1"] + scores["photos"]["top1"]) / 2


def category_score(scores: Mapping[str, Any]) -> float:
    """The mean category mAP."""
    return float(np.mean([scores[name]["map"] for name in CATEGORY_SETS if name in scores]))


def choose_weights(
    grid: Sequence[tuple[dict[str, float], dict[str, Any]]],
    content_only: Mapping[str, Any],
    tie_tolerance: float = 0.0,
) -> tuple[dict[str, float], bool]:
    """Among the weightings that meet the targets (all of them when none does; then False), those whose
    painting score is within `tie_tolerance` of the best count as equally good at paintings — differences
    smaller than one query are noise — and the one with the best category score among them wins."""
    eligible = [entry for entry in grid if meets_targets(entry[1], content_only)]
    pool = eligible or list(grid)
    best = max(painting_score(scores) for _, scores in pool)
    tied = [entry for entry in pool if painting_score(entry[1]) >= best - tie_tolerance - 1e-12]
    weights, _ = max(tied, key=lambda entry: (category_score(entry[1]), painting_score(entry[1])))
    return weights, bool(eligible)


def one_query_tolerance(benchmark: Benchmark) -> float:
    """How much one query moves the painting score: half a detail query plus half a photo query."""
    detail_queries = int((benchmark.detail.queries.kinds == DETAIL_KIND).sum())
    return (1 / detail_queries + 1 / len(benchmark.photos.queries)) / 2


# --------------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSettings:
    model_path: Path
    cache_dir: Path
    debs_dir: Path
    seed: int = 0
    max_category_images: int = 2000
    min_per_category: int = 10
    grid_step: float = 0.1
    batch_size: int = 32


def load_benchmark(settings: EvalSettings, describer: Describer) -> tuple[Benchmark, dict[str, Any]]:
    """Describes (or loads from the cache) every set; returns the tasks and a description of the sets."""
    from artsearch_tools.catalogue.debian import fetch_deb_package
    from artsearch_tools.catalogue.gcompris import PACKAGE as GCOMPRIS_PACKAGE

    cache = Path(settings.cache_dir)
    catalogue = datasets.gcompris_catalogue(cache, settings.debs_dir)
    gcompris = fetch_deb_package(GCOMPRIS_PACKAGE, settings.debs_dir)
    paintings = cached_set("paintings", {}, lambda: datasets.gcompris_paintings(catalogue), describer, cache)
    pieces = cached_set("pieces", {}, lambda: datasets.gcompris_pieces(gcompris), describer, cache)
    photos = cached_set(
        "photos",
        {"seed": settings.seed},
        lambda: datasets.gcompris_photos(catalogue, settings.seed),
        describer,
        cache,
    )
    sets: dict[str, Any] = {
        "paintings": {"images": len(paintings), "source": f"Debian {GCOMPRIS_PACKAGE}"},
        "pieces": {"images": len(pieces), "by_kind": _count(pieces.kinds)},
        "photos": {"images": len(photos), "seed": settings.seed, "by_kind": _count(photos.kinds)},
    }
    categories = {}
    for name in CATEGORY_SETS:
        source = datasets.CATEGORY_SOURCES[name]
        selection, described = describe_category_set(name, settings, describer)
        categories[name] = CategoryTask(name, described)
        sets[name] = {
            "package": source.package,
            "licence": source.licence,
            "png_files": selection.total_files,
            "categories": selection.categories,
            "dropped_categories_under_min": selection.dropped_small_categories,
            "min_per_category": settings.min_per_category,
            "sampled": selection.sampled,
            "selected": len(selection.files),
            "evaluated": len(described),
            "skipped_over_pixel_cap_or_unreadable": len(selection.files) - len(described),
        }
    benchmark = Benchmark(
        detail=GalleryTask("detail", pieces, paintings),
        photos=GalleryTask("photos", photos, paintings),
        categories=categories,
    )
    return benchmark, sets


def _count(kinds: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(kinds, return_counts=True)
    return {str(value): int(count) for value, count in zip(values, counts, strict=True)}


def run_evaluation(settings: EvalSettings) -> dict[str, Any]:
    """Everything `artsearch eval descriptors` reports, as a JSON-ready dict."""
    from services.encoder.aspect_builder import DESCRIPTOR_REVISION

    started = time.perf_counter()
    describer = Describer(settings.model_path, settings.batch_size)
    try:
        benchmark, sets = load_benchmark(settings, describer)
    finally:
        describer.close()
    described_s = time.perf_counter() - started
    aspects = describer.aspects
    layout = describer.assembler.layout
    defaults = layout.default_weights

    methods: dict[str, Any] = {"chance": benchmark.chance(), BASELINE: benchmark.score({BASELINE: 1.0})}
    for name in aspects:
        methods[f"{name}_only"] = benchmark.score({name: 1.0})
    methods["defaults"] = benchmark.score(defaults)
    methods["equal_weights"] = benchmark.score({name: 1 / len(aspects) for name in aspects})

    grid_started = time.perf_counter()
    grid = [(weights, benchmark.score(weights)) for weights in simplex_grid(aspects, settings.grid_step)]
    tolerance = one_query_tolerance(benchmark)
    chosen, feasible = choose_weights(grid, methods["content_only"], tolerance)
    grid_s = time.perf_counter() - grid_started

    return {
        "command": "artsearch eval descriptors",
        "model": {
            "name": describer.backend.info.name,
            "version": describer.backend.info.version,
            "onnx_sha256": describer.backend.info.onnx_sha256,
            "descriptor_version": describer.assembler.version,
            "descriptor_revision": DESCRIPTOR_REVISION,
        },
        "layout": [
            {"name": a.name, "offset": a.offset, "length": a.length, "default_weight": a.default_weight}
            for a in layout.aspects
        ],
        "sets": sets,
        "settings": {
            "seed": settings.seed,
            "max_category_images": settings.max_category_images,
            "min_per_category": settings.min_per_category,
            "grid_step": settings.grid_step,
            "category_max_pixels": datasets.CATEGORY_MAX_PIXELS,
        },
        "targets": {"detail_top1": TARGET_DETAIL_TOP1, "category_map": "not below content_only"},
        "methods": methods,
        "grid": [{"weights": weights, "scores": headline(scores)} for weights, scores in grid],
        "selection": {
            "rule": (
                "among weightings with detail (puzzle piece) top-1 >= 0.85 and every category mAP >= "
                "content_only: those whose mean of detail and photo top-1 is within one query "
                "(tie_tolerance) of the best, then the highest mean category mAP"
            ),
            "tie_tolerance": tolerance,
            "chosen": chosen,
            "meets_targets": feasible,
            "defaults": defaults,
            "defaults_are_chosen": all(
                np.isclose(defaults[name], chosen[name], atol=1e-6) for name in aspects
            ),
            "defaults_meet_targets": meets_targets(methods["defaults"], methods["content_only"]),
        },
        "timing_s": {
            "describe_or_load": round(described_s, 1),
            "grid": round(grid_s, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }


def style_block_study(settings: EvalSettings, candidates: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Which blocks should feed the style output: for each candidate, a model exported with those taps
    (cached under the cache directory; needs torch), every set described with it, and the grid's best
    weighting by the same rule as the defaults."""
    from artsearch_tools.model_export import export_onnx

    rows = []
    for blocks in candidates:
        tag = "-".join(str(block) for block in blocks)
        model = Path(settings.cache_dir) / "style-block-models" / tag / "model.onnx"
        if export_onnx.main(["--output", str(model), "--style-blocks", ",".join(map(str, blocks))]) != 0:
            raise RuntimeError(f"exporting a model with style blocks {tag} failed")
        describer = Describer(model, settings.batch_size)
        try:
            benchmark, _ = load_benchmark(replace(settings, model_path=model), describer)
        finally:
            describer.close()
        content_only = benchmark.score({"content": 1.0})
        grid = [(w, benchmark.score(w)) for w in simplex_grid(describer.aspects, settings.grid_step)]
        chosen, feasible = choose_weights(grid, content_only, one_query_tolerance(benchmark))
        rows.append(
            {
                "style_blocks": list(blocks),
                "style_width": describer.assembler.layout.aspect("style").length,
                "style_only": headline(benchmark.score({"style": 1.0})),
                "chosen": chosen,
                "meets_targets": feasible,
                "at_chosen": headline(_score_of(grid, chosen)),
            }
        )
    return {"command": "artsearch eval style-blocks", "grid_step": settings.grid_step, "candidates": rows}


def _score_of(
    grid: Sequence[tuple[dict[str, float], dict[str, Any]]], weights: Mapping[str, float]
) -> dict[str, Any]:
    return next(scores for candidate, scores in grid if candidate == weights)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

_ROW_TITLES = {
    "chance": "chance",
    BASELINE: "colour histogram (RGB 8³, baseline)",
    "content_only": "content only (ImageNet features)",
    "style_only": "style only",
    "colour_only": "colour only",
    "equal_weights": "fused, equal weights",
    "defaults": "**fused, defaults**",
}


def _weights_text(weights: Mapping[str, float]) -> str:
    return " / ".join(f"{name} {value:.1f}" for name, value in weights.items())


def markdown_report(result: Mapping[str, Any]) -> str:
    """The published tables: headline metrics per method, then breakdowns by piece and photo kind."""
    methods = result["methods"]
    defaults = result["selection"]["defaults"]
    lines = [
        f"Default weights: {_weights_text(defaults)}.",
        "",
        "| method | detail → painting top-1 | top-5 | bad photo → painting top-1 | top-5 "
        "| OpenClipart mAP | P@10 | Tux Paint mAP | P@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, title in _ROW_TITLES.items():
        if key not in methods:
            continue
        s = methods[key]
        cells = [
            s["detail"]["top1"], s["detail"]["top5"], s["photos"]["top1"], s["photos"]["top5"],
            s["openclipart"]["map"], s["openclipart"]["p_at_10"],
            s["tuxpaint"]["map"], s["tuxpaint"]["p_at_10"],
        ]  # fmt: skip
        lines.append(f"| {title} | " + " | ".join(f"{value:.3f}" for value in cells) + " |")
    lines += [
        "",
        _kind_table(methods, "detail", "query kind (pieces)"),
        "",
        _kind_table(methods, "photos", "photo kind"),
    ]
    return "\n".join(lines) + "\n"


def _kind_table(methods: Mapping[str, Any], task: str, heading: str) -> str:
    shown = [
        key for key in (BASELINE, "content_only", "style_only", "colour_only", "defaults") if key in methods
    ]
    kinds = methods["defaults"][task]["by_kind"]
    header = f"| {heading} | n | " + " | ".join(_ROW_TITLES[key] + " top-1" for key in shown) + " |"
    rows = [header, "|---|---|" + "---|" * len(shown)]
    for kind, counts in kinds.items():
        cells = " | ".join(f"{methods[key][task]['by_kind'][kind]['top1']:.3f}" for key in shown)
        rows.append(f"| {kind} | {counts['queries']} | {cells} |")
    return "\n".join(rows)


def style_block_markdown(study: Mapping[str, Any]) -> str:
    lines = [
        "| style blocks | width | style only: detail top-1 | photo top-1 | OpenClipart mAP | Tux Paint mAP "
        "| best weights (content / style / colour) | fused: detail top-1 | photo top-1 | OpenClipart mAP "
        "| Tux Paint mAP |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in study["candidates"]:
        alone, best = row["style_only"], row["at_chosen"]
        weights = " / ".join(f"{value:.1f}" for value in row["chosen"].values())
        if not row["meets_targets"]:
            weights += " (misses targets)"
        cells = [
            ", ".join(map(str, row["style_blocks"])), str(row["style_width"]),
            f"{alone['detail']['top1']:.3f}", f"{alone['photos']['top1']:.3f}",
            f"{alone['openclipart']['map']:.3f}", f"{alone['tuxpaint']['map']:.3f}", weights,
            f"{best['detail']['top1']:.3f}", f"{best['photos']['top1']:.3f}",
            f"{best['openclipart']['map']:.3f}", f"{best['tuxpaint']['map']:.3f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
