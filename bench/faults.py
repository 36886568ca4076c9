"""Load with faults: the production shape under traffic while each back end is killed, paused and restarted.

`python -m bench.faults` (what `make loadtest-faults` runs; `make images` first), loopback only, ~5 minutes:
1. brings up docker-compose.local.yml (the four services from the project's images; the encoder on the
   Triton stand-in, influence on the Bolt stand-in, search embedded on a volume) under a project name of its
   own, on free ports, with a writable copy of the demo catalogue, and ingests it through the CLI image;
2. drives picture searches (`--concurrency` clients) and admin writes (an artwork and an influence edge,
   one after the other, all the time) through the gateway's published port;
3. injects, one after another, for each back end — encoder, search, influence, triton, neo4j — each fault:
   `kill` (docker kill, then started again after the hold, as an orchestrator would), `pause` (a process
   that hangs: docker pause, unpause after the hold) and `restart` (docker restart), each held `--hold`
   seconds, and waits until searches are healthy again;
4. at the end checks that every write the gateway acknowledged is there (the artwork readable, the
   influence edge in the graph).

Reported per fault: answers by status, the slowest answer, answers slower than the request's deadline budget
(the sum of the gateway's call deadlines it may wait on, + 2 s), and how long recovery took; overall: writes
acknowledged and lost. Results: bench/results/faults.json. The verdict `ok` needs 0 lost writes, 0 answers
past the budget, and no answer other than a success, a degraded success or 503/429 with Retry-After.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx

from artsearch_tools.launcher import free_ports
from bench.encoder import REPO_ROOT, build_query_jpegs, machine

DEFAULT_OUTPUT = REPO_ROOT / "bench/results/faults.json"
COMPOSE_FILE = "docker-compose.local.yml"
BACKENDS = ("encoder", "search", "influence", "triton", "neo4j")
FAULTS = ("kill", "pause", "restart")
DEV_ADMIN_KEY = "dev-admin-key-change-me"
# The gateway's shipped deadlines (compose sets none of them): a picture search waits at most on the encoder,
# the search service (the alias list, then the search) and influence; a write on its own deadline.
SEARCH_BUDGET_S = 10.0 + 3.0 + 3.0 + 1.0
WRITE_BUDGET_S = 10.0 + 10.0 + 10.0
SLACK_S = 2.0
RECOVERY_BOUND_S = 120.0


@dataclass
class Answer:
    kind: str  # "search" or "write"
    started: float
    ended: float
    status: int
    retry_after: bool = False
    degraded: bool = False


@dataclass
class Traffic:
    """Every answer of the load, and the writes the gateway acknowledged."""

    answers: list[Answer] = field(default_factory=list)
    artworks: list[str] = field(default_factory=list)
    influences: list[str] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.started < end]


def compose(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    return subprocess.run(
        [*command, "-f", COMPOSE_FILE, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        check=check, timeout=900,
    )  # fmt: skip


@contextlib.contextmanager
def compose_stack(catalogue: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The local compose stack with a writable copy of `catalogue`; yields (environment, gateway URL)."""
    with tempfile.TemporaryDirectory(prefix="artsearch-faults-") as scratch:
        catalogues = Path(scratch) / "catalogues"
        shutil.copytree(catalogue, catalogues / catalogue.name)
        for path in [catalogues, *catalogues.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)  # the services run as UID 10001
        gateway, encoder, search, influence = free_ports(4)
        env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": f"artsearch-faults-{uuid.uuid4().hex[:6]}",
            "ARTSEARCH_CATALOGUES": str(catalogues),
            "ARTSEARCH_PORT": str(gateway),
            "ENCODER_PORT": str(encoder),
            "SEARCH_PORT": str(search),
            "INFLUENCE_PORT": str(influence),
            # The traffic repeats its pictures: the gateway's picture cache would keep them from the encoder.
            "QUERY_CACHE_ENTRIES": "0",
        }
        try:
            compose("up", "-d", "--no-build", env=env)
            url = f"http://127.0.0.1:{gateway}"
            wait_for(lambda: ready(url), 300, "the gateway's /readyz")
            compose("run", "--rm", "ingest", "ingest", f"/catalogues/{catalogue.name}", env=env)
            yield env, url
        finally:
            compose("down", "-v", "--remove-orphans", env=env, check=False)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {timeout} s")


def container(env: dict[str, str], service: str) -> docker.models.containers.Container:
    client = docker.from_env(timeout=120)
    (found,) = client.containers.list(
        all=True,
        filters={
            "label": [
                f"com.docker.compose.project={env['COMPOSE_PROJECT_NAME']}",
                f"com.docker.compose.service={service}",
            ]
        },
    )
    return found


def inject(target: docker.models.containers.Container, fault: str, hold_s: float) -> None:
    if fault == "restart":
        target.restart(timeout=10)
        return
    begin, end = (target.kill, target.start) if fault == "kill" else (target.pause, target.unpause)
    begin()
    try:
        time.sleep(hold_s)
    finally:
        end()


# ---- the load -------------------------------------------------------------------------------------------


async def search_worker(
    client: httpx.AsyncClient, pictures: list[bytes], traffic: Traffic, stop: asyncio.Event, number: int
) -> None:
    turn = number
    while not stop.is_set():
        turn += 1
        started = time.monotonic()
        try:
            picture = pictures[turn % len(pictures)]
            reply = await client.post("/v1/search", params={"k": 10}, files={"image": picture})
        except httpx.HTTPError:
            traffic.answers.append(Answer("search", started, time.monotonic(), 0))
            continue
        degraded = reply.status_code == 200 and bool(reply.json().get("degraded"))
        retry_after = "retry-after" in reply.headers
        traffic.answers.append(
            Answer("search", started, time.monotonic(), reply.status_code, retry_after, degraded)
        )


async def _timed(traffic: Traffic, request: Awaitable[httpx.Response]) -> bool:
    """Records one write's answer; whether the gateway acknowledged it."""
    started = time.monotonic()
    try:
        reply = await request
    except httpx.HTTPError:
        traffic.answers.append(Answer("write", started, time.monotonic(), 0))
        return False
    retry_after = "retry-after" in reply.headers
    traffic.answers.append(Answer("write", started, time.monotonic(), reply.status_code, retry_after))
    return reply.status_code in (200, 201)


async def write_worker(
    client: httpx.AsyncClient, picture: bytes, traffic: Traffic, stop: asyncio.Event
) -> None:
    """An artwork, then an influence edge, again and again; remembers what was acknowledged."""
    run = uuid.uuid4().hex[:6]
    step = 0
    while not stop.is_set():
        step += 1
        artwork, artist = f"faults-{run}-{step}", f"Fault Painter {run} {step}"
        fields = {"id": artwork, "title": f"Written under faults {step}", "artist": "Claude Monet"}
        upload = {"image": ("photo.jpg", picture, "image/jpeg")}
        if await _timed(traffic, client.post("/v1/artworks", files=upload, data=fields)):
            traffic.artworks.append(artwork)
        edge = {"influencer": "Claude Monet", "influenced": artist}
        if await _timed(traffic, client.post("/v1/influences", json={"influences": [edge]})):
            traffic.influences.append(artist)
        await asyncio.sleep(0.2)


async def drive(
    url: str, pictures: list[bytes], concurrency: int, traffic: Traffic, stop: asyncio.Event
) -> None:
    headers = {"X-API-Key": DEV_ADMIN_KEY}
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as client:
        workers = [search_worker(client, pictures, traffic, stop, n) for n in range(concurrency)]
        await asyncio.gather(*workers, write_worker(client, pictures[0], traffic, stop))


# ---- the run ---------------------------------------------------------------------------------------------


def healthy_since(traffic: Traffic, since: float, window_s: float = 3.0) -> bool:
    now = time.monotonic()
    recent = traffic.between(max(since, now - window_s), now)
    recent = [a for a in recent if a.kind == "search" and a.ended <= now]
    return len(recent) >= 4 and all(a.status == 200 and not a.degraded for a in recent)


def summarise(answers: list[Answer]) -> dict[str, object]:
    statuses: dict[str, int] = {}
    for answer in answers:
        label = f"{answer.status}{' degraded' if answer.degraded else ''}"
        statuses[label] = statuses.get(label, 0) + 1
    slowest = max((a.ended - a.started for a in answers), default=0.0)
    past_budget = [
        a for a in answers
        if a.ended - a.started > (SEARCH_BUDGET_S if a.kind == "search" else WRITE_BUDGET_S) + SLACK_S
    ]  # fmt: skip
    unexpected = [
        a for a in answers
        if not (a.status in (200, 201) or (a.status in (429, 503) and a.retry_after))
    ]  # fmt: skip
    return {
        "answers": len(answers),
        "statuses": dict(sorted(statuses.items())),
        "slowest_s": round(slowest, 2),
        "past_deadline_budget": len(past_budget),
        "unexpected_answers": len(unexpected),
    }


def lost_writes(url: str, traffic: Traffic) -> dict[str, list[str]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        artworks = [a for a in traffic.artworks if client.get(f"/v1/artworks/{a}").status_code != 200]
        influences = []
        for artist in traffic.influences:
            reply = client.get(f"/v1/artists/{artist}/neighbours")
            found = reply.json().get("influencers", []) if reply.status_code == 200 else []
            if "Claude Monet" not in {n["artist"]["name"] for n in found}:
                influences.append(artist)
    return {"artworks": artworks, "influences": influences}


def run(args: argparse.Namespace) -> dict[str, object]:
    pictures = build_query_jpegs(args.catalogue, paintings=3)
    with compose_stack(args.catalogue) as (env, url):
        traffic, stop = Traffic(), asyncio.Event()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=lambda: loop.run_until_complete(drive(url, pictures, args.concurrency, traffic, stop)),
            daemon=True,
        )
        thread.start()
        faults: dict[str, dict[str, object]] = {}
        try:
            time.sleep(args.warmup)
            for backend in args.backends:
                for fault in args.faults:
                    started = time.monotonic()
                    inject(container(env, backend), fault, args.hold)
                    lifted = time.monotonic()
                    recovery = wait_for(
                        lambda since=lifted: healthy_since(traffic, since), RECOVERY_BOUND_S, "recovery"
                    )
                    faults[f"{backend} {fault}"] = {
                        **summarise(traffic.between(started, time.monotonic())),
                        "recovered_after_s": round(recovery, 1),
                    }
                    print(f"faults: {backend} {fault}: {faults[f'{backend} {fault}']}", file=sys.stderr)
            time.sleep(args.warmup)
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=120)
        lost = lost_writes(url, traffic)
    overall = summarise(traffic.answers)
    ok = not (lost["artworks"] or lost["influences"])
    ok = ok and not overall["past_deadline_budget"] and not overall["unexpected_answers"]
    return {
        "what": "docker-compose.local.yml under searches and writes; each back end killed, paused, restarted",
        "machine": machine(),
        "concurrency": args.concurrency,
        "hold_s": args.hold,
        "deadline_budget_s": {"search": SEARCH_BUDGET_S, "write": WRITE_BUDGET_S, "slack": SLACK_S},
        "faults": faults,
        "overall": overall,
        "writes": {
            "artworks_acknowledged": len(traffic.artworks),
            "influences_acknowledged": len(traffic.influences),
            "artworks_lost": lost["artworks"],
            "influences_lost": lost["influences"],
        },
        "ok": ok,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalogue", type=Path, default=REPO_ROOT / "data/catalogues/gcompris")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--hold", type=float, default=5.0, help="seconds each fault lasts (5)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--faults", nargs="+", default=list(FAULTS), choices=FAULTS)
    args = parser.parse_args(argv)
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps({"ok": report["ok"], "writes": report["writes"], "overall": report["overall"]}, indent=2)
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
