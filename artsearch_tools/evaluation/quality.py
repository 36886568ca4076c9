"""`artsearch eval retrieval`: leave-one-out retrieval, clustering, ANN recall/latency, style prediction and
the influence re-rank on labelled sets, with pictures.

Sets: the GCompris paintings labelled by style and by artist (the demo catalogue), and the Tux Paint and
OpenClipart categories of `artsearch eval descriptors` (same selection, same cache). Every image is described
once by `Describer` (the encoder's model and descriptor code, in-process); every number below is computed
from the cached per-aspect vectors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.clustering import cluster_vectors, purity
from artsearch.descriptor_layout import unit_rows
from artsearch_tools.evaluation import datasets
from artsearch_tools.evaluation.descriptors import (
    BASELINE,
    DescribedSet,
    Describer,
    EvalSettings,
    cached_set,
    describe_category_set,
)
from artsearch_tools.evaluation.metrics import (
    chance_retrieval,
    precision_recall_curve,
    ranked_relevance,
    recall_against_exact,
    retrieval_metrics,
)

log = logging.getLogger(__name__)

FUSED = "fused"
NEIGHBOURS = 10  # the neighbour vote's k
ANN_EFS = (4, 8, 16, 32, 64, 128, 256)
ANN_TOP_K = 10


@dataclass
class LabelledSet:
    name: str
    labels: np.ndarray  # str [N]
    vectors: dict[str, np.ndarray]  # aspect, BASELINE, FUSED -> unit rows
    described: DescribedSet


def with_fused(described: DescribedSet, weights: Mapping[str, float]) -> dict[str, np.ndarray]:
    from artsearch.descriptor_layout import DescriptorLayout, assemble

    lengths = [(name, described.vectors[name].shape[1]) for name in weights]
    layout = DescriptorLayout.build(lengths, weights)
    return {**described.vectors, FUSED: assemble({n: described.vectors[n] for n in weights}, layout)}


def gcompris_sets(settings: EvalSettings, describer: Describer) -> list[LabelledSet]:
    from artsearch_tools.catalogue.folder import load_catalogue

    folder = datasets.gcompris_catalogue(Path(settings.cache_dir), settings.debs_dir)
    catalogue = load_catalogue(folder)
    described = cached_set(
        "paintings", {}, lambda: datasets.gcompris_paintings(folder), describer, Path(settings.cache_dir)
    )
    by_id = {entry.id: entry for entry in catalogue.entries}
    vectors = with_fused(described, describer.assembler.layout.default_weights)
    styles = np.array([by_id[i].style or "unknown" for i in described.ids])
    artists = np.array([by_id[i].artist or "unknown" for i in described.ids])
    return [
        LabelledSet("gcompris-style", styles, vectors, described),
        LabelledSet("gcompris-artist", artists, vectors, described),
    ]


def category_set(name: str, settings: EvalSettings, describer: Describer) -> LabelledSet:
    """The same selection and cache entry as `artsearch eval descriptors`."""
    _, described = describe_category_set(name, settings, describer)
    vectors = with_fused(described, describer.assembler.layout.default_weights)
    return LabelledSet(name, described.labels, vectors, described)


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------


def methods_of(labelled: LabelledSet, aspects: Sequence[str]) -> list[str]:
    return [BASELINE, *aspects, FUSED]


def retrieval_table(labelled: LabelledSet, aspects: Sequence[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {"chance": chance_retrieval(labelled.labels.tolist())}
    curves: dict[str, Any] = {}
    for method in methods_of(labelled, aspects):
        vectors = labelled.vectors[method]
        ranked = ranked_relevance(vectors @ vectors.T, labelled.labels)
        rows[method] = retrieval_metrics(ranked)
        curves[method] = precision_recall_curve(ranked)
    return {"metrics": rows, "pr_curves": curves}


def clustering_table(labelled: LabelledSet, seed: int) -> dict[str, Any]:
    clusters = len(set(labelled.labels.tolist()))
    result: dict[str, Any] = {"clusters": clusters}
    for method in (BASELINE, "content", FUSED):
        assignments = cluster_vectors(labelled.vectors[method], clusters, seed=seed).assignments
        result[method] = purity(assignments, labelled.labels.tolist())
    rng = np.random.default_rng(seed)
    result["chance"] = float(
        np.mean(
            [
                purity(rng.integers(0, clusters, len(labelled.labels)), labelled.labels.tolist())
                for _ in range(20)
            ]
        )
    )
    return result


def style_prediction(labelled: LabelledSet, seed: int) -> dict[str, Any]:
    """Top-1 / top-3 accuracy of the neighbour vote (leave-one-out, k nearest by the fused descriptor) and of
    a linear probe (logistic regression, stratified k-fold cross-validation), on labels with >= 2 items."""
    from artsearch.style_vote import predict_style

    labels = labelled.labels
    counts = {label: int((labels == label).sum()) for label in set(labels.tolist())}
    queries = np.array([i for i, label in enumerate(labels) if counts[label] >= 2])
    vectors = labelled.vectors[FUSED]
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    vote_hits = {1: 0, 3: 0}
    for row in queries:
        nearest = np.argsort(-similarity[row], kind="stable")[:NEIGHBOURS]
        prediction = predict_style([(str(labels[j]), float(similarity[row, j])) for j in nearest], top=3)
        ranked = [label for label, _ in prediction.top]
        vote_hits[1] += int(ranked[:1] == [labels[row]])
        vote_hits[3] += int(labels[row] in ranked[:3])
    probe = linear_probe(vectors[queries], labels[queries], seed)
    return {
        "queries": len(queries),
        "labels": len({labels[i] for i in queries}),
        "neighbour_vote": {"top1": vote_hits[1] / len(queries), "top3": vote_hits[3] / len(queries)},
        "linear_probe": probe,
        "majority_label": max(counts[labels[i]] for i in queries) / len(queries),
    }


def linear_probe(vectors: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = min(int((labels == label).sum()) for label in set(labels.tolist()))
    folds = max(2, min(5, smallest))
    model = LogisticRegression(max_iter=2000, C=10.0)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(model, vectors, labels, cv=splitter, method="predict_proba")
    classes = np.array(sorted(set(labels.tolist())))
    order = np.argsort(-probabilities, axis=1)
    top1 = float(np.mean(classes[order[:, 0]] == labels))
    top3 = float(np.mean([label in classes[row[:3]] for label, row in zip(labels, order, strict=True)]))
    return {"top1": top1, "top3": top3, "folds": folds}


def ann_curve(vectors: np.ndarray, seed: int, queries: int = 200) -> dict[str, Any]:
    """Exact k-NN against qdrant-edge's HNSW over its search parameter ef: recall@10 and latency per query.
    Queries are held-out rows (not in the index)."""
    import qdrant_edge as edge

    from services.search.edge_store import EdgeSettings, edge_config

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    query_rows, index_rows = order[:queries], order[queries:]
    indexed, probes = unit_rows(vectors[index_rows]), unit_rows(vectors[query_rows])
    started = time.perf_counter()
    exact = [np.argsort(-(indexed @ probe), kind="stable")[:ANN_TOP_K].tolist() for probe in probes]
    exact_ms = (time.perf_counter() - started) * 1000 / len(probes)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        config = edge_config(indexed.shape[1], EdgeSettings(index_threshold=1, vector_datatype="float32"))
        shard = edge.EdgeShard.create(folder, config)
        points = [edge.Point(int(i), indexed[i].tolist(), {}) for i in range(len(indexed))]
        for start in range(0, len(points), 256):
            shard.update(edge.UpdateOperation.upsert_points(points[start : start + 256]))
        build_started = time.perf_counter()
        shard.optimize()
        build_s = time.perf_counter() - build_started
        curve = [_ann_point(shard, probes, exact, ef) for ef in ANN_EFS]
        shard.close()
    return {
        "indexed": len(indexed),
        "queries": len(probes),
        "dimension": int(indexed.shape[1]),
        "exact_ms_per_query": exact_ms,
        "hnsw_build_s": build_s,
        "curve": curve,
    }


def _ann_point(shard: Any, probes: np.ndarray, exact: list[list[int]], ef: int) -> dict[str, float]:
    import qdrant_edge as edge

    params = edge.SearchParams(hnsw_ef=ef)
    found = []
    started = time.perf_counter()
    for probe in probes:
        request = edge.QueryRequest(limit=ANN_TOP_K, query=edge.Query.Nearest(probe), params=params)
        found.append([int(point.id) for point in shard.query(request)])
    latency = (time.perf_counter() - started) * 1000 / len(probes)
    return {"ef": ef, "recall_at_10": recall_against_exact(found, exact), "ms_per_query": latency}


def influence_rerank(labelled: LabelledSet, ks: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """Every painting queries the others (pool: all of them, fused similarity). Re-rank off: visual order.
    On: `rank_with_influence` with the query's own artist as the explicit source and hop distances from the
    in-memory influence graph. Reported: precision@k of same-artist and of same-movement results (movement
    from the curated artists.csv, else PainterPalette)."""
    from artsearch.artists import artist_key
    from services.gateway.fusion import Candidate, rank_with_influence
    from services.influence.memory_graph import InMemoryInfluenceGraph

    graph = InMemoryInfluenceGraph.load(Path(__file__).resolve().parents[2] / "services/influence/data")
    ids = labelled.described.ids
    artists = labelled.labels
    keys = [artist_key(name) for name in artists]
    movements = artist_movements(artists.tolist())
    vectors = labelled.vectors[FUSED]
    similarity = vectors @ vectors.T
    totals: dict[str, dict[str, list[float]]] = {
        mode: {f"{what}@{k}": [] for what in ("same_artist", "same_movement") for k in ks}
        for mode in ("off", "on")
    }
    for row in range(len(ids)):
        others = [j for j in range(len(ids)) if j != row]
        distances = asyncio.run(graph.distances(artists[row], [artists[j] for j in others], 6))
        hops = {keys[j]: d.hops for j, d in zip(others, distances.distances, strict=True) if d.hops >= 1}
        candidates = [
            Candidate(id=str(j), artist_key=keys[j], similarity=float(similarity[row, j])) for j in others
        ]
        visual = sorted(others, key=lambda j: -similarity[row, j])
        reranked = [int(r.candidate.id) for r in rank_with_influence(candidates, keys[row], hops)]
        for mode, order in (("off", visual), ("on", reranked)):
            for k in ks:
                top = order[:k]
                totals[mode][f"same_artist@{k}"].append(np.mean([keys[j] == keys[row] for j in top]))
                if movements.get(artists[row]):
                    same = [movements.get(artists[j]) == movements[artists[row]] for j in top]
                    totals[mode][f"same_movement@{k}"].append(float(np.mean(same)))
    return {
        mode: {name: float(np.mean(values)) if values else None for name, values in table.items()}
        for mode, table in totals.items()
    } | {
        "queries": len(ids),
        "artists_with_movement": sum(1 for a in set(artists.tolist()) if movements.get(a)),
    }


def artist_movements(artists: Sequence[str]) -> dict[str, str]:
    """The movement of each artist: the curated artists.csv first, PainterPalette's `movement` otherwise."""
    import csv

    from artsearch.artists import artist_key

    data = Path(__file__).resolve().parents[2] / "services/influence/data/artists.csv"
    curated = {}
    with data.open(newline="") as stream:
        for row in csv.DictReader(stream):
            curated[row["key"]] = row["movement"]
    palette: dict[str, str] = {}
    palette_file = Path(__file__).resolve().parents[3] / "shared/data/painterpalette/PainterPalette.csv"
    if palette_file.is_file():
        with palette_file.open(newline="") as stream:
            for row in csv.DictReader(stream):
                if row.get("movement"):
                    palette.setdefault(artist_key(row["artist"]), row["movement"].split(",")[0].strip())
    result = {}
    for name in set(artists):
        key = artist_key(name)
        movement = curated.get(key) or palette.get(key)
        if movement:
            result[name] = movement
    return result


# --------------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------------

SET_CHOICES = ("gcompris", "tuxpaint", "openclipart")


def run_quality(settings: EvalSettings, sets: Sequence[str], image_dir: Path) -> dict[str, Any]:
    """Everything `artsearch eval retrieval` reports; writes the pictures into `image_dir`."""
    from artsearch_tools.evaluation import pictures

    started = time.perf_counter()
    describer = Describer(settings.model_path, settings.batch_size)
    try:
        labelled: list[LabelledSet] = []
        if "gcompris" in sets:
            labelled += gcompris_sets(settings, describer)
        labelled += [category_set(name, settings, describer) for name in sets if name != "gcompris"]
    finally:
        describer.close()
    aspects = describer.aspects
    result: dict[str, Any] = {"command": "artsearch eval retrieval", "sets": {}, "pictures": []}
    curves = {}
    for item in labelled:
        table = retrieval_table(item, aspects)
        curves[item.name] = table.pop("pr_curves")
        result["sets"][item.name] = {
            "items": len(item.labels),
            "labels": len(set(item.labels.tolist())),
            "retrieval": table["metrics"],
            "clustering_purity": clustering_table(item, settings.seed),
            "style_prediction": style_prediction(item, settings.seed),
        }
    by_name = {item.name: item for item in labelled}
    if "gcompris-artist" in by_name:
        result["influence_rerank"] = influence_rerank(by_name["gcompris-artist"])
    largest = max(labelled, key=lambda item: len(item.labels))
    result["ann"] = {"set": largest.name, **ann_curve(largest.vectors[FUSED], settings.seed)}
    result["pictures"].append(str(pictures.precision_recall_png(curves, image_dir / "pr_curves.png")))
    result["pictures"] += _maps(labelled, image_dir, settings.seed)
    result["timing_s"] = round(time.perf_counter() - started, 1)
    return result


def _maps(labelled: Sequence[LabelledSet], image_dir: Path, seed: int) -> list[str]:
    from artsearch_tools.evaluation import pictures

    written = []
    for item in labelled:
        if item.name == "gcompris-artist":
            continue
        coordinates = pictures.tsne_coordinates(item.vectors[FUSED], seed)
        name = item.name.removesuffix("-style")
        title = f"{name}: t-SNE of the fused descriptors"
        written.append(
            pictures.label_map_png(coordinates, item.labels.tolist(), title, image_dir / f"map_{name}.png")
        )
        if item.name == "gcompris-style":
            pixels = _gallery_pixels(item)
            path = image_dir / f"map_{name}_thumbnails.png"
            written.append(pictures.thumbnail_map_png(coordinates, pixels, title, path))
    return [str(path) for path in written]


def _gallery_pixels(item: LabelledSet) -> np.ndarray:
    from artsearch_tools.catalogue.folder import load_catalogue

    folder = Path(".cache/eval/gcompris-catalogue")
    catalogue = load_catalogue(folder)
    paths = {entry.id: catalogue.path_of(entry) for entry in catalogue.entries}
    return np.stack([datasets.pixels_from_file(paths[i], size=96) for i in item.described.ids])


def quality_markdown(result: Mapping[str, Any]) -> str:
    lines = ["| set | method | mAP | P@1 | P@5 | P@10 | R@10 |", "|---|---|---|---|---|---|---|"]
    for name, entry in result["sets"].items():
        for method, metrics in entry["retrieval"].items():
            cells = " | ".join(f"{metrics[key]:.3f}" for key in ("map", "p@1", "p@5", "p@10", "r@10"))
            lines.append(
                f"| {name} ({entry['items']} items, {entry['labels']} labels) | {method} | {cells} |"
            )
    lines += [
        "",
        "| set | clusters | chance | colour histogram | content | fused |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in result["sets"].items():
        p = entry["clustering_purity"]
        lines.append(
            f"| {name} | {p['clusters']} | {p['chance']:.3f} | {p[BASELINE]:.3f} | {p['content']:.3f} "
            f"| {p[FUSED]:.3f} |"
        )
    lines += [
        "",
        "| set | queries | labels | majority label | vote top-1 | vote top-3 | probe top-1 | probe top-3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in result["sets"].items():
        s = entry["style_prediction"]
        vote, probe = s["neighbour_vote"], s["linear_probe"]
        lines.append(
            f"| {name} | {s['queries']} | {s['labels']} | {s['majority_label']:.3f} | {vote['top1']:.3f} "
            f"| {vote['top3']:.3f} | {probe['top1']:.3f} | {probe['top3']:.3f} |"
        )
    if "influence_rerank" in result:
        rerank = result["influence_rerank"]
        keys = [key for key in rerank["off"] if rerank["off"][key] is not None]
        lines += ["", "| re-rank | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for mode in ("off", "on"):
            lines.append(f"| {mode} | " + " | ".join(f"{rerank[mode][key]:.3f}" for key in keys) + " |")
    ann = result["ann"]
    lines += [
        "",
        f"ANN on {ann['set']} ({ann['indexed']} indexed, {ann['queries']} held-out queries, "
        f"{ann['dimension']}-d): exact {ann['exact_ms_per_query']:.2f} ms/query, HNSW build "
        f"{ann['hnsw_build_s']:.1f} s.",
        "",
        "| hnsw ef | recall@10 | ms/query |",
        "|---|---|---|",
    ]
    lines += [f"| {p['ef']} | {p['recall_at_10']:.3f} | {p['ms_per_query']:.2f} |" for p in ann["curve"]]
    return "\n".join(lines) + "\n"
