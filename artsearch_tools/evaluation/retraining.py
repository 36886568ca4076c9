"""`artsearch eval retrain`: did the retrained model help? The base and the retrained model on the same tasks.

Both models describe the same catalogue (cached frozen outputs, `artsearch_tools.training.features`) with
augmentations of a seed the training never used (default 1000; training uses 0): photo → artwork top-1/top-5
(the augmented copies query the originals) and leave-one-out by style and by artist on the originals (mAP,
P@k, R@10), for the content aspect and the fused descriptor. When the retrained model's sidecar lists
held-out artworks, the same numbers are also given for queries from those alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.descriptor_layout import DescriptorLayout, assemble, unit_rows
from artsearch_tools.evaluation.metrics import first_match_ranks, ranked_relevance, retrieval_metrics
from artsearch_tools.training.features import FeatureSet, ViewSettings, cached_features
from services.encoder.aspect_builder import DEFAULT_WEIGHTS

EVAL_SEED = 1000


def descriptor_views(features: FeatureSet, projected: np.ndarray) -> dict[str, np.ndarray]:
    """content alone and the fused descriptor (default weights) of each row."""
    parts = {"content": unit_rows(projected), "style": unit_rows(features.style), "colour": features.colour}
    layout = DescriptorLayout.build([(n, parts[n].shape[1]) for n in DEFAULT_WEIGHTS], DEFAULT_WEIGHTS)
    return {"content": parts["content"], "fused": assemble(parts, layout)}


def model_scores(features: FeatureSet, held_out: Sequence[str]) -> dict[str, Any]:
    originals = features.originals
    variants = np.flatnonzero(features.view != "original")
    result: dict[str, Any] = {}
    for name, vectors in descriptor_views(features, features.features).items():
        result[name] = _scores(features, vectors, originals, variants, held_out)
    return result


def _scores(
    features: FeatureSet,
    vectors: np.ndarray,
    originals: np.ndarray,
    variants: np.ndarray,
    held_out: Sequence[str],
) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    groups = {"all": np.ones(len(features), bool)}
    if held_out:
        groups["held_out"] = np.isin(features.ids, np.asarray(held_out, dtype=str))
    for group, mask in groups.items():
        queries = variants[mask[variants]]
        ranks = first_match_ranks(
            vectors[queries] @ vectors[originals].T, features.ids[queries], features.ids[originals]
        )
        entry: dict[str, Any] = {
            "photo_top1": float(np.mean((ranks > 0) & (ranks <= 1))),
            "photo_top5": float(np.mean((ranks > 0) & (ranks <= 5))),
        }
        gallery = vectors[originals]
        query_rows = np.flatnonzero(mask[originals])
        for label in ("style", "artist"):
            labels = features.labels[label][originals]
            try:
                ranked = ranked_relevance(gallery @ gallery.T, labels, query_rows)
            except ValueError:
                continue
            entry[label] = retrieval_metrics(ranked)
        scores[group] = entry
    return scores


def compare_models(
    base: Path, retrained: Path, catalogue_dir: Path, cache_dir: Path | None, seed: int = EVAL_SEED
) -> dict[str, Any]:
    from artsearch_tools.catalogue.folder import load_catalogue

    catalogue = load_catalogue(Path(catalogue_dir))
    sidecar = json.loads(Path(retrained).with_name("model.json").read_text())
    held_out = sidecar.get("training", {}).get("holdout_ids", [])
    views = ViewSettings(seed=seed, rounds=1)
    result: dict[str, Any] = {
        "command": "artsearch eval retrain",
        "catalogue": catalogue.name,
        "eval_seed": seed,
        "held_out_artworks": len(held_out),
        "training": sidecar.get("training", {}),
        "models": {},
    }
    for role, path in (("base", base), ("retrained", retrained)):
        features = cached_features(Path(path), catalogue, views, cache_dir)
        version = json.loads(Path(path).with_name("model.json").read_text())["version"]
        result["models"][role] = {"version": version, **model_scores(features, held_out)}
    return result


def retrain_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Catalogue {result['catalogue']}, evaluation views seed {result['eval_seed']}, "
        f"{result['held_out_artworks']} artworks held out of training.",
        "",
        "| model | descriptor | queries | photo → artwork top-1 | top-5 | style mAP | style P@1 | artist mAP "
        "| artist P@1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for role, model in result["models"].items():
        for descriptor in ("content", "fused"):
            for group, scores in model[descriptor].items():
                cells = [scores["photo_top1"], scores["photo_top5"]]
                for label in ("style", "artist"):
                    metrics = scores.get(label)
                    cells += [metrics["map"], metrics["p@1"]] if metrics else [float("nan")] * 2
                text = " | ".join(f"{value:.3f}" for value in cells)
                lines.append(f"| {role} ({model['version']}) | {descriptor} | {group} | {text} |")
    return "\n".join(lines) + "\n"
