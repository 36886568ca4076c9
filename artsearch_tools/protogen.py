"""Generates the Python gRPC stubs in `artsearch/v1/` from `protos/artsearch/v1/*.proto`.

Run `make protos` (or `python -m artsearch_tools.protogen`). The stubs are committed; a test regenerates them
into a temporary folder and fails when the committed ones differ.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "artsearch" / "v1"
STUB_DIR = REPO_ROOT / "artsearch" / "v1"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Writes stubs for every proto under `out_root/artsearch/v1/`; returns the files written."""
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    out_dir = out_root / "artsearch" / "v1"
    (out_dir / "__init__.py").write_text('"""Generated gRPC stubs: do not edit, run `make protos`."""\n')
    return sorted(out_dir.iterdir())


def stale_stubs() -> list[str]:
    """Names of committed stub files that differ from freshly generated ones (or are missing/extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp)) if p.is_file()}
    committed = {p.name: p.read_bytes() for p in STUB_DIR.glob("*") if p.is_file()}
    return sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))


def main() -> int:
    STUB_DIR.mkdir(parents=True, exist_ok=True)
    for stale in STUB_DIR.glob("*_pb2*.py*"):
        stale.unlink()
    written = generate(REPO_ROOT)
    print(f"generated {len(written)} files in {STUB_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
