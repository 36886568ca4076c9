"""MicroBatchingBackend: coalescing, per-caller results, failures, cancellation and draining.

A scripted backend (below) stands in for the network where the batching logic is under test: it records
every batch it receives and answers rows derived from each image, so a result that went to the wrong caller
is visible. One test runs the real onnxruntime backend; the last reads the settings from the environment."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from artsearch.config import ConfigError, Env
from services.encoder.backends import EmbeddingModelInfo, OnnxRuntimeBackend
from services.encoder.batching import BackendClosed, MicroBatchingBackend
from services.encoder.config import EncoderConfig
from services.encoder.load_shedding import DeadlineExpired, set_request_deadline

SIDE = 4
POISON = 250  # an image whose first pixel holds this value makes the scripted backend fail its batch


class ScriptedBackend:
    """Two outputs per image (its id and id squared, from the first pixel); records batch sizes; may
    hold every batch until `release` is set."""

    def __init__(self, delay_s: float = 0.0, hold: bool = False) -> None:
        self.delay_s = delay_s
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.closed = False
        self.started = asyncio.Event()
        self._info = EmbeddingModelInfo(
            name="scripted",
            version="1",
            dimension=1,
            input_size=SIDE,
            input_name="pixels",
            features_output="features",
            onnx_sha256="",
            backend="scripted",
            outputs=(("features", 1), ("style", 2)),
        )

    @property
    def info(self) -> EmbeddingModelInfo:
        return self._info

    async def embed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        ids = pixels[:, 0, 0, 0].astype(np.float32)
        self.batches.append([int(i) for i in ids])
        self.started.set()
        await self.release.wait()
        await asyncio.sleep(self.delay_s)
        if np.any(ids == POISON):
            raise RuntimeError("model failed")
        return {"features": ids[:, None], "style": np.stack([ids, ids**2], axis=1)}

    async def close(self) -> None:
        self.closed = True


def images(*ids: int) -> np.ndarray:
    pixels = np.zeros((len(ids), SIDE, SIDE, 3), dtype=np.uint8)
    pixels[:, 0, 0, 0] = ids
    return pixels


def assert_rows_for(result: dict[str, np.ndarray], *ids: int) -> None:
    expected = np.asarray(ids, dtype=np.float32)
    np.testing.assert_array_equal(result["features"][:, 0], expected)
    np.testing.assert_array_equal(result["style"], np.stack([expected, expected**2], axis=1))


async def test_concurrent_callers_share_batches_and_each_gets_its_own_rows() -> None:
    backend = ScriptedBackend(delay_s=0.02)
    batcher = MicroBatchingBackend(backend, max_batch_images=32, max_wait_ms=0)
    results = await asyncio.gather(*(batcher.embed(images(i)) for i in range(1, 21)))
    for i, result in enumerate(results, start=1):
        assert_rows_for(result, i)
    assert len(backend.batches) < 20
    assert sorted(i for batch in backend.batches for i in batch) == list(range(1, 21))


async def test_requests_arriving_while_a_batch_runs_go_together_in_the_next() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=32, max_wait_ms=0)
    first = asyncio.create_task(batcher.embed(images(1)))
    await backend.started.wait()
    later = [asyncio.create_task(batcher.embed(images(i, i + 100))) for i in range(2, 7)]
    await asyncio.sleep(0.01)
    backend.release.set()
    await asyncio.gather(first, *later)
    assert backend.batches == [[1], [2, 102, 3, 103, 4, 104, 5, 105, 6, 106]]


async def test_no_backend_call_is_larger_than_the_limit() -> None:
    backend = ScriptedBackend(delay_s=0.005)
    batcher = MicroBatchingBackend(backend, max_batch_images=8, max_wait_ms=1)
    callers = [batcher.embed(images(*range(i, i + 1 + i % 3))) for i in range(1, 40)]
    results = await asyncio.gather(*callers)
    for i, result in enumerate(results, start=1):
        assert_rows_for(result, *range(i, i + 1 + i % 3))
    assert max(len(batch) for batch in backend.batches) <= 8


async def test_a_caller_larger_than_a_batch_is_split_and_reassembled_in_order() -> None:
    backend = ScriptedBackend()
    batcher = MicroBatchingBackend(backend, max_batch_images=4)
    result = await batcher.embed(images(*range(1, 11)))
    assert_rows_for(result, *range(1, 11))
    assert [len(batch) for batch in backend.batches] == [4, 4, 2]


async def test_a_lone_request_on_an_idle_backend_does_not_wait() -> None:
    batcher = MicroBatchingBackend(ScriptedBackend(), max_batch_images=32, max_wait_ms=500)
    for i in range(3):
        started = time.monotonic()
        assert_rows_for(await batcher.embed(images(i)), i)
        assert time.monotonic() - started < 0.25


async def test_under_concurrent_traffic_an_idle_backend_waits_briefly_for_companions() -> None:
    backend = ScriptedBackend()
    batcher = MicroBatchingBackend(backend, max_batch_images=32, max_wait_ms=300)
    await asyncio.gather(batcher.embed(images(1)), batcher.embed(images(2)))  # traffic is concurrent now

    async def late(delay_s: float, image_id: int) -> dict[str, np.ndarray]:
        await asyncio.sleep(delay_s)
        return await batcher.embed(images(image_id))

    await asyncio.gather(late(0, 3), late(0.05, 4))
    assert backend.batches == [[1, 2], [3, 4]]


async def test_a_full_queue_does_not_wait_for_the_deadline() -> None:
    backend = ScriptedBackend()
    batcher = MicroBatchingBackend(backend, max_batch_images=4, max_wait_ms=5_000)
    await asyncio.gather(*(batcher.embed(images(i)) for i in (1, 2)))
    started = time.monotonic()
    await asyncio.gather(*(batcher.embed(images(i)) for i in (3, 4, 5, 6)))
    assert time.monotonic() - started < 2.0
    assert backend.batches[-1] == [3, 4, 5, 6]


async def test_with_two_batches_in_flight_a_second_batch_starts_while_the_first_runs() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=32, max_wait_ms=0, max_batches_in_flight=2)
    first = asyncio.create_task(batcher.embed(images(1)))
    await backend.started.wait()
    second = asyncio.create_task(batcher.embed(images(2)))
    await asyncio.sleep(0.01)
    third = asyncio.create_task(batcher.embed(images(3)))
    await asyncio.sleep(0.01)
    assert backend.batches == [[1], [2]]  # the third waits for a free slot
    backend.release.set()
    for image_id, caller in enumerate((first, second, third), start=1):
        assert_rows_for(await caller, image_id)
    assert backend.batches == [[1], [2], [3]]


async def test_a_backend_failure_fails_exactly_the_callers_of_that_batch() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=2, max_wait_ms=0)
    running = asyncio.create_task(batcher.embed(images(1)))
    await backend.started.wait()
    # Queued while batch [1] runs: [POISON, 2] then [3, 4].
    queued = [asyncio.create_task(batcher.embed(images(i))) for i in (POISON, 2, 3, 4)]
    await asyncio.sleep(0.01)
    backend.release.set()
    outcomes = await asyncio.gather(running, *queued, return_exceptions=True)
    assert backend.batches == [[1], [POISON, 2], [3, 4]]
    assert_rows_for(outcomes[0], 1)
    assert all(isinstance(o, RuntimeError) and str(o) == "model failed" for o in outcomes[1:3])
    assert_rows_for(outcomes[3], 3)
    assert_rows_for(outcomes[4], 4)


async def test_a_cancelled_queued_caller_is_left_out_and_the_others_get_their_rows() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=32, max_wait_ms=0)
    running = asyncio.create_task(batcher.embed(images(1)))
    await backend.started.wait()
    queued = {i: asyncio.create_task(batcher.embed(images(i))) for i in (2, 3, 4)}
    await asyncio.sleep(0.01)
    queued[3].cancel()
    backend.release.set()
    assert_rows_for(await running, 1)
    assert_rows_for(await queued[2], 2)
    assert_rows_for(await queued[4], 4)
    with pytest.raises(asyncio.CancelledError):
        await queued[3]
    assert backend.batches == [[1], [2, 4]]


async def embed_with_deadline(
    batcher: MicroBatchingBackend, pixels: np.ndarray, seconds: float
) -> dict[str, np.ndarray]:
    """A caller whose gRPC deadline is `seconds` away (the servicer records it; the task is not cancelled
    when it passes, as a caller slow to notice would not be)."""
    set_request_deadline(seconds)
    return await batcher.embed(pixels)


async def test_a_caller_whose_deadline_passes_while_queued_is_dropped_unrun() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=32, max_wait_ms=0)
    running = asyncio.create_task(batcher.embed(images(1)))
    await backend.started.wait()
    late = asyncio.create_task(embed_with_deadline(batcher, images(2, 3), 0.05))
    patient = asyncio.create_task(embed_with_deadline(batcher, images(4), 30))
    await asyncio.sleep(0.1)  # the late caller's deadline passes while batch [1] runs
    backend.release.set()
    assert_rows_for(await running, 1)
    assert_rows_for(await patient, 4)
    with pytest.raises(DeadlineExpired, match=r"deadline passed after .* s waiting for a batch"):
        await late
    assert backend.batches == [[1], [4]]  # the model never saw images 2 and 3


async def test_an_expired_caller_larger_than_a_batch_leaves_none_of_its_chunks_queued() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=2, max_wait_ms=0)
    running = asyncio.create_task(batcher.embed(images(1)))
    await backend.started.wait()
    late = asyncio.create_task(embed_with_deadline(batcher, images(*range(10, 17)), 0.05))
    await asyncio.sleep(0.1)
    backend.release.set()
    assert_rows_for(await running, 1)
    with pytest.raises(DeadlineExpired):
        await late
    assert_rows_for(await batcher.embed(images(5)), 5)  # an empty queue: the next caller goes at once
    assert backend.batches == [[1], [5]]


async def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_batch() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=32, max_wait_ms=0)
    callers = [asyncio.create_task(batcher.embed(images(i))) for i in (1, 2, 3)]
    await backend.started.wait()
    callers[1].cancel()
    backend.release.set()
    assert_rows_for(await callers[0], 1)
    assert_rows_for(await callers[2], 3)
    assert callers[1].cancelled()
    assert_rows_for(await batcher.embed(images(5)), 5)  # the batcher still serves


async def test_a_malformed_caller_is_rejected_alone() -> None:
    backend = ScriptedBackend()
    batcher = MicroBatchingBackend(backend)
    wrong_size = np.zeros((1, SIDE + 1, SIDE, 3), dtype=np.uint8)
    wrong_type = images(1).astype(np.float32)
    outcomes = await asyncio.gather(
        batcher.embed(wrong_size), batcher.embed(images(2)), batcher.embed(wrong_type), return_exceptions=True
    )
    assert isinstance(outcomes[0], ValueError) and "expected uint8 [N, 4, 4, 3]" in str(outcomes[0])
    assert isinstance(outcomes[2], ValueError)
    assert_rows_for(outcomes[1], 2)
    assert backend.batches == [[2]]


async def test_close_finishes_queued_work_then_refuses_new_calls_and_closes_the_backend() -> None:
    backend = ScriptedBackend(hold=True)
    batcher = MicroBatchingBackend(backend, max_batch_images=2, max_wait_ms=0)
    callers = [asyncio.create_task(batcher.embed(images(i))) for i in (1, 2, 3, 4, 5)]
    await backend.started.wait()
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0.01)
    assert not closing.done() and not backend.closed
    backend.release.set()
    await closing
    for image_id, caller in enumerate(callers, start=1):
        assert_rows_for(caller.result(), image_id)
    assert backend.closed
    with pytest.raises(BackendClosed):
        await batcher.embed(images(6))


async def test_batched_onnxruntime_results_equal_unbatched_results(model_path: Path) -> None:
    backend = OnnxRuntimeBackend(model_path)
    batcher = MicroBatchingBackend(backend, max_batch_images=8, max_wait_ms=2)
    side = backend.info.input_size
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(12, side, side, 3), dtype=np.uint8)
    try:
        alone = [await backend.embed(pixels[i : i + 1]) for i in range(len(pixels))]
        calls = [batcher.embed(pixels[i : i + 1]) for i in range(10)] + [batcher.embed(pixels[10:])]
        batched = await asyncio.gather(*calls)
    finally:
        await batcher.close()
    batched_rows = [*batched[:10], {k: v[0:1] for k, v in batched[10].items()}]
    batched_rows.append({k: v[1:2] for k, v in batched[10].items()})
    for single, together in zip(alone, batched_rows, strict=True):
        assert single.keys() == together.keys()
        for name in single:
            np.testing.assert_allclose(together[name], single[name], rtol=1e-4, atol=1e-5)


def test_batch_settings_come_from_the_environment(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    defaults = EncoderConfig.from_env(Env({"MODEL_PATH": str(model)}))
    assert (defaults.batch_max_images, defaults.batch_max_wait_ms) == (16, 2.0)
    tuned = EncoderConfig.from_env(
        Env({"MODEL_PATH": str(model), "BATCH_MAX_IMAGES": "8", "BATCH_MAX_WAIT_MS": "0.5"})
    )
    assert (tuned.batch_max_images, tuned.batch_max_wait_ms) == (8, 0.5)
    for name, value in (("BATCH_MAX_IMAGES", "0"), ("BATCH_MAX_IMAGES", "many"), ("BATCH_MAX_WAIT_MS", "-1")):
        with pytest.raises(ConfigError, match=name):
            EncoderConfig.from_env(Env({"MODEL_PATH": str(model), name: value}))
