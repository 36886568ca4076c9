"""The EncoderService servicer: image bytes in, unit-length descriptors (content, style, colour) out."""

from __future__ import annotations

import asyncio
import logging
from asyncio import Future
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import overload

import grpc
import numpy as np
from prometheus_client import Counter

from artsearch.cpu_quota import available_cpus
from artsearch.grpc_server import ServiceRegistration
from artsearch.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc
from services.encoder.aspect_builder import DescriptorAssembler
from services.encoder.backends import BackendUnavailable, EmbeddingBackend
from services.encoder.config import DEFAULT_BATCH_MAX_IMAGES
from services.encoder.decode_memory import DecodeMemory
from services.encoder.images import ImageRejected, OpenedImage, decode_budget_bytes, open_image
from services.encoder.load_shedding import (
    DeadlineExpired,
    ImageAdmission,
    check_deadline,
    default_max_queued_images,
    request_deadline,
    set_request_deadline,
)
from services.encoder.painting_locator import PhotoAnalysis, analyse_photo, whole_photo_analysis

log = logging.getLogger(__name__)

SERVICE_NAME = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name
# The working copy an analysed photo is decoded to besides the network's input (its longer side, pixels): a
# painting filling 40 % of the photo's width still spans ~270 pixels of it, more than the network's 224.
ANALYSIS_WORK_SIDE = 672
# A batch with many bad images gets an error naming the first few; that is enough to fix the upload.
_MAX_REASONS_REPORTED = 5

SHED_CALLS = Counter(
    "artsearch_encoder_shed_total",
    "Encode calls refused or dropped unrun: overloaded (RESOURCE_EXHAUSTED) or expired (deadline passed)",
    ["reason"],
)
ANALYSIS_FAILURES = Counter(
    "artsearch_encoder_analysis_failures_total",
    "Photos whose painting locator raised (a bug on that photo): answered as photos with no painting found",
)


class EncoderService(encoder_pb2_grpc.EncoderServiceServicer):
    def __init__(
        self,
        backend: EmbeddingBackend,
        *,
        max_batch_images: int,
        max_image_pixels: int,
        decode_threads: int | None = None,
        decode_memory_bytes: int | None = None,
        max_queued_images: int | None = None,
    ) -> None:
        self._backend = backend
        self._max_batch_images = max_batch_images
        self._max_image_pixels = max_image_pixels
        # Pillow releases the GIL while decoding and resizing, so one thread per core decodes in parallel:
        # the cores the container's CPU quota allows, not the node's.
        threads = decode_threads or available_cpus()
        self._decode_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")
        # The service reads MAX_QUEUED_IMAGES (EncoderConfig); the default serves in-process uses and tests.
        self._admission = ImageAdmission(
            max_queued_images
            or default_max_queued_images(DEFAULT_BATCH_MAX_IMAGES, max_batch_images, threads)
        )
        if self._admission.limit < max_batch_images:
            raise ValueError(
                f"max_queued_images={self._admission.limit} is below the {max_batch_images} images one call "
                "may carry: such a call could never be served"
            )
        # Pictures decode together only while their estimated memory fits in this budget; by default what
        # one picture at the pixel limit takes in a 4-byte mode (RGBA, CMYK, 32-bit): such a picture is
        # always accepted, memory-hungrier formats up to what the same memory decodes (images.py).
        self._decode_memory = DecodeMemory(decode_memory_bytes or decode_budget_bytes(max_image_pixels))
        info = backend.info
        # Raises ConfigError at start-up when the model lacks an output the descriptor needs.
        self._describe = DescriptorAssembler(info)
        self._model_info = encoder_pb2.ModelInfo(
            name=info.name,
            version=self._describe.version,
            dimension=self._describe.layout.dimension,
            input_size=info.input_size,
            max_batch_images=max_batch_images,
            backend=info.backend,
            aspects=self._describe.layout.to_proto(),
        )

    async def Encode(
        self, request: encoder_pb2.EncodeRequest, context: grpc.aio.ServicerContext
    ) -> encoder_pb2.EncodeResponse:
        admitted = await self._admit_or_abort(request.images, request.analyse, context)
        try:
            set_request_deadline(context.time_remaining())
            if request.analyse:
                return await self._encode_analysed(request.images, context)
            pixels = await self._decode_or_abort(request.images, context)
            descriptors = await self._encode_pixels(pixels, context)
        finally:
            self._admission.release(admitted)
        return encoder_pb2.EncodeResponse(embeddings=_embeddings(descriptors), model=self._model_info)

    async def EncodeInStages(
        self, request: encoder_pb2.EncodeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[encoder_pb2.EncodeResponse]:
        """The analysed Encode in two messages (encoder.proto): the whole photos' descriptors, from the
        network running alone (only the cheap grey-scale test beside it), then the painting located in each
        photo and its crop's descriptor. The caller searches with the first while the second is made."""
        images = request.images
        admitted = await self._admit_or_abort(images, True, context)
        try:
            set_request_deadline(context.time_remaining())
            decoded = await self._decode_or_abort(images, context, work_side=ANALYSIS_WORK_SIDE)
            photos = self._on_pool(whole_photo_analysis, [(working,) for _, working in decoded])
            descriptors = await _finishing(
                self._encode_pixels(np.stack([whole for whole, _ in decoded]), context), photos
            )
            whole_analyses = await photos
            yield encoder_pb2.EncodeResponse(
                embeddings=_embeddings(descriptors),
                model=self._model_info,
                analyses=[analysis.to_proto(None) for analysis in whole_analyses],
            )
            size = self._backend.info.input_size
            analyses = await self._on_pool(
                analysed_or_whole,
                [(working, size, whole) for (_, working), whole in zip(decoded, whole_analyses, strict=True)],
            )
            yield encoder_pb2.EncodeResponse(
                model=self._model_info, analyses=await self._analyses_with_crops(analyses, context)
            )
        finally:
            self._admission.release(admitted)

    async def _admit_or_abort(
        self, images: Sequence[bytes], analyse: bool, context: grpc.aio.ServicerContext
    ) -> int:
        """How many images the call was admitted as; aborts an empty or oversized call (INVALID_ARGUMENT)
        and one the encoder has no room for (RESOURCE_EXHAUSTED)."""
        count = len(images)
        if count == 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request has no images")
        if count > self._max_batch_images:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request has {count} images; at most {self._max_batch_images} per call",
            )
        # An analysed photo may add its located crop to the batch: admitted as two images (at most the whole
        # limit, so that a full call is still served when nothing else is in progress).
        admitted = min(2 * count, self._admission.limit) if analyse else count
        if not self._admission.try_admit(admitted):
            SHED_CALLS.labels("overloaded").inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._overloaded_message(admitted))
        return admitted

    async def _encode_analysed(
        self, images: Sequence[bytes], context: grpc.aio.ServicerContext
    ) -> encoder_pb2.EncodeResponse:
        """Each photo decoded once (with a working copy); the whole photos go through the network while the
        decode pool analyses them (painting located, grey-scale or not), then the located crops do. A
        single photo's latency is then about max(network, analysis) + the crop's network time instead of
        analysis + a network batch of two (docs/gateway.md, "Visitor photos")."""
        decoded = await self._decode_or_abort(images, context, work_side=ANALYSIS_WORK_SIDE)
        size = self._backend.info.input_size
        analysing = self._on_pool(analysed_or_whole, [(working, size) for _, working in decoded])
        wholes = np.stack([whole for whole, _ in decoded])
        descriptors = await _finishing(self._encode_pixels(wholes, context), analysing)
        return encoder_pb2.EncodeResponse(
            embeddings=_embeddings(descriptors),
            model=self._model_info,
            analyses=await self._analyses_with_crops(await analysing, context),
        )

    def _on_pool(self, function: Callable[..., PhotoAnalysis], calls: list[tuple[object, ...]]) -> Future:
        """`function` applied to each argument tuple on the decode pool, gathered in order."""
        loop = asyncio.get_running_loop()
        return asyncio.gather(*(loop.run_in_executor(self._decode_pool, function, *args) for args in calls))

    async def _encode_pixels(self, pixels: np.ndarray, context: grpc.aio.ServicerContext) -> np.ndarray:
        """The descriptors [N, dimension] of network inputs [N, size, size, 3]."""
        outputs = await self._embed_or_abort(pixels, context)
        return await self._describe_or_abort(outputs, pixels, context)

    async def _analyses_with_crops(
        self, analyses: Sequence[PhotoAnalysis], context: grpc.aio.ServicerContext
    ) -> list[encoder_pb2.ImageAnalysis]:
        """The analyses as sent, each located crop's descriptor in it (the crops encoded as one batch)."""
        crops = [analysis.crop for analysis in analyses if analysis.crop is not None]
        located = iter(await self._encode_pixels(np.stack(crops), context) if crops else ())
        return [
            analysis.to_proto(next(located) if analysis.crop is not None else None) for analysis in analyses
        ]

    def _overloaded_message(self, count: int) -> str:
        waiting, limit = self._admission.in_progress, self._admission.limit
        return (
            f"the encoder is overloaded: {waiting} images are already waiting or being encoded and this call "
            f"adds {count}, over its limit of {limit} (MAX_QUEUED_IMAGES); retry with backoff"
        )

    async def GetModelInfo(
        self, request: encoder_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> encoder_pb2.ModelInfo:
        return self._model_info

    async def close(self) -> None:
        self._decode_pool.shutdown(wait=True)
        await self._backend.close()

    @overload
    async def _decode_or_abort(
        self, images: Sequence[bytes], context: grpc.aio.ServicerContext
    ) -> np.ndarray: ...

    @overload
    async def _decode_or_abort(
        self, images: Sequence[bytes], context: grpc.aio.ServicerContext, work_side: int
    ) -> list[tuple[np.ndarray, np.ndarray]]: ...

    async def _decode_or_abort(
        self, images: Sequence[bytes], context: grpc.aio.ServicerContext, work_side: int = 0
    ) -> np.ndarray | list[tuple[np.ndarray, np.ndarray]]:
        """Decodes every image concurrently on the decode pool into one [N, H, W, 3] batch, in input order
        (with `work_side`: (network input, working copy) per image); aborts the call when any failed
        (`_decode_failure`)."""
        decoded = await asyncio.gather(
            *(self._decode(data, work_side) for data in images), return_exceptions=True
        )
        failure = _decode_failure(decoded)
        if failure is not None:
            code, message = failure
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                SHED_CALLS.labels("expired").inc()
            await context.abort(code, message)
        return list(decoded) if work_side else np.stack(decoded)

    async def _decode(self, data: bytes, work_side: int = 0) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """One picture: its header read on the pool, then decoded there once its memory fits the budget."""
        loop = asyncio.get_running_loop()
        opened = await loop.run_in_executor(
            self._decode_pool,
            partial(
                open_image,
                data,
                size=self._backend.info.input_size,
                max_pixels=self._max_image_pixels,
                max_decode_bytes=self._decode_memory.capacity,
                work_side=work_side,
            ),
        )
        taken = await self._decode_memory.acquire(opened.decode_bytes)
        job = self._decode_pool.submit(_decode_in_time, opened, request_deadline.get())
        # The memory is in use until the thread finishes, even when the call is cancelled meanwhile; a job
        # cancelled before its thread took it (the call ended) never runs and gives its memory back at once.
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._decode_memory.release, taken))
        return await asyncio.wrap_future(job)

    async def _abort_expired(self, expired: DeadlineExpired, context: grpc.aio.ServicerContext) -> None:
        """The work of a call whose deadline passed was dropped unrun (its caller has given up on it)."""
        SHED_CALLS.labels("expired").inc()
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"dropped unrun: {expired}")

    async def _embed_or_abort(
        self, pixels: np.ndarray, context: grpc.aio.ServicerContext
    ) -> dict[str, np.ndarray]:
        """Every raw float32 graph output [N, width] for the batch, by name; aborts with UNAVAILABLE when a
        remote model server is out of reach (the caller may retry), INTERNAL when the model fails."""
        try:
            outputs = await self._backend.embed(pixels)
        except DeadlineExpired as expired:
            await self._abort_expired(expired, context)
        except BackendUnavailable as error:
            log.warning("model backend unavailable", extra={"images": len(pixels), "reason": str(error)})
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the model server is unavailable: {error}")
        except Exception:
            log.exception("embedding failed", extra={"images": len(pixels)})
            await context.abort(grpc.StatusCode.INTERNAL, "the model failed on this batch")
        if not all(np.all(np.isfinite(values)) for values in outputs.values()):
            log.error("model returned non-finite features", extra={"images": len(pixels)})
            await context.abort(grpc.StatusCode.INTERNAL, "the model returned non-finite values")
        return {name: values.astype(np.float32, copy=False) for name, values in outputs.items()}

    async def _describe_or_abort(
        self, outputs: dict[str, np.ndarray], pixels: np.ndarray, context: grpc.aio.ServicerContext
    ) -> np.ndarray:
        """The stored descriptors [N, dimension]; colour histograms are CPU work, so off the event loop."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._decode_pool, self._describe, outputs, pixels)
        except Exception:
            log.exception("descriptor assembly failed", extra={"images": len(pixels)})
            await context.abort(grpc.StatusCode.INTERNAL, "the encoder failed to assemble the descriptors")
            raise  # unreachable: abort raises


def analysed_or_whole(working: np.ndarray, size: int, whole: PhotoAnalysis | None = None) -> PhotoAnalysis:
    """`analyse_photo`; when its painting's part raises (locating the painting, cutting it out, its grey-scale
    test: a bug met on this photo), the photo as one with no painting found. The analysis improves the
    search, as the gateway's search of the crop does: the photo is searched as a whole rather than failed.
    Logged with its traceback and counted (`artsearch_encoder_analysis_failures_total`)."""
    whole = whole or whole_photo_analysis(working)
    try:
        return analyse_photo(working, size, whole)
    except Exception:
        ANALYSIS_FAILURES.inc()
        log.exception("locating the painting failed; the photo is answered as a whole")
        return whole


def _embeddings(descriptors: np.ndarray) -> list[common_pb2.Embedding]:
    return [common_pb2.Embedding(values=row.tolist()) for row in descriptors]


async def _finishing(work: Awaitable[np.ndarray], beside: Future) -> np.ndarray:
    """`work`'s result; when it fails, `beside` (analyses running on pool threads either way) is waited for
    first, so that an aborted call leaves no work behind that still holds its working copies."""
    try:
        return await work
    except BaseException:
        await asyncio.gather(beside, return_exceptions=True)
        raise


def _decode_failure(decoded: Sequence[object]) -> tuple[grpc.StatusCode, str] | None:
    """The status of a call whose pictures did not all decode, None when they did: INVALID_ARGUMENT naming
    each picture the client must fix (up to a few), DEADLINE_EXCEEDED for work dropped unrun,
    RESOURCE_EXHAUSTED when memory ran out (a retry, later or on another replica, may pass), INTERNAL for a
    failure of the encoder's own code."""
    reasons = [f"image {i}: {r.reason}" for i, r in enumerate(decoded) if isinstance(r, ImageRejected)]
    if reasons:
        return grpc.StatusCode.INVALID_ARGUMENT, "; ".join(reasons[:_MAX_REASONS_REPORTED])
    failures = [(index, r) for index, r in enumerate(decoded) if isinstance(r, BaseException)]
    if not failures:
        return None
    index, error = next(((i, r) for i, r in failures if isinstance(r, DeadlineExpired)), failures[0])
    if isinstance(error, DeadlineExpired):
        return grpc.StatusCode.DEADLINE_EXCEEDED, f"dropped unrun: {error}"
    if isinstance(error, MemoryError):
        log.warning("out of memory while decoding", extra={"image_index": index})
        message = f"image {index}: the encoder ran out of memory decoding it; retry later"
        return grpc.StatusCode.RESOURCE_EXHAUSTED, message
    log.error("decoding failed unexpectedly", exc_info=error, extra={"image_index": index})
    return grpc.StatusCode.INTERNAL, f"image {index}: the encoder failed to decode it"


def _decode_in_time(
    opened: OpenedImage, deadline: float | None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Decodes on a pool thread, unless the caller's deadline passed while the job waited for the thread."""
    try:
        check_deadline(deadline, "decoding")
    except DeadlineExpired:
        opened.image.close()
        raise
    return opened.decode_with_working_copy() if opened.work_side else opened.decode()


def encoder_registration(service: EncoderService) -> ServiceRegistration:
    """How GrpcServiceServer / run_service expose this servicer."""
    return ServiceRegistration(
        full_name=SERVICE_NAME,
        add_to_server=partial(encoder_pb2_grpc.add_EncoderServiceServicer_to_server, service),
    )
