"""Gateway settings, from environment variables only."""

from __future__ import annotations

from dataclasses import dataclass

from artsearch.config import DEFAULT_PORTS, Env
from services.gateway.admin import AdminSettings
from services.gateway.media import MediaSettings


@dataclass(frozen=True)
class GatewayConfig:
    host: str
    port: int
    encoder_addr: str
    search_addr: str
    influence_addr: str
    # Deadline of each downstream gRPC call, seconds.
    encode_timeout_s: float
    search_timeout_s: float
    influence_timeout_s: float
    max_upload_bytes: int
    default_k: int
    max_k: int
    default_pool: int
    max_pool: int
    collection: str
    log_level: str
    admin: AdminSettings
    media: MediaSettings

    @classmethod
    def from_env(cls, env: Env | None = None) -> GatewayConfig:
        env = env or Env()
        return cls(
            host=env.str("ARTSEARCH_HOST", "127.0.0.1"),
            port=env.int("ARTSEARCH_PORT", DEFAULT_PORTS["gateway"], minimum=0),
            encoder_addr=env.str("ENCODER_ADDR"),
            search_addr=env.str("SEARCH_ADDR"),
            influence_addr=env.str("INFLUENCE_ADDR"),
            encode_timeout_s=env.float("ENCODE_TIMEOUT_S", 10.0, minimum=0.01),
            search_timeout_s=env.float("SEARCH_TIMEOUT_S", 3.0, minimum=0.01),
            influence_timeout_s=env.float("INFLUENCE_TIMEOUT_S", 1.0, minimum=0.01),
            max_upload_bytes=env.int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1),
            default_k=env.int("DEFAULT_K", 25, minimum=1),
            max_k=env.int("MAX_K", 100, minimum=1),
            default_pool=env.int("DEFAULT_POOL", 100, minimum=1),
            max_pool=env.int("MAX_POOL", 1000, minimum=1),
            collection=env.str("SEARCH_COLLECTION", "artworks"),
            log_level=env.str("LOG_LEVEL", "INFO"),
            admin=AdminSettings.from_env(env),
            media=MediaSettings.from_env(env),
        )
