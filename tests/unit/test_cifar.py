"""The CIFAR-10 python-format loader, on a small folder in that format written here (CIFAR itself cannot
be downloaded on these machines)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsearch_tools.catalogue.cifar import CifarFormatError, build_cifar10_catalogue, iter_cifar, load_pickle
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.cli import main

LABELS = [b"airplane", b"automobile", b"bird"]


def _image(index: int) -> np.ndarray:
    """A 32x32 picture whose pixel (r, c) is (index, r, c): every plane and position is recognisable."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([np.full((32, 32), index), rows * 8, cols * 8], axis=-1).astype(np.uint8)


def _write_batch(path: Path, first: int, count: int) -> None:
    images = [_image(first + i) for i in range(count)]
    batch = {
        b"batch_label": b"training batch",
        # The format: red plane, green plane, blue plane, each row by row.
        b"data": np.stack([image.transpose(2, 0, 1).reshape(-1) for image in images]),
        b"labels": [(first + i) % len(LABELS) for i in range(count)],
        b"filenames": [f"thing_s_{first + i:06d}.png".encode() for i in range(count)],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": LABELS, b"num_vis": 3072}, protocol=2)
    )
    _write_batch(folder / "data_batch_1", 0, 6)
    _write_batch(folder / "data_batch_2", 6, 6)
    _write_batch(folder / "test_batch", 12, 3)
    return folder


def test_images_are_decoded_channel_major_with_their_labels(cifar_dir: Path):
    images = list(iter_cifar(cifar_dir))
    assert len(images) == 15
    assert [image.batch for image in images[:1] + images[-1:]] == ["data_batch_1", "test_batch"]
    for image in images:
        index = int(image.filename[8:14])
        assert np.array_equal(image.pixels, _image(index))
        assert image.label == LABELS[index % 3].decode()
    assert len(list(iter_cifar(cifar_dir, "test"))) == 3
    assert len(list(iter_cifar(cifar_dir, "train"))) == 12


def test_catalogue_command_writes_pngs_and_labelled_metadata(cifar_dir: Path, tmp_path: Path):
    output = tmp_path / "catalogue"
    status = main(
        ["catalogue", "cifar10", "--source", str(cifar_dir), "--output", str(output), "--limit", "9"]
    )
    assert status == 0
    catalogue = load_catalogue(output)
    assert not catalogue.problems
    assert len(catalogue.entries) == 9
    assert (
        sorted(entry.style for entry in catalogue.entries)
        == ["airplane"] * 3 + ["automobile"] * 3 + ["bird"] * 3
    )
    entry = catalogue.entries[0]
    assert entry.filename.startswith(f"{entry.style}/") and entry.genre == "photo"
    index = int(entry.title[8:14])
    with Image.open(catalogue.path_of(entry)) as written:
        assert written.size == (32, 32)
        assert np.array_equal(np.asarray(written.convert("RGB")), _image(index))


def test_all_images_when_no_smaller_limit(cifar_dir: Path, tmp_path: Path):
    entries = build_cifar10_catalogue(cifar_dir, tmp_path / "all", limit=None)
    assert len(entries) == 15 and len({entry.id for entry in entries}) == 15


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(CifarFormatError, match="unexpected object"):
        load_pickle(evil)


def test_malformed_folders_are_reported(cifar_dir: Path, tmp_path: Path):
    with pytest.raises(CifarFormatError, match=r"batches\.meta"):
        list(iter_cifar(tmp_path))
    (cifar_dir / "data_batch_1").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(CifarFormatError, match="N x 3072"):
        list(iter_cifar(cifar_dir))
    (cifar_dir / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(CifarFormatError, match="not a CIFAR batch"):
        list(iter_cifar(cifar_dir))
