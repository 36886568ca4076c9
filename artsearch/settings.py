"""Every setting is declared once, in code, with its doc: a `Setting` names the environment variable, its
type, default, lower bound, the services that read it and its old names. Reads go through the declaration
(`SETTING.read(env)`), which parses with `Env` (a malformed value: ConfigError naming the variable, and the
service refuses to start); docs/architecture.md's configuration table is generated from the declarations
(`make settings-doc`, artsearch_tools/settings_doc.py; a test fails when the committed table drifts).

Renamed settings keep their old names for one release: when only an old name is set its value is used and
one warning per process is logged naming the new variable; when the new and an old name are both set to
different values the service refuses to start (which one was meant is ambiguous).

This module also declares the settings the core itself reads, shared by several services; each service
declares its own in services/<name>/settings.py.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from artsearch.env import REQUIRED, ConfigError, Env

log = logging.getLogger(__name__)

T = TypeVar("T")

# Who reads a setting, as the docs name them.
ENCODER, SEARCH, INFLUENCE, GATEWAY, INGEST = "encoder", "search", "influence", "gateway", "artsearch ingest"
GRPC_SERVICES = (ENCODER, SEARCH, INFLUENCE)
ALL_SERVICES = (*GRPC_SERVICES, GATEWAY)

_NOT_GIVEN = object()
_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class Setting(ABC, Generic[T]):
    """One environment variable: its name, what it means (one sentence), who reads it, its default (REQUIRED:
    must be set), old names still accepted, and how the docs show a default computed at start-up."""

    name: str
    doc: str
    services: tuple[str, ...]
    default: object = REQUIRED
    deprecated_names: tuple[str, ...] = ()
    default_doc: str | None = None

    def read(self, env: Env, default: object = _NOT_GIVEN) -> T:
        """The typed value; `default` replaces the declared one where it is computed (e.g. from another
        setting). ConfigError when malformed, out of bounds, required and unset, or set ambiguously."""
        source = self.source_name(env)
        return self._parse(env, source, self.default if default is _NOT_GIVEN else default)

    def raw(self, env: Env) -> str | None:
        """The text as set (through an old name too), unparsed; None when unset."""
        return env.raw(self.source_name(env))

    def source_name(self, env: Env) -> str:
        """The variable to read: the new name, or the old one that alone is set (logged once)."""
        new_value = env.raw(self.name)
        old_set = [(old, env.raw(old)) for old in self.deprecated_names if env.raw(old) is not None]
        values = {value for _, value in old_set} | ({new_value} if new_value is not None else set())
        if len(values) > 1:
            olds = " and ".join(old for old, _ in old_set)
            raise ConfigError(
                f"{self.name} and {olds} are set to different values: {olds} is the old name of "
                f"{self.name}; set only {self.name}"
            )
        for old, _ in old_set:
            warn_deprecated(old, self.name)
        if new_value is None and old_set:
            return old_set[0][0]
        return self.name

    @property
    def shown_default(self) -> str:
        """The default as the docs show it."""
        if self.default_doc is not None:
            return self.default_doc
        if self.default is REQUIRED:
            return "**required**"
        return _shown(self.default)

    @abstractmethod
    def _parse(self, env: Env, name: str, default: object) -> T: ...


def _shown(value: object) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def warn_deprecated(old: str, new: str) -> None:
    """One log line per process for each old name in use."""
    with _warned_lock:
        if old in _warned:
            return
        _warned.add(old)
    log.warning(
        "environment variable %s is deprecated: set %s instead (the old name is still read for one release)",
        old,
        new,
        extra={"deprecated_setting": old, "setting": new},
    )


@dataclass(frozen=True, kw_only=True)
class StrSetting(Setting[str]):
    def _parse(self, env: Env, name: str, default: object) -> str:
        return env.str(name, default)


@dataclass(frozen=True, kw_only=True)
class OptionalSetting(Setting["str | None"]):
    """Text, or None when unset (no default)."""

    default: object = None

    def _parse(self, env: Env, name: str, default: object) -> str | None:
        value = env.optional(name)
        return value if value is not None else default  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class DirectorySetting(Setting["Path | None"]):
    """An existing directory, resolved; None when unset."""

    default: object = None

    def _parse(self, env: Env, name: str, default: object) -> Path | None:
        return env.optional_directory(name)


@dataclass(frozen=True, kw_only=True)
class IntSetting(Setting[int]):
    minimum: int | None = None

    def _parse(self, env: Env, name: str, default: object) -> int:
        return env.int(name, default, minimum=self.minimum)


@dataclass(frozen=True, kw_only=True)
class FloatSetting(Setting[float]):
    minimum: float | None = None

    def _parse(self, env: Env, name: str, default: object) -> float:
        return env.float(name, default, minimum=self.minimum)


@dataclass(frozen=True, kw_only=True)
class BoolSetting(Setting[bool]):
    default: object = False

    def _parse(self, env: Env, name: str, default: object) -> bool:
        return env.bool(name, bool(default))


# The settings the core reads, shared by the services.

LISTEN_HOST = StrSetting(
    name="ARTSEARCH_HOST",
    doc="Address the gRPC service listens on.",
    services=GRPC_SERVICES,
    default="127.0.0.1",
    deprecated_names=("HOST",),
)
LISTEN_PORT = IntSetting(
    name="ARTSEARCH_PORT",
    doc="Port the gRPC service listens on (0: any free port).",
    services=GRPC_SERVICES,
    minimum=0,
    default_doc="50051 / 50052 / 50053 (encoder / search / influence)",
    deprecated_names=("PORT",),
)
METRICS_PORT = IntSetting(
    name="METRICS_PORT",
    doc="Port of the Prometheus metrics of a gRPC service (0: none; the gateway serves `/metrics` itself).",
    services=GRPC_SERVICES,
    default=0,
    minimum=0,
)
LOG_LEVEL = StrSetting(
    name="LOG_LEVEL",
    doc="Level of the JSON log lines: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    services=ALL_SERVICES,
    default="INFO",
)
SERVICE_TOKEN = OptionalSetting(
    name="SERVICE_TOKEN",
    doc=(
        "Comma-separated tokens of at least 32 characters (several for rotation): encoder, search and "
        "influence refuse calls without one (`UNAUTHENTICATED`, health checks excepted); every client sends "
        'the first ([deployment.md](deployment.md), "Transport security").'
    ),
    services=(*ALL_SERVICES, INGEST),
    default_doc="unset (no authentication)",
)
GRPC_REFLECTION = BoolSetting(
    name="GRPC_REFLECTION",
    doc="gRPC server reflection (prod turns it off).",
    services=GRPC_SERVICES,
    default=True,
)
OTEL_ENABLED = BoolSetting(
    name="OTEL_ENABLED",
    doc="`true` turns OpenTelemetry tracing on in that process (OTLP/gRPC exporter).",
    services=ALL_SERVICES,
    default=False,
)
OTEL_EXPORTER_OTLP_ENDPOINT = OptionalSetting(
    name="OTEL_EXPORTER_OTLP_ENDPOINT",
    doc=(
        "The OTLP/gRPC collector; the exporter reads its own `OTEL_EXPORTER_OTLP_INSECURE`, `_HEADERS`, "
        "`_CERTIFICATE`."
    ),
    services=ALL_SERVICES,
    default_doc="the exporter's (`http://localhost:4317`)",
)
OTEL_SERVICE_NAME = StrSetting(
    name="OTEL_SERVICE_NAME",
    doc="The `service.name` of the spans.",
    services=ALL_SERVICES,
    default_doc="`artsearch-<service>` (`artsearch-gateway`, `artsearch-encoder`, ...)",
)
OTEL_TRACES_SAMPLER_ARG = FloatSetting(
    name="OTEL_TRACES_SAMPLER_ARG",
    doc="Fraction of new traces kept, 0 to 1 (parent-based: a sampled caller keeps its children).",
    services=ALL_SERVICES,
    default=1.0,
    minimum=0.0,
)
MAX_IMAGE_PIXELS = IntSetting(
    name="MAX_IMAGE_PIXELS",
    doc=(
        "Largest image accepted, in pixels, refused from its header; times 4 bytes it is also the memory the "
        "encoder decodes pictures in at once, and the gateway's budget of thumbnail decodes."
    ),
    services=(ENCODER, GATEWAY),
    default=50_000_000,
    minimum=64,
)
SEARCH_COLLECTION = StrSetting(
    name="SEARCH_COLLECTION",
    doc="Default collection (or alias) searched and written: 1 to 64 of A-Z a-z 0-9 _ -.",
    services=(SEARCH, GATEWAY, INGEST),
    default="artworks",
)
TEST_CRASH_AT = OptionalSetting(
    name="ARTSEARCH_TEST_CRASH_AT",
    doc="Durability tests only: the crash point (`name` or `name@n`) at which the process kills itself.",
    services=(SEARCH, INFLUENCE),
)
ARTISTS_CSV = OptionalSetting(
    name="ARTSEARCH_ARTISTS_CSV",
    doc="The curated artist table that artist names are normalised with.",
    services=(GATEWAY, INGEST),
    default_doc="the influence service's `data/artists.csv`",
)

SETTINGS: tuple[Setting[object], ...] = (
    LISTEN_HOST,
    LISTEN_PORT,
    METRICS_PORT,
    LOG_LEVEL,
    SERVICE_TOKEN,
    GRPC_REFLECTION,
    OTEL_ENABLED,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_SERVICE_NAME,
    OTEL_TRACES_SAMPLER_ARG,
    MAX_IMAGE_PIXELS,
    SEARCH_COLLECTION,
    TEST_CRASH_AT,
    ARTISTS_CSV,
)
