"""The project's images run as containers, the way users run them: what the container tests share.

- `build_images()` builds every image once per session with `scripts/images.py` (what `make images` runs;
  quick when nothing changed), so the tests always run the current code.
- `ProjectNetwork`: a Docker network of the test's own (removed after); containers find each other by their
  aliases on it, as in compose and Kubernetes.
- `ServiceContainer` (testcontainers' DockerContainer): one image with the production hardening — read-only
  root filesystem, a /tmp tmpfs, every capability dropped, no-new-privileges, the image's own non-root user
  and HEALTHCHECK (polled every second instead of every 10 s) — its ports published on 127.0.0.1 only, and
  the faults a test injects (kill, pause, network disconnect) as Docker commands.
- `Stack`: the four services (optionally several encoder and influence replicas, optionally the Triton and
  FalkorDB stand-ins behind TRITON_URL / NEO4J_URI) on one network, the demo catalogue ingested through the
  CLI image.

Nothing here is aimed at any address but 127.0.0.1 and the test's own network.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from docker.models.containers import Container
from docker.models.networks import Network as DockerNetwork
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL = "org.artsearch.test"
# Every container, volume and network a test makes carries LABEL=<the pid of the test process>, so that a
# later run removes what a killed run left behind without touching another run going on beside it.
LABELS = {LABEL: str(os.getpid())}
SECOND_NS = 1_000_000_000
# The image's own health check command, run every second (the images say every 10 s: slow for tests).
FAST_HEALTH = {"interval": SECOND_NS, "timeout": 5 * SECOND_NS, "retries": 3, "start_period": 120 * SECOND_NS}
DEFAULT_PORTS = {"encoder": 50051, "search": 50052, "influence": 50053, "gateway": 8080}
METRICS_PORT = 9100
# Images of the four services on their shipped defaults, plus the settings compose and Kubernetes give them.
SERVICE_ENV = {
    "encoder": {"METRICS_PORT": str(METRICS_PORT)},
    "search": {"METRICS_PORT": str(METRICS_PORT)},
    "influence": {"METRICS_PORT": str(METRICS_PORT)},
    "gateway": {
        "ENCODER_ADDR": "dns:///encoder:50051",
        "SEARCH_ADDR": "dns:///search:50052",
        "INFLUENCE_ADDR": "dns:///influence:50053",
        "IMAGE_ROOT": "/catalogues",
    },
}
DEV_ADMIN_KEY = "dev-admin-key-change-me"


def tag(image: str) -> str:
    return f"artsearch/{image}:dev"


def build_images() -> None:
    """Every image, built (or found up to date) by `scripts/images.py build`; a failure fails the session."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "scripts/images.py", "build"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        pytest.fail(f"`scripts/images.py build` failed:\n{result.stderr[-4000:]}")
    print(f"images built or up to date in {time.monotonic() - started:.0f} s", file=sys.stderr)


def docker_client() -> docker.DockerClient:
    return docker.from_env(timeout=60)


def remove_leftovers(client: docker.DockerClient) -> None:
    """Containers, volumes and networks an earlier test run left behind: those whose process is gone."""

    def orphaned(labels: Mapping[str, str] | None) -> bool:
        pid = (labels or {}).get(LABEL, "")
        return not (pid.isdigit() and Path(f"/proc/{pid}").exists())

    for container in client.containers.list(all=True, filters={"label": LABEL}):
        if orphaned(container.labels):
            container.remove(force=True, v=True)
    for volume in client.volumes.list(filters={"label": LABEL}):
        if orphaned(volume.attrs.get("Labels")):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)
    for network in client.networks.list(filters={"label": LABEL}):
        if orphaned(network.attrs.get("Labels")):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()


class ProjectNetwork:
    """A user-defined bridge network of this test run's own (Docker's DNS resolves aliases on it)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.network = Network(docker_network_kw={"labels": LABELS}).create()
        self.name = self.network.name

    def docker_network(self) -> DockerNetwork:
        return self.client.networks.get(self.name)

    def remove(self) -> None:
        network = self.docker_network()
        for container in network.containers:
            with contextlib.suppress(docker.errors.APIError):
                network.disconnect(container, force=True)
        with contextlib.suppress(docker.errors.APIError):
            network.remove()


def named_volume(client: docker.DockerClient, purpose: str) -> str:
    name = f"artsearch-test-{purpose}-{uuid.uuid4().hex[:8]}"
    client.volumes.create(name, labels=LABELS)
    return name


class ServiceContainer(DockerContainer):
    """One of the project's images, hardened as in production, published on loopback only."""

    def __init__(
        self,
        image: str,
        network: ProjectNetwork,
        aliases: tuple[str, ...],
        *,
        env: Mapping[str, str] | None = None,
        publish: tuple[int, ...] = (),
        volumes: Mapping[str, str] | None = None,
        binds: Mapping[Path, str] | None = None,
        mem_limit: str | None = None,
        shm_size: str | None = None,
        restart: bool = True,
        command: list[str] | None = None,
    ) -> None:
        super().__init__(tag(image))
        self.image_name = image
        self.network = network
        self.aliases = aliases
        self.with_name(f"{aliases[0]}-{uuid.uuid4().hex[:8]}")
        for key, value in (env or {}).items():
            self.with_env(key, value)
        for port in publish:
            self.ports[f"{port}/tcp"] = ("127.0.0.1", None)  # a random port on loopback only
        for name, path in (volumes or {}).items():
            self.with_volume_mapping(name, path, "rw")
        for host, path in (binds or {}).items():
            self.with_volume_mapping(str(host), path, "ro")
        self.with_tmpfs_mount("/tmp", "size=256m")
        self.with_network(network.network).with_network_aliases(*aliases)
        options: dict[str, Any] = {
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "healthcheck": FAST_HEALTH,
            "labels": LABELS,
        }
        if restart:
            # As compose's `restart: unless-stopped` and a Deployment: a killed process comes back by itself.
            options["restart_policy"] = {"Name": "unless-stopped"}
        if mem_limit:
            options |= {"mem_limit": mem_limit, "memswap_limit": mem_limit}
        if shm_size:
            options["shm_size"] = shm_size
        self.with_kwargs(**options)
        if command:
            self.with_command(command)

    def docker_container(self) -> Container:
        return self.get_wrapped_container()

    def host_port(self, port: int) -> int:
        self.docker_container().reload()
        bindings = self.docker_container().attrs["NetworkSettings"]["Ports"][f"{port}/tcp"]
        return int(bindings[0]["HostPort"])

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{self.host_port(port)}"

    def address(self, port: int) -> str:
        return f"127.0.0.1:{self.host_port(port)}"

    def state(self) -> dict[str, Any]:
        self.docker_container().reload()
        return self.docker_container().attrs["State"]

    def health(self) -> str | None:
        return self.state().get("Health", {}).get("Status")

    def logs(self) -> str:
        return self.docker_container().logs().decode(errors="replace")

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds until Docker reports the image's HEALTHCHECK passing; fails with the logs' end if not."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            state = self.state()
            if state.get("Health", {}).get("Status") == "healthy":
                return time.monotonic() - started
            time.sleep(0.25)
        pytest.fail(
            f"{self.image_name} not healthy within {timeout} s: {self.state()}\n{self.logs()[-3000:]}"
        )

    # ---- faults
    def kill(self) -> None:
        """`docker kill`: SIGKILL through Docker, which counts as a manual stop (no restart by the policy)."""
        self.docker_container().kill()

    def start_again(self) -> None:
        """What an orchestrator does after a kill: start the same container (its volumes, its aliases)."""
        self.docker_container().start()

    def crash(self) -> None:
        """SIGKILL of the container's process from outside, as the OOM killer would: the restart policy
        brings the container back by itself (RestartCount goes up)."""
        os.kill(int(self.state()["Pid"]), signal.SIGKILL)

    def started_at(self) -> str:
        return str(self.state()["StartedAt"])

    def pause(self) -> None:
        """`docker pause`. The cgroup-v1 freezer gives up ("unable to freeze") when a process is starting
        in the container meanwhile — the health check Docker runs every second here — so a failed freeze
        is tried again; the container is never left half frozen (runc thaws it after a failed attempt)."""
        for attempt in range(5):
            try:
                self.docker_container().pause()
                return
            except docker.errors.APIError as error:
                if "unable to freeze" not in str(error) or attempt == 4:
                    raise
                time.sleep(0.2)

    def unpause(self) -> None:
        self.docker_container().unpause()

    def disconnect(self) -> None:
        self.network.docker_network().disconnect(self.docker_container(), force=True)

    def reconnect(self) -> None:
        self.network.docker_network().connect(self.docker_container(), aliases=list(self.aliases))

    def restart_count(self) -> int:
        self.docker_container().reload()
        return int(self.docker_container().attrs["RestartCount"])

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.APIError, docker.errors.NotFound):
            self.docker_container().remove(force=True, v=True)


@dataclass
class StackOptions:
    """What runs: the four services on their embedded defaults, or with the stand-ins (TRITON_URL and
    NEO4J_URI), with `replicas` of the stateless services behind one name."""

    standins: bool = False
    encoder_replicas: int = 1
    influence_replicas: int = 1
    encoder_mem_limit: str | None = None
    # The gateway's IMAGE_ROOT on a volume of its own (/images, writable: artworks added over the admin API
    # keep their image) instead of the catalogues' folder (/catalogues, read-only here).
    writable_image_root: bool = False
    # SERVICE_TOKEN of the four services and the CLI image (artsearch/service_auth.py), as in Kubernetes.
    service_token: str | None = None
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def token_env(self) -> dict[str, str]:
        return {"SERVICE_TOKEN": self.service_token} if self.service_token else {}


class Stack:
    """The production shape on the test's own network; `start()` returns once the gateway is ready."""

    def __init__(self, client: docker.DockerClient, catalogues: Path, options: StackOptions) -> None:
        self.client = client
        self.catalogues = catalogues
        self.options = options
        self.network = ProjectNetwork(client)
        self.volumes: list[str] = []
        self.containers: dict[str, list[ServiceContainer]] = {}

    # ---- composition
    def _volume(self, purpose: str) -> str:
        name = named_volume(self.client, purpose)
        self.volumes.append(name)
        return name

    def _env(self, service: str, **settings: str) -> dict[str, str]:
        extra = self.options.extra_env.get(service, {})
        return {**SERVICE_ENV.get(service, {}), **self.options.token_env(), **settings, **extra}

    def _add(self, service: str, container: ServiceContainer) -> ServiceContainer:
        container.start()
        self.containers.setdefault(service, []).append(container)
        return container

    def start(self) -> Stack:
        try:
            self._start_backends()
            self._start_services()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_backends(self) -> None:
        if not self.options.standins:
            return
        self._add(
            "triton",
            ServiceContainer(
                "tritonserver-cpu", self.network, ("triton",), publish=(8000, 8002), shm_size="256m"
            ),
        )
        self._add(
            "falkordb",
            ServiceContainer(
                "falkordb",
                self.network,
                ("neo4j",),
                env=self.options.extra_env.get("falkordb", {}),
                publish=(7687,),
                volumes={self._volume("graph"): "/data"},
            ),
        )

    def _start_services(self) -> None:
        standins = self.options.standins
        encoder_env = self._env("encoder", **({"TRITON_URL": "triton:8001"} if standins else {}))
        influence_env = self._env(
            "influence",
            **({"NEO4J_URI": "bolt://neo4j:7687", "NEO4J_DIALECT": "falkordb"} if standins else {}),
        )
        for _ in range(self.options.encoder_replicas):
            self._add(
                "encoder",
                ServiceContainer(
                    "encoder", self.network, ("encoder",), env=encoder_env, publish=(50051, METRICS_PORT),
                    mem_limit=self.options.encoder_mem_limit,
                ),
            )  # fmt: skip
        self._add(
            "search",
            ServiceContainer(
                "search", self.network, ("search",), env=self._env("search"), publish=(50052, METRICS_PORT),
                volumes={self._volume("search"): "/data"},
            ),
        )  # fmt: skip
        for _ in range(self.options.influence_replicas):
            volumes = {} if standins else {self._volume("influence"): "/state"}
            self._add(
                "influence",
                ServiceContainer(
                    "influence", self.network, ("influence",), env=influence_env,
                    publish=(50053, METRICS_PORT), volumes=volumes,
                ),
            )  # fmt: skip
        settings = {"ADMIN_API_KEYS": admin_key_entry(DEV_ADMIN_KEY), "ALLOW_DEV_ADMIN_KEY": "true"}
        volumes = {}
        if self.options.writable_image_root:
            settings["IMAGE_ROOT"] = "/images"
            volumes = {self._volume("images"): "/images"}
        self._add(
            "gateway",
            ServiceContainer(
                "gateway", self.network, ("gateway",), env=self._env("gateway", **settings),
                publish=(8080,), binds={self.catalogues: "/catalogues"}, volumes=volumes,
            ),
        )  # fmt: skip

    def wait_ready(self, timeout: float = 180.0) -> None:
        for containers in self.containers.values():
            for container in containers:
                container.wait_healthy(timeout)
        wait_until(lambda: self.readyz()[0] == 200, timeout, "the gateway's /readyz")

    # ---- use
    def one(self, service: str) -> ServiceContainer:
        (container,) = self.containers[service]
        return container

    @property
    def gateway_url(self) -> str:
        return self.one("gateway").url(8080)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            reply = httpx.get(f"{self.gateway_url}/readyz", timeout=5)
        except httpx.HTTPError:
            return 0, {}
        return reply.status_code, reply.json()

    def ingest(self, catalogue: str = "gcompris", timeout: float = 300.0) -> str:
        """Runs `artsearch ingest /catalogues/<catalogue>` in the CLI image on the stack's network, as
        `compose run ingest` and the ingest Job do; returns its output (fails on a non-zero exit)."""
        output = self.client.containers.run(
            tag("cli"),
            ["ingest", f"/catalogues/{catalogue}", "--no-state"],
            environment={
                "ENCODER_ADDR": "dns:///encoder:50051",
                "SEARCH_ADDR": "dns:///search:50052",
                "INFLUENCE_ADDR": "dns:///influence:50053",
                **self.options.token_env(),
            },
            network=self.network.name,
            volumes={str(self.catalogues): {"bind": "/catalogues", "mode": "ro"}},
            read_only=True,
            tmpfs={"/tmp": "size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            labels=LABELS,
            remove=True,
            stdout=True,
            stderr=True,
        )
        return output.decode(errors="replace")

    def stop(self) -> None:
        for containers in self.containers.values():
            for container in containers:
                container.remove()
        self.network.remove()
        for name in self.volumes:
            with contextlib.suppress(docker.errors.APIError):
                self.client.volumes.get(name).remove(force=True)


def admin_key_entry(key: str) -> str:
    import hashlib

    return f"dev:{hashlib.sha256(key.encode()).hexdigest()}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.25) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout} s")


@contextlib.contextmanager
def running_stack(catalogues: Path, options: StackOptions, *, ingest: bool = True) -> Iterator[Stack]:
    stack = Stack(docker_client(), catalogues, options).start()
    try:
        if ingest:
            report = stack.ingest()
            assert "36 artworks stored" in report, report
        yield stack
    finally:
        stack.stop()


def metric_total(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in series for key, wanted in labels.items()):
            total += float(value)
    return total


def json_log_lines(container: ServiceContainer) -> list[dict[str, Any]]:
    lines = []
    for line in container.logs().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            lines.append(json.loads(line))
    return lines


@dataclass(frozen=True)
class Answer:
    """One request of a load: when it started and ended (monotonic seconds), its status and what it said."""

    started: float
    ended: float
    status: int
    kind: str = "search"  # "search" (a picture) or "similar" (a stored artwork)
    degraded: tuple[str, ...] = ()
    error: str = ""
    retry_after: str | None = None


@dataclass
class LoadResult:
    answers: list[Answer] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[Answer]:
        """Answers to requests that started in [start, end)."""
        return [a for a in self.answers if start <= a.started < end]

    def statuses(self, answers: list[Answer] | None = None) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers if answers is None else answers:
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return counts


class SearchLoad:
    """Picture searches (and searches by stored artwork) sent by `concurrency` workers through the
    gateway's published port until stopped, every answer recorded. Runs in a thread of its own."""

    def __init__(
        self,
        gateway_url: str,
        pictures: list[bytes],
        *,
        concurrency: int = 4,
        similar_ids: tuple[str, ...] = (),
    ) -> None:
        self.gateway_url = gateway_url
        self.pictures = pictures
        self.concurrency = concurrency
        self.similar_ids = similar_ids
        self.result = LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> SearchLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, n) for n in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient, number: int) -> None:
        turn = number
        while not self._stop.is_set():
            turn += 1
            started = time.monotonic()
            kind = "similar" if self.similar_ids and turn % 4 == 0 else "search"
            try:
                if kind == "similar":
                    artwork = self.similar_ids[turn % len(self.similar_ids)]
                    reply = await client.get(f"/v1/artworks/{artwork}/similar", params={"k": 5})
                else:
                    picture = self.pictures[turn % len(self.pictures)]
                    reply = await client.post("/v1/search", params={"k": 5}, files={"image": picture})
            except httpx.HTTPError as error:
                self.result.answers.append(Answer(started, time.monotonic(), 0, kind, error=repr(error)))
                continue
            self.result.answers.append(_answer(started, kind, reply))


def _answer(started: float, kind: str, reply: httpx.Response) -> Answer:
    try:
        body = reply.json()
    except ValueError:
        body = {}
    return Answer(
        started,
        time.monotonic(),
        reply.status_code,
        kind,
        degraded=tuple(body.get("degraded") or ()),
        error=(body.get("error") or {}).get("code", "") if reply.status_code != 200 else "",
        retry_after=reply.headers.get("retry-after"),
    )


def small_jpegs(folder: Path, count: int = 6, size: int = 320) -> list[bytes]:
    """Catalogue paintings as a visitor's small JPEG photos (quick to send and decode under load)."""
    from PIL import Image

    pictures = []
    for path in sorted(folder.glob("*.jpg"))[:count]:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            pictures.append(buffer.getvalue())
    return pictures
