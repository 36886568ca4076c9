"""PNG pictures of `artsearch eval retrieval`: precision-recall curves and 2-D maps (t-SNE) of a collection,
coloured by label or as a mosaic of thumbnails. Small files (a few hundred KB at most): they are committed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def precision_recall_png(curves: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], path: Path) -> Path:
    """One panel per set, one line per method (interpolated 11-point curves)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.8), squeeze=False)
    for axis, (set_name, methods) in zip(axes[0], curves.items(), strict=True):
        for method, points in methods.items():
            recall, precision = zip(*points, strict=True)
            axis.plot(recall, precision, marker=".", label=method, linewidth=2 if method == "fused" else 1)
        axis.set(title=set_name, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def tsne_coordinates(vectors: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(max(2, min(30, (len(vectors) - 1) // 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine")
    return tsne.fit_transform(np.asarray(vectors, dtype=np.float32))


def label_map_png(coordinates: np.ndarray, labels: Sequence[str], title: str, path: Path) -> Path:
    """Points coloured by label (the 20 most common labels get colours, the rest grey)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 6))
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    shown = list(values[np.argsort(-counts, kind="stable")][:20])
    colours = plt.get_cmap("tab20")
    labels_array = np.asarray(labels)
    rest = ~np.isin(labels_array, shown)
    axis.scatter(coordinates[rest, 0], coordinates[rest, 1], s=8, c="lightgrey", label="other")
    for index, label in enumerate(shown):
        chosen = labels_array == label
        axis.scatter(coordinates[chosen, 0], coordinates[chosen, 1], s=14, color=colours(index), label=label)
    axis.set(title=title, xticks=[], yticks=[])
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    figure.tight_layout()
    return _save(figure, path)


def thumbnail_map_png(
    coordinates: np.ndarray, pixels: np.ndarray, title: str, path: Path, size: int = 56
) -> Path:
    """Each item's picture at its 2-D position (a mosaic of the collection)."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from PIL import Image

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 7.5))
    axis.scatter(coordinates[:, 0], coordinates[:, 1], s=0)
    for (x, y), image in zip(coordinates, pixels, strict=True):
        thumbnail = np.asarray(Image.fromarray(image).resize((size, size)))
        axis.add_artist(AnnotationBbox(OffsetImage(thumbnail, zoom=1.0), (x, y), frameon=False))
    axis.set(title=title, xticks=[], yticks=[])
    figure.tight_layout()
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    _pyplot().close(figure)
    return path
