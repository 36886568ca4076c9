"""Retries, backoff, Retry-After, timeouts and error mapping, against a real HTTP server on 127.0.0.1 that
injects each fault on purpose (scripted_server.py)."""

from __future__ import annotations

import email.utils
import math
import threading
import time

import httpx
import pytest
from scripted_server import Answer, ScriptedServer, unused_port

from artsearch_client import (
    ArtsearchClient,
    ArtsearchError,
    AsyncArtsearchClient,
    BadRequest,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetryPolicy,
    ServerError,
    Timeout,
    TransportError,
    Unauthorized,
    Unavailable,
)
from artsearch_client.retry import retry_after_s

SEARCH_ANSWER = {
    "results": [
        {
            "id": "hokusai-wave",
            "title": "The Great Wave",
            "artist": "Katsushika Hokusai",
            "score": 1.2,
            "scores": {"visual": 0.6, "final": 1.2, "influence_weight": 1.0, "influence_hops": 0},
            "influence_path": ["Katsushika Hokusai"],
        }
    ],
    "source_artist": {"name": "Katsushika Hokusai", "how": "inferred", "method": "vote", "confidence": 0.9},
    "k": 1,
    "degraded": [],
}
QUICK = RetryPolicy(max_attempts=4, backoff_base_s=0.05, backoff_max_s=0.2, max_total_s=10)
PICTURE = b"\xff\xd8\xff\xe0 not decoded by the scripted server"


def client_of(server: ScriptedServer, retry: RetryPolicy = QUICK, **options) -> ArtsearchClient:
    return ArtsearchClient(server.url, retry=retry, **options)


def test_503_with_retry_after_seconds_is_waited_for_then_the_answer_comes(server: ScriptedServer):
    server.then(Answer.error(503, "search_unavailable", "retry shortly", **{"Retry-After": "1"}))
    server.then(Answer.json(200, SEARCH_ANSWER))
    with client_of(server) as client:
        answer = client.search(PICTURE, k=1)
    assert [r.id for r in answer.results] == ["hokusai-wave"]
    assert len(server.received) == 2
    assert 1.0 <= server.gaps_s()[0] < 1.5  # the server's Retry-After, not the 0.05 s backoff
    first, second = server.received
    assert PICTURE in first.body and PICTURE in second.body  # the same upload sent again
    assert first.headers["x-request-id"] == second.headers["x-request-id"]  # one call in the gateway's logs


def test_retry_after_as_an_http_date_is_honoured(server: ScriptedServer):
    # An HTTP date has whole seconds: two whole seconds after the next one (the date written from the clock
    # as it is could name a moment only just over a second away, and the first request's own time came
    # off that: a wall-clock lower bound on the gap then failed under load).
    retry_at = math.ceil(time.time()) + 2
    date = email.utils.formatdate(retry_at, usegmt=True)
    server.then(Answer.error(503, "encoder_unavailable", "down", **{"Retry-After": date}))
    server.then(Answer.json(200, {"status": "ok"}))
    with client_of(server) as client:
        assert client.health() == {"status": "ok"}
    retried = server.received[1]
    arrived_at = time.time() - (time.monotonic() - retried.at)  # the retry's arrival on the wall clock
    assert arrived_at >= retry_at - 0.01  # not before the date
    assert 1.5 <= server.gaps_s()[0] < 3.5  # the date's wait (2-3 s from the date's writing), not a backoff


def test_429_without_retry_after_backs_off_exponentially_with_jitter(server: ScriptedServer):
    server.then(*[Answer.error(429, "rate_limited", "slow down")] * 3, Answer.json(200, {"status": "ok"}))
    policy = RetryPolicy(max_attempts=4, backoff_base_s=0.2, backoff_max_s=10, max_total_s=10)
    with client_of(server, policy) as client:
        assert client.health() == {"status": "ok"}
    gaps = server.gaps_s()
    # Attempt n waits between half and all of base * 2^(n-1): [0.1, 0.2], [0.2, 0.4], [0.4, 0.8].
    for number, gap in enumerate(gaps, 1):
        ceiling = 0.2 * 2 ** (number - 1)
        assert ceiling / 2 <= gap < ceiling + 0.15, gaps


def test_attempts_are_bounded_and_the_last_error_is_raised_with_its_details(server: ScriptedServer):
    server.then(*[Answer.error(503, "search_unavailable", "the search service is unavailable")] * 5)
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.01, max_total_s=10)
    with client_of(server, policy) as client, pytest.raises(Unavailable) as raised:
        client.artwork("hokusai-wave")
    error = raised.value
    assert (error.status, error.code, error.attempts) == (503, "search_unavailable", 3)
    assert error.message == "the search service is unavailable"
    assert len(server.received) == 3
    assert error.request_id is None  # the scripted server echoes none; the gateway does


def test_a_retry_after_past_the_total_time_is_not_waited_for(server: ScriptedServer):
    server.then(Answer.error(429, "rate_limited", "over the limit", **{"Retry-After": "30"}))
    started = time.monotonic()
    with client_of(server, RetryPolicy(max_total_s=5)) as client, pytest.raises(RateLimited) as raised:
        client.health()
    assert time.monotonic() - started < 1
    assert raised.value.retry_after == 30 and raised.value.attempts == 1
    assert len(server.received) == 1


def test_additions_retry_429_but_not_503(server: ScriptedServer):
    """An addition refused before any work (429) is sent again; after a 503 it might have landed."""
    added = {"artwork": {"id": "a1", "title": "T"}, "degraded": []}
    server.then(Answer.error(429, "encoder_busy", "busy", **{"Retry-After": "0"}), Answer.json(201, added))
    with client_of(server, api_key="secret-key") as client:
        change = client.add_artwork(PICTURE, "T", id="a1")
        assert change.artwork.id == "a1" and len(server.received) == 2
        server.then(*[Answer.error(503, "search_unavailable", "down", **{"Retry-After": "0"})] * 2)
        with pytest.raises(Unavailable) as raised:
            client.add_artwork(PICTURE, "T", id="a2")
    assert raised.value.attempts == 1 and len(server.received) == 3


def test_connection_refused_is_retried_then_raised_as_a_transport_error():
    url = f"http://127.0.0.1:{unused_port()}"
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.05, max_total_s=5)
    with ArtsearchClient(url, retry=policy) as client, pytest.raises(TransportError) as raised:
        client.readiness()
    error = raised.value
    assert error.status is None and error.attempts == 3
    assert isinstance(error.__cause__, httpx.ConnectError)


def test_a_gateway_that_comes_up_during_the_retries_answers():
    port = unused_port()
    late = ScriptedServer(port).then(Answer.json(200, {"ready": True, "services": {}, "degraded": []}))
    threading.Timer(0.4, late.__enter__).start()
    policy = RetryPolicy(max_attempts=8, backoff_base_s=0.2, backoff_max_s=0.4, max_total_s=10)
    try:
        with ArtsearchClient(late.url, retry=policy) as client:
            assert client.readiness().ready is True
    finally:
        time.sleep(0.05)
        late.__exit__()


def test_a_slow_answer_times_out_and_only_calls_safe_to_repeat_are_retried(server: ScriptedServer):
    slow = Answer(200, b"{}", delay_s=0.6)
    server.then(slow, slow)
    policy = RetryPolicy(max_attempts=2, backoff_base_s=0.01, max_total_s=10)
    with client_of(server, policy, timeout=0.2, api_key="k") as client:
        with pytest.raises(Timeout):
            client.health()
        assert len(server.received) == 2
        server.then(slow)
        with pytest.raises(Timeout) as raised:
            client.add_influences([])  # an addition: the request went out, it may have landed
    assert raised.value.attempts == 1 and len(server.received) == 3


def test_the_total_time_bounds_a_call_even_when_each_attempt_could_take_longer(server: ScriptedServer):
    server.then(Answer(200, b"{}", delay_s=3))
    started = time.monotonic()
    with client_of(server, RetryPolicy(max_total_s=0.5), timeout=30) as client, pytest.raises(Timeout):
        client.health()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (422, InvalidRequest),
        (500, ServerError),
    ],
)
def test_each_error_status_raises_its_exception_with_code_message_and_request_id(
    server: ScriptedServer, status: int, kind: type[ArtsearchError]
):
    server.then(Answer.error(status, "the_code", "what was wrong", **{"X-Request-ID": "req-42"}))
    with client_of(server) as client, pytest.raises(kind) as raised:
        client.artwork("x")
    error = raised.value
    assert (error.status, error.code, error.message, error.request_id) == (
        status,
        "the_code",
        "what was wrong",
        "req-42",
    )
    assert error.attempts == 1 and len(server.received) == 1  # 4xx and 500 are not retried
    assert isinstance(error, ArtsearchError) and "the_code" in str(error)


def test_an_error_body_that_is_not_the_gateway_json_still_gives_a_clear_error(server: ScriptedServer):
    page = b"<html><body><h1>502 Bad Gateway</h1> nginx</body></html>"
    server.then(Answer(400, page, {"Content-Type": "text/html"}))
    server.then(Answer(422, b'{"error": "just a string"}'))
    server.then(Answer(400, b'{"detail": [1, 2'))  # truncated JSON
    with client_of(server) as client:
        for expected in ("502 Bad Gateway", "just a string", '{"detail": [1, 2'):
            with pytest.raises(BadRequest) as raised:
                client.artwork("x")
            assert raised.value.code is None and expected in raised.value.body
            assert raised.value.message.startswith(f"HTTP {raised.value.status}: ")


def test_retry_after_parsing():
    assert retry_after_s("3") == 3.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("-1") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once


async def test_the_async_client_retries_the_same_way(server: ScriptedServer):
    server.then(Answer.error(503, "search_unavailable", "down", **{"Retry-After": "1"}))
    server.then(Answer.json(200, SEARCH_ANSWER))
    async with AsyncArtsearchClient(server.url, retry=QUICK) as client:
        answer = await client.similar("hokusai-wave", k=1)
        assert answer.results[0].influence_path == ["Katsushika Hokusai"]
        assert len(server.received) == 2 and server.gaps_s()[0] >= 1.0
        server.then(*[Answer.error(429, "rate_limited", "no")] * 4)
        with pytest.raises(RateLimited) as raised:
            await client.search(PICTURE)
    assert raised.value.attempts == 4


async def test_the_async_client_raises_a_transport_error_when_nothing_listens():
    policy = RetryPolicy(max_attempts=2, backoff_base_s=0.01)
    async with AsyncArtsearchClient(f"http://127.0.0.1:{unused_port()}", retry=policy) as client:
        with pytest.raises(TransportError) as raised:
            await client.health()
    assert raised.value.attempts == 2
