"""CIFAR-10 in its python format (``cifar-10-batches-py``) as a labelled catalogue of PNGs.

The folder holds ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and ``batches.meta``: pickled dicts
(bytes keys) with ``b"data"`` (N x 3072 uint8: the red, green then blue planes of a 32 x 32 picture, rows
first), ``b"labels"`` (N ints), ``b"filenames"`` (N bytes) and, in ``batches.meta``, ``b"label_names"``.
The pickles are read with an unpickler that builds nothing but numpy arrays, lists, dicts and strings: a
pickle from elsewhere cannot run code.

CIFAR-10 itself cannot be downloaded on this project's machines (no package ships it); this is for users
who have the folder.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from artsearch_tools.catalogue.folder import CatalogueEntry, slugify
from artsearch_tools.catalogue.labelled import (
    DatasetInfo,
    LabelledImage,
    sample_by_label,
    write_labelled_catalogue,
)

SIDE = 32
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
SPLITS = {"train": TRAIN_BATCHES, "test": TEST_BATCHES, "all": TRAIN_BATCHES + TEST_BATCHES}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class CifarFormatError(ValueError):
    """The folder or a batch file is not in the CIFAR-10 python format."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise CifarFormatError(f"unexpected object {module}.{name} in a CIFAR batch")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def load_pickle(path: Path) -> dict:
    """A CIFAR batch file (pickled by Python 2 or 3) as a dict."""
    try:
        with Path(path).open("rb") as handle:
            document = _SafeUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as error:
        if isinstance(error, CifarFormatError):
            raise
        raise CifarFormatError(f"{path}: not a CIFAR batch ({error})") from error
    if not isinstance(document, dict):
        raise CifarFormatError(f"{path}: expected a dict, got {type(document).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in document.items()}


def label_names(folder: Path) -> list[str]:
    path = Path(folder) / "batches.meta"
    if not path.is_file():
        raise CifarFormatError(f"{folder} has no batches.meta: is it a cifar-10-batches-py folder?")
    meta = load_pickle(path)
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise CifarFormatError(f"{folder}/batches.meta has no label_names")
    return [_text(name) for name in names]


@dataclass(frozen=True)
class CifarImage:
    batch: str
    index: int
    label: str
    filename: str
    pixels: np.ndarray  # uint8 [32, 32, 3]


def iter_batch(path: Path, names: list[str]) -> Iterator[CifarImage]:
    batch = load_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise CifarFormatError(f"{path}: data must be an N x {3 * SIDE * SIDE} array")
    if not isinstance(labels, list) or len(labels) != len(data):
        raise CifarFormatError(f"{path}: labels must be a list with one label per image")
    filenames = batch.get("filenames")
    if filenames is None or len(filenames) != len(data):
        filenames = [f"{path.name}_{i}.png" for i in range(len(data))]
    planes = data.astype(np.uint8).reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    for index, (pixels, label) in enumerate(zip(planes, labels, strict=True)):
        if not 0 <= int(label) < len(names):
            raise CifarFormatError(f"{path}: label {label} of image {index} is not in batches.meta")
        yield CifarImage(path.name, index, names[int(label)], _text(filenames[index]), pixels)


def iter_cifar(folder: Path, split: str = "all") -> Iterator[CifarImage]:
    """Every image of the split's batch files present in `folder`, in file order."""
    folder = Path(folder)
    names = label_names(folder)
    present = [folder / name for name in SPLITS[split] if (folder / name).is_file()]
    if not present:
        raise CifarFormatError(f"{folder} has none of {', '.join(SPLITS[split])}")
    for path in present:
        yield from iter_batch(path, names)


def build_cifar10_catalogue(
    source: Path, output: Path, limit: int | None, split: str = "all", seed: int = 0
) -> list[CatalogueEntry]:
    """PNGs under ``output/<label>/`` and a metadata.csv labelled by class; at most `limit` images, sampled
    evenly across classes."""
    pixels: dict[str, np.ndarray] = {}
    images: list[LabelledImage] = []
    for image in iter_cifar(Path(source), split):
        relative = f"{image.label}/{image.batch}-{image.index:05d}-{slugify(Path(image.filename).stem)}.png"
        pixels[relative] = image.pixels
        images.append(LabelledImage(relative=relative, label=image.label, title=image.filename))
    dataset = DatasetInfo(name="cifar10", genre="photo", license="see the CIFAR-10 terms", source="CIFAR-10")

    def write(image: LabelledImage, target: Path) -> None:
        Image.fromarray(pixels[image.relative], "RGB").save(target, "PNG")

    return write_labelled_catalogue(output, dataset, sample_by_label(images, limit, seed), write)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
