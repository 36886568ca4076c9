"""`pip install .` without the Makefile gives working commands: the project's wheel, installed into a clean
virtual environment with nothing but pyproject.toml's dependencies (resolved by pip from a wheelhouse of the
run-time lock's files, no index: `make wheelhouse` fills it, `make test` does that first), runs all four
services as a stack that the gateway reports ready, and the `artsearch` command.

The processes run the installed code only: `python -I` (no current directory or PYTHON* variables on the
path) from a folder outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(os.environ.get("ARTSEARCH_WHEELHOUSE", REPO_ROOT / ".cache" / "wheelhouse"))
# Written by `make wheelhouse` once every file of requirements.lock is there.
COMPLETE = WHEELHOUSE / ".complete"
# The packages pyproject.toml maps (packages.find).
SOURCES = ("artsearch", "artsearch_tools", "services", "clients/python/artsearch_client")

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, timeout: float = 300) -> str:
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert completed.returncode == 0, (
        f"{' '.join(command)}:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
    )
    return completed.stdout


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the project's wheel installed by pip's resolver from the wheelhouse alone."""
    if not COMPLETE.is_file():
        pytest.fail(f"{COMPLETE} is missing: run `make wheelhouse` (the `make test` target does)")
    scratch = tmp_path_factory.mktemp("pip-install")
    dist = scratch / "dist"
    # A copy of what the wheel is built from, so the build leaves no build/ or egg-info in the checkout.
    source = scratch / "source"
    for folder in SOURCES:
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", source / "pyproject.toml")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."],
        source,
    )
    venv = scratch / "venv"
    run([sys.executable, "-m", "venv", str(venv)], scratch)
    wheel = next(dist.glob("artsearch-*.whl"))
    run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            str(wheel),
        ],
        scratch,
        timeout=600,
    )
    return venv


class InstalledStack(ServiceStack):
    """The services as the clean venv runs them: its python, isolated from this checkout."""

    def __init__(self, settings: StackSettings, python: Path) -> None:
        super().__init__(settings)
        self.python = python

    def command(self, service: str) -> list[str]:
        return [str(self.python), "-I", "-u", "-m", f"services.{service}"]


def test_the_installed_code_is_the_wheels_not_the_checkout(clean_venv: Path, tmp_path: Path):
    script = (
        "import artsearch, services.gateway, artsearch_tools, artsearch_client; print(artsearch.__file__)"
    )
    location = run([str(clean_venv / "bin" / "python"), "-I", "-c", script], tmp_path).strip()
    assert Path(location).is_relative_to(clean_venv), location


def test_pip_install_dot_runs_the_four_services(clean_venv: Path, tmp_path: Path, model_path: Path):
    settings = StackSettings(
        model_path=model_path,
        state_dir=tmp_path / "state",
        ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
    )
    previous = Path.cwd()
    os.chdir(tmp_path)  # the children start here, away from the checkout
    try:
        with InstalledStack(settings, clean_venv / "bin" / "python") as stack:
            stack.wait_ready(timeout=120)
    finally:
        os.chdir(previous)


def test_pip_install_dot_gives_the_artsearch_command(clean_venv: Path, tmp_path: Path):
    assert "ingest" in run([str(clean_venv / "bin" / "artsearch"), "--help"], tmp_path)
    assert "usage" in run([str(clean_venv / "bin" / "artsearch"), "ingest", "--help"], tmp_path)
