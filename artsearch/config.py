"""Configuration from environment variables only, failing fast on a missing or malformed one: the settings
every gRPC service shares (declared in artsearch/settings.py; Env and ConfigError are in artsearch/env.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from artsearch import settings
from artsearch.env import ConfigError, Env

__all__ = ["DEFAULT_PORTS", "LOG_LEVELS", "ConfigError", "Env", "ListenSettings", "ServiceAuth"]


# Defaults shared by the services, the launcher and the deployment manifests.
DEFAULT_PORTS = {"encoder": 50051, "search": 50052, "influence": 50053, "gateway": 8080}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


SERVICE_TOKEN_VARIABLE = settings.SERVICE_TOKEN.name
MIN_SERVICE_TOKEN_CHARS = 32


@dataclass(frozen=True)
class ServiceAuth:
    """SERVICE_TOKEN (comma-separated: the tokens a server accepts; a client sends the first) and
    GRPC_REFLECTION (whether a server offers reflection). Why and how: artsearch/service_auth.py."""

    tokens: tuple[str, ...] = ()
    reflection: bool = True

    @classmethod
    def from_env(cls, env: Env) -> ServiceAuth:
        return cls(tokens=_service_tokens(env), reflection=settings.GRPC_REFLECTION.read(env))

    @property
    def client_token(self) -> str | None:
        return self.tokens[0] if self.tokens else None


def _service_tokens(env: Env) -> tuple[str, ...]:
    raw = settings.SERVICE_TOKEN.read(env)
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
    """Where a gRPC service listens, how it reports and whom it answers: ARTSEARCH_HOST, ARTSEARCH_PORT,
    METRICS_PORT, LOG_LEVEL, and SERVICE_TOKEN / GRPC_REFLECTION (artsearch/service_auth.py)."""

    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int | None = None
    log_level: str = "INFO"
    auth: ServiceAuth = field(default_factory=ServiceAuth)

    @classmethod
    def from_env(cls, env: Env, default_port: int) -> ListenSettings:
        log_level = settings.LOG_LEVEL.read(env).upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL={log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        return cls(
            host=settings.LISTEN_HOST.read(env),
            port=settings.LISTEN_PORT.read(env, default_port),
            metrics_port=settings.METRICS_PORT.read(env) or None,
            log_level=log_level,
            auth=ServiceAuth.from_env(env),
        )

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"
