"""How well the source artist is inferred from the visual candidates: the seed system's rule (the artist of
the most similar candidate in the influence graph) against the similarity-weighted vote of the top candidates
(services.gateway.fusion.vote_source_artist), over a grid of vote sizes and softmax temperatures.

On the demo catalogue (data/catalogues/gcompris), in-process (the exported model, exact cosine over the
fused descriptor), with three kinds of queries:
  * leave-one-out: each painting's own descriptor, the painting left out of the candidates; only paintings
    whose artist has another work in the catalogue count (the others cannot be right);
  * photo variants (artsearch_tools.evaluation.photo_variants) of each painting, the painting in the index;
  * visitor photos (artsearch_tools.evaluation.visitor_photos: gallery wall, grey print, detail, ...),
    when that module is present.
Precision: the share of queries whose inferred artist is the painting's. Also the mean confidence (the
winner's share) of right and of wrong answers, which the boost is scaled by. And, for the photos (the
painting in the index), how often the painting itself ranks first after the influence re-rank with the
curated graph (services.influence, in-process): visual order (no re-rank), the seed rule (c = 1) and the
vote with the default parameters (the boost scaled by c: the winner's share, or its lead over the
runner-up as the gateway applies it, under each `source_min_confidence`).

    .venv/bin/python -m bench.source_inference [--output bench/results/source_inference.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from artsearch.artists import artist_key
from artsearch.descriptor_layout import assemble
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.evaluation.datasets import EvalImage, pixels_from_file, pixels_from_image
from artsearch_tools.evaluation.descriptors import Describer
from artsearch_tools.evaluation.photo_variants import photo_variants
from services.gateway.fusion import (
    Candidate,
    FusionParams,
    SourceVoteParams,
    effective_confidence,
    rank_with_influence,
    vote_source_artist,
)
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.graph import DistanceResult, InfluenceGraph

ROOT = Path(__file__).resolve().parents[1]
TOPS = (3, 5, 10, 20)
TEMPERATURES = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 1.0)
SEED = 0
MAX_HOPS = 10
MIN_CONFIDENCES = (0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class Query:
    kind: str
    painting: str
    vector: np.ndarray  # fused descriptor, unit
    exclude: bool  # leave the painting itself out of the candidates


def graph_keys(artists_csv: Path) -> set[str]:
    """Every key and alias of the curated influence graph, normalised."""
    keys: set[str] = set()
    with artists_csv.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            keys.add(artist_key(row["key"]))
            keys.update(artist_key(alias) for alias in (row.get("aliases") or "").split(";") if alias)
    return keys


def fused_vectors(describer: Describer, images: Sequence[EvalImage]) -> np.ndarray:
    described = describer.describe(images)
    layout = describer.assembler.layout
    return assemble({name: described.vectors[name] for name in layout.names}, layout)


def visitor_images(paintings: dict[str, Image.Image]) -> list[EvalImage]:
    try:
        from artsearch_tools.evaluation.visitor_photos import NEIGHBOUR_KINDS, VISITOR_KINDS, visitor_photos
    except ImportError:
        return []
    # The kinds of the published run (bench/results/source_inference.json): those of one painting alone.
    kinds = tuple(kind for kind in VISITOR_KINDS if kind not in NEIGHBOUR_KINDS)
    return [
        EvalImage(f"{pid}#{photo.kind}", pid, pixels_from_image(photo.image), f"visitor:{photo.kind}")
        for pid, image in paintings.items()
        for photo in visitor_photos(image, seed=SEED, key=pid, kinds=kinds)
    ]


def variant_images(paintings: dict[str, Image.Image]) -> list[EvalImage]:
    return [
        EvalImage(f"{pid}#{variant.kind}", pid, pixels_from_image(variant.image), f"variant:{variant.kind}")
        for pid, image in paintings.items()
        for variant in photo_variants(image, seed=SEED, key=pid)
    ]


def nearest_in_graph(order: Iterable[int], artists: Sequence[str], in_graph: set[str]) -> str | None:
    """The seed system's rule: the artist of the most similar candidate in the graph."""
    return next((artists[i] for i in order if artists[i] in in_graph), None)


def evaluate(
    queries: Sequence[Query],
    ids: Sequence[str],
    vectors: np.ndarray,
    artists: Sequence[str],
    in_graph: set[str],
) -> dict[str, object]:
    index_of = {pid: i for i, pid in enumerate(ids)}
    results: dict[str, dict[str, list[tuple[bool, float]]]] = {}
    for query in queries:
        similarity = vectors @ query.vector
        order = [int(i) for i in np.argsort(-similarity, kind="stable")]
        if query.exclude:
            order = [i for i in order if i != index_of[query.painting]]
        truth = artists[index_of[query.painting]]
        per_method = results.setdefault(query.kind, {})
        nearest = nearest_in_graph(order, artists, in_graph)
        per_method.setdefault("nearest", []).append((nearest == truth, 1.0))
        candidates = [Candidate(ids[i], artists[i], float(similarity[i])) for i in order]
        for top in TOPS:
            for temperature in TEMPERATURES:
                vote = vote_source_artist(candidates, SourceVoteParams(top=top, temperature=temperature))
                name = f"vote top={top} T={temperature:g}"
                per_method.setdefault(name, []).append((vote.winner == truth, vote.confidence))
    return {
        kind: {m: summary(outcomes) for m, outcomes in methods.items()} for kind, methods in results.items()
    }


async def ranking_top1(
    queries: Sequence[Query], ids: Sequence[str], vectors: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per photo kind: the share of photos whose painting ranks first after the re-rank (pool: every
    painting), visual order vs the seed rule vs the vote (defaults)."""
    with tempfile.TemporaryDirectory() as folder:
        graph = await open_influence_graph(InfluenceConfig(state_dir=Path(folder), default_max_hops=MAX_HOPS))
        try:
            firsts: dict[str, dict[str, list[bool]]] = {}
            for query in queries:
                if query.exclude:
                    continue
                per_method = firsts.setdefault(query.kind, {})
                for method, top in (await _top_by_method(graph, query, ids, vectors, names)).items():
                    per_method.setdefault(method, []).append(top == query.painting)
        finally:
            await graph.close()
    return {
        kind: {m: round(float(np.mean(v)), 4) for m, v in methods.items()} for kind, methods in firsts.items()
    }


async def _top_by_method(
    graph: InfluenceGraph, query: Query, ids: Sequence[str], vectors: np.ndarray, names: Sequence[str]
) -> dict[str, str]:
    similarity = vectors @ query.vector
    order = [int(i) for i in np.argsort(-similarity, kind="stable")]
    artists = [names[i] for i in order]
    nearest = await graph.distances("", artists, MAX_HOPS)
    voters = [Candidate(ids[i], artist_key(names[i]), float(similarity[i])) for i in order]
    vote = vote_source_artist(voters)
    winner = next(names[i] for i in order if artist_key(names[i]) == vote.winner) if vote.winner else ""
    voted = await graph.distances(winner, artists, MAX_HOPS)
    tops = {
        "visual": ids[order[0]],
        "nearest": _reranked_top(order, ids, similarity, nearest, None, 1.0),
        "vote": _reranked_top(order, ids, similarity, voted, vote.winner, vote.confidence),
    }
    second = vote.runner_up[1] if vote.runner_up else 0.0
    for threshold in MIN_CONFIDENCES:
        # The share itself (as before the lead), then the gateway's c: the lead over the runner-up.
        c = vote.confidence if vote.confidence >= threshold else 0.0
        tops[f"vote min_confidence={threshold:g}"] = _reranked_top(
            order, ids, similarity, voted, vote.winner, c
        )
        lead = effective_confidence(vote.confidence, threshold, second)
        tops[f"vote lead min_confidence={threshold:g}"] = _reranked_top(
            order, ids, similarity, voted, vote.winner, lead
        )
    return tops


def _reranked_top(
    order: Sequence[int],
    ids: Sequence[str],
    similarity: np.ndarray,
    result: DistanceResult,
    fallback_key: str | None,
    confidence: float,
) -> str:
    """The top id after rank_with_influence, keys and hops as the gateway takes them from the answer."""
    pool, hops = [], {}
    for index, distance in zip(order, result.distances, strict=True):
        key = distance.key if distance.known else artist_key(distance.artist)
        if distance.known and distance.hops >= 0:
            hops[key] = distance.hops
        pool.append(Candidate(ids[index], key, float(similarity[index])))
    source = result.source.key if result.source is not None else fallback_key
    ranked = rank_with_influence(pool, source, hops, FusionParams(source_confidence=confidence))
    return ranked[0].candidate.id


def summary(outcomes: Sequence[tuple[bool, float]]) -> dict[str, float]:
    right = [c for ok, c in outcomes if ok]
    wrong = [c for ok, c in outcomes if not ok]
    return {
        "queries": len(outcomes),
        "precision": round(len(right) / len(outcomes), 4),
        "mean_confidence_right": round(float(np.mean(right)), 4) if right else 0.0,
        "mean_confidence_wrong": round(float(np.mean(wrong)), 4) if wrong else 0.0,
    }


def overall(per_kind: dict[str, dict[str, dict[str, float]]], kinds: Sequence[str]) -> dict[str, float]:
    """Precision over the given query kinds, each kind weighted by its queries."""
    methods = per_kind[kinds[0]].keys()
    totals = {}
    for method in methods:
        count = sum(per_kind[k][method]["queries"] for k in kinds)
        hits = sum(per_kind[k][method]["precision"] * per_kind[k][method]["queries"] for k in kinds)
        totals[method] = round(hits / count, 4)
    return totals


def _mean_over(top1: dict[str, dict[str, float]], kinds: Sequence[str]) -> dict[str, float]:
    """Each method's share over the given kinds (each kind has one photo per painting)."""
    return {method: round(float(np.mean([top1[k][method] for k in kinds])), 4) for method in top1[kinds[0]]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalogue", type=Path, default=ROOT / "data/catalogues/gcompris")
    parser.add_argument("--model", type=Path, default=ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/source_inference.json")
    args = parser.parse_args()
    started = time.perf_counter()
    catalogue = load_catalogue(args.catalogue)
    entries = sorted(catalogue.entries, key=lambda e: e.id)
    ids = [e.id for e in entries]
    names = [e.artist for e in entries]
    artists = [artist_key(e.artist) for e in entries]
    in_graph = graph_keys(ROOT / "services/influence/data/artists.csv")
    describer = Describer(args.model)
    stored = [EvalImage(e.id, e.id, pixels_from_file(catalogue.path_of(e)), "painting") for e in entries]
    vectors = fused_vectors(describer, stored)
    paintings = {e.id: Image.open(catalogue.path_of(e)).convert("RGB") for e in entries}
    queries = [
        Query("leave-one-out", pid, vectors[i], True)
        for i, pid in enumerate(ids)
        if artists.count(artists[i]) > 1
    ]
    photos = variant_images(paintings) + visitor_images(paintings)
    photo_vectors = fused_vectors(describer, photos)
    queries += [Query(image.kind, image.label, photo_vectors[i], False) for i, image in enumerate(photos)]
    describer.close()
    per_kind = evaluate(queries, ids, vectors, artists, in_graph)
    top1 = asyncio.run(ranking_top1(queries, ids, vectors, names))
    photo_kinds = [k for k in per_kind if k != "leave-one-out"]
    result = {
        "catalogue": str(
            args.catalogue.relative_to(ROOT) if args.catalogue.is_relative_to(ROOT) else args.catalogue
        ),
        "paintings": len(ids),
        "seconds": round(time.perf_counter() - started, 1),
        "overall": {
            "leave-one-out": overall(per_kind, ["leave-one-out"]),
            "photos": overall(per_kind, photo_kinds),
            "visitor photos": overall(
                per_kind, [k for k in photo_kinds if k.startswith("visitor:")] or photo_kinds
            ),
        },
        "per_kind": per_kind,
        "painting_first_after_rerank": {
            "all photos": _mean_over(top1, photo_kinds),
            "visitor photos": _mean_over(
                top1, [k for k in photo_kinds if k.startswith("visitor:")] or photo_kinds
            ),
            "per_kind": top1,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for group, methods in result["painting_first_after_rerank"].items():
        if group != "per_kind":
            print(f"painting first after re-rank, {group}: {methods}")
    for group, methods in result["overall"].items():
        best = sorted(methods.items(), key=lambda item: -item[1])[:5]
        print(f"{group}: nearest {methods['nearest']}; best {best}")


if __name__ == "__main__":
    main()
