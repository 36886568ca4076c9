"""Style prediction with clip art in the index: the old vote (every label of the nearest STYLE_NEIGHBOURS)
against the gateway's vote now (only art-style labels; with fewer than STYLE_MIN_ART_NEIGHBOURS of them
among the nearest, the nearest art-style artworks), as services/gateway/query.py does it.

In-process and exact (cosine over the fused descriptor): the demo paintings (art styles) beside labelled
catalogues declared `category` (the folders `artsearch catalogue openclipart|tuxpaint|wesnoth` writes), the
queries each painting and its visitor photos (artsearch_tools.evaluation.visitor_photos, development seed).
Reports, per query kind: how often a category label is predicted, how often the painting's own style is,
and how often the second search is needed.

    .venv/bin/python -m bench.style_vote_distractors var/eval-photos/catalogues/{openclipart,tuxpaint,wesnoth}
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from artsearch.style_vote import CATEGORY, predict_style
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.evaluation.datasets import EvalImage, pixels_from_file
from artsearch_tools.evaluation.descriptors import Describer
from bench.source_inference import fused_vectors, visitor_images
from services.encoder.images import ImageRejected

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOURS = 10  # STYLE_NEIGHBOURS
MIN_ART = 3  # STYLE_MIN_ART_NEIGHBOURS
MAX_PIXELS = 4_000_000


def describe_catalogues(
    describer: Describer, folders: Sequence[Path]
) -> tuple[list[str], list[str], np.ndarray]:
    """Labels, label kinds and fused descriptors of every artwork of the distractor catalogues."""
    images, labels, kinds = [], [], []
    for folder in folders:
        catalogue = load_catalogue(folder)
        kind = catalogue.style_labels or "art"
        for entry in catalogue.entries:
            try:
                pixels = pixels_from_file(catalogue.path_of(entry), max_pixels=MAX_PIXELS)
            except ImageRejected:  # a file the encoder would refuse is left out here too
                continue
            images.append(EvalImage(entry.id, entry.style, pixels, catalogue.name))
            labels.append(entry.style)
            kinds.append(kind)
    return labels, kinds, fused_vectors(describer, images)


def votes(similarity: np.ndarray, labels: Sequence[str], is_art: np.ndarray) -> tuple[str, str, bool]:
    """(old prediction, new prediction, whether the new one needed the second search)."""
    order = np.argsort(-similarity, kind="stable")
    nearest = order[:NEIGHBOURS]
    old = predict_style([(labels[i], float(similarity[i])) for i in nearest]).label
    art = [i for i in nearest if is_art[i]]
    searched = len(art) < MIN_ART
    if searched:
        art = [i for i in order if is_art[i]][:NEIGHBOURS]
    new = predict_style([(labels[i], float(similarity[i])) for i in art]).label
    return old, new, searched


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("distractors", nargs="+", type=Path, help="labelled catalogue folders")
    parser.add_argument("--catalogue", type=Path, default=ROOT / "data/catalogues/gcompris")
    parser.add_argument("--model", type=Path, default=ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/style_vote_distractors.json")
    args = parser.parse_args()
    started = time.perf_counter()
    describer = Describer(args.model)
    paintings = sorted(load_catalogue(args.catalogue).entries, key=lambda e: e.id)
    root = args.catalogue
    stored = [EvalImage(e.id, e.style, pixels_from_file(root / e.filename), "painting") for e in paintings]
    art_vectors = fused_vectors(describer, stored)
    d_labels, d_kinds, d_vectors = describe_catalogues(describer, args.distractors)
    labels = [e.style for e in paintings] + d_labels
    is_art = np.array([True] * len(paintings) + [kind != CATEGORY for kind in d_kinds])
    index = np.concatenate([art_vectors, d_vectors])
    categories = set(d_labels[i] for i, kind in enumerate(d_kinds) if kind == CATEGORY)
    pictures = {e.id: Image.open(root / e.filename).convert("RGB") for e in paintings}
    photos = [EvalImage(e.id, e.id, stored[i].pixels, "painting") for i, e in enumerate(paintings)]
    photos += visitor_images(pictures)
    photo_vectors = fused_vectors(describer, photos)
    describer.close()
    style_of = {e.id: e.style for e in paintings}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for photo, vector in zip(photos, photo_vectors, strict=True):
        old, new, searched = votes(index @ vector, labels, is_art)
        tally = counts[photo.kind]
        tally["queries"] += 1
        tally["old_category"] += old in categories
        tally["new_category"] += new in categories
        tally["old_right"] += old == style_of[photo.label]
        tally["new_right"] += new == style_of[photo.label]
        tally["second_search"] += searched
    total = {name: sum(t[name] for t in counts.values()) for name in next(iter(counts.values()))}
    result = {
        "distractors": len(d_labels),
        "distractor_catalogues": [str(f) for f in args.distractors],
        "seconds": round(time.perf_counter() - started, 1),
        "all": _shares(total),
        "per_kind": {kind: _shares(tally) for kind, tally in counts.items()},
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["all"]), f"{len(d_labels)} distractors")


def _shares(tally: dict[str, int]) -> dict[str, float]:
    queries = tally["queries"]
    return {"queries": queries, **{k: round(v / queries, 4) for k, v in tally.items() if k != "queries"}}


if __name__ == "__main__":
    main()
