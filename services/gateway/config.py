"""Gateway settings, from environment variables only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artsearch.config import DEFAULT_PORTS, ConfigError, Env
from services.gateway.admin_settings import AdminSettings
from services.gateway.clusters import ClusterSettings
from services.gateway.evaluation_pictures import EvaluationPictureSettings
from services.gateway.image_fetch import FetchSettings
from services.gateway.media import MediaSettings
from services.gateway.public_limits import PublicLimitSettings
from services.gateway.telemetry import TelemetrySettings


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
    # Uploads and fetched images with more pixels than this are refused from their header (413).
    max_image_pixels: int
    default_k: int
    max_k: int
    default_pool: int
    max_pool: int
    collection: str
    log_level: str
    # Nearest neighbours whose style labels vote in a style prediction.
    style_neighbours: int
    # Images fetched from a client's URL: deadline, size limit, redirects, address policy.
    url_fetch: FetchSettings
    admin: AdminSettings
    media: MediaSettings
    telemetry: TelemetrySettings
    clusters: ClusterSettings
    evaluation_pictures: EvaluationPictureSettings
    # Seconds the search service's alias list is kept: an image query made by model V searches the model
    # alias `<collection>__V` when it exists (artsearch/model_aliases.py), else `collection`.
    model_alias_ttl_s: float = 5.0
    # Per-client concurrency and rate limits on the public image routes (services/gateway/public_limits.py).
    public_limits: PublicLimitSettings = field(default_factory=PublicLimitSettings)
    # A search whose nearest `style_neighbours` candidates hold fewer art-style labels than this (the rest
    # from catalogues whose labels are categories) searches again for art-style neighbours to vote.
    style_min_art_neighbours: int = 3
    # Encoder answers kept per picture (services/gateway/query_cache.py): how many, and how long.
    query_cache_entries: int = 256
    query_cache_ttl_s: float = 300.0
    # Ranked answers of GET /v1/artworks/{id}/similar, and the ranked pools the search cursors page through
    # (services/gateway/answer_cache.py): how many, and how long (also the staleness bound for catalogue
    # writes this gateway does not see).
    similar_cache_entries: int = 256
    similar_cache_ttl_s: float = 60.0
    search_cursor_entries: int = 256
    search_cursor_ttl_s: float = 600.0

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
            max_image_pixels=env.int("MAX_IMAGE_PIXELS", 50_000_000, minimum=64),
            default_k=env.int("DEFAULT_K", 25, minimum=1),
            max_k=env.int("MAX_K", 100, minimum=1),
            default_pool=env.int("DEFAULT_POOL", 100, minimum=1),
            max_pool=env.int("MAX_POOL", 1000, minimum=1),
            collection=env.str("SEARCH_COLLECTION", "artworks"),
            log_level=env.str("LOG_LEVEL", "INFO"),
            style_neighbours=env.int("STYLE_NEIGHBOURS", 10, minimum=1),
            url_fetch=_fetch_settings(env),
            admin=AdminSettings.from_env(env),
            media=MediaSettings.from_env(env),
            telemetry=TelemetrySettings.from_env(env),
            clusters=ClusterSettings.from_env(env),
            evaluation_pictures=EvaluationPictureSettings.from_env(env),
            model_alias_ttl_s=env.float("MODEL_ALIAS_TTL_S", 5.0, minimum=0.0),
            public_limits=PublicLimitSettings.from_env(env),
            style_min_art_neighbours=env.int("STYLE_MIN_ART_NEIGHBOURS", 3, minimum=0),
            query_cache_entries=env.int("QUERY_CACHE_ENTRIES", 256, minimum=0),
            query_cache_ttl_s=env.float("QUERY_CACHE_TTL_S", 300.0, minimum=0.0),
            similar_cache_entries=env.int("SIMILAR_CACHE_ENTRIES", 256, minimum=0),
            similar_cache_ttl_s=env.float("SIMILAR_CACHE_TTL_S", 60.0, minimum=0.0),
            search_cursor_entries=env.int("SEARCH_CURSOR_ENTRIES", 256, minimum=0),
            search_cursor_ttl_s=env.float("SEARCH_CURSOR_TTL_S", 600.0, minimum=0.0),
        )


def _fetch_settings(env: Env) -> FetchSettings:
    return FetchSettings(
        timeout_s=env.float("URL_FETCH_TIMEOUT_S", 10.0, minimum=0.1),
        max_bytes=env.int("URL_FETCH_MAX_BYTES", env.int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024), minimum=1),
        max_redirects=env.int("URL_FETCH_MAX_REDIRECTS", 3, minimum=0),
        # Tests only: fetch from loopback and private networks (the test servers run on 127.0.0.1).
        allow_private=env.bool("URL_FETCH_ALLOW_PRIVATE", False),
        ca_file=_existing_file(env, "URL_FETCH_CA_FILE"),
        dns_timeout_s=env.float("URL_FETCH_DNS_TIMEOUT_S", 3.0, minimum=0.01),
    )


def _existing_file(env: Env, name: str) -> str | None:
    path = env.optional(name)
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"environment variable {name}={path} is not a file")
    return path
