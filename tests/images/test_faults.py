"""Faults in the production shape: under a load of searches through the gateway's published port, each
back-end container is killed (`docker kill`, then started again as an orchestrator would), paused
(`docker pause`: a process that hangs) or cut off (`docker network disconnect`). The stack runs the
production code paths against the stand-ins: the encoder on Triton (TRITON_URL), influence on a Bolt server
(NEO4J_URI), search on its embedded engine with its data on a volume; every call between the services
carries the service token, and a call without it is refused.

What must hold: during a fault every answer is a success (degraded where the influence graph is missing) or
a fast 503 with Retry-After — never another error, never a hang past the call's deadline; afterwards the
stack recovers by itself; and every write acknowledged before a kill is there after the restart."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from image_support import (
    DEV_ADMIN_KEY,
    Answer,
    SearchLoad,
    ServiceContainer,
    Stack,
    StackOptions,
    json_log_lines,
    running_stack,
    small_jpegs,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("images")]

# The gateway's deadlines in this stack: encoding shortened from 10 s so that a paused encoder costs 4 s.
DEADLINES_S = {"encoder": 4.0, "triton": 4.0, "search": 3.0, "influence": 1.0, "falkordb": 1.0}
FAULT_HOLD_S = 4.0
RECOVERY_BOUND_S = 60.0
# Time an answer may take beyond the deadline of the call it waited for (gateway work, a retry, the client).
DEADLINE_SLACK_S = 2.5
# Calls between the services carry a token, as in Kubernetes (artsearch/service_auth.py).
SERVICE_TOKEN = "test-service-token-0123456789abcdef0123"
SIMILAR_IDS = ("hokusai-the-great-wave-off-kanagawa", "van-gogh-the-night-cafe", "cassatt-summertime")


@dataclass(frozen=True)
class Expectation:
    """How searches may answer while a container is faulty."""

    unavailable_allowed: bool  # picture searches may answer 503
    similar_unavailable_allowed: bool  # searches by stored artwork may answer 503
    degraded_allowed: bool  # answers may say degraded: ["influence"]


EXPECTED = {
    # Picture searches need the encoder (and its Triton); searches by stored artwork do not.
    "encoder": Expectation(True, False, False),
    "triton": Expectation(True, False, False),
    "search": Expectation(True, True, False),
    # Without influence the answer is the visual order, marked degraded; never an error.
    "influence": Expectation(False, False, True),
    # Influence serves its in-memory snapshot of the graph: searches do not notice the Bolt server.
    "falkordb": Expectation(False, False, False),
}


@pytest.fixture(scope="module")
def stack(catalogues: Path) -> Iterator[Stack]:
    options = StackOptions(
        standins=True,
        writable_image_root=True,
        service_token=SERVICE_TOKEN,
        # The load repeats its pictures and artworks: with the gateway's picture cache on, an encoder or
        # Triton fault would never be met by a picture search (services/gateway/query_cache.py), nor a
        # search or influence fault by a kept similar answer (answer_cache.py). Off: every query works.
        extra_env={
            "gateway": {
                "ENCODE_TIMEOUT_S": str(DEADLINES_S["encoder"]),
                "QUERY_CACHE_ENTRIES": "0",
                "SIMILAR_CACHE_ENTRIES": "0",
            }
        },
    )
    with running_stack(catalogues, options) as running:
        yield running


@pytest.fixture(scope="module")
def pictures(catalogues: Path) -> list[bytes]:
    return small_jpegs(catalogues / "gcompris")


def inject(container: ServiceContainer, fault: str) -> None:
    """The fault, held FAULT_HOLD_S, then lifted (a killed container is started again)."""
    begin, end = {
        "kill": (container.kill, container.start_again),
        "pause": (container.pause, container.unpause),
        "disconnect": (container.disconnect, container.reconnect),
    }[fault]
    begin()
    try:
        time.sleep(FAULT_HOLD_S)
    finally:
        end()


def warnings_logged(stack: Stack) -> list[str]:
    """The services' last warnings (why an answer was degraded), for a failure's message."""
    found = []
    for service in ("gateway", "influence", "search", "encoder"):
        lines = json_log_lines(stack.one(service))
        found += [
            f"{line.get('ts')} {service}: {line.get('msg')} {line.get('error', '')}"
            for line in lines
            if line.get("level") in ("warning", "error")
        ][-10:]
    return sorted(found)


def healthy_answer(answer: Answer) -> bool:
    return answer.status == 200 and not answer.degraded


def wait_recovered(load: SearchLoad, since: float) -> float:
    """When the answers became healthy again: the first moment after `since` from which 2 s of answers (at
    least 4) are all successes, not degraded."""

    def recovered() -> bool:
        now = time.monotonic()
        if now - 2.0 < since:
            # A full window after `since`: returning its start before `since` would count answers of the
            # fault itself as answers after the recovery (the influence cases failed ~1 in 4 runs so).
            return False
        window = [a for a in load.result.between(now - 2.0, now) if a.ended <= now]
        return len(window) >= 4 and all(healthy_answer(a) for a in window)

    try:
        wait_until(recovered, RECOVERY_BOUND_S, "searches healthy again after the fault")
    except pytest.fail.Exception:
        recent = [a for a in load.result.answers if a.started >= since][-8:]
        pytest.fail(f"searches not healthy again within {RECOVERY_BOUND_S} s of the fault's end: {recent}")
    return time.monotonic() - 2.0


def check_fault_answers(answers: list[Answer], service: str) -> None:
    expectation = EXPECTED[service]
    bound = DEADLINES_S[service] + DEADLINE_SLACK_S
    for answer in answers:
        if healthy_answer(answer):
            continue
        assert answer.status in (200, 503), f"{service}: unexpected answer {answer}"
        if answer.status == 200:
            assert expectation.degraded_allowed and answer.degraded == ("influence",), (service, answer)
            continue
        allowed = expectation.unavailable_allowed
        if answer.kind == "similar":
            allowed = expectation.similar_unavailable_allowed
        assert allowed, f"{service}: a 503 where none is allowed: {answer}"
        assert answer.retry_after is not None and answer.error.endswith("_unavailable"), answer
        took = answer.ended - answer.started
        assert took <= bound, f"{service}: a 503 after {took:.1f} s"


@pytest.mark.parametrize(
    ("service", "fault"),
    [
        ("encoder", "kill"), ("encoder", "pause"), ("encoder", "disconnect"),
        ("triton", "kill"), ("triton", "pause"),
        ("search", "kill"), ("search", "pause"), ("search", "disconnect"),
        ("influence", "kill"), ("influence", "pause"), ("influence", "disconnect"),
        ("falkordb", "kill"), ("falkordb", "disconnect"),
    ],
)  # fmt: skip
def test_a_faulty_backend_gives_degraded_answers_or_fast_503s_then_recovers(
    stack: Stack, pictures: list[bytes], service: str, fault: str
):
    container = stack.one(service)
    with SearchLoad(stack.gateway_url, pictures, similar_ids=SIMILAR_IDS) as load:
        # The stack healthy under the load first: after the previous case's fault the gateway's channels may
        # still be reconnecting (backoff up to 2 s), and its first answers then degraded (seen once in a full
        # run) -- which says nothing about this fault.
        settled = wait_recovered(load, time.monotonic())
        time.sleep(1.0)
        fault_start = time.monotonic()
        inject(container, fault)
        lifted = time.monotonic()
        recovered = wait_recovered(load, lifted)
        time.sleep(1.0)
    result = load.result
    # Only answers that ended before the fault: one in flight when it hit (an influence call may take up to
    # its 1 s deadline) meets the fault and may rightly be degraded (seen once in a full run).
    before = [a for a in result.between(settled, fault_start) if a.ended < fault_start]
    unhealthy = [a for a in before if not healthy_answer(a)]
    assert before and not unhealthy, (unhealthy, warnings_logged(stack))
    # The fault's answers: those started during it, and those in flight when it began.
    during = [a for a in result.between(settled, recovered) if a.ended >= fault_start]
    check_fault_answers(during, service)
    after = [a for a in result.answers if a.started >= recovered]
    unhealthy = [a for a in after if not healthy_answer(a)]
    times = {"lifted": lifted, "recovered": recovered}
    assert after and not unhealthy, (unhealthy, warnings_logged(stack), times)
    lifted_after, recovered_after = lifted - fault_start, recovered - lifted
    print(f"{service} {fault}: lifted after {lifted_after:.1f} s, healthy {max(recovered_after, 0):.1f} s on")
    container.wait_healthy(RECOVERY_BOUND_S)
    assert stack.readyz()[0] == 200


# ---------------------------------------------------------------------------------------------- durability

WRITES_BEFORE_KILL = 5
WRITES_AFTER_RESTART = 2


def add_artwork(client: httpx.Client, picture: bytes, artwork_id: str) -> bool:
    reply = client.post(
        "/v1/artworks",
        files={"image": ("photo.jpg", picture, "image/jpeg")},
        data={"id": artwork_id, "title": f"Test {artwork_id}", "artist": "Claude Monet"},
    )
    return reply.status_code == 201


def add_influence(client: httpx.Client, artist: str) -> bool:
    influence = {"influencer": "Claude Monet", "influenced": artist}
    return client.post("/v1/influences", json={"influences": [influence]}).status_code == 200


def influenced_by_monet(client: httpx.Client, artist: str) -> bool:
    reply = client.get(f"/v1/artists/{artist}/neighbours")
    influencers = reply.json().get("influencers", []) if reply.status_code == 200 else []
    return "Claude Monet" in {neighbour["artist"]["name"] for neighbour in influencers}


@pytest.mark.parametrize("victim", ["search", "falkordb"])
def test_writes_acknowledged_before_a_kill_are_there_after_the_restart(
    stack: Stack, pictures: list[bytes], victim: str
):
    """A writer adds artworks (to search) and influences (through influence to the Bolt server), one after
    another; the victim's process is SIGKILLed between two writes (as the OOM killer would) and its restart
    policy brings it back by itself; the writer keeps going until writes land again. Every acknowledged
    write must be there after the restart."""
    run = uuid.uuid4().hex[:6]
    artworks: list[str] = []
    artists: list[str] = []
    container = stack.one(victim)
    restarts = container.restart_count()
    headers = {"X-API-Key": DEV_ADMIN_KEY}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=30) as client:

        def write(step: int) -> None:
            artwork_id, artist = f"durable-{run}-{step}", f"Test Painter {run} {step}"
            if add_artwork(client, pictures[step % len(pictures)], artwork_id):
                artworks.append(artwork_id)
            if add_influence(client, artist):
                artists.append(artist)

        for step in range(WRITES_BEFORE_KILL):
            write(step)
        assert len(artworks) == len(artists) == WRITES_BEFORE_KILL
        container.crash()
        started = time.monotonic()
        step = WRITES_BEFORE_KILL
        while len(artworks) + len(artists) < 2 * (WRITES_BEFORE_KILL + WRITES_AFTER_RESTART):
            assert time.monotonic() - started < RECOVERY_BOUND_S, "writes did not land again after restart"
            write(step)
            step += 1
        assert container.restart_count() == restarts + 1, "the restart policy did not restart the victim"
        missing = [a for a in artworks if client.get(f"/v1/artworks/{a}").status_code != 200]
        assert not missing, f"acknowledged artworks lost after killing {victim}: {missing}"
        lost = [artist for artist in artists if not influenced_by_monet(client, artist)]
        assert not lost, f"acknowledged influences lost after killing {victim}: {lost}"
    print(f"{victim}: {step - WRITES_BEFORE_KILL} writes after the kill, {time.monotonic() - started:.1f} s")


# ------------------------------------------------------------------------------------ service token


def _call_each_service(stack: Stack, token: str) -> dict[str, object]:
    """One real call to each gRPC service through its published port, with `token` ("" for none): what each
    answered, or the gRPC status it refused with."""
    import asyncio

    import grpc

    from artsearch.grpc_client import is_serving, open_channel
    from artsearch.v1 import (
        encoder_pb2,
        encoder_pb2_grpc,
        influence_pb2,
        influence_pb2_grpc,
        search_pb2,
        search_pb2_grpc,
    )

    calls = {
        "encoder": (50051, lambda c: encoder_pb2_grpc.EncoderServiceStub(c).GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), timeout=5)),
        "search": (50052, lambda c: search_pb2_grpc.SearchServiceStub(c).Get(
            search_pb2.GetRequest(collection="artworks", ids=["cassatt-summertime"]), timeout=5)),
        "influence": (50053, lambda c: influence_pb2_grpc.InfluenceServiceStub(c).GetArtists(
            influence_pb2.GetArtistsRequest(names=["Mary Cassatt"]), timeout=5)),
    }  # fmt: skip

    async def call(service: str) -> object:
        port, rpc = calls[service]
        async with open_channel(stack.one(service).address(port), token=token) as channel:
            assert await is_serving(channel), f"{service}: health checks answer without a token"
            try:
                return await rpc(channel)
            except grpc.aio.AioRpcError as error:
                return error.code()

    async def all_calls() -> dict[str, object]:
        return {service: await call(service) for service in calls}

    return asyncio.run(all_calls())


def test_each_service_refuses_calls_without_the_token_and_answers_those_with_it(stack: Stack):
    import grpc

    refused = _call_each_service(stack, "")
    assert refused == dict.fromkeys(refused, grpc.StatusCode.UNAUTHENTICATED), refused
    wrong = _call_each_service(stack, "x" * 40)
    assert wrong == dict.fromkeys(wrong, grpc.StatusCode.UNAUTHENTICATED), wrong
    answered = _call_each_service(stack, SERVICE_TOKEN)
    assert not any(isinstance(reply, grpc.StatusCode) for reply in answered.values()), answered
