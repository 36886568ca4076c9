"""Frozen-backbone outputs of a catalogue's images and of seeded photo-like copies of them, cached on disk.

Each artwork contributes one row for its image (view "original") and one per augmentation: every kind of
`artsearch_tools.evaluation.photo_variants` (perspective, crop, light, blur, jpeg, grey print, phone photo,
bad photo) for each of `rounds` seeds. Every image goes through the encoder service's own preprocessing
(`decode_image`; variants through JPEG q90 as a phone would), then the exported ONNX model in onnxruntime.
A row keeps the graph's raw outputs (`features`, `style`) and the colour aspect computed from the pixels,
so that both the head (trained on the raw outputs) and the descriptor (all three aspects) can be built
from the cache without running the network again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from artsearch_tools.catalogue.folder import Catalogue
from artsearch_tools.evaluation.datasets import pixels_from_file, through_jpeg
from artsearch_tools.evaluation.photo_variants import VARIANT_KINDS, photo_variants
from services.encoder.aspect_builder import STYLE_OUTPUT, colour_part
from services.encoder.backends import EmbeddingModelInfo

log = logging.getLogger(__name__)

ORIGINAL = "original"
# Paintings are shrunk to this many pixels on their longer side before augmenting: the network sees
# 224 px anyway, and the variants' geometry is ~20x faster on a small picture.
AUGMENT_MAX_SIDE = 640
CACHE_REVISION = 1
LABEL_FIELDS = ("style", "artist")


@dataclass
class FeatureSet:
    """One row per image seen by the network."""

    ids: np.ndarray  # str [N]: the artwork each row shows
    item: np.ndarray  # int [N]: index of that artwork (rows of one artwork share it)
    view: np.ndarray  # str [N]: "original", or "<variant kind>/<round>"
    labels: dict[str, np.ndarray]  # "style", "artist" -> str [N] ("" when unknown)
    features: np.ndarray  # float32 [N, F]: the graph's global features
    style: np.ndarray  # float32 [N, S]: the graph's style statistics
    colour: np.ndarray  # float32 [N, C]: the descriptor's colour aspect (unit rows)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, rows: np.ndarray) -> FeatureSet:
        return FeatureSet(
            ids=self.ids[rows],
            item=self.item[rows],
            view=self.view[rows],
            labels={name: values[rows] for name, values in self.labels.items()},
            features=self.features[rows],
            style=self.style[rows],
            colour=self.colour[rows],
        )

    @property
    def originals(self) -> np.ndarray:
        return np.flatnonzero(self.view == ORIGINAL)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        labels = {f"label_{name}": values for name, values in self.labels.items()}
        np.savez(
            tmp,
            ids=self.ids,
            item=self.item,
            view=self.view,
            features=self.features,
            style=self.style,
            colour=self.colour,
            **labels,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FeatureSet:
        with np.load(path) as data:
            labels = {key.removeprefix("label_"): data[key] for key in data.files if key.startswith("label_")}
            return cls(
                ids=data["ids"],
                item=data["item"],
                view=data["view"],
                labels=labels,
                features=data["features"],
                style=data["style"],
                colour=data["colour"],
            )


@dataclass(frozen=True)
class ViewSettings:
    """Which augmentations each artwork gets."""

    seed: int = 0
    rounds: int = 1
    kinds: tuple[str, ...] = tuple(VARIANT_KINDS)


@dataclass(frozen=True)
class _Image:
    artwork_id: str
    item: int
    view: str
    pixels: np.ndarray


def catalogue_images(catalogue: Catalogue, views: ViewSettings) -> Iterator[_Image]:
    """Every artwork's image, then its augmented copies, as the encoder would see them."""
    for item, entry in enumerate(catalogue.entries):
        path = catalogue.path_of(entry)
        yield _Image(entry.id, item, ORIGINAL, pixels_from_file(path))
        if views.rounds == 0 or not views.kinds:
            continue
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        picture.thumbnail((AUGMENT_MAX_SIDE, AUGMENT_MAX_SIDE), Image.Resampling.BICUBIC)
        for round_index in range(views.rounds):
            variants = photo_variants(picture, seed=views.seed + round_index, key=entry.id, kinds=views.kinds)
            for variant in variants:
                yield _Image(entry.id, item, f"{variant.kind}/{round_index}", through_jpeg(variant.image))


class BackboneRunner:
    """The exported model in an onnxruntime session: raw `features` and `style` per batch of pixels."""

    def __init__(self, model_path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        self.info = EmbeddingModelInfo.from_sidecar(Path(model_path), backend="onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, style = self._session.run(
            [self.info.features_output, STYLE_OUTPUT], {self.info.input_name: np.ascontiguousarray(pixels)}
        )
        return np.asarray(features, np.float32), np.asarray(style, np.float32)


def compute_features(
    model_path: Path, catalogue: Catalogue, views: ViewSettings, batch_size: int = 32
) -> FeatureSet:
    """Runs the model over every image of the catalogue and its augmentations."""
    runner = BackboneRunner(model_path)
    labels_of = {entry.id: {"style": entry.style, "artist": entry.artist} for entry in catalogue.entries}
    rows: list[_Image] = []
    chunks: dict[str, list[np.ndarray]] = {"features": [], "style": [], "colour": []}

    def flush(batch: Sequence[_Image]) -> None:
        pixels = np.stack([image.pixels for image in batch])
        features, style = runner.run(pixels)
        chunks["features"].append(features)
        chunks["style"].append(style)
        chunks["colour"].append(colour_part(pixels))
        rows.extend(batch)

    batch: list[_Image] = []
    for image in catalogue_images(catalogue, views):
        batch.append(image)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not rows:
        raise ValueError(f"catalogue {catalogue.name} has no images")
    return FeatureSet(
        ids=np.array([row.artwork_id for row in rows]),
        item=np.array([row.item for row in rows], dtype=np.int64),
        view=np.array([row.view for row in rows]),
        labels={
            name: np.array([labels_of[row.artwork_id][name] for row in rows], dtype=str)
            for name in LABEL_FIELDS
        },
        features=np.concatenate(chunks["features"]),
        style=np.concatenate(chunks["style"]),
        colour=np.concatenate(chunks["colour"]),
    )


def cache_key(model_path: Path, catalogue: Catalogue, views: ViewSettings) -> str:
    """Changes with the model file, the catalogue's files and metadata, the views and this code."""
    info = EmbeddingModelInfo.from_sidecar(Path(model_path), backend="onnxruntime")
    digest = hashlib.sha256()
    digest.update(
        json.dumps([info.onnx_sha256, CACHE_REVISION, views.seed, views.rounds, views.kinds]).encode()
    )
    for entry in catalogue.entries:
        stat = catalogue.path_of(entry).stat()
        digest.update(
            json.dumps([entry.id, entry.filename, entry.style, entry.artist, stat.st_size]).encode()
        )
    for module in ("artsearch_tools/evaluation/photo_variants.py", "services/encoder/images.py", __file__):
        digest.update((Path(__file__).resolve().parents[2] / module).read_bytes())
    return digest.hexdigest()[:16]


def cached_features(
    model_path: Path, catalogue: Catalogue, views: ViewSettings, cache_dir: Path | None
) -> FeatureSet:
    """`compute_features`, from `cache_dir` when it holds this exact set (no cache when None)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"features-{catalogue.name}-{cache_key(model_path, catalogue, views)}.npz"
        if path.is_file():
            log.info("features of %s: cached (%s)", catalogue.name, path.name)
            return FeatureSet.load(path)
    started = time.perf_counter()
    features = compute_features(model_path, catalogue, views)
    log.info(
        "features of %s: %d images in %.1f s", catalogue.name, len(features), time.perf_counter() - started
    )
    if path is not None:
        features.save(path)
    return features
