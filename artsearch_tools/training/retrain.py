"""`artsearch retrain`: cached backbone features → trained head → a new ONNX model version.

    artsearch retrain --catalogue data/catalogues/gcompris --model models/efficientnet-lite0/model.onnx \\
        --output models/efficientnet-lite0-retrained/model.onnx [--labels auto|none|style|artist] \\
        [--triton-repository deploy/triton/model_repository]

The new model has the base model's input and outputs; with `--triton-repository` it is also placed there as
the next numbered version of the Triton model. Serving it means re-encoding the catalogue into a new
collection (`artsearch reindex`), since its vectors are not comparable with the base model's.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
from artsearch_tools.training.export import export_with_head
from artsearch_tools.training.features import FeatureSet, ViewSettings, cached_features
from artsearch_tools.training.head import HeadSettings, TrainingResult, train_head

log = logging.getLogger(__name__)

LABEL_CHOICES = ("auto", "none", "style", "artist")
# A label field is usable when at least this many of its values are shared by two or more artworks.
MIN_SHARED_LABELS = 2


@dataclass(frozen=True)
class RetrainSettings:
    catalogue: Path
    base_model: Path
    output: Path
    labels: str = "auto"
    views: ViewSettings = field(default_factory=ViewSettings)
    head: HeadSettings = field(default_factory=HeadSettings)
    # Fraction of artworks left out of training (seeded); their ids go into the sidecar so that
    # `artsearch eval retrain` can report on artworks the head never saw.
    holdout: float = 0.0
    cache_dir: Path | None = Path(".cache/training")
    triton_repository: Path | None = None
    triton_model_name: str = "efficientnet-lite0"
    triton_python_backend: bool = False


@dataclass
class RetrainReport:
    sidecar: dict[str, Any]
    training: TrainingResult
    label: str
    holdout_ids: list[str]
    triton_version: int | None
    seconds: float

    def summary(self) -> str:
        lines = [
            f"model {self.sidecar['version']} (base {self.sidecar['base_model']['version']})",
            f"  positives: {'same ' + self.label if self.label else 'views of the same artwork'}; "
            f"{self.training.rows} rows, loss {self.training.initial_loss:.3f} -> "
            f"{self.training.final_loss:.3f}",
        ]
        if self.holdout_ids:
            lines.append(f"  {len(self.holdout_ids)} artworks held out of training")
        if self.triton_version is not None:
            lines.append(f"  placed in the Triton repository as version {self.triton_version}")
        lines.append(f"  {self.seconds:.1f} s")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "sidecar": self.sidecar,
            "training": self.training.summary(),
            "label": self.label,
            "holdout_ids": self.holdout_ids,
            "triton_version": self.triton_version,
            "seconds": round(self.seconds, 1),
        }


def choose_label(catalogue: Catalogue, wanted: str) -> str:
    """The label field positives come from: "" for none (views of the same artwork)."""
    if wanted not in LABEL_CHOICES:
        raise ValueError(f"labels must be one of {LABEL_CHOICES}, not {wanted!r}")
    if wanted == "none":
        return ""
    candidates = ("style", "artist") if wanted == "auto" else (wanted,)
    for name in candidates:
        counts = Counter(getattr(entry, name) for entry in catalogue.entries if getattr(entry, name))
        if sum(1 for count in counts.values() if count >= 2) >= MIN_SHARED_LABELS:
            return name
        if wanted != "auto":
            raise ValueError(f"catalogue {catalogue.name} has too few shared {name} labels to train on")
    return ""


def holdout_ids(catalogue: Catalogue, fraction: float, seed: int) -> list[str]:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {fraction}")
    ids = sorted(entry.id for entry in catalogue.entries)
    count = round(fraction * len(ids))
    rng = np.random.default_rng(seed)
    return sorted(ids[i] for i in rng.choice(len(ids), size=count, replace=False)) if count else []


def training_rows(features: FeatureSet, held_out: list[str]) -> FeatureSet:
    keep = ~np.isin(features.ids, np.array(held_out, dtype=str)) if held_out else np.ones(len(features), bool)
    return features.select(np.flatnonzero(keep))


def retrain(settings: RetrainSettings) -> RetrainReport:
    started = time.perf_counter()
    catalogue = load_catalogue(Path(settings.catalogue))
    label = choose_label(catalogue, settings.labels)
    held_out = holdout_ids(catalogue, settings.holdout, settings.head.seed)
    features = cached_features(settings.base_model, catalogue, settings.views, settings.cache_dir)
    rows = training_rows(features, held_out)
    head_settings = HeadSettings(**{**asdict(settings.head), "label": label})
    result = train_head(
        rows.features, rows.style, rows.item, head_settings, rows.labels[label] if label else None
    )
    training = {
        **result.summary(),
        "catalogue": catalogue.name,
        "artworks": len(catalogue.entries),
        "views": {
            "seed": settings.views.seed,
            "rounds": settings.views.rounds,
            "kinds": settings.views.kinds,
        },
        "positives": label or "views of the same artwork",
        "holdout_ids": held_out,
    }
    sidecar = export_with_head(settings.base_model, result.weights, settings.output, training)
    triton_version = None
    if settings.triton_repository is not None:
        from artsearch_tools.model_export.triton_repository import add_version

        triton_version = add_version(
            Path(settings.output),
            Path(settings.triton_repository),
            model_name=settings.triton_model_name,
            python_backend=settings.triton_python_backend,
        )
    return RetrainReport(sidecar, result, label, held_out, triton_version, time.perf_counter() - started)
