"""Would a photo that arrived turned by 90 degrees be found if the photo were also searched turned back?

A phone photo whose orientation tag was lost arrives on its side (`sideways` in the visitor photos); the
encoder cannot tell which way is up, and nothing in the query path turns it. The colour aspect does not see a
turn, but the content and style aspects do. Measured here in process, before any change to the query path, on
the demo catalogue's paintings and the evaluation's visitor photos (development seeds by default): for each
photo, the fused score the gateway computes (content 0.5, style 0.3, colour 0.2 of the default weights;
colour left out of a grey photo) of the whole photo against every painting, upright and turned a quarter
either way. The rule measured: the photo is taken as turned when its upright best match scores below
`threshold` (a confident photo is never turned, and never pays for the two extra network runs) and a turned
copy's best beats the upright best by at least `margin`. Reported per (margin, threshold) and photo kind:
top-1, and the share of photos that would need the turned copies encoded.

    .venv/bin/python -m bench.turned_photos [--seeds development|report|0,1,2] [--output FILE]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.evaluation.visitor_photos import VISITOR_KINDS
from artsearch_tools.evaluation.visitor_search import prepare_photos
from bench.colour_aspects import (
    Encoder,
    described_paintings,
    photo_bench_arguments,
    photo_pictures,
    written,
)
from services.encoder.aspect_builder import DEFAULT_WEIGHTS, colour_part

MARGINS = (0.0, 0.02, 0.05, 0.1)
THRESHOLDS = (0.6, 0.7, 0.8, float("inf"))


@dataclass(frozen=True)
class PhotoScores:
    """A photo's fused scores against every painting: rows upright, a quarter turn left, a quarter right."""

    kind: str
    truth: int
    fused: np.ndarray  # [3, paintings]


def answer(scores: np.ndarray, margin: float, threshold: float) -> tuple[int, bool]:
    """The painting answered for a photo's [upright, turned left, turned right] scores, and whether the
    turned copies had to be encoded (the upright best is below `threshold`)."""
    best = scores.max(axis=1)
    if best[0] >= threshold:
        return int(scores[0].argmax()), False
    turned = 1 + int(best[1:].argmax())
    chosen = turned if best[turned] >= best[0] + margin else 0
    return int(scores[chosen].argmax()), True


def tally(photos: Sequence[PhotoScores], margin: float, threshold: float) -> dict[str, dict[str, float]]:
    per_kind: dict[str, list[int]] = {}
    for photo in photos:
        found, encoded = answer(photo.fused, margin, threshold)
        counts = per_kind.setdefault(photo.kind, [0, 0, 0])
        counts[0] += found == photo.truth
        counts[1] += encoded
        counts[2] += 1
    overall = [sum(counts[i] for counts in per_kind.values()) for i in range(3)]
    per_kind["overall"] = overall
    return {
        kind: {"top1": round(found / total, 4), "turned_encoded": round(encoded / total, 4)}
        for kind, (found, encoded, total) in per_kind.items()
    }


def measure(args: argparse.Namespace) -> list[PhotoScores]:
    catalogue = load_catalogue(args.catalogue)
    encoder = Encoder(args.model)
    ids, paintings, content, style = described_paintings(catalogue, encoder)
    colour = colour_part(paintings)
    photos = []
    for query in prepare_photos(catalogue, args.seeds, list(VISITOR_KINDS), args.cache_dir):
        pictures, grey = photo_pictures(query.path.read_bytes())
        whole = pictures[:1]
        turned = np.ascontiguousarray(
            np.concatenate([whole, np.rot90(whole, 1, axes=(1, 2)), np.rot90(whole, -1, axes=(1, 2))])
        )
        photo_content, photo_style = encoder.aspects(turned)
        weights = dict(DEFAULT_WEIGHTS, colour=0.0) if grey else DEFAULT_WEIGHTS
        fused = (
            weights["content"] * photo_content @ content.T
            + weights["style"] * photo_style @ style.T
            + weights["colour"] * colour_part(turned) @ colour.T
        )
        photos.append(PhotoScores(query.kind, ids.index(query.painting_id), fused))
    return photos


def run(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    photos = measure(args)
    rules = {
        f"margin {margin}, threshold {threshold}": tally(photos, margin, threshold)
        for margin in MARGINS
        for threshold in THRESHOLDS
    }
    return {
        "what": "whole-photo fused top-1 over the demo paintings, also searched turned (in process)",
        "catalogue": str(args.catalogue),
        "paintings": len({photo.truth for photo in photos}),
        "seeds": list(args.seeds),
        "photos": len(photos),
        "seconds": round(time.perf_counter() - started, 1),
        "upright_only": tally(photos, 0.0, float("-inf")),
        "rules": rules,
    }


def main(argv: list[str] | None = None) -> int:
    args = photo_bench_arguments(argv, __doc__ or "", "turned_photos.json")
    result = written(run(args), args.output)
    for rule, kinds in {"upright only": result["upright_only"], **result["rules"]}.items():  # type: ignore[dict-item]
        summary = ", ".join(f"{kind} {v['top1']}" for kind, v in kinds.items())
        print(f"{rule}: {summary} (turned copies encoded for {kinds['overall']['turned_encoded']:.0%})")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
