"""Horizontal scaling, shown with the images: two replicas of each stateless service (encoder, influence)
behind one network alias, the gateway dialling `dns:///encoder:50051` with client-side round-robin.

- A load of picture searches through the gateway's published port is shared by every replica, each
  replica's own metrics (its published 9100 port) counting its share, and the shares add up to the calls
  the gateway made.
- A replica whose process is killed (SIGKILL, as a crash or the OOM killer does) while the load runs costs
  no request beyond those in flight to it at that moment: answers stay 200 (and undegraded), the survivor
  carries the load, Docker's restart policy brings the replica back, and it gets calls again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from image_support import (
    METRICS_PORT,
    ServiceContainer,
    Stack,
    StackOptions,
    metric_total,
    running_stack,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("images")]

REPLICAS = 2
CONCURRENCY = 8
# A picture search encodes its photo in stages (docs/gateway.md, "Staged answers").
ENCODE = "/artsearch.v1.EncoderService/EncodeInStages"
DISTANCES = "/artsearch.v1.InfluenceService/Distances"
METHODS = {"encoder": ENCODE, "influence": DISTANCES}
GATEWAY_METHODS = {"encoder": "EncodeInStages", "influence": "Distances"}
# Requests that start this long after the kill must all succeed: the killed replica's connection is gone.
KILL_MARGIN_S = 1.0
# A restarted replica at the same address is reconnected to within the client's reconnect backoff
# (200 ms doubling to 2 s, artsearch/grpc_client.py); one at a new address once the name is resolved again.
BACK_IN_ROTATION_S = 60.0


@pytest.fixture(scope="module")
def stack(catalogues: Path) -> Iterator[Stack]:
    # The load repeats its pictures: with the gateway's picture cache on, the encoder replicas would see
    # each picture once (services/gateway/query_cache.py). Off: every search is encoded.
    options = StackOptions(
        encoder_replicas=REPLICAS,
        influence_replicas=REPLICAS,
        extra_env={"gateway": {"QUERY_CACHE_ENTRIES": "0"}},
    )
    with running_stack(catalogues, options) as running:
        yield running


@pytest.fixture(scope="module")
def pictures(catalogues: Path) -> list[bytes]:
    """The catalogue's own paintings (JPEGs of 300-725 px), as a visitor would upload them."""
    return [path.read_bytes() for path in sorted((catalogues / "gcompris").glob("*.jpg"))]


# ------------------------------------------------------------------------------------------------ load


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic()
    ended: float
    status: int  # 0: no HTTP answer at all
    degraded: tuple[str, ...] = ()
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.degraded


@dataclass
class Load:
    """Picture searches from `concurrency` workers: a fixed number (`total`), or until `stop` is set."""

    url: str
    pictures: list[bytes]
    concurrency: int = CONCURRENCY
    total: int | None = None
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _in_flight: int = field(default=0, init=False, repr=False)

    async def run(self) -> list[Answer]:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, n) for n in range(self.concurrency)))
        return self.answers

    def _next(self) -> int | None:
        sent = len(self.answers) + self._in_flight
        if self.stop.is_set() or (self.total is not None and sent >= self.total):
            return None
        self._in_flight += 1
        return sent

    async def _worker(self, client: httpx.AsyncClient, number: int) -> None:
        while (turn := self._next()) is not None:
            picture = self.pictures[(turn * 7 + number) % len(self.pictures)]
            started = time.monotonic()
            try:
                reply = await client.post("/v1/search", params={"k": 5}, files={"image": picture})
                answer = _answer(started, reply)
            except httpx.HTTPError as error:
                answer = Answer(started, time.monotonic(), 0, detail=repr(error))
            self._in_flight -= 1
            self.answers.append(answer)


def _answer(started: float, reply: httpx.Response) -> Answer:
    ended = time.monotonic()
    try:
        body = reply.json()
    except ValueError:
        body = {}
    detail = "" if reply.status_code == 200 else reply.text[:200]
    return Answer(started, ended, reply.status_code, tuple(body.get("degraded") or ()), detail)


def summary(answers: list[Answer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        key = f"{answer.status}{'-degraded' if answer.degraded else ''}"
        counts[key] = counts.get(key, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------- metrics


def served(container: ServiceContainer, method: str) -> float:
    """Calls of `method` this replica began since its process started (its own /metrics). Began, not
    handled: a staged encode may end after its search was answered (a whole photo matched with confidence)."""
    reply = httpx.get(f"{container.url(METRICS_PORT)}/metrics", timeout=5)
    reply.raise_for_status()
    return metric_total(reply.text, "artsearch_grpc_server_started_total", method=method)


def gateway_calls(stack: Stack, service: str) -> float:
    """The gRPC calls of the gateway to `service`'s query method, any outcome (the gateway's /metrics)."""
    reply = httpx.get(f"{stack.gateway_url}/metrics/", timeout=5)  # mounted: /metrics redirects here
    reply.raise_for_status()
    name = "artsearch_downstream_call_seconds_count"
    return metric_total(reply.text, name, service=service, method=GATEWAY_METHODS[service])


def crash(container: ServiceContainer) -> None:
    """SIGKILL of the replica's process from outside, as a crash or the OOM killer: Docker's restart policy
    brings it back (a `docker kill` would not: Docker counts it as a manual stop)."""
    os.kill(int(container.state()["Pid"]), signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("service", ["encoder", "influence"])
def test_a_load_of_searches_is_shared_by_every_replica(stack: Stack, pictures: list[bytes], service: str):
    replicas = stack.containers[service]
    assert len(replicas) == REPLICAS
    method = METHODS[service]
    before = [served(replica, method) for replica in replicas]
    gateway_before = gateway_calls(stack, service)

    load = Load(stack.gateway_url, pictures, total=200)
    started = time.monotonic()
    answers = asyncio.run(load.run())
    elapsed = time.monotonic() - started

    assert len(answers) == 200
    assert all(answer.ok for answer in answers), summary(answers)
    shares = [served(replica, method) - earlier for replica, earlier in zip(replicas, before, strict=True)]
    # The gateway counts a call when it ends: the staged encodes still running after their answers first.
    began = sum(shares)
    wait_until(
        lambda: gateway_calls(stack, service) - gateway_before >= began,
        30,
        f"the gateway's {service} calls ended reaching the {began:.0f} the replicas began",
        every=0.1,
    )
    made = gateway_calls(stack, service) - gateway_before
    print(f"{service}: {len(answers)} searches in {elapsed:.1f} s, {made:.0f} calls, replicas {shares}")
    assert made >= len(answers)  # one call a search at least
    assert sum(shares) == made, (shares, made)
    for share in shares:
        assert share >= 0.2 * made, f"a replica served {share:.0f} of {made:.0f} calls: {shares}"


@pytest.mark.parametrize("service", ["encoder", "influence"])
def test_a_replica_killed_under_load_costs_no_request_beyond_those_in_flight_and_comes_back(
    stack: Stack, pictures: list[bytes], service: str
):
    victim, survivor = stack.containers[service]
    method = METHODS[service]
    restarts = victim.restart_count()
    outcome = asyncio.run(_kill_under_load(stack, pictures, victim, survivor, method, restarts))
    answers, killed_at = outcome.answers, outcome.killed_at
    after = {
        "restarted": outcome.restarted_at - killed_at,
        "healthy": outcome.healthy_at - killed_at,
        "first call": outcome.first_call_at - killed_at,
    }
    print(
        f"{service}: {summary(answers)}, killed {killed_at - outcome.began:.1f} s into the load; "
        + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in after.items())
        + f" after the kill; till healthy the survivor served {outcome.survivor_share:.0f} calls, the new"
        + f" process {outcome.early_calls:.0f}"
    )

    failed = [answer for answer in answers if not answer.ok]
    # In flight at the kill: started before it, answered right after (within the gateway's 10 s deadline).
    in_flight_at_kill = [a for a in failed if a.started < killed_at <= a.ended <= killed_at + 11]
    assert failed == in_flight_at_kill, [a for a in failed if a not in in_flight_at_kill]
    assert len(failed) <= CONCURRENCY
    later = [a for a in answers if a.started >= killed_at + KILL_MARGIN_S]
    assert later and all(answer.ok for answer in later), summary(later)

    # Meanwhile the survivor carried the load: every search answered from the kill until the replica was
    # back made its call to the survivor, or to the new process before its health check said so.
    while_away = [a for a in answers if a.started >= killed_at and a.ended <= outcome.healthy_at]
    assert len(while_away) >= 10, "the load stalled while the replica was away"
    assert outcome.survivor_share + outcome.early_calls >= len(while_away)
    assert outcome.survivor_share >= 0.7 * len(while_away), (outcome.survivor_share, outcome.early_calls)

    # Docker's restart policy brought the replica back, and the gateway sends it calls again.
    assert victim.restart_count() == restarts + 1
    assert victim.health() == "healthy"
    assert outcome.first_call_at - outcome.healthy_at < BACK_IN_ROTATION_S


@dataclass
class KillOutcome:
    answers: list[Answer]
    began: float
    killed_at: float
    restarted_at: float
    healthy_at: float
    first_call_at: float
    survivor_share: float  # calls the survivor served from the kill until the victim was healthy again
    early_calls: float  # calls the victim's new process served before Docker saw it healthy


async def _kill_under_load(
    stack: Stack,
    pictures: list[bytes],
    victim: ServiceContainer,
    survivor: ServiceContainer,
    method: str,
    restarts: int,
) -> KillOutcome:
    load = Load(stack.gateway_url, pictures)
    began = time.monotonic()
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(3)  # the load in its stride, both replicas serving
        survivor_before = await asyncio.to_thread(served, survivor, method)
        killed_at = time.monotonic()
        await asyncio.to_thread(crash, victim)
        await _until(lambda: victim.restart_count() > restarts, 60, "the restart policy restarting it")
        restarted_at = time.monotonic()
        await _until(lambda: victim.health() == "healthy", 120, "the restarted replica turning healthy")
        healthy_at = time.monotonic()
        survivor_share = await asyncio.to_thread(served, survivor, method) - survivor_before
        early_calls = await asyncio.to_thread(served, victim, method)
        await _until(lambda: served(victim, method) > 0, BACK_IN_ROTATION_S + 30, "a call to it")
        first_call_at = time.monotonic()
        await asyncio.sleep(2)  # and the load goes on over both
    finally:
        load.stop.set()
        answers = await running
    return KillOutcome(
        answers, began, killed_at, restarted_at, healthy_at, first_call_at, survivor_share, early_calls
    )


async def _until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    """Polls `condition` (blocking: run in a thread) until true; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await asyncio.to_thread(condition):
                return
        except (httpx.HTTPError, KeyError, TypeError):  # metrics port not answering or not published yet
            pass
        await asyncio.sleep(every)
    pytest.fail(f"{what}: not within {timeout} s")
