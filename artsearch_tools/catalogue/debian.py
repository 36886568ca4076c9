"""Fetch a Debian package's files without installing it: `apt-get download` + `dpkg-deb -x`.

Used for the data-only packages the project draws images from (gcompris-qt-data, openclipart-png,
tuxpaint-stamps-default, ...). Both the .deb and its extracted tree are cached, so a second call costs
nothing.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

_EXTRACTED_MARKER = ".extracted"


class DebianPackageError(RuntimeError):
    """The package could not be downloaded or unpacked."""


def fetch_deb_package(name: str, cache_dir: Path) -> Path:
    """Return ``cache_dir/<name>/``, the package's files extracted from its .deb (downloaded if needed)."""
    cache_dir = Path(cache_dir).resolve()  # the tools run in other working directories
    target = cache_dir / name
    if (target / _EXTRACTED_MARKER).is_file():
        return target
    deb = cached_deb(name, cache_dir) or _download(name, cache_dir)
    _extract(deb, target)
    return target


def cached_deb(name: str, cache_dir: Path) -> Path | None:
    """The newest cached ``<name>_<version>_<arch>.deb`` in ``cache_dir``, if any."""
    candidates = sorted(Path(cache_dir).glob(f"{name}_*.deb"), key=lambda path: path.stat().st_mtime)
    return candidates[-1] if candidates else None


def deb_version(deb: Path) -> str:
    """Upstream version from a .deb file name (``gcompris-qt-data_3.1-2_all.deb`` -> ``3.1``)."""
    parts = deb.name.removesuffix(".deb").split("_")
    if len(parts) != 3:
        raise DebianPackageError(f"{deb.name} is not named <package>_<version>_<arch>.deb")
    version = parts[1].replace("%3a", ":")
    version = version.split(":", 1)[-1]  # drop the epoch
    return version.rsplit("-", 1)[0] if "-" in version else version


def extracted_version(extracted: Path, name: str) -> str | None:
    """Upstream version of a tree `fetch_deb_package` extracted (from its .deb name, else its changelog)."""
    marker = Path(extracted) / _EXTRACTED_MARKER
    if marker.is_file():
        return deb_version(Path(marker.read_text().strip()))
    changelog = Path(extracted) / "usr/share/doc" / name / "changelog.Debian.gz"
    if changelog.is_file():
        with gzip.open(changelog, "rt", encoding="utf-8") as handle:
            match = re.match(r"\S+ \((?:\d+:)?([^)]+)\)", handle.readline())
        if match:
            version = match.group(1)
            return version.rsplit("-", 1)[0] if "-" in version else version
    return None


def _download(name: str, cache_dir: Path) -> Path:
    apt_get = _require_tool("apt-get", "apt-get is needed to download Debian packages (Debian/Ubuntu only)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    first = _run([apt_get, "download", name], cwd=cache_dir)
    if first.returncode != 0:
        # The usual cause is missing or stale package lists: refresh once and retry.
        log.info("apt-get download %s failed (%s); running apt-get update", name, _last_line(first.stderr))
        update = _run([apt_get, "update"], cwd=cache_dir)
        if update.returncode != 0:
            raise DebianPackageError(f"apt-get update failed: {_last_line(update.stderr)}")
        second = _run([apt_get, "download", name], cwd=cache_dir)
        if second.returncode != 0:
            raise DebianPackageError(f"apt-get download {name} failed: {_last_line(second.stderr)}")
    deb = cached_deb(name, cache_dir)
    if deb is None:
        raise DebianPackageError(f"apt-get download {name} reported success but left no .deb in {cache_dir}")
    return deb


def _extract(deb: Path, target: Path) -> None:
    dpkg_deb = _require_tool("dpkg-deb", "dpkg-deb is needed to unpack Debian packages (Debian/Ubuntu only)")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    result = _run([dpkg_deb, "-x", str(deb), str(partial)], cwd=deb.parent)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise DebianPackageError(f"dpkg-deb -x {deb.name} failed: {_last_line(result.stderr)}")
    (partial / _EXTRACTED_MARKER).write_text(deb.name + "\n")
    # Rename only once complete, so an interrupted run never leaves a half-extracted tree behind.
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _require_tool(tool: str, explanation: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise DebianPackageError(f"{tool} not found on PATH: {explanation}")
    return path


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"
