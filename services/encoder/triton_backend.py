"""`EmbeddingBackend` over a Triton Inference Server (KServe v2 gRPC), selected by TRITON_URL.

Triton serves the same exported ONNX file (deploy/triton/model_repository, `services.encoder.
triton_repository`): the same uint8 NHWC input, the same outputs by name, so vectors match the embedded
onnxruntime backend. At start-up the backend waits (bounded) for the server and the model to be ready and
checks the model's metadata against `model.json`; a mismatch or a server that never comes up is a
ConfigError, so the encoder refuses to start instead of failing every request later.

At run time every call carries a deadline. A server that is down, restarting, overloaded or too slow
raises `BackendUnavailable` (the servicer answers UNAVAILABLE, the caller may retry); the gRPC channel
reconnects by itself with a short backoff, so calls succeed again once Triton is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from artsearch.config import ConfigError
from services.encoder.backends import BackendUnavailable, EmbeddingModelInfo

log = logging.getLogger(__name__)

# Statuses that say "not now" rather than "never": the server is unreachable, restarting (model not
# loaded yet), shedding load, or slower than the deadline. NOT_FOUND too: the model was there at start-up
# (checked), so "unknown model ... has no available versions" is a server stopping or reloading (measured:
# a third of the failed calls while a Triton shuts down), not the encoder's fault.
_TRANSIENT_STATUSES = frozenset(
    f"StatusCode.{name}"
    for name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "NOT_FOUND")
)
# gRPC's default reconnect backoff grows to 120 s: after a Triton restart the channel could sit idle for
# minutes. Capped at 1 s, it is back within a second of the server.
_CHANNEL_ARGS = [
    # Every Triton pod a (headless) Service name resolves to gets calls, not just the first one. With a
    # subchannel pool of its own, a channel made after a Triton restart starts afresh instead of inheriting
    # the process-wide pool's subchannel still backing off from the failure (it would fail fast).
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_send_message_length", triton_grpc.MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", triton_grpc.MAX_GRPC_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_STARTUP_POLL_S = 0.25


@dataclass(frozen=True)
class TritonSettings:
    url: str
    model_name: str
    # "" lets Triton pick (the newest loaded version, per the model's version policy).
    model_version: str = ""
    # Deadline of every call to Triton, inference included.
    timeout_s: float = 10.0
    # How long start-up waits for the server and the model to become ready.
    startup_timeout_s: float = 60.0
    # The channel to Triton is replaced after this many seconds (0: never), so that the name is resolved
    # again and Triton pods added since get calls too: Triton does not age its connections the way this
    # project's servers do. The old channel is closed once its calls' deadline has passed.
    channel_max_age_s: float = 300.0


@dataclass(frozen=True)
class TritonStatus:
    live: bool
    ready: bool
    model_ready: bool


def triton_address(url: str) -> str:
    """`host:port` from TRITON_URL, which may carry a `grpc://` scheme; ConfigError for HTTP(S) URLs."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    if scheme != "grpc":
        raise ConfigError(
            f"TRITON_URL={url!r}: the encoder talks gRPC to Triton (host:port or grpc://host:port)"
        )
    return rest.rstrip("/")


class TritonBackend:
    """The model behind a Triton server; build it with `TritonBackend.open` (blocking, at start-up)."""

    def __init__(self, info: EmbeddingModelInfo, settings: TritonSettings, max_batch_size: int) -> None:
        self._info = info
        self._settings = settings
        self._address = triton_address(settings.url)
        self._max_batch_size = max_batch_size
        # Created on first use, inside the serving event loop that grpc.aio binds it to.
        self._client: triton_aio.InferenceServerClient | None = None
        self._client_since = 0.0
        self._retiring: set[asyncio.Task[None]] = set()  # old channels, closed at their calls' deadline

    @classmethod
    def open(cls, model_info: EmbeddingModelInfo, settings: TritonSettings) -> TritonBackend:
        """Waits up to `settings.startup_timeout_s` for the server and model to be ready, then checks the
        model's signature against `model_info`. ConfigError when either fails."""
        address = triton_address(settings.url)
        client = triton_grpc.InferenceServerClient(address, channel_args=_CHANNEL_ARGS)
        try:
            _wait_until_ready(client, settings)
            metadata = client.get_model_metadata(
                settings.model_name, settings.model_version, client_timeout=settings.timeout_s
            )
            config = client.get_model_config(
                settings.model_name, settings.model_version, client_timeout=settings.timeout_s
            ).config
        except InferenceServerException as error:
            raise ConfigError(
                f"Triton at {address}: cannot read model {settings.model_name!r}: {error}"
            ) from None
        finally:
            client.close()
        _check_signature(metadata, model_info, settings.model_name)
        backend = cls(model_info, settings, max_batch_size=config.max_batch_size)
        log.info(
            "triton model ready",
            extra={
                "triton": address,
                "model": settings.model_name,
                "versions": list(metadata.versions),
                "platform": metadata.platform,
                "max_batch_size": config.max_batch_size,
            },
        )
        return backend

    @property
    def info(self) -> EmbeddingModelInfo:
        return self._info

    async def embed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        size = self._info.input_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
            raise ValueError(f"expected uint8 [N, {size}, {size}, 3], got {pixels.dtype} {pixels.shape}")
        # Batches beyond the model's max_batch_size go as several requests, which Triton runs side by side.
        step = self._max_batch_size or len(pixels)
        chunks = [pixels[start : start + step] for start in range(0, len(pixels), step)]
        results = await asyncio.gather(*(self._infer(chunk) for chunk in chunks))
        return {name: np.concatenate([r[name] for r in results]) for name, _ in self._info.outputs}

    async def status(self) -> TritonStatus:
        """Server liveness, readiness and model readiness, each within the deadline (False when unknown)."""
        client = self._aio_client()
        timeout = self._settings.timeout_s
        checks = (
            client.is_server_live(client_timeout=timeout),
            client.is_server_ready(client_timeout=timeout),
            client.is_model_ready(
                self._settings.model_name, self._settings.model_version, client_timeout=timeout
            ),
        )
        answers = await asyncio.gather(*checks, return_exceptions=True)
        live, ready, model_ready = (answer is True for answer in answers)
        return TritonStatus(live=live, ready=ready, model_ready=model_ready)

    async def model_metadata(self) -> service_pb2.ModelMetadataResponse:
        try:
            return await self._aio_client().get_model_metadata(
                self._settings.model_name,
                self._settings.model_version,
                client_timeout=self._settings.timeout_s,
            )
        except InferenceServerException as error:
            raise _as_backend_error(error, self._address) from None

    async def close(self) -> None:
        for retiring in list(self._retiring):
            retiring.cancel()  # closes its client at once
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _aio_client(self) -> triton_aio.InferenceServerClient:
        max_age = self._settings.channel_max_age_s
        if self._client is not None and max_age and time.monotonic() - self._client_since >= max_age:
            self._retire(self._client)
            self._client = None
        if self._client is None:
            self._client = triton_aio.InferenceServerClient(self._address, channel_args=_CHANNEL_ARGS)
            self._client_since = time.monotonic()
        return self._client

    def _retire(self, client: triton_aio.InferenceServerClient) -> None:
        """Closes `client` once the calls still running on it have reached their deadline."""
        task = asyncio.get_running_loop().create_task(_close_after(client, self._settings.timeout_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        model_input = triton_aio.InferInput(self._info.input_name, list(pixels.shape), "UINT8")
        model_input.set_data_from_numpy(np.ascontiguousarray(pixels))
        outputs = [triton_aio.InferRequestedOutput(name) for name, _ in self._info.outputs]
        try:
            result = await self._aio_client().infer(
                self._settings.model_name,
                [model_input],
                model_version=self._settings.model_version,
                outputs=outputs,
                client_timeout=self._settings.timeout_s,
            )
        except InferenceServerException as error:
            raise _as_backend_error(error, self._address) from None
        arrays: dict[str, np.ndarray] = {}
        for name, width in self._info.outputs:
            array = result.as_numpy(name)
            if array is None or array.shape != (len(pixels), width):
                # The model's shapes were checked at start-up: a wrong answer now is the server failing (seen
                # from the python backend right after the server was frozen and thawed). Unavailable, not an
                # encoder error: the caller retries, and this server is asked again once it has recovered.
                shape = None if array is None else array.shape
                raise BackendUnavailable(
                    f"Triton at {self._address} answered {name!r} of shape {shape}, "
                    f"expected ({len(pixels)}, {width})"
                )
            arrays[name] = array.astype(np.float32, copy=False)
        return arrays


async def _close_after(client: triton_aio.InferenceServerClient, delay_s: float) -> None:
    try:
        await asyncio.sleep(delay_s)
    finally:
        await client.close()


def _as_backend_error(error: InferenceServerException, address: str) -> Exception:
    if error.status() in _TRANSIENT_STATUSES:
        return BackendUnavailable(f"Triton at {address}: {error}")
    return RuntimeError(f"Triton at {address}: {error}")


def _wait_until_ready(client: triton_grpc.InferenceServerClient, settings: TritonSettings) -> None:
    """Polls until the server is live and ready and the model is ready; ConfigError at the deadline."""
    deadline = time.monotonic() + settings.startup_timeout_s
    reason = "no answer yet"
    while True:
        try:
            if not client.is_server_live(client_timeout=settings.timeout_s):
                reason = "server not live"
            elif not client.is_server_ready(client_timeout=settings.timeout_s):
                reason = "server not ready"
            elif not client.is_model_ready(
                settings.model_name, settings.model_version, client_timeout=settings.timeout_s
            ):
                reason = f"model {settings.model_name!r} not ready"
            else:
                return
        except InferenceServerException as error:
            reason = str(error)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConfigError(
                f"Triton at {triton_address(settings.url)} not ready after {settings.startup_timeout_s:g} s "
                f"(TRITON_STARTUP_TIMEOUT_S): {reason}"
            )
        time.sleep(min(_STARTUP_POLL_S, remaining))


def _check_signature(
    metadata: service_pb2.ModelMetadataResponse, info: EmbeddingModelInfo, model_name: str
) -> None:
    """Triton's model must take and give what `model.json` describes, or vectors would silently differ."""
    size = info.input_size
    expected_input = (info.input_name, "UINT8", [-1, size, size, 3])
    inputs = [(i.name, i.datatype, list(i.shape)) for i in metadata.inputs]
    problems: list[str] = []
    if inputs != [expected_input]:
        problems.append(f"inputs {inputs}, expected [{expected_input}]")
    served = {o.name: (o.datatype, list(o.shape)) for o in metadata.outputs}
    for name, width in info.outputs:
        if served.get(name) != ("FP32", [-1, width]):
            problems.append(f"output {name!r} is {served.get(name)}, expected ('FP32', [-1, {width}])")
    if problems:
        raise ConfigError(f"Triton model {model_name!r} does not match model.json: " + "; ".join(problems))
