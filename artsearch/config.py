"""Configuration from environment variables only, failing fast on a missing or malformed one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the service refuses to start."""


_MISSING = object()


class Env:
    """Typed reads of environment variables (or any mapping, for tests)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def str(self, name: str, default: str | object = _MISSING) -> str:
        value = self._environ.get(name)
        if value is None or value == "":
            if default is _MISSING:
                raise ConfigError(f"environment variable {name} is required but not set")
            return default  # type: ignore[return-value]
        return value

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value if value else None

    def optional_directory(self, name: str) -> Path | None:
        """The existing directory `name` names, resolved; None when unset; ConfigError when it is not one."""
        value = self.optional(name)
        if value is None:
            return None
        if not Path(value).is_dir():
            raise ConfigError(f"{name}={value!r} is not a directory")
        return Path(value).resolve()

    def int(self, name: str, default: int | object = _MISSING, *, minimum: int | None = None) -> int:
        raw = self.str(name, _MISSING if default is _MISSING else str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"environment variable {name}={value} must be >= {minimum}")
        return value

    def float(self, name: str, default: float | object = _MISSING, *, minimum: float | None = None) -> float:
        raw = self.str(name, _MISSING if default is _MISSING else str(default))
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"environment variable {name}={raw!r} is not a number") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"environment variable {name}={value} must be >= {minimum}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.str(name, "true" if default else "false").strip().lower()
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"environment variable {name}={raw!r} is not a boolean")


# Defaults shared by the services, the launcher and the deployment manifests.
DEFAULT_PORTS = {"encoder": 50051, "search": 50052, "influence": 50053, "gateway": 8080}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


SERVICE_TOKEN_VARIABLE = "SERVICE_TOKEN"
MIN_SERVICE_TOKEN_CHARS = 32


@dataclass(frozen=True)
class ServiceAuth:
    """SERVICE_TOKEN (comma-separated: the tokens a server accepts; a client sends the first) and
    GRPC_REFLECTION (whether a server offers reflection). Why and how: artsearch/service_auth.py."""

    tokens: tuple[str, ...] = ()
    reflection: bool = True

    @classmethod
    def from_env(cls, env: Env) -> ServiceAuth:
        return cls(tokens=_service_tokens(env), reflection=env.bool("GRPC_REFLECTION", True))

    @property
    def client_token(self) -> str | None:
        return self.tokens[0] if self.tokens else None


def _service_tokens(env: Env) -> tuple[str, ...]:
    raw = env.optional(SERVICE_TOKEN_VARIABLE)
    if raw is None:
        return ()
    tokens = tuple(token.strip() for token in raw.split(","))
    for position, token in enumerate(tokens, start=1):
        if len(token) < MIN_SERVICE_TOKEN_CHARS:
            raise ConfigError(
                f"{SERVICE_TOKEN_VARIABLE} entry {position}: at least {MIN_SERVICE_TOKEN_CHARS} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
    return tokens


@dataclass(frozen=True)
class ListenSettings:
    """Where a gRPC service listens, how it reports and whom it answers: HOST, PORT, METRICS_PORT,
    LOG_LEVEL, and SERVICE_TOKEN / GRPC_REFLECTION (artsearch/service_auth.py)."""

    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int | None = None
    log_level: str = "INFO"
    auth: ServiceAuth = field(default_factory=ServiceAuth)

    @classmethod
    def from_env(cls, env: Env, default_port: int) -> ListenSettings:
        log_level = env.str("LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL={log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        return cls(
            host=env.str("HOST", "127.0.0.1"),
            port=env.int("PORT", default_port, minimum=0),
            metrics_port=env.int("METRICS_PORT", 0, minimum=0) or None,
            log_level=log_level,
            auth=ServiceAuth.from_env(env),
        )

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"
