"""Would a colour aspect blind to a phone's colour cast find more visitor photos? Measured before making one.

The phone photos the search misses lose on the colour aspect (docs/evaluation.md): the cast moves their pixels
across the bins of the stored 10-level RGB histogram. Changing the histogram is a new descriptor revision
(every artwork encoded again), so candidates are compared here first, in process, on the demo catalogue's
paintings and the evaluation's visitor photos (development seeds by default): for each photo, the fused score
the gateway computes (content 0.5, style 0.3, colour 0.2 of the default weights; colour left out of a grey
photo; the better of the whole photo and the located painting's crop) against every painting, with the colour
aspect of each candidate histogram on both sides. Reported per photo kind: the share of photos whose painting
scores first, and the painting's mean rank on the colour aspect alone.

Candidates: the stored histogram (10 levels per channel, white left out); the same after a grey-world white
balance of each picture (every channel scaled to the same mean); 6 levels per channel (coarser bins, which a
shift crosses less often), with and without the balance; the rg chromaticity (8 x 8) by 4 lightness levels
after the balance. Two more leave the stored histograms as they are and change only how the photo's is
compared, which would need no re-encoding: the photo's histogram spread to the neighbouring bins (a cast that
moves pixels one bin over still meets them), and the best of the 27 shifts of the photo's histogram by one
level per channel (a shifted one counted at 0.8), also for the located painting's crop alone (a crop shows a
whole painting, whose cast is the photo's; a detail is seldom located).

    .venv/bin/python -m bench.colour_aspects [--seeds development|report|0,1,2] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
from artsearch_tools.evaluation.cli import _seed_list
from artsearch_tools.evaluation.visitor_photos import DEVELOPMENT_SEEDS, VISITOR_KINDS
from artsearch_tools.evaluation.visitor_search import prepare_photos
from services.encoder.aspect_builder import (
    DEFAULT_WEIGHTS,
    WHITE_THRESHOLD,
    colour_part,
    content_part,
    style_part,
)
from services.encoder.backends import STYLE_OUTPUT, OnnxRuntimeBackend
from services.encoder.images import open_image
from services.encoder.painting_locator import analyse_photo
from services.encoder.server import ANALYSIS_WORK_SIDE

ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 80_000_000
Histogram = Callable[[np.ndarray], np.ndarray]
# (the photo's pictures' pixels, the stored histograms) -> colour scores [pictures, paintings]
QuerySideScore = Callable[[np.ndarray, np.ndarray], np.ndarray]
_LEVELS = 10  # the stored histogram's levels per channel


def grey_world(pixels: np.ndarray) -> np.ndarray:
    """Each picture's channels scaled to the same mean over its non-white pixels (uint8 [N, H, W, 3])."""
    balanced = np.empty_like(pixels)
    for index, picture in enumerate(pixels.astype(np.float32)):
        paint = picture[~(picture >= WHITE_THRESHOLD).all(-1)]
        means = (paint if paint.size else picture.reshape(-1, 3)).mean(0) + 1e-3
        balanced[index] = np.clip(picture * (means.mean() / means), 0, 255).astype(np.uint8)
    return balanced


def _hellinger(codes: np.ndarray, white: np.ndarray, bins: int) -> np.ndarray:
    rows = []
    for picture_codes, picture_white in zip(codes, white, strict=True):
        counts = np.bincount(picture_codes[~picture_white].ravel(), minlength=bins).astype(np.float64)
        if counts.sum() == 0:
            counts[-1] = 1
        rows.append(np.sqrt(counts / counts.sum()))
    return np.asarray(rows, dtype=np.float32)


def rgb_levels(pixels: np.ndarray, levels: int) -> np.ndarray:
    """A joint RGB histogram of `levels` per channel, white left out, Hellinger-mapped (as the stored one)."""
    quantised = (pixels.astype(np.int32) * levels) >> 8
    codes = (quantised[..., 0] * levels + quantised[..., 1]) * levels + quantised[..., 2]
    return _hellinger(codes, (pixels >= WHITE_THRESHOLD).all(-1), levels**3)


def chromaticity(pixels: np.ndarray, levels: int = 8, lightness_levels: int = 4) -> np.ndarray:
    """rg chromaticity (`levels` x `levels`) by lightness, after the grey-world balance."""
    balanced = grey_world(pixels).astype(np.float32)
    total = balanced.sum(-1) + 1e-3
    red = np.clip((balanced[..., 0] / total * levels).astype(np.int32), 0, levels - 1)
    green = np.clip((balanced[..., 1] / total * levels).astype(np.int32), 0, levels - 1)
    lightness = (balanced.mean(-1) * lightness_levels / 256).astype(np.int32)
    codes = (lightness * levels + red) * levels + green
    return _hellinger(codes, (balanced >= WHITE_THRESHOLD).all(-1), lightness_levels * levels * levels)


CANDIDATES: dict[str, Histogram] = {
    "stored (10 levels)": colour_part,
    "grey-world, 10 levels": lambda pixels: colour_part(grey_world(pixels)),
    "6 levels": lambda pixels: rgb_levels(pixels, 6),
    "grey-world, 6 levels": lambda pixels: rgb_levels(grey_world(pixels), 6),
    "grey-world, rg 8x8 x 4 lightness": chromaticity,
}


def _shifted(cube: np.ndarray, axis: int, step: int) -> np.ndarray:
    """Rows of [N, L, L, L] moved `step` bins along a channel axis; what moves past the edge is dropped."""
    if step == 0:
        return cube
    moved = np.zeros_like(cube)
    source = [slice(None)] * 4
    target = [slice(None)] * 4
    source[axis] = slice(0, -step) if step > 0 else slice(-step, None)
    target[axis] = slice(step, None) if step > 0 else slice(0, step)
    moved[tuple(target)] = cube[tuple(source)]
    return moved


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def spread_to_neighbours(rows: np.ndarray, neighbour_weight: float = 0.5) -> np.ndarray:
    """Stored-layout histograms with each bin's value added, times `neighbour_weight`, to its neighbours along
    each channel (separable), then made unit again."""
    cube = rows.reshape(-1, _LEVELS, _LEVELS, _LEVELS).astype(np.float64)
    for axis in (1, 2, 3):
        cube = cube + neighbour_weight * (_shifted(cube, axis, 1) + _shifted(cube, axis, -1))
    return _unit(cube.reshape(len(rows), -1))


def best_channel_shift(photo: np.ndarray, stored: np.ndarray, shifted_factor: float = 0.8) -> np.ndarray:
    """Per picture and painting, the best cosine over the photo's histogram moved by -1, 0 or +1 level in each
    channel (27 shifts); a moved one's cosine counted at `shifted_factor`."""
    cube = photo.reshape(-1, _LEVELS, _LEVELS, _LEVELS)
    best = np.full((len(photo), len(stored)), -np.inf, dtype=np.float32)
    for steps in np.ndindex(3, 3, 3):
        moved = cube
        for axis, step in zip((1, 2, 3), steps, strict=True):
            moved = _shifted(moved, axis, step - 1)
        factor = 1.0 if steps == (1, 1, 1) else shifted_factor
        best = np.maximum(best, factor * (_unit(moved.reshape(len(photo), -1)) @ stored.T))
    return best


QUERY_SIDE: dict[str, QuerySideScore] = {
    "stored; the photo's spread to neighbouring bins": lambda photo, stored: (
        spread_to_neighbours(colour_part(photo)) @ stored.T
    ),
    "stored; the photo's best one-level channel shift": lambda photo, stored: best_channel_shift(
        colour_part(photo), stored
    ),
    "stored; the located crop's best one-level channel shift": lambda photo, stored: _crop_only(
        best_channel_shift, photo, stored
    ),
}


def _crop_only(score: QuerySideScore, pictures: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """The whole photo compared as stored; the located painting's crop (the second picture, when there is
    one: it shows a whole painting, never a part of one) by `score`."""
    rows = colour_part(pictures) @ stored.T
    if len(pictures) > 1:
        rows[1:] = score(colour_part(pictures[1:]), stored)
    return rows


class Encoder:
    """The exported model's content and style aspects, in process."""

    def __init__(self, model: Path) -> None:
        self.backend = OnnxRuntimeBackend(model)

    def aspects(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = asyncio.run(self.backend.embed(pixels))
        return content_part(outputs[self.backend.info.features_output]), style_part(outputs[STYLE_OUTPUT])


def described_paintings(
    catalogue: Catalogue, encoder: Encoder
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The catalogue's ids, its paintings decoded as the network sees them, their content and style."""
    ids = [entry.id for entry in catalogue.entries]
    paintings = np.stack(
        [decoded_painting((catalogue.root / e.filename).read_bytes()) for e in catalogue.entries]
    )
    content, style = encoder.aspects(paintings)
    return ids, paintings, content, style


def run(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    catalogue = load_catalogue(args.catalogue)
    encoder = Encoder(args.model)
    ids, paintings, content, style = described_paintings(catalogue, encoder)
    stored = {name: histogram(paintings) for name, histogram in CANDIDATES.items()}
    stored_histograms = colour_part(paintings)
    queries = prepare_photos(catalogue, args.seeds, list(VISITOR_KINDS), args.cache_dir)
    tallies: dict[str, dict[str, list[float]]] = {}
    for query in queries:
        pixels, grey = photo_pictures(query.path.read_bytes())
        photo_content, photo_style = encoder.aspects(pixels)
        truth = ids.index(query.painting_id)
        colours = {name: histogram(pixels) @ stored[name].T for name, histogram in CANDIDATES.items()}
        for name, score in QUERY_SIDE.items():
            colours[name] = score(pixels, stored_histograms)
        for name, colour in colours.items():
            top1, colour_rank = _outcome(
                photo_content @ content.T, photo_style @ style.T, colour, grey, truth
            )
            per_kind = tallies.setdefault(name, {}).setdefault(query.kind, [0, 0, 0.0])
            per_kind[0] += top1
            per_kind[1] += 1
            per_kind[2] += colour_rank
    return {
        "what": "fused top-1 over the demo paintings with each candidate colour aspect (in process)",
        "catalogue": str(args.catalogue),
        "paintings": len(ids),
        "seeds": list(args.seeds),
        "photos": len(queries),
        "seconds": round(time.perf_counter() - started, 1),
        "candidates": {
            name: {
                "top1_overall": round(
                    sum(t[0] for t in kinds.values()) / sum(t[1] for t in kinds.values()), 4
                ),
                "per_kind": {
                    kind: {"top1": round(t[0] / t[1], 4), "mean_colour_rank": round(t[2] / t[1], 2)}
                    for kind, t in kinds.items()
                },
            }
            for name, kinds in tallies.items()
        },
    }


def decoded_painting(data: bytes) -> np.ndarray:
    return open_image(data, size=224, max_pixels=MAX_PIXELS).decode()


def photo_pictures(data: bytes) -> tuple[np.ndarray, bool]:
    """The pixels the network sees of the whole photo and, when the encoder locates one, of the painting's
    crop; whether the photo is grey-scale."""
    whole, working = open_image(
        data, size=224, max_pixels=MAX_PIXELS, work_side=ANALYSIS_WORK_SIDE
    ).decode_with_working_copy()
    analysis = analyse_photo(working, 224)
    pictures = [whole] if analysis.crop is None else [whole, analysis.crop]
    return np.stack(pictures), analysis.greyscale


def _outcome(
    content: np.ndarray, style: np.ndarray, colour: np.ndarray, grey: bool, truth: int
) -> tuple[bool, int]:
    """Whether the painting scores first (the better of the photo's pictures per painting), and its rank on
    the colour aspect alone."""
    weights = dict(DEFAULT_WEIGHTS)
    if grey:
        weights["colour"] = 0.0
    fused = (weights["content"] * content + weights["style"] * style + weights["colour"] * colour).max(0)
    best_colour = colour.max(0)
    return bool(fused.argmax() == truth), int((best_colour > best_colour[truth]).sum())


def photo_bench_arguments(argv: list[str] | None, description: str, output: str) -> argparse.Namespace:
    """The arguments of an in-process bench over the demo paintings and the visitor photos."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalogue", type=Path, default=ROOT / "data/catalogues/gcompris")
    parser.add_argument("--model", type=Path, default=ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--seeds", type=_seed_list, default=DEVELOPMENT_SEEDS)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache/visitor-photos")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results" / output)
    return parser.parse_args(argv)


def written(result: dict[str, object], output: Path) -> dict[str, object]:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    args = photo_bench_arguments(argv, __doc__ or "", "colour_aspects.json")
    result = written(run(args), args.output)
    for name, outcome in result["candidates"].items():  # type: ignore[union-attr]
        kinds = ", ".join(f"{k} {v['top1']}" for k, v in outcome["per_kind"].items())
        print(f"{name}: overall {outcome['top1_overall']} ({kinds})")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
