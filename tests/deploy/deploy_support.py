"""Shared readers for the deployment tests: rendered kustomizations, the services' environment variables
(found in their code), what their code imports, requirement pins, Dockerfiles and docker-compose.yml."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
INGEST_JOB = K8S / "jobs" / "ingest"
SERVICES = ("encoder", "search", "influence", "gateway")
GRPC_SERVICES = ("encoder", "search", "influence")
FIRST_PARTY = ("artsearch", "artsearch_tools", "services", "artsearch_client")
# The client package's source has a folder (and a distribution) of its own; the others sit at the root.
SOURCE_ROOTS = {"artsearch_client": REPO_ROOT / "clients" / "python"}
ENV_METHODS = {"str", "int", "float", "bool", "optional"}
# Images built by this repository: name -> (Dockerfile, requirements.txt, entry module(s)).
CLI_DOCKERFILE = REPO_ROOT / "deploy" / "images" / "cli" / "Dockerfile"


def dockerfile_of(image: str) -> Path:
    return CLI_DOCKERFILE if image == "cli" else REPO_ROOT / "services" / image / "Dockerfile"


def requirements_of(image: str) -> Path:
    return dockerfile_of(image).parent / "requirements.txt"


# --------------------------------------------------------------------------------------------- kustomize


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def render(path: Path) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize` renders from a kustomization folder."""
    binary = kubectl()
    if binary is None:
        raise RuntimeError("kubectl is not installed")
    result = subprocess.run([binary, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in objects(docs, kind):
        if doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} named {name}")


def config_map(docs: Iterable[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    for doc in objects(docs, "ConfigMap"):
        name = doc["metadata"]["name"]
        if name == prefix or re.fullmatch(re.escape(prefix) + r"-[a-z0-9]{10}", name):
            return doc
    raise AssertionError(f"no ConfigMap {prefix}")


def workloads(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in {"Deployment", "StatefulSet", "Job"}]


def containers(workload: dict[str, Any], *, init: bool = False) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def container_env(docs: Iterable[dict[str, Any]], container: dict[str, Any]) -> dict[str, str | None]:
    """Every environment variable a container gets: envFrom ConfigMaps (values) and Secrets (None), env."""
    values: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(config_map(docs, source["configMapRef"]["name"].rsplit("-", 1)[0])["data"])
        else:
            raise AssertionError(f"envFrom other than a ConfigMap (a whole Secret) in {container['name']}")
    for variable in container.get("env", []):
        values[variable["name"]] = variable.get("value")
    return values


# ----------------------------------------------------------------------------------- the services' code


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    """The source file of a first-party module (package -> its __init__.py), or None."""
    if not module or module.split(".")[0] not in FIRST_PARTY:
        return None
    base = SOURCE_ROOTS.get(module.split(".")[0], root) if root == REPO_ROOT else root
    path = base.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _walk(tree: ast.AST, *, lazy: bool) -> Iterator[ast.AST]:
    """Every node, or (lazy=False) every node outside function bodies: what runs at import time."""
    if not lazy and isinstance(tree, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        return
    yield tree
    for child in ast.iter_child_nodes(tree):
        yield from _walk(child, lazy=lazy)


def _imported_modules(tree: ast.AST, *, lazy: bool) -> Iterator[str]:
    for node in _walk(tree, lazy=lazy):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@dataclass
class CodeClosure:
    """First-party modules reachable from some entry modules by imports (lazy ones too), and the
    top-level names of the third-party modules they import."""

    files: dict[str, Path] = field(default_factory=dict)
    third_party: set[str] = field(default_factory=set)


@functools.cache
def code_closure(*entries: str, lazy: bool = True) -> CodeClosure:
    """lazy: follow imports inside functions too (a service's run-time paths), or only import-time ones."""
    closure = CodeClosure()
    pending = list(entries)
    while pending:
        module = pending.pop()
        if module in closure.files:
            continue
        path = module_file(module)
        if path is None:
            continue
        closure.files[module] = path
        parts = module.split(".")
        # A module's parent packages run first (their __init__.py).
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        for imported in _imported_modules(ast.parse(path.read_text(), str(path)), lazy=lazy):
            top = imported.split(".")[0]
            if top in FIRST_PARTY:
                pending.append(imported)
            elif top not in sys.stdlib_module_names and top != "__future__":
                closure.third_party.add(top)
    return closure


# The CLI image runs `python -m artsearch_tools.cli ...`: building the parser runs artsearch_tools.cli's main
# and build_parser, every sub-command's `register` and what they call (their imports inside those functions
# count, with the import-time imports of every module reached), then the ingest sub-command's module with
# all its lazy imports (what `ingest` runs). Other sub-commands import more, lazily, when they run; the
# image is for ingestion and `--help`.
CLI_ENTRY = ("artsearch_tools.cli", "main")
CLI_INGEST_MODULES = ("artsearch_tools.ingest_cli",)


@functools.cache
def _module_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    return next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        ),
        None,
    )


def _bindings(nodes: Iterable[ast.AST]) -> dict[str, str]:
    """Local name -> the dotted name the imports among these nodes bind it to: `import a.b as c`
    (c -> a.b), `import a.b` (a -> a), `from a import f as g` (g -> a.f). Absolute imports only."""
    names = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                names[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def call_time_imports(module: str, function: str, *, root: Path = REPO_ROOT) -> set[str]:
    """The modules imported inside a first-party function and inside every first-party function it
    calls, transitively: `f()` for a function of the same module or one an import binds
    (`from m import f as g; g()`), `m.f()` for a module an import binds. Calls through other objects
    (`args.run(args)`) and functions passed as values (`set_defaults(run=f)`) are not followed: they run
    later, if at all. Nested definitions count as their function's body."""
    imported: set[str] = set()
    seen: set[tuple[str, str]] = set()
    pending = [(module, function)]
    while pending:
        current = pending.pop()
        path = module_file(current[0], root)
        if current in seen or path is None:
            continue
        seen.add(current)
        tree = _module_tree(path)
        node = _function(tree, current[1])
        if node is None:
            continue
        imported.update(_imported_modules(node, lazy=True))
        body = list(ast.walk(node))
        names = _bindings(tree.body) | _bindings(body)
        for call in (n for n in body if isinstance(n, ast.Call)):
            target = call.func
            if isinstance(target, ast.Name) and target.id in names:
                owner, _, name = names[target.id].rpartition(".")
                pending.append((owner, name))
            elif isinstance(target, ast.Name):
                pending.append((current[0], target.id))
            elif (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id in names
            ):
                pending.append((names[target.value.id], target.attr))
    return {name for name in imported if name.split(".")[0] not in FIRST_PARTY or module_file(name, root)}


def cli_parser_closure() -> CodeClosure:
    """What building the `artsearch` parser imports (the `--help` of every sub-command, and the start
    of every command): artsearch_tools.cli at import time, the imports inside main, build_parser and the
    `register` functions they call, and everything those modules import at import time."""
    imported = call_time_imports(*CLI_ENTRY)
    first_party = [name for name in imported if name.split(".")[0] in FIRST_PARTY]
    closure = code_closure(CLI_ENTRY[0], *first_party, lazy=False)
    third_party = {
        top
        for top in (name.split(".")[0] for name in imported)
        if top not in FIRST_PARTY and top not in sys.stdlib_module_names and top != "__future__"
    }
    return CodeClosure(dict(closure.files), closure.third_party | third_party)


# Distributions a library imports lazily for a feature the code uses, which no import in our code shows:
# FastAPI parses multipart forms (File/Form parameters) with python-multipart.
FEATURE_DISTRIBUTIONS = {"gateway": {"python-multipart"}}


def image_distributions(image: str) -> set[str]:
    """Every distribution an image needs at run time: what its code imports, plus feature extras,
    with their dependencies."""
    imported = distributions_for(image_closure(image).third_party)
    return with_dependencies(imported | FEATURE_DISTRIBUTIONS.get(image, set()))


def image_closure(image: str) -> CodeClosure:
    """What an image's code needs: a service from its __main__ (lazy imports too), or the CLI."""
    if image != "cli":
        return code_closure(f"services.{image}.__main__")
    parser, ingest = cli_parser_closure(), code_closure(*CLI_INGEST_MODULES)
    return CodeClosure({**parser.files, **ingest.files}, parser.third_party | ingest.third_party)


def _string_constants(tree: ast.Module) -> dict[str, str]:
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    constants[target.id] = node.value.value
    return constants


def _name_argument(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


@dataclass(frozen=True)
class EnvReads:
    names: frozenset[str]
    required: frozenset[str]


def env_reads_in(path: Path) -> tuple[set[str], set[str]]:
    """(names read, names required) in one module: `env.str("NAME")`-style calls on an Env (required
    when str/int/float get no default), os.environ.get / os.environ[...] / os.getenv."""
    tree = ast.parse(path.read_text(), str(path))
    constants = _string_constants(tree)
    names: set[str] = set()
    required: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            name = _name_argument(node.args[0], constants)
            if name is None or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                continue
            owner, method = node.func.value, node.func.attr
            if method in ENV_METHODS and isinstance(owner, ast.Name) and owner.id == "env":
                names.add(name)
                has_default = len(node.args) > 1 or any(k.arg == "default" for k in node.keywords)
                if method in {"str", "int", "float"} and not has_default:
                    required.add(name)
            elif (method == "get" and _is_environ(owner)) or method == "getenv":
                names.add(name)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name = _name_argument(node.slice, constants)
            if name is not None:
                names.add(name)
    return names, required


def declared_reads(image: str, files: Iterable[Path]) -> tuple[set[str], set[str]]:
    """(names read, names required) of the settings declared for `image` (artsearch/settings.py,
    services/<name>/settings.py) by the declaring modules among `files`; old names are not counted."""
    from artsearch.env import REQUIRED
    from artsearch.settings import INGEST
    from artsearch_tools.settings_doc import SETTINGS_MODULES

    reader = INGEST if image == "cli" else image
    present = {path.resolve() for path in files}
    names: set[str] = set()
    required: set[str] = set()
    for module_name in SETTINGS_MODULES:
        module = importlib.import_module(module_name)
        if Path(str(module.__file__)).resolve() not in present:
            continue
        for setting in module.SETTINGS:
            if reader in setting.services:
                names.add(setting.name)
                if setting.default is REQUIRED and setting.default_doc is None:
                    required.add(setting.name)
    return names, required


def env_reads(image: str) -> EnvReads:
    """The environment variables an image's code reads (through the settings' declarations, or directly in
    the tools), and those it requires."""
    files = list(image_closure(image).files.values())
    names, required = declared_reads(image, files)
    for path in files:
        found, needed = env_reads_in(path)
        names |= found
        required |= needed
    return EnvReads(frozenset(names), frozenset(required))


# ----------------------------------------------------------------------------------------- requirements


@dataclass(frozen=True)
class LockEntry:
    """One requirement of a lock as uv writes it: `name==version \\`, its `--hash=` lines, and the
    `# via` comment naming what requires it."""

    requirement: Requirement
    hashes: frozenset[str]
    via: frozenset[str]


def read_lock(path: Path) -> dict[str, LockEntry]:
    """name (canonical) -> the requirement, its hashes and what it is there for."""
    entries: dict[str, LockEntry] = {}
    text = path.read_text().replace("\\\n", " ")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", "\n" + text)
    for block in blocks:
        lines = block.strip().splitlines()
        if not lines or lines[0].startswith("#"):
            continue
        words = lines[0].split()
        requirement = Requirement(" ".join(word for word in words if not word.startswith("--hash=")))
        hashes = frozenset(word.removeprefix("--hash=") for word in words if word.startswith("--hash="))
        comments = [line.strip().lstrip("#").strip() for line in lines[1:] if line.strip().startswith("#")]
        via = frozenset(comment.removeprefix("via").strip() for comment in comments) - {""}
        entries[canonicalize_name(requirement.name)] = LockEntry(requirement, hashes, via)
    return entries


def read_pins(path: Path) -> dict[str, str]:
    """name (canonical) -> version of every `name==version` line."""
    pins = {}
    for name, entry in read_lock(path).items():
        specifiers = list(entry.requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise AssertionError(f"{path}: {str(entry.requirement)!r} is not pinned exactly (name==version)")
        pins[name] = specifiers[0].version
    return pins


def distributions_for(top_level_modules: Iterable[str]) -> set[str]:
    """The installed distributions providing these importable top-level names."""
    providers = importlib.metadata.packages_distributions()
    found = set()
    for module in top_level_modules:
        if module not in providers:
            raise AssertionError(f"no installed distribution provides the module {module!r}")
        found.update(canonicalize_name(name) for name in providers[module])
    return found


def with_dependencies(distributions: Iterable[str]) -> set[str]:
    """The distributions and everything they require at run time (no extras), transitively."""
    environment = default_environment() | {"extra": ""}
    closure: set[str] = set()
    pending = list(distributions)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in closure:
            continue
        closure.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                pending.append(requirement.name)
    return closure


# ------------------------------------------------------------------------------------------ Dockerfiles


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    instructions: tuple[tuple[str, str], ...]  # (INSTRUCTION, arguments), continuation lines joined

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        text = re.sub(r"\\\n", " ", path.read_text())
        instructions = []
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
        return cls(path, tuple(instructions))

    def all(self, keyword: str) -> list[str]:
        return [rest for name, rest in self.instructions if name == keyword]

    def last_stage(self) -> list[tuple[str, str]]:
        starts = [i for i, (name, _) in enumerate(self.instructions) if name == "FROM"]
        return list(self.instructions[starts[-1] :])

    def env(self) -> dict[str, str]:
        """ENV of the final stage (KEY=VALUE form)."""
        values = {}
        for name, rest in self.last_stage():
            if name == "ENV":
                for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest):
                    values[match.group(1)] = match.group(2)
        return values

    def build_args(self) -> dict[str, str]:
        values = {}
        for rest in self.all("ARG"):
            key, _, default = rest.partition("=")
            values[key.strip()] = default.strip()
        return values


# ------------------------------------------------------------------------------------------- compose


COMPOSE_FILES = ("docker-compose.yml", "docker-compose.local.yml")
# ${NAME}, ${NAME:-default}, ${NAME-default}: compose interpolation, read here with the defaults.
_INTERPOLATION = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(?::?-([^}]*))?\}")


@functools.cache
def compose(file: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / file).read_text())


def with_defaults(value: object) -> str:
    """A compose value as compose renders it with none of its variables set."""
    return _INTERPOLATION.sub(lambda match: match.group(1) or "", str(value))


# --------------------------------------------------------------------------- the settings the repo ships


def example_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines of an env file (comments and blanks skipped), as compose reads `.env`."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _interpolated(value: object, variables: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(0)[2:].split(":", 1)[0].split("-", 1)[0].rstrip("}")
        return variables.get(name) or match.group(1) or ""

    return _INTERPOLATION.sub(substitute, str(value))


def placeholder_secret() -> dict[str, str]:
    """The development values of deploy/k8s/base/secret.yaml."""
    secret = yaml.safe_load((K8S / "base" / "secret.yaml").read_text())
    return dict(secret["stringData"])


def shipped_gateway_settings() -> dict[str, dict[str, str]]:
    """Every environment the repository ships for the gateway, by where it comes from: each compose file's
    (with its defaults, and with deploy/compose/dev.env.example as `.env`), and each Kubernetes overlay's
    (ConfigMap values, Secret references filled from the placeholder Secret)."""
    example = example_env_file(REPO_ROOT / "deploy" / "compose" / "dev.env.example")
    settings = {}
    for file in COMPOSE_FILES:
        environment = compose(file)["services"]["gateway"]["environment"]
        settings[file] = {key: _interpolated(value, {}) for key, value in environment.items()}
        settings[f"{file} + dev.env.example"] = {
            key: _interpolated(value, example) for key, value in environment.items()
        }
    secret = placeholder_secret()
    for overlay, path in OVERLAYS.items():
        docs = render(path)
        (gateway,) = [c for c in containers(named(docs, "Deployment", "gateway")) if c["name"] == "gateway"]
        environment = container_env(docs, gateway)
        for variable in gateway.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                environment[variable["name"]] = secret[reference["key"]]
        settings[f"k8s {overlay}"] = {key: str(value) for key, value in environment.items()}
    return settings
