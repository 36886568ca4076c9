"""Reader for Qt's binary resource files (`.rcc`, as written by `rcc -binary`).

Layout (all integers big-endian), from Qt's `qresource.cpp` / `rcc.cpp`:

* header: magic ``qres``, version (u32, 1..3), tree offset, data offset, names offset (u32 each),
  and from version 3 an overall-flags u32;
* tree: fixed-size nodes (14 bytes, 22 from version 2 which appends a u64 modification time).
  Every node starts with a name offset (u32) and flags (u16). A directory (flag 0x02) continues with
  its child count and the index of its first child (u32 each); a file continues with country and
  language (u16 each) and a data offset (u32). Node 0 is the root;
* names: u16 length in UTF-16 code units, u32 hash, then the UTF-16BE characters;
* data: u32 size then the bytes. Flag 0x01 marks zlib data in ``qCompress`` form (a u32 holding the
  uncompressed size, then a zlib stream); flag 0x04 marks a zstd frame.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"qres"
SUPPORTED_VERSIONS = (1, 2, 3)

FLAG_COMPRESSED = 0x01
FLAG_DIRECTORY = 0x02
FLAG_COMPRESSED_ZSTD = 0x04

_HEADER = struct.Struct(">4sIIII")
_NODE_PREFIX = struct.Struct(">IH")
_DIRECTORY_TAIL = struct.Struct(">II")
_FILE_TAIL = struct.Struct(">HHI")


class RccFormatError(ValueError):
    """The bytes are not a readable Qt resource file."""


@dataclass(frozen=True)
class RccHeader:
    version: int
    tree_offset: int
    data_offset: int
    names_offset: int

    @property
    def node_size(self) -> int:
        return 14 if self.version == 1 else 22


def parse_header(blob: bytes) -> RccHeader:
    if len(blob) < _HEADER.size:
        raise RccFormatError(f"file too short for an rcc header ({len(blob)} bytes)")
    magic, version, tree, data, names = _HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise RccFormatError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version not in SUPPORTED_VERSIONS:
        raise RccFormatError(f"unsupported rcc version {version}")
    for label, offset in (("tree", tree), ("data", data), ("names", names)):
        if offset >= len(blob):
            raise RccFormatError(f"{label} offset {offset} lies beyond the end of the file ({len(blob)})")
    return RccHeader(version=version, tree_offset=tree, data_offset=data, names_offset=names)


class RccArchive:
    """An rcc file held in memory; `files()` walks its tree."""

    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self.header = parse_header(blob)

    @classmethod
    def open(cls, path: Path) -> RccArchive:
        try:
            return cls(Path(path).read_bytes())
        except RccFormatError as error:
            raise RccFormatError(f"{path}: {error}") from error

    def files(self) -> Iterator[tuple[str, bytes]]:
        """Yield ``(path, content)`` for every file, path relative to the resource root (``a/b.png``)."""
        for path, flags, data_offset in self._walk(0, "", depth=0):
            yield path, self._read_data(path, flags, data_offset)

    def paths(self) -> list[str]:
        return [path for path, _, _ in self._walk(0, "", depth=0)]

    def read(self, wanted: str) -> bytes:
        for path, flags, data_offset in self._walk(0, "", depth=0):
            if path == wanted:
                return self._read_data(path, flags, data_offset)
        raise KeyError(wanted)

    def _walk(self, node: int, prefix: str, depth: int) -> Iterator[tuple[str, int, int]]:
        if depth > 64:
            raise RccFormatError("directory tree deeper than 64 levels (a cycle?)")
        offset = self._node_offset(node)
        _, flags = _NODE_PREFIX.unpack_from(self._blob, offset)
        if not flags & FLAG_DIRECTORY:
            raise RccFormatError(f"node {node} is expected to be a directory")
        child_count, first_child = _DIRECTORY_TAIL.unpack_from(self._blob, offset + _NODE_PREFIX.size)
        for child in range(first_child, first_child + child_count):
            child_offset = self._node_offset(child)
            name_offset, child_flags = _NODE_PREFIX.unpack_from(self._blob, child_offset)
            path = prefix + self._read_name(name_offset)
            if child_flags & FLAG_DIRECTORY:
                yield from self._walk(child, path + "/", depth + 1)
            else:
                _, _, data_offset = _FILE_TAIL.unpack_from(self._blob, child_offset + _NODE_PREFIX.size)
                yield path, child_flags, data_offset

    def _node_offset(self, node: int) -> int:
        offset = self.header.tree_offset + node * self.header.node_size
        if offset + self.header.node_size > len(self._blob):
            raise RccFormatError(f"tree node {node} lies beyond the end of the file")
        return offset

    def _read_name(self, name_offset: int) -> str:
        start = self.header.names_offset + name_offset
        if start + 6 > len(self._blob):
            raise RccFormatError(f"name at {name_offset} lies beyond the end of the file")
        (length,) = struct.unpack_from(">H", self._blob, start)
        raw = self._blob[start + 6 : start + 6 + 2 * length]
        if len(raw) != 2 * length:
            raise RccFormatError(f"name at {name_offset} runs past the end of the file")
        try:
            return raw.decode("utf-16-be")
        except UnicodeDecodeError as error:
            raise RccFormatError(f"name at {name_offset} is not valid UTF-16") from error

    def _read_data(self, path: str, flags: int, data_offset: int) -> bytes:
        start = self.header.data_offset + data_offset
        if start + 4 > len(self._blob):
            raise RccFormatError(f"{path}: data offset {data_offset} lies beyond the end of the file")
        (size,) = struct.unpack_from(">I", self._blob, start)
        payload = self._blob[start + 4 : start + 4 + size]
        if len(payload) != size:
            raise RccFormatError(f"{path}: data truncated ({len(payload)} of {size} bytes)")
        if flags & FLAG_COMPRESSED:
            return _zlib_uncompress(path, payload)
        if flags & FLAG_COMPRESSED_ZSTD:
            return _zstd_uncompress(path, payload)
        return payload


def _zlib_uncompress(path: str, payload: bytes) -> bytes:
    if len(payload) < 4:
        raise RccFormatError(f"{path}: compressed entry shorter than its size prefix")
    (expected,) = struct.unpack_from(">I", payload, 0)
    try:
        content = zlib.decompress(payload[4:])
    except zlib.error as error:
        raise RccFormatError(f"{path}: corrupt zlib data ({error})") from error
    if len(content) != expected:
        raise RccFormatError(f"{path}: uncompressed to {len(content)} bytes, header says {expected}")
    return content


def _zstd_uncompress(path: str, payload: bytes) -> bytes:
    try:
        import zstandard  # optional: only Qt >= 5.13 builds write zstd entries
    except ImportError as error:
        raise RccFormatError(
            f"{path}: entry is zstd-compressed (flag 0x04) and the 'zstandard' package is not installed"
        ) from error
    try:
        return zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 30)
    except zstandard.ZstdError as error:
        raise RccFormatError(f"{path}: corrupt zstd data ({error})") from error


def read_rcc(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(path, content)`` for every file inside the rcc file at ``path``."""
    yield from RccArchive.open(path).files()
