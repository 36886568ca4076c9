"""Gateway settings, from environment variables only (declared in services/gateway/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artsearch import settings as core
from artsearch.config import ConfigError, Env
from artsearch.settings import OptionalSetting
from services.gateway import settings as declared
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
    # A photo whose own best match scores at least this is answered from the whole photo alone.
    whole_photo_confident_score: float = 0.7
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
    # Queries in one POST /v1/search/batch (services/gateway/batch_search.py).
    search_batch_max_queries: int = 16

    @classmethod
    def from_env(cls, env: Env | None = None) -> GatewayConfig:
        env = env or Env()
        return cls(
            host=declared.GATEWAY_HOST.read(env),
            port=declared.GATEWAY_PORT.read(env),
            encoder_addr=declared.ENCODER_ADDR.read(env),
            search_addr=declared.SEARCH_ADDR.read(env),
            influence_addr=declared.INFLUENCE_ADDR.read(env),
            encode_timeout_s=declared.ENCODE_TIMEOUT_S.read(env),
            search_timeout_s=declared.SEARCH_TIMEOUT_S.read(env),
            influence_timeout_s=declared.INFLUENCE_TIMEOUT_S.read(env),
            max_upload_bytes=declared.MAX_UPLOAD_BYTES.read(env),
            max_image_pixels=core.MAX_IMAGE_PIXELS.read(env),
            default_k=declared.DEFAULT_K.read(env),
            max_k=declared.MAX_K.read(env),
            default_pool=declared.DEFAULT_POOL.read(env),
            max_pool=declared.MAX_POOL.read(env),
            collection=core.SEARCH_COLLECTION.read(env),
            log_level=core.LOG_LEVEL.read(env),
            style_neighbours=declared.STYLE_NEIGHBOURS.read(env),
            url_fetch=_fetch_settings(env),
            admin=AdminSettings.from_env(env),
            media=MediaSettings.from_env(env),
            telemetry=TelemetrySettings.from_env(env),
            clusters=ClusterSettings.from_env(env),
            evaluation_pictures=EvaluationPictureSettings.from_env(env),
            model_alias_ttl_s=declared.MODEL_ALIAS_TTL_S.read(env),
            public_limits=PublicLimitSettings.from_env(env),
            style_min_art_neighbours=declared.STYLE_MIN_ART_NEIGHBOURS.read(env),
            whole_photo_confident_score=declared.WHOLE_PHOTO_CONFIDENT_SCORE.read(env),
            query_cache_entries=declared.QUERY_CACHE_ENTRIES.read(env),
            query_cache_ttl_s=declared.QUERY_CACHE_TTL_S.read(env),
            similar_cache_entries=declared.SIMILAR_CACHE_ENTRIES.read(env),
            similar_cache_ttl_s=declared.SIMILAR_CACHE_TTL_S.read(env),
            search_cursor_entries=declared.SEARCH_CURSOR_ENTRIES.read(env),
            search_cursor_ttl_s=declared.SEARCH_CURSOR_TTL_S.read(env),
            search_batch_max_queries=declared.SEARCH_BATCH_MAX_QUERIES.read(env),
        )


def _fetch_settings(env: Env) -> FetchSettings:
    return FetchSettings(
        timeout_s=declared.URL_FETCH_TIMEOUT_S.read(env),
        max_bytes=declared.URL_FETCH_MAX_BYTES.read(env, declared.MAX_UPLOAD_BYTES.read(env)),
        max_redirects=declared.URL_FETCH_MAX_REDIRECTS.read(env),
        # Tests only: fetch from loopback and private networks (the test servers run on 127.0.0.1).
        allow_private=declared.URL_FETCH_ALLOW_PRIVATE.read(env),
        ca_file=_existing_file(env, declared.URL_FETCH_CA_FILE),
        dns_timeout_s=declared.URL_FETCH_DNS_TIMEOUT_S.read(env),
    )


def _existing_file(env: Env, setting: OptionalSetting) -> str | None:
    path = setting.read(env)
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"environment variable {setting.name}={path} is not a file")
    return path
