"""The Qt resource (.rcc) reader, on files this test writes byte by byte, and on the real GCompris data."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from artsearch_tools.catalogue.qt_rcc import (
    FLAG_COMPRESSED,
    FLAG_COMPRESSED_ZSTD,
    FLAG_DIRECTORY,
    RccArchive,
    RccFormatError,
    read_rcc,
)

REAL_RCC_DIR = Path(__file__).resolve().parents[2] / ".cache/debs/gcompris-qt-data/usr/share/gcompris-qt/rcc"


def write_rcc(files: dict[str, bytes], version: int = 3, flags: dict[str, int] | None = None) -> bytes:
    """A minimal `rcc -binary` writer: breadth-first tree, children of a directory stored contiguously."""
    flags = flags or {}
    tree: dict = {}
    for path, content in files.items():
        *folders, leaf = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = content

    names = bytearray()
    name_offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(encoded) // 2, 0) + encoded)
        return name_offsets[name]

    data = bytearray()
    nodes: list[bytes] = []
    # Breadth-first: (name, subtree-or-content, full path); node 0 is the root.
    queue: list[tuple[str, dict | bytes, str]] = [("", tree, "")]
    next_free = 1
    while queue:
        name, content, path = queue.pop(0)
        offset = name_offset(name) if name else 0
        modified = b"\0" * 8 if version >= 2 else b""
        if isinstance(content, dict):
            children = sorted(content.items())
            nodes.append(struct.pack(">IHII", offset, FLAG_DIRECTORY, len(children), next_free) + modified)
            next_free += len(children)
            queue += [
                (child, sub, f"{path}{child}" if not path else f"{path}/{child}") for child, sub in children
            ]
        else:
            entry_flags = flags.get(path, 0)
            payload = content
            if entry_flags & FLAG_COMPRESSED:
                payload = struct.pack(">I", len(content)) + zlib.compress(content)
            data_offset = len(data)
            data.extend(struct.pack(">I", len(payload)) + payload)
            nodes.append(struct.pack(">IHHHI", offset, entry_flags, 0, 0, data_offset) + modified)

    header_size = 20 + (4 if version >= 3 else 0)
    tree_blob = b"".join(nodes)
    tree_offset = header_size
    data_offset = tree_offset + len(tree_blob)
    names_offset = data_offset + len(data)
    header = b"qres" + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree_blob + bytes(data) + bytes(names)


SAMPLE = {
    "readme.txt": b"hello",
    "gcompris/src/board/board1_0.qml": b'qsTr("Katsushika Hokusai, The Great Wave - 1831")' * 20,
    "gcompris/src/image/caf\u00e9.bin": bytes(range(256)) * 3,
    "gcompris/src/image/empty": b"",
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_reads_every_file_with_its_path_and_bytes(version):
    blob = write_rcc(SAMPLE, version=version, flags={"gcompris/src/board/board1_0.qml": FLAG_COMPRESSED})

    archive = RccArchive(blob)

    assert archive.header.version == version
    assert dict(archive.files()) == SAMPLE
    assert sorted(archive.paths()) == sorted(SAMPLE)


def test_compressed_entry_is_really_compressed_in_the_file_and_inflated_on_read():
    text = b"Utagawa Hiroshige " * 200
    blob = write_rcc({"a/text": text}, flags={"a/text": FLAG_COMPRESSED})

    assert text not in blob  # stored deflated, so the reader must inflate it
    assert RccArchive(blob).read("a/text") == text


def test_read_missing_path_raises_key_error():
    with pytest.raises(KeyError):
        RccArchive(write_rcc(SAMPLE)).read("no/such/file")


def test_read_rcc_opens_a_file(tmp_path):
    path = tmp_path / "sample.rcc"
    path.write_bytes(write_rcc(SAMPLE, flags={"readme.txt": FLAG_COMPRESSED}))

    assert dict(read_rcc(path)) == SAMPLE


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"qre", "too short"),
        (b"QRES" + b"\0" * 20, "bad magic"),
        (b"qres" + struct.pack(">IIII", 9, 20, 20, 20) + b"\0" * 8, "unsupported rcc version 9"),
        (b"qres" + struct.pack(">IIII", 3, 20, 999, 20) + b"\0" * 8, "beyond the end"),
    ],
)
def test_rejects_files_that_are_not_rcc(blob, message):
    with pytest.raises(RccFormatError, match=message):
        RccArchive(blob)


def test_truncated_data_is_an_error_not_a_short_read():
    blob = bytearray(write_rcc({"f": b"x" * 100}))
    (data_offset,) = struct.unpack_from(">I", blob, 12)
    struct.pack_into(">I", blob, data_offset, 100_000)  # claims far more bytes than the file holds
    with pytest.raises(RccFormatError, match="truncated"):
        dict(RccArchive(bytes(blob)).files())


def test_corrupt_zlib_entry_is_reported_with_its_path():
    blob = bytearray(write_rcc({"dir/f": b"y" * 500}, flags={"dir/f": FLAG_COMPRESSED}))
    start = blob.index(zlib.compress(b"y" * 500))
    blob[start + 2 : start + 6] = b"\xff\xff\xff\xff"
    with pytest.raises(RccFormatError, match="dir/f"):
        dict(RccArchive(bytes(blob)).files())


def test_zstd_entry_is_read_or_explained():
    # Qt >= 5.13 can write zstd entries (flag 0x04); they need the optional `zstandard` package.
    content = b"Wassily Kandinsky " * 50
    try:
        import zstandard
    except ImportError:
        frame = b"\x28\xb5\x2f\xfd" + b"\0" * 20  # a zstd magic number, nothing readable after it
        with pytest.raises(RccFormatError, match="zstd"):
            RccArchive(write_rcc({"z": frame}, flags={"z": FLAG_COMPRESSED_ZSTD})).read("z")
    else:
        frame = zstandard.ZstdCompressor().compress(content)
        assert RccArchive(write_rcc({"z": frame}, flags={"z": FLAG_COMPRESSED_ZSTD})).read("z") == content


@pytest.fixture(scope="module")
def real_paintings_rcc() -> Path:
    path = REAL_RCC_DIR / "paintings.rcc"
    if not path.is_file():
        pytest.skip("gcompris-qt-data is not extracted under .cache/debs (`make catalogue` extracts it)")
    return path


def test_real_gcompris_paintings_rcc(real_paintings_rcc):
    files = dict(read_rcc(real_paintings_rcc))

    boards = [path for path in files if "/resource/board/" in path and path.endswith(".qml")]
    pieces = [path for path in files if path.endswith(".webp")]
    assert len(boards) == 22
    assert len(pieces) == 267  # 261 pieces on the 22 boards + 6 of a Degas without a board
    assert b'qsTr("Katsushika Hokusai, The Great Wave off Kanagawa' in b"".join(
        files[path] for path in boards
    )
    for path in pieces[:20]:
        with Image.open(io.BytesIO(files[path])) as image:
            image.load()
            assert min(image.size) > 50


def test_every_real_gcompris_rcc_file_parses(real_paintings_rcc):
    total = 0
    for path in sorted(real_paintings_rcc.parent.glob("*.rcc")):
        for name, content in read_rcc(path):
            assert name and not name.startswith("/")
            assert isinstance(content, bytes)
            total += 1
    assert total > 4000
