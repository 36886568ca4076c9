"""Images, ports, environment variables, probes and pins agree between the Dockerfiles, docker-compose.yml,
the Kubernetes manifests and the services' own configuration code (read from the source, not restated)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from deploy_support import (
    COMPOSE_FILES,
    FIRST_PARTY,
    GRPC_SERVICES,
    INGEST_JOB,
    K8S,
    OVERLAYS,
    REPO_ROOT,
    SERVICES,
    Dockerfile,
    call_time_imports,
    code_closure,
    compose,
    container_env,
    containers,
    distributions_for,
    dockerfile_of,
    env_reads,
    image_closure,
    image_distributions,
    kubectl,
    named,
    objects,
    read_pins,
    render,
    requirements_of,
    with_defaults,
    with_dependencies,
)
from google.protobuf import text_format
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tritonclient.grpc import model_config_pb2

from artsearch.config import DEFAULT_PORTS
from artsearch_tools.settings_doc import deprecated_names

IMAGES = (*SERVICES, "cli")
PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-[a-z]+")
SERVICE_UID = "10001"
# Every service listens on ARTSEARCH_PORT (artsearch/settings.py, services/gateway/settings.py).
PORT_VARIABLE = dict.fromkeys(SERVICES, "ARTSEARCH_PORT")
ADDRESS_VARIABLES = {"ENCODER_ADDR": "encoder", "SEARCH_ADDR": "search", "INFLUENCE_ADDR": "influence"}
# Variables every Python process may get without the code reading them.
PROCESS_VARIABLES = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}

needs_kubectl = pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed (kustomize)")


# ------------------------------------------------------------------------------------------ Dockerfiles


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_is_multi_stage_pinned_and_runs_as_a_fixed_non_root_user(image: str):
    dockerfile = Dockerfile.read(dockerfile_of(image))
    assert PINNED_PYTHON.fullmatch(dockerfile.build_args()["PYTHON_IMAGE"])
    # The builder may get another base (the base plus the build host's CA bundle, scripts/images.py); the
    # runtime never does, and by default the two are the same.
    assert dockerfile.build_args()["BUILDER_IMAGE"] == "${PYTHON_IMAGE}"
    stages = dockerfile.all("FROM")
    assert stages == ["${BUILDER_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    runtime = dockerfile.last_stage()
    assert any(name == "COPY" and rest.startswith("--from=builder /opt/venv") for name, rest in runtime)
    assert [rest for name, rest in runtime if name == "USER"] == [f"{SERVICE_UID}:{SERVICE_UID}"]
    assert any(name == "RUN" and f"--uid {SERVICE_UID}" in rest for name, rest in runtime)
    install = next(rest for rest in dockerfile.all("RUN") if "pip install" in rest)
    assert "--no-deps -r /tmp/requirements.txt" in install and "pip check" in install
    requirements = requirements_of(image).relative_to(REPO_ROOT).as_posix()
    assert f"{requirements} /tmp/requirements.txt" in dockerfile.all("COPY")


def test_every_image_uses_the_same_base():
    bases = {Dockerfile.read(dockerfile_of(image)).build_args()["PYTHON_IMAGE"] for image in IMAGES}
    assert len(bases) == 1, bases


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_exposes_its_port_and_checks_its_health(service: str):
    dockerfile = Dockerfile.read(dockerfile_of(service))
    port = DEFAULT_PORTS[service]
    assert dockerfile.all("EXPOSE") == [str(port)]
    assert dockerfile.env()[PORT_VARIABLE[service]] == str(port)
    assert dockerfile.all("CMD")[-1] == f'["python", "-m", "services.{service}"]'
    assert f"services/{service}/ services/{service}/" in dockerfile.all("COPY")
    # The core package enters through the generated block of the modules the service imports (test_locks.py).
    assert any(copy.endswith(" artsearch/") for copy in dockerfile.all("COPY"))
    healthcheck = dockerfile.all("HEALTHCHECK")
    assert len(healthcheck) == 1
    assert healthcheck[0].endswith(_healthcheck_command(service))


def _healthcheck_command(service: str) -> str:
    kind = '"http", "/healthz"' if service == "gateway" else '"grpc"'
    return f'CMD ["python", "scripts/healthcheck.py", {kind}]'


def test_cli_image_runs_the_artsearch_command():
    dockerfile = Dockerfile.read(dockerfile_of("cli"))
    assert dockerfile.all("ENTRYPOINT") == ['["python", "-m", "artsearch_tools.cli"]']
    assert dockerfile.all("HEALTHCHECK") == ["NONE"]


def test_encoder_image_carries_the_exported_model_at_its_model_path():
    dockerfile = Dockerfile.read(dockerfile_of("encoder"))
    model_path = dockerfile.env()["MODEL_PATH"]
    copies = [rest.split() for rest in dockerfile.all("COPY")]
    assert any(
        parts[-1] == str(Path(model_path).parent) + "/" and "models/efficientnet-lite0/model.onnx" in parts
        for parts in copies
    )
    # The int8 variant beside it, with its sidecar: MODEL_PATH=/models/efficientnet-lite0-int8/model.onnx.
    int8 = ["models/efficientnet-lite0-int8/model.onnx", "models/efficientnet-lite0-int8/model.json"]
    assert [*int8, "/models/efficientnet-lite0-int8/"] in copies


def _dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    included = True
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, glob.rstrip("/")) for prefix in prefixes):
            included = negate
    return included


@pytest.mark.parametrize("image", IMAGES)
def test_dockerignore_lets_every_copied_source_into_the_context(image: str):
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in Dockerfile.read(dockerfile_of(image)).all("COPY"):
        if copy.startswith("--from="):
            continue
        for source in copy.split()[:-1]:
            assert (REPO_ROOT / source).exists() or source.startswith("models/"), source
            assert _dockerignore_allows(source.rstrip("/"), patterns), (
                f"{source} is excluded by .dockerignore"
            )
    assert not _dockerignore_allows("tests/conftest.py", patterns)
    assert not _dockerignore_allows(".venv/bin/python", patterns)


# ---------------------------------------------------------------------------------------- requirements


@pytest.mark.parametrize("image", IMAGES)
def test_image_requirements_are_the_lock_pins_of_everything_the_code_imports(image: str):
    lock = read_pins(REPO_ROOT / "requirements.lock")
    pins = read_pins(requirements_of(image))
    different = {
        name: (version, lock.get(name)) for name, version in pins.items() if lock.get(name) != version
    }
    assert not different, f"pins that differ from requirements.lock (image, lock): {different}"
    needed = image_distributions(image)
    missing = sorted(f"{name}=={lock.get(name, '?')}" for name in needed - set(pins))
    assert not missing, f"{requirements_of(image)} lacks (with their lock pins): {missing}"


def _declared(*, extras: bool) -> set[str]:
    """The distributions pyproject.toml declares: `pip install .` (and with every extra)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    if extras:
        lines += [line for group in project["optional-dependencies"].values() for line in group]
    return {canonicalize_name(Requirement(line).name) for line in lines}


@pytest.mark.parametrize("image", IMAGES)
def test_pip_install_of_the_project_gives_each_service_and_the_cli_what_it_imports(image: str):
    """`pip install .` alone (no Makefile, no lock) installs every distribution the service's code (or the
    CLI's parser and ingest) imports, with their dependencies."""
    missing = sorted(image_distributions(image) - with_dependencies(_declared(extras=False)))
    assert not missing, f"pyproject.toml's dependencies lack (needed by the {image} image): {missing}"


def test_every_third_party_import_of_the_shipped_packages_is_declared():
    """Tools import more, lazily (evaluation, training, export): those come with an extra."""
    modules = [
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in FIRST_PARTY
        for path in (REPO_ROOT / package).rglob("*.py")
        if "v1" not in path.relative_to(REPO_ROOT).parts
    ]
    # Imported where installed, else that one feature says it is missing
    # (artsearch_tools/catalogue/qt_rcc.py).
    optional = {"zstandard"}
    needed = distributions_for(code_closure(*modules).third_party - optional)
    missing = sorted(needed - with_dependencies(_declared(extras=True)))
    assert not missing, (
        f"imported by artsearch/ or services/ but declared nowhere in pyproject.toml: {missing}"
    )


def test_cli_closure_follows_the_imports_inside_the_functions_that_build_the_parser(tmp_path: Path):
    """A `register` that imports a heavy module inside its body runs that import when the parser is
    built (`artsearch --help`): the CLI image's closure must see it; a command's own lazy imports not."""
    package = tmp_path / "artsearch"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(
        "from artsearch import tools\n"
        "def build_parser():\n"
        "    from artsearch.sub import register as register_sub\n"
        "    register_sub(None)\n"
        "    tools.register(None)\n"
        "def main():\n"
        "    args = build_parser()\n"
        "    return args.run(args)\n"
    )
    (package / "sub.py").write_text(
        "def register(subparsers):\n"
        "    _choices()\n"
        "    subparsers.set_defaults(run=run)\n"
        "def _choices():\n"
        "    from artsearch.heavy import CHOICES\n"
        "    return CHOICES\n"
        "def run(args):\n"
        "    import torch\n"
    )
    (package / "tools.py").write_text("def register(subparsers):\n    import numpy\n")
    (package / "heavy.py").write_text("import PIL\nCHOICES = ()\n")
    imported = call_time_imports("artsearch.cli", "main", root=tmp_path)
    assert imported == {"artsearch.sub", "artsearch.heavy", "numpy"}


def test_cli_closure_covers_what_building_the_parser_imports():
    """Cross-check of the static walk: every module `build_parser()` really imports (first-party ones by
    name, third-party ones by distribution) is in what the CLI image's requirements are checked against."""
    script = (
        "import json, sys; before = set(sys.modules); import artsearch_tools.cli; "
        "artsearch_tools.cli.build_parser(); "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    closure = image_closure("cli")
    first_party = {m for m in loaded if m.split(".")[0] in FIRST_PARTY}
    assert not first_party - set(closure.files), "imported when the parser is built, not in the closure"
    tops = {m.split(".")[0] for m in loaded}
    third_party = {top for top in tops if top not in FIRST_PARTY and top not in sys.stdlib_module_names}
    providers = importlib.metadata.packages_distributions()
    unknown = sorted(top for top in third_party if top not in providers)
    assert not unknown, f"modules no installed distribution provides: {unknown}"
    outside = sorted(
        {canonicalize_name(name) for top in third_party for name in providers[top]}
        - image_distributions("cli")
    )
    assert not outside, f"building the parser imports distributions outside the CLI image's: {outside}"


# -------------------------------------------------------------------------------------------- compose


def _compose_service(name: str, file: str = "docker-compose.yml") -> dict[str, Any]:
    return compose(file)["services"][name]


def _compose_env(name: str, file: str = "docker-compose.yml") -> dict[str, str]:
    """The service's environment as compose renders it with no variables set (empty ones dropped: the
    services read an empty variable as unset)."""
    environment = _compose_service(name, file).get("environment", {})
    rendered = {key: with_defaults(value) for key, value in environment.items()}
    return {key: value for key, value in rendered.items() if value}


@pytest.mark.parametrize("image", IMAGES)
def test_compose_builds_each_image_from_the_repository_root(image: str):
    service = "ingest" if image == "cli" else image
    definition = _compose_service(service)
    assert definition["build"] == {
        "context": ".",
        "dockerfile": dockerfile_of(image).relative_to(REPO_ROOT).as_posix(),
    }
    assert definition["image"] == f"artsearch/{image}:dev"
    assert definition["read_only"] is True and definition["cap_drop"] == ["ALL"]
    assert definition["user"] == f"{SERVICE_UID}:{SERVICE_UID}"


@pytest.mark.parametrize("file", COMPOSE_FILES)
@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_environment_is_what_the_service_reads(service: str, file: str):
    reads = env_reads(service)
    environment = _compose_env(service, file)
    unknown = set(environment) - reads.names
    assert not unknown, f"compose sets variables {service} never reads: {sorted(unknown)}"
    image_env = Dockerfile.read(dockerfile_of(service)).env()
    missing = reads.required - set(environment) - set(image_env)
    assert not missing, f"{service} requires {sorted(missing)}"
    assert environment[PORT_VARIABLE[service]] == str(DEFAULT_PORTS[service])


@pytest.mark.parametrize("file", COMPOSE_FILES)
@pytest.mark.parametrize("service", SERVICES)
def test_compose_publishes_the_default_port_and_uses_the_image_health_check(service: str, file: str):
    definition = _compose_service(service, file)
    port = DEFAULT_PORTS[service]
    published = {with_defaults(entry).rsplit(":", 2)[-1] for entry in definition["ports"]}
    assert published == {str(port)}
    assert all(with_defaults(entry).startswith("127.0.0.1:") for entry in definition["ports"]), file
    command = definition["healthcheck"]["test"]
    assert f"CMD [{', '.join(repr(part).replace(chr(39), chr(34)) for part in command[1:])}]" == (
        _healthcheck_command(service)
    )


def test_compose_starts_in_health_order():
    expected = {
        "gateway": {"encoder", "search", "influence"},
        "encoder": {"triton"},
        "search": {"qdrant"},
        "influence": {"neo4j"},
        "ingest": {"gateway"},
    }
    for service, dependencies in expected.items():
        depends_on = _compose_service(service)["depends_on"]
        assert set(depends_on) == dependencies, service
        assert all(d["condition"] == "service_healthy" for d in depends_on.values())
    for name, definition in compose()["services"].items():
        assert "healthcheck" in definition or name == "ingest", f"{name} has no health check"


def _host_port(url: str) -> tuple[str, int]:
    """Host and port of `dns:///host:port`, `scheme://host:port` or `host:port`."""
    target = url.removeprefix("dns:///")
    parts = urlsplit(target if "://" in target else f"grpc://{target}")
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def test_compose_wires_the_production_backends():
    for variable, service in ADDRESS_VARIABLES.items():
        value = _compose_env("gateway")[variable]
        assert value.startswith("dns:///") and _host_port(value) == (service, DEFAULT_PORTS[service])
    assert _host_port(_compose_env("encoder")["TRITON_URL"]) == ("triton", 8001)
    assert _host_port(_compose_env("search")["QDRANT_URL"]) == ("qdrant", 6333)
    assert _host_port(_compose_env("influence")["NEO4J_URI"]) == ("neo4j", 7687)
    qdrant, search = _compose_env("qdrant"), _compose_env("search")
    assert qdrant["QDRANT__STORAGE__SNAPSHOTS_PATH"] == search["QDRANT_SNAPSHOTS_PATH"]
    assert qdrant["QDRANT__SERVICE__API_KEY"] == search["QDRANT_API_KEY"]
    assert _compose_env("neo4j")["NEO4J_AUTH"] == f"neo4j/{_compose_env('influence')['NEO4J_PASSWORD']}"
    named_volumes = {
        volume.split(":")[0]
        for definition in compose()["services"].values()
        for volume in definition.get("volumes", [])
        if not volume.startswith((".", "$"))
    }
    assert named_volumes == set(compose()["volumes"])
    assert {v.split(":")[0] for v in _compose_service("qdrant")["volumes"]} <= named_volumes


# The local compose file (no registry: the project's images and the stand-ins) is docker-compose.yml's four
# services and ingest command but for these differences, each for a reason given in the file's header.
LOCAL_DIFFERENCES: dict[str, dict[str, Any]] = {
    "encoder": {},
    "search": {
        # No Qdrant server without a registry: the embedded engine, its data on a volume.
        "environment_removed": {"QDRANT_URL", "QDRANT_API_KEY", "QDRANT_SNAPSHOTS_PATH"},
        "environment_added": {"SEARCH_DATA_DIR": "/data"},
        "volumes": ["search-data:/data"],
        "depends_on": None,
    },
    "influence": {
        # FalkorDB behind the same NEO4J_URI: its dialect, and no auth (its Bolt refuses credentials).
        "environment_removed": {"NEO4J_USER", "NEO4J_PASSWORD"},
        "environment_added": {"NEO4J_DIALECT": "falkordb", "INFLUENCE_STATE_DIR": "/state"},
        "volumes": ["influence-state:/state"],
    },
    "gateway": {},
    "ingest": {},
}
STANDINS = {"triton": "artsearch/tritonserver-cpu:dev", "neo4j": "artsearch/falkordb:dev"}


def _rendered(definition: dict[str, Any]) -> dict[str, Any]:
    """A service definition with compose's variable defaults applied and no build section."""
    text = json.dumps({key: value for key, value in definition.items() if key != "build"})
    return json.loads(with_defaults(text).replace("\\$", "$"))


@pytest.mark.parametrize("service", sorted(LOCAL_DIFFERENCES))
def test_local_compose_runs_the_main_files_services_but_for_the_listed_differences(service: str):
    main = _rendered(_compose_service(service))
    local = _rendered(_compose_service(service, "docker-compose.local.yml"))
    differences = LOCAL_DIFFERENCES[service]
    # An empty variable is unset to the services (artsearch.config.Env): compare what they would read.
    environment = {k: v for k, v in main.get("environment", {}).items() if v != ""}
    for name in differences.get("environment_removed", ()):
        del environment[name]
    environment |= differences.get("environment_added", {})
    main["environment"] = environment
    local["environment"] = {k: v for k, v in local.get("environment", {}).items() if v != ""}
    for key in ("volumes", "depends_on"):
        if key in differences:
            main[key] = differences[key]
            if differences[key] is None:
                del main[key]
    assert local == main


def test_local_compose_stand_ins_are_images_the_project_builds_and_hardened():
    from scripts.images import IMAGES as BUILT

    local = compose("docker-compose.local.yml")["services"]
    built = {image.tag for image in BUILT}
    for name, image in STANDINS.items():
        definition = local[name]
        assert definition["image"] == image and image in built, name
        assert definition["read_only"] is True and definition["cap_drop"] == ["ALL"], name
        assert "ports" not in definition, f"{name}: the stand-ins are reached on the compose network only"
    every_image = {definition["image"] for definition in local.values()}
    assert every_image <= built, f"images the project does not build: {every_image - built}"
    named_volumes = {
        volume.split(":")[0]
        for definition in local.values()
        for volume in definition.get("volumes", [])
        if not volume.startswith((".", "$"))
    }
    assert named_volumes == set(compose("docker-compose.local.yml")["volumes"])


def _pbtxt(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_cpu_triton_configs_differ_from_production_only_in_instance_kind():
    production = _pbtxt(REPO_ROOT / "deploy/triton/model_repository/efficientnet-lite0/config.pbtxt")
    for path in (REPO_ROOT / "deploy/compose/triton/config.pbtxt", K8S / "overlays/dev/triton-cpu.pbtxt"):
        cpu = _pbtxt(path)
        assert [group.kind for group in cpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
        del cpu.instance_group[:]
        expected = model_config_pb2.ModelConfig()
        expected.CopyFrom(production)
        del expected.instance_group[:]
        assert cpu == expected, path


def test_kustomize_copies_of_the_triton_configs_are_the_committed_ones():
    source = REPO_ROOT / "deploy/triton/model_repository/efficientnet-lite0"
    assert (K8S / "base/triton/config.pbtxt").read_text() == (source / "config.pbtxt").read_text()
    assert (K8S / "base/triton/tensorrt-fp16.pbtxt").read_text() == (
        source / "configs/tensorrt-fp16.pbtxt"
    ).read_text()


# ----------------------------------------------------------------------------------- Kubernetes manifests


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize("service", SERVICES)
def test_manifest_environment_is_what_the_service_reads_and_requires(overlay: str, service: str):
    docs = render(OVERLAYS[overlay])
    container = containers(named(docs, "Deployment", service))[0]
    environment = container_env(docs, container)
    reads = env_reads(service)
    unknown = set(environment) - reads.names - PROCESS_VARIABLES
    assert not unknown, f"{overlay}: {service} never reads {sorted(unknown)}"
    image_env = Dockerfile.read(dockerfile_of(service)).env()
    missing = reads.required - set(environment) - set(image_env)
    assert not missing, f"{overlay}: {service} requires {sorted(missing)}"
    old_names = set(deprecated_names()) & set(environment)
    assert not old_names, f"{overlay}: {service} is given deprecated names {sorted(old_names)}"
    if service == "search":
        assert environment.get("QDRANT_URL") or environment.get("SEARCH_DATA_DIR")


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_manifest_ports_probes_and_users_match_the_images(overlay: str):
    docs = render(OVERLAYS[overlay])
    for service in SERVICES:
        deployment = named(docs, "Deployment", service)
        container = containers(deployment)[0]
        environment = container_env(docs, container)
        port = DEFAULT_PORTS[service]
        assert environment[PORT_VARIABLE[service]] == str(port)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[("http" if service == "gateway" else "grpc")] == port
        assert {p["port"] for p in named(docs, "Service", service)["spec"]["ports"]} == {port}
        pod = deployment["spec"]["template"]
        assert str(pod["spec"]["securityContext"]["runAsUser"]) == SERVICE_UID
        assert container["image"].split("/")[-1].split(":")[0] == service
        if service in GRPC_SERVICES:
            metrics = int(environment["METRICS_PORT"])
            assert ports["metrics"] == metrics == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    gateway = containers(named(docs, "Deployment", "gateway"))[0]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _service_port(docs: tuple[dict[str, Any], ...], host: str) -> tuple[dict[str, Any], set[int]]:
    """The Service a cluster DNS name points at (name.namespace.svc.cluster.local), and its ports."""
    name, namespace, *rest = host.split(".")
    assert rest == ["svc", "cluster", "local"], host
    service = named(docs, "Service", name)
    assert service["metadata"]["namespace"] == namespace, host
    return service, {p["port"] for p in service["spec"]["ports"]}


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_manifest_addresses_point_at_services_that_exist_with_those_ports(overlay: str):
    docs = render(OVERLAYS[overlay])
    environments = {s: container_env(docs, containers(named(docs, "Deployment", s))[0]) for s in SERVICES}
    ingest = render(INGEST_JOB)
    ingest_env = container_env(ingest, containers(named(ingest, "Job", "ingest"))[0])
    for variable, target in ADDRESS_VARIABLES.items():
        for value in (environments["gateway"][variable], ingest_env[variable]):
            assert value.startswith("dns:///"), f"{variable}: the round_robin policy needs dns:/// targets"
            host, port = _host_port(value)
            service, ports = _service_port(docs, host)
            assert service["metadata"]["name"] == target and port == DEFAULT_PORTS[target] and port in ports
            assert service["spec"]["clusterIP"] == "None", f"{target} must be headless"
    for value, target, port in (
        (environments["encoder"]["TRITON_URL"], "triton", 8001),
        (environments["search"]["QDRANT_URL"], "qdrant", 6333),
        (environments["influence"]["NEO4J_URI"], "neo4j", 7687),
    ):
        host, actual_port = _host_port(value)
        service, ports = _service_port(docs, host)
        assert service["metadata"]["name"] == target and actual_port == port and port in ports


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_third_party_images_and_settings_match_compose(overlay: str):
    docs = render(OVERLAYS[overlay])
    for name, kind in (("triton", "Deployment"), ("qdrant", "StatefulSet"), ("neo4j", "StatefulSet")):
        assert containers(named(docs, kind, name))[0]["image"] == _compose_service(name)["image"], name
    qdrant = {e["name"]: e.get("value") for e in containers(named(docs, "StatefulSet", "qdrant"))[0]["env"]}
    search = container_env(docs, containers(named(docs, "Deployment", "search"))[0])
    assert qdrant["QDRANT__STORAGE__SNAPSHOTS_PATH"] == search["QDRANT_SNAPSHOTS_PATH"]
    assert qdrant["QDRANT__SERVICE__HTTP_PORT"] == _compose_env("qdrant")["QDRANT__SERVICE__HTTP_PORT"]
    for service in SERVICES:
        image = containers(named(docs, "Deployment", service))[0]["image"]
        compose_image = _compose_service(service)["image"]
        assert image.rsplit(":", 1)[0].endswith(compose_image.rsplit(":", 1)[0]), service


@needs_kubectl
def test_ingest_job_sets_only_variables_the_cli_reads():
    ingest = render(INGEST_JOB)
    container = containers(named(ingest, "Job", "ingest"))[0]
    environment = set(container_env(ingest, container))
    sources = "\n".join(path.read_text() for path in image_closure("cli").files.values())
    used_by_arguments = {name for arg in container["args"] for name in re.findall(r"\$\((\w+)\)", arg)}
    for name in environment - used_by_arguments:
        assert f'"{name}"' in sources, f"the CLI never reads {name}"
    assert env_reads("cli").names  # the CLI's code is found at all


@needs_kubectl
def test_ingest_cli_accepts_the_job_arguments():
    from artsearch_tools.cli import build_parser

    ingest = render(INGEST_JOB)
    args = containers(named(ingest, "Job", "ingest"))[0]["args"]
    concrete = [
        re.sub(r"\$\(JOB_COMPLETION_INDEX\)", "3", re.sub(r"\$\(CATALOGUE_DIR\)", "/c", a)) for a in args
    ]
    parsed = build_parser().parse_args(concrete)
    assert parsed.command == "ingest"
    assert (parsed.shard_index, parsed.shard_count) == (3, int(args[args.index("--shard-count") + 1]))


@needs_kubectl
def test_every_secret_reference_names_the_one_secret(overlay: str = "dev"):
    docs = render(OVERLAYS[overlay])
    names = {
        variable["valueFrom"]["secretKeyRef"]["name"]
        for workload in objects(docs, "Deployment") + objects(docs, "StatefulSet")
        for container in containers(workload, init=True)
        for variable in container.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert names == {"artsearch-secrets"}
