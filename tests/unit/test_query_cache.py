"""The gateway's cache of encoder answers by picture (services/gateway/query_cache.py): bounded in entries and
age, blind to answers of another model version, keyed by the bytes and whether the picture was analysed."""

from __future__ import annotations

import asyncio

from artsearch.v1 import common_pb2, encoder_pb2
from services.gateway.query_cache import ANALYSES, LOOKUPS, EncodedPictureCache, PendingAnalysis


def answer(version: str = "v1", first: float = 0.5) -> encoder_pb2.EncodeResponse:
    return encoder_pb2.EncodeResponse(
        embeddings=[common_pb2.Embedding(values=[first, 0.25])],
        model=encoder_pb2.ModelInfo(version=version, dimension=2),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def hits() -> float:
    return LOOKUPS.labels("hit")._value.get()


def test_a_picture_sent_again_is_answered_from_the_cache_as_analysed_or_not():
    cache = EncodedPictureCache(max_entries=4, ttl_s=60)
    photo = b"\xff\xd8 a photo"
    analysed = cache.key(photo, analysed=True)
    assert cache.get(analysed, "v1") is None
    cache.put(analysed, answer(first=0.75))
    before = hits()
    assert cache.get(cache.key(photo, analysed=True), "v1").answer.embeddings[0].values[0] == 0.75
    assert hits() == before + 1
    assert cache.get(cache.key(photo, analysed=False), "v1") is None  # no analysis in that answer
    assert cache.get(cache.key(photo + b"!", analysed=True), "v1") is None  # other bytes


def test_the_least_recently_used_answer_goes_first():
    cache = EncodedPictureCache(max_entries=2, ttl_s=60)
    a, b, c = (cache.key(name, analysed=False) for name in (b"a", b"b", b"c"))
    cache.put(a, answer())
    cache.put(b, answer())
    assert cache.get(a, "v1") is not None  # a is now the most recently used
    cache.put(c, answer())
    assert len(cache) == 2
    assert cache.get(b, "v1") is None and cache.get(a, "v1") is not None and cache.get(c, "v1") is not None


def test_answers_expire_and_answers_of_another_model_are_not_used():
    clock = Clock()
    cache = EncodedPictureCache(max_entries=8, ttl_s=300, clock=clock)
    old, new = cache.key(b"old", analysed=False), cache.key(b"new", analysed=False)
    cache.put(old, answer())
    cache.put(new, answer(version="v1"))
    clock.now = 301
    assert cache.get(old, "v1") is None and len(cache) == 1  # expired, and dropped
    cache.put(old, answer())
    assert cache.get(old, None) is not None  # the encoder's model not known yet: any
    assert cache.get(old, "v2") is None  # the encoder runs another model now
    assert cache.get(old, "v1") is None  # and the stale answer was dropped


def test_zero_entries_keeps_nothing():
    cache = EncodedPictureCache(max_entries=0, ttl_s=300)
    cache.put(cache.key(b"a", analysed=False), answer())
    assert len(cache) == 0


async def test_a_first_stage_is_kept_with_its_analysis_to_come_then_replaced_by_the_complete_answer():
    cache = EncodedPictureCache(max_entries=4, ttl_s=60)
    key = cache.key(b"a photo", analysed=True)
    analysis: asyncio.Future[encoder_pb2.EncodeResponse] = asyncio.get_running_loop().create_future()
    assert cache.put_pending(key, answer(first=0.5), PendingAnalysis(analysis))
    kept = cache.get(key, "v1")
    assert kept.answer.embeddings[0].values[0] == 0.5 and kept.analysis.task is analysis
    complete = answer(first=0.5)
    complete.analyses.add(located=True)
    analysis.set_result(complete)
    await asyncio.sleep(0)  # the done callback
    kept = cache.get(key, "v1")
    assert kept.analysis is None and kept.answer.analyses[0].located


async def test_the_complete_answer_keeps_the_first_stages_age_and_never_brings_one_back():
    """The picture expires `ttl_s` after it was sent, whenever its analysis ends (an analysis ending after
    the expiry used to store the picture afresh); one evicted while its analysis ran stays evicted."""
    clock = Clock()
    cache = EncodedPictureCache(max_entries=2, ttl_s=60, clock=clock)
    loop = asyncio.get_running_loop()
    evicted, kept, newer = (cache.key(name, analysed=True) for name in (b"evicted", b"kept", b"newer"))
    analyses = {key: loop.create_future() for key in (evicted, kept)}
    for key, analysis in analyses.items():
        cache.put_pending(key, answer(first=0.5), PendingAnalysis(analysis))
    cache.put(newer, answer())  # evicts the least recently used
    clock.now = 59
    for analysis in analyses.values():
        complete = answer(first=0.5)
        complete.analyses.add(located=True)
        analysis.set_result(complete)
    await asyncio.sleep(0)  # the done callbacks
    assert cache.get(evicted, "v1") is None and len(cache) == 2  # not brought back
    assert cache.get(kept, "v1").answer.analyses[0].located  # replaced in place...
    clock.now = 61
    assert cache.get(kept, "v1") is None  # ...with the age of its first stage
    assert cache.get(newer, "v1") is None  # stored at the same time: expired too


async def test_a_failed_or_cancelled_analysis_leaves_the_first_stage_kept():
    cache = EncodedPictureCache(max_entries=4, ttl_s=60)
    for number, end in enumerate(("failed", "cancelled")):
        key = cache.key(f"photo {number}".encode(), analysed=True)
        analysis: asyncio.Future[encoder_pb2.EncodeResponse] = asyncio.get_running_loop().create_future()
        cache.put_pending(key, answer(first=0.25), PendingAnalysis(analysis))
        if end == "failed":
            analysis.set_exception(RuntimeError("the encoder failed"))
            analysis.exception()  # taken, as the gateway's waiters take it
        else:
            analysis.cancel()
        await asyncio.sleep(0)
        kept = cache.get(key, "v1")
        assert kept.analysis is None and kept.answer.embeddings[0].values[0] == 0.25


def test_with_zero_entries_a_first_stage_is_not_kept():
    cache = EncodedPictureCache(max_entries=0, ttl_s=60)
    loop = asyncio.new_event_loop()
    try:
        assert not cache.put_pending(
            cache.key(b"p", analysed=True), answer(), PendingAnalysis(loop.create_future())
        )
    finally:
        loop.close()


async def test_analyses_are_counted_by_how_they_ended():
    outcomes = ("completed", "dropped", "failed")
    counted = {outcome: ANALYSES.labels(outcome)._value.get() for outcome in outcomes}
    loop = asyncio.get_running_loop()
    completed, dropped, failed = (PendingAnalysis(loop.create_future()) for _ in range(3))
    completed.task.set_result(answer())
    dropped.join().cancel()
    failed.task.set_exception(RuntimeError("the encoder failed"))
    failed.task.exception()
    for _ in range(2):  # the waiter's done callback cancels the analysis, whose own callback counts it
        await asyncio.sleep(0)
    for outcome, before in counted.items():
        assert ANALYSES.labels(outcome)._value.get() == before + 1, outcome


async def test_an_analysis_is_cancelled_when_the_last_search_that_could_need_it_leaves():
    """Two searches of one photo: the first answered without the analysis leaves, the analysis goes on for
    the second; when that one leaves too, the analysis (the encoder's call) is cancelled."""
    task: asyncio.Future[encoder_pb2.EncodeResponse] = asyncio.get_running_loop().create_future()
    analysis = PendingAnalysis(task)
    first, second = analysis.join(), analysis.join()
    first.cancel()
    await asyncio.sleep(0)
    assert not task.cancelled()
    second.cancel()
    await asyncio.sleep(0)
    assert task.cancelled()


async def test_a_search_still_waiting_gets_the_analysis_the_other_left():
    task: asyncio.Future[encoder_pb2.EncodeResponse] = asyncio.get_running_loop().create_future()
    analysis = PendingAnalysis(task)
    leaving, waiting = analysis.join(), analysis.join()
    leaving.cancel()
    complete = answer(first=0.5)
    task.set_result(complete)
    assert await waiting is complete and not task.cancelled()


async def test_joining_an_analysis_already_dropped_gets_a_cancelled_future():
    task: asyncio.Future[encoder_pb2.EncodeResponse] = asyncio.get_running_loop().create_future()
    analysis = PendingAnalysis(task)
    analysis.join().cancel()
    await asyncio.sleep(0)
    late = analysis.join()
    await asyncio.sleep(0)
    assert task.cancelled() and late.cancelled()
