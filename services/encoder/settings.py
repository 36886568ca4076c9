"""The encoder's settings, each declared once (artsearch/settings.py: how declarations are read and
documented); services/encoder/config.py reads them into an EncoderConfig at start-up."""

from __future__ import annotations

from artsearch.settings import ENCODER, FloatSetting, IntSetting, OptionalSetting, Setting, StrSetting

MODEL_PATH = StrSetting(
    name="MODEL_PATH",
    doc=(
        "The exported ONNX model (`make model`): `models/efficientnet-lite0/model.onnx` (fp32), or the int8 "
        "variant `models/efficientnet-lite0-int8/model.onnx` (a model version of its own: re-index under it; "
        '[performance.md](performance.md), "The int8 model").'
    ),
    services=(ENCODER,),
)
MAX_REQUEST_IMAGES = IntSetting(
    name="MAX_REQUEST_IMAGES",
    doc="Most images one `Encode` call may carry (a request limit, not a batch size).",
    services=(ENCODER,),
    default=64,
    minimum=1,
    deprecated_names=("MAX_BATCH_IMAGES",),
)
MAX_QUEUED_IMAGES = IntSetting(
    name="MAX_QUEUED_IMAGES",
    doc=(
        "Images in progress (decoding, queued, in a batch) beyond which a call is refused at once "
        "(`RESOURCE_EXHAUSTED`; the gateway answers 429 `encoder_busy`); at least `MAX_REQUEST_IMAGES`."
    ),
    services=(ENCODER,),
    minimum=1,
    default_doc="4 batches per core, at least 2 x `MAX_REQUEST_IMAGES`",
)
ORT_THREADS = IntSetting(
    name="ORT_THREADS",
    doc="Intra-op threads of the embedded onnxruntime backend (0: onnxruntime decides, one per core).",
    services=(ENCODER,),
    default=0,
    minimum=0,
)
ORT_PROVIDERS = StrSetting(
    name="ORT_PROVIDERS",
    doc=(
        "Execution providers of the embedded backend, in order of preference: `tensorrt`, `cuda`, `cpu` (GPU "
        "ones need the `onnxruntime-gpu` package; start-up fails rather than silently running on the CPU)."
    ),
    services=(ENCODER,),
    default="cpu",
)
TRITON_URL = OptionalSetting(
    name="TRITON_URL",
    doc=(
        "Triton's gRPC endpoint (`host:port` or `grpc://host:port`): a Triton Inference Server runs the "
        "model (tritonclient gRPC aio); unset: the embedded onnxruntime."
    ),
    services=(ENCODER,),
)
TRITON_MODEL_NAME = StrSetting(
    name="TRITON_MODEL_NAME",
    doc="The model's directory name in Triton's repository.",
    services=(ENCODER,),
    default="efficientnet-lite0",
)
TRITON_MODEL_VERSION = StrSetting(
    name="TRITON_MODEL_VERSION",
    doc="The model's version in Triton (unset: Triton's newest loaded version).",
    services=(ENCODER,),
    default="",
)
TRITON_TIMEOUT_S = FloatSetting(
    name="TRITON_TIMEOUT_S",
    doc="Deadline of every call to Triton, seconds.",
    services=(ENCODER,),
    default=10.0,
    minimum=0.001,
)
TRITON_STARTUP_TIMEOUT_S = FloatSetting(
    name="TRITON_STARTUP_TIMEOUT_S",
    doc="How long start-up waits for Triton and the model to be ready, seconds.",
    services=(ENCODER,),
    default=60.0,
    minimum=0.0,
)
TRITON_CHANNEL_MAX_AGE_S = FloatSetting(
    name="TRITON_CHANNEL_MAX_AGE_S",
    doc=(
        "The channel to Triton (round robin over every address the name resolves to) is made anew this "
        "often, seconds, so Triton pods added since get calls; the old one is closed at its calls' deadline "
        "(0: never)."
    ),
    services=(ENCODER,),
    default=300.0,
    minimum=0.0,
)
BATCH_MAX_IMAGES = IntSetting(
    name="BATCH_MAX_IMAGES",
    doc="Concurrent requests are coalesced into backend calls of up to this many images "
    "([performance.md](performance.md)).",
    services=(ENCODER,),
    default=16,
    minimum=1,
)
BATCH_MAX_WAIT_MS = FloatSetting(
    name="BATCH_MAX_WAIT_MS",
    doc="Milliseconds a batch waits at most for companions when the backend is idle under concurrent load.",
    services=(ENCODER,),
    default=2.0,
    minimum=0.0,
)

SETTINGS: tuple[Setting[object], ...] = (
    MODEL_PATH,
    MAX_REQUEST_IMAGES,
    MAX_QUEUED_IMAGES,
    ORT_THREADS,
    ORT_PROVIDERS,
    TRITON_URL,
    TRITON_MODEL_NAME,
    TRITON_MODEL_VERSION,
    TRITON_TIMEOUT_S,
    TRITON_STARTUP_TIMEOUT_S,
    TRITON_CHANNEL_MAX_AGE_S,
    BATCH_MAX_IMAGES,
    BATCH_MAX_WAIT_MS,
)
