"""The gateway's settings, each declared once (artsearch/settings.py: how declarations are read and
documented); services/gateway/config.py and the parts it assembles (admin_settings, media, clusters,
public_limits, evaluation_pictures, telemetry, clients) read them into a GatewayConfig at start-up."""

from __future__ import annotations

from artsearch.settings import (
    GATEWAY,
    BoolSetting,
    DirectorySetting,
    FloatSetting,
    IntSetting,
    OptionalSetting,
    Setting,
    StrSetting,
)

_GW = (GATEWAY,)

# Listening: the same names as the gRPC services' (artsearch/settings.py), which the gateway never read by
# their old names HOST / PORT, so it has none.
GATEWAY_HOST = StrSetting(
    name="ARTSEARCH_HOST",
    doc="Address the gateway's HTTP server listens on.",
    services=_GW,
    default="127.0.0.1",
)
GATEWAY_PORT = IntSetting(
    name="ARTSEARCH_PORT", doc="Port of the gateway's HTTP server.", services=_GW, default=8080, minimum=0
)

# Downstream services.
ENCODER_ADDR = StrSetting(
    name="ENCODER_ADDR",
    doc="The encoder: `host:port` or `dns:///headless-service:port` (round robin over pods).",
    services=(GATEWAY,),
)
SEARCH_ADDR = StrSetting(
    name="SEARCH_ADDR",
    doc="The search service: `host:port` or `dns:///headless-service:port` (round robin over pods).",
    services=(GATEWAY,),
)
INFLUENCE_ADDR = StrSetting(
    name="INFLUENCE_ADDR",
    doc="The influence service: `host:port` or `dns:///headless-service:port` (round robin over pods).",
    services=(GATEWAY,),
)
ENCODE_TIMEOUT_S = FloatSetting(
    name="ENCODE_TIMEOUT_S",
    doc="Deadline of each encoder call, seconds.",
    services=_GW,
    default=10.0,
    minimum=0.01,
)
SEARCH_TIMEOUT_S = FloatSetting(
    name="SEARCH_TIMEOUT_S",
    doc="Deadline of each search call, seconds.",
    services=_GW,
    default=3.0,
    minimum=0.01,
)
INFLUENCE_TIMEOUT_S = FloatSetting(
    name="INFLUENCE_TIMEOUT_S",
    doc="Deadline of each influence call, seconds.",
    services=_GW,
    default=1.0,
    minimum=0.01,
)
MODEL_ALIAS_TTL_S = FloatSetting(
    name="MODEL_ALIAS_TTL_S",
    doc=(
        "Seconds the search service's alias list is kept for per-model routing of picture searches (0: asked "
        'for every search; [search.md](search.md), "Model aliases").'
    ),
    services=_GW,
    default=5.0,
    minimum=0.0,
)

# Request limits.
MAX_UPLOAD_BYTES = IntSetting(
    name="MAX_UPLOAD_BYTES",
    doc="Largest accepted image file, bytes (the upload limit; 413 beyond).",
    services=_GW,
    default=20 * 1024 * 1024,
    minimum=1,
    default_doc="20971520 (20 MiB)",
)
DEFAULT_K = IntSetting(
    name="DEFAULT_K", doc="Results of a search that gives no `k`.", services=_GW, default=25, minimum=1
)
MAX_K = IntSetting(
    name="MAX_K", doc="Largest `k` a search may ask for.", services=_GW, default=100, minimum=1
)
DEFAULT_POOL = IntSetting(
    name="DEFAULT_POOL",
    doc="Visual candidates re-ranked by influence when a search gives no `pool`.",
    services=_GW,
    default=100,
    minimum=1,
)
MAX_POOL = IntSetting(
    name="MAX_POOL", doc="Largest `pool` a search may ask for.", services=_GW, default=1000, minimum=1
)
STYLE_NEIGHBOURS = IntSetting(
    name="STYLE_NEIGHBOURS",
    doc="Nearest neighbours whose style labels vote in a style prediction.",
    services=_GW,
    default=10,
    minimum=1,
)
STYLE_MIN_ART_NEIGHBOURS = IntSetting(
    name="STYLE_MIN_ART_NEIGHBOURS",
    doc=(
        "Fewer art-style labels than this among a search's nearest `STYLE_NEIGHBOURS`: a second, filtered "
        "search finds art-style neighbours to vote (0: never)."
    ),
    services=_GW,
    default=3,
    minimum=0,
)
WHOLE_PHOTO_CONFIDENT_SCORE = FloatSetting(
    name="WHOLE_PHOTO_CONFIDENT_SCORE",
    doc=(
        "A photo whose own best match scores at least this visual similarity (or up to 0.05 below it, "
        "leading the next artwork by 0.07) is answered from the whole photo alone: the painting the encoder "
        'locates in it is neither waited for nor searched (docs/gateway.md, "Visitor photos"; above 1.05: '
        "always both)."
    ),
    services=_GW,
    default=0.7,
    minimum=0.0,
)

# Caches.
QUERY_CACHE_ENTRIES = IntSetting(
    name="QUERY_CACHE_ENTRIES",
    doc=(
        "Encoder answers kept per picture (SHA-256 of its bytes): the same picture sent again is not encoded "
        'again (0: every picture encoded; [gateway.md](gateway.md), "Pictures sent again").'
    ),
    services=_GW,
    default=256,
    minimum=0,
)
QUERY_CACHE_TTL_S = FloatSetting(
    name="QUERY_CACHE_TTL_S",
    doc="Seconds an encoder answer is kept.",
    services=_GW,
    default=300.0,
    minimum=0.0,
)
SIMILAR_CACHE_ENTRIES = IntSetting(
    name="SIMILAR_CACHE_ENTRIES",
    doc=(
        "`/similar` ranked answers kept, cleared by every catalogue write through this gateway (0: off; "
        '[gateway.md](gateway.md), "Similar answers kept").'
    ),
    services=_GW,
    default=256,
    minimum=0,
)
SIMILAR_CACHE_TTL_S = FloatSetting(
    name="SIMILAR_CACHE_TTL_S",
    doc="Seconds a `/similar` answer is kept: the staleness bound for writes this gateway does not see.",
    services=_GW,
    default=60.0,
    minimum=0.0,
)
SEARCH_CURSOR_ENTRIES = IntSetting(
    name="SEARCH_CURSOR_ENTRIES",
    doc=(
        "Ranked results kept for the search cursors (`next_cursor`; 0: no cursors; "
        '[gateway.md](gateway.md), "Pages by cursor").'
    ),
    services=_GW,
    default=256,
    minimum=0,
)
SEARCH_CURSOR_TTL_S = FloatSetting(
    name="SEARCH_CURSOR_TTL_S",
    doc="Seconds the ranked results of a search cursor are kept.",
    services=_GW,
    default=600.0,
    minimum=0.0,
)
SEARCH_BATCH_MAX_QUERIES = IntSetting(
    name="SEARCH_BATCH_MAX_QUERIES",
    doc=(
        "Queries (images or artwork ids) one `POST /v1/search/batch` may carry (more: 413 "
        '`too_many_queries`; [gateway.md](gateway.md), "Batch search").'
    ),
    services=_GW,
    default=16,
    minimum=1,
)

# Images fetched by URL ([gateway.md](gateway.md)).
URL_FETCH_TIMEOUT_S = FloatSetting(
    name="URL_FETCH_TIMEOUT_S",
    doc="Deadline of fetching an image URL, seconds.",
    services=_GW,
    default=10.0,
    minimum=0.1,
)
URL_FETCH_MAX_BYTES = IntSetting(
    name="URL_FETCH_MAX_BYTES",
    doc="Largest image fetched by URL, bytes.",
    services=_GW,
    minimum=1,
    default_doc="`MAX_UPLOAD_BYTES`",
)
URL_FETCH_MAX_REDIRECTS = IntSetting(
    name="URL_FETCH_MAX_REDIRECTS",
    doc="Redirects followed (each re-vetted).",
    services=_GW,
    default=3,
    minimum=0,
)
URL_FETCH_ALLOW_PRIVATE = BoolSetting(
    name="URL_FETCH_ALLOW_PRIVATE",
    doc="Tests only: allow loopback and private image URLs (metadata addresses stay refused).",
    services=_GW,
    default=False,
)
URL_FETCH_CA_FILE = OptionalSetting(
    name="URL_FETCH_CA_FILE",
    doc="CA bundle file image URLs' TLS certificates are checked with.",
    services=_GW,
    default_doc="system CAs",
)
URL_FETCH_DNS_TIMEOUT_S = FloatSetting(
    name="URL_FETCH_DNS_TIMEOUT_S",
    doc="Bound on the name lookup of an image URL, seconds (own 4 threads; 422 `url_timeout`).",
    services=_GW,
    default=3.0,
    minimum=0.01,
)

# Images and thumbnails served (services/gateway/media.py).
IMAGE_ROOT = DirectorySetting(
    name="IMAGE_ROOT",
    doc=(
        "Folder with one sub-folder per catalogue: images served at `/v1/artworks/{id}/image`; images of "
        "added artworks are written to `IMAGE_ROOT/<catalogue>/<id>.<ext>` (unset: only http(s) images are "
        "shown, and an added artwork is encoded and indexed but its image not kept)."
    ),
    services=_GW,
)
THUMBNAIL_CACHE_SIZE = IntSetting(
    name="THUMBNAIL_CACHE_SIZE",
    doc="Thumbnails kept in memory (0: no cache).",
    services=_GW,
    default=1024,
    minimum=0,
)
THUMBNAIL_MAX_SIZE = IntSetting(
    name="THUMBNAIL_MAX_SIZE",
    doc="Largest thumbnail size offered (of 64/128/256/512); sources over `MAX_IMAGE_PIXELS` get none.",
    services=_GW,
    default=512,
    minimum=64,
)
THUMBNAIL_CONCURRENCY = IntSetting(
    name="THUMBNAIL_CONCURRENCY",
    doc="Thumbnails made at once (each holds a decoded image).",
    services=_GW,
    default=4,
    minimum=1,
)
IMAGE_CACHE_MAX_AGE_S = IntSetting(
    name="IMAGE_CACHE_MAX_AGE_S",
    doc="Cache-Control max-age of images and thumbnails, seconds.",
    services=_GW,
    default=86_400,
    minimum=0,
)
EVALUATION_DIR = DirectorySetting(
    name="EVALUATION_DIR",
    doc="Folder of the evaluation's PNG pictures shown in the web UI (`make demo`: `docs/img`; unset: off).",
    services=_GW,
)
EVALUATION_CACHE_MAX_AGE_S = IntSetting(
    name="EVALUATION_CACHE_MAX_AGE_S",
    doc="Cache-Control max-age of the evaluation's pictures, seconds.",
    services=_GW,
    default=3600,
    minimum=0,
)

# The admin API ([admin.md](admin.md)).
ADMIN_API_KEYS = OptionalSetting(
    name="ADMIN_API_KEYS",
    doc="`name:sha256hex,...`: hashed admin keys (unset: admin writes answer 403).",
    services=_GW,
)
ALLOW_DEV_ADMIN_KEY = BoolSetting(
    name="ALLOW_DEV_ADMIN_KEY",
    doc="Accept the published development admin key (compose and the dev overlay set it; prod refuses it).",
    services=_GW,
    default=False,
)
ADMIN_RATE_LIMIT_PER_MIN = FloatSetting(
    name="ADMIN_RATE_LIMIT_PER_MIN",
    doc="Sustained requests per minute per admin key (429 + `Retry-After` beyond).",
    services=_GW,
    default=60.0,
    minimum=0.001,
)
ADMIN_RATE_LIMIT_BURST = IntSetting(
    name="ADMIN_RATE_LIMIT_BURST",
    doc="Requests an admin key may make at once before the sustained rate applies.",
    services=_GW,
    default=20,
    minimum=1,
)
ADMIN_MAX_BATCH_ITEMS = IntSetting(
    name="ADMIN_MAX_BATCH_ITEMS",
    doc="Images per `POST /v1/artworks/batch`.",
    services=_GW,
    default=32,
    minimum=1,
)
ADMIN_DEFAULT_CATALOGUE = StrSetting(
    name="ADMIN_DEFAULT_CATALOGUE",
    doc="Catalogue of an added artwork that names none.",
    services=_GW,
    default="uploads",
)
ADMIN_WRITE_TIMEOUT_S = FloatSetting(
    name="ADMIN_WRITE_TIMEOUT_S",
    doc=(
        "Deadline of each write the admin routes make, seconds (search: upsert, edit, delete; influence: new "
        "artists and influences); their reads keep the query deadlines."
    ),
    services=_GW,
    default=10.0,
    minimum=0.01,
)
ADMIN_AUTH_MAX_FAILURES = IntSetting(
    name="ADMIN_AUTH_MAX_FAILURES",
    doc="Wrong admin keys a client may present in quick succession before 429 `rate_limited` (0: no limit).",
    services=_GW,
    default=10,
    minimum=0,
)
ADMIN_AUTH_FAILURE_WINDOW_S = FloatSetting(
    name="ADMIN_AUTH_FAILURE_WINDOW_S",
    doc="The window of those failures, seconds: afterwards one more try every window / max failures.",
    services=_GW,
    default=60.0,
    minimum=1.0,
)

# Per-client limits ([gateway.md](gateway.md)).
PUBLIC_RATE_PER_MIN = FloatSetting(
    name="PUBLIC_RATE_PER_MIN",
    doc=(
        "Sustained requests per minute per client on the public image routes (`POST /v1/search`, "
        "`POST /v1/predict-style`; 429 `rate_limited` + `Retry-After`; 0: no limit; prod: 120)."
    ),
    services=_GW,
    default=0.0,
    minimum=0.0,
)
PUBLIC_RATE_BURST = IntSetting(
    name="PUBLIC_RATE_BURST",
    doc="Requests a client may make at once on those routes before that rate applies.",
    services=_GW,
    default=20,
    minimum=1,
)
PUBLIC_MAX_CONCURRENT_PER_CLIENT = IntSetting(
    name="PUBLIC_MAX_CONCURRENT_PER_CLIENT",
    doc="Requests one client may have in flight on those routes (0: no limit; prod: 4).",
    services=_GW,
    default=0,
    minimum=0,
)
TRUSTED_PROXIES = StrSetting(
    name="TRUSTED_PROXIES",
    doc=(
        "Comma-separated addresses or CIDRs of proxies whose `X-Forwarded-For` names the client (right-most "
        "untrusted address) for the per-client limits and the admin throttle; empty: the peer address "
        "([gateway.md](gateway.md#load-shedding-and-who-a-client-is))."
    ),
    services=_GW,
    default="",
)
RATE_LIMIT_MAX_CLIENTS = IntSetting(
    name="RATE_LIMIT_MAX_CLIENTS",
    doc="Clients each per-client table (public limits, admin key throttle) keeps (idle ones go first).",
    services=_GW,
    default=100_000,
    minimum=1,
)
CORS_ALLOW_ORIGINS = StrSetting(
    name="CORS_ALLOW_ORIGINS",
    doc="Comma-separated browser origins allowed by CORS (empty: no CORS headers).",
    services=_GW,
    default="",
)

# Browse by cluster (`/v1/clusters`, services/gateway/clusters.py).
CLUSTER_MAX_ARTWORKS = IntSetting(
    name="CLUSTER_MAX_ARTWORKS",
    doc="Largest catalogue clustered (422 `catalogue_too_large` beyond).",
    services=_GW,
    default=20_000,
    minimum=1,
)
CLUSTER_CACHE_S = FloatSetting(
    name="CLUSTER_CACHE_S",
    doc="Seconds a clustering is reused (0: one computed for every request).",
    services=_GW,
    default=300.0,
    minimum=0.0,
)
CLUSTER_DEFAULT_COUNT = IntSetting(
    name="CLUSTER_DEFAULT_COUNT",
    doc="Clusters when a request gives no `n` (at most `CLUSTER_MAX_COUNT`).",
    services=_GW,
    minimum=2,
    default_doc="12 (or `CLUSTER_MAX_COUNT` when smaller)",
)
CLUSTER_MAX_COUNT = IntSetting(
    name="CLUSTER_MAX_COUNT", doc="Largest `n` a request may ask for.", services=_GW, default=64, minimum=2
)
CLUSTER_SCROLL_PAGE = IntSetting(
    name="CLUSTER_SCROLL_PAGE",
    doc="Artworks per Scroll page read for a clustering (at most 1000).",
    services=_GW,
    default=256,
    minimum=1,
)
CLUSTER_SEED = IntSetting(name="CLUSTER_SEED", doc="The k-means seed.", services=_GW, default=0, minimum=0)
CLUSTER_CACHE_ENTRIES = IntSetting(
    name="CLUSTER_CACHE_ENTRIES", doc="Clusterings kept at once.", services=_GW, default=8, minimum=1
)

SETTINGS: tuple[Setting[object], ...] = (
    GATEWAY_HOST,
    GATEWAY_PORT,
    ENCODER_ADDR,
    SEARCH_ADDR,
    INFLUENCE_ADDR,
    ENCODE_TIMEOUT_S,
    SEARCH_TIMEOUT_S,
    INFLUENCE_TIMEOUT_S,
    MODEL_ALIAS_TTL_S,
    MAX_UPLOAD_BYTES,
    DEFAULT_K,
    MAX_K,
    DEFAULT_POOL,
    MAX_POOL,
    STYLE_NEIGHBOURS,
    STYLE_MIN_ART_NEIGHBOURS,
    WHOLE_PHOTO_CONFIDENT_SCORE,
    QUERY_CACHE_ENTRIES,
    QUERY_CACHE_TTL_S,
    SIMILAR_CACHE_ENTRIES,
    SIMILAR_CACHE_TTL_S,
    SEARCH_CURSOR_ENTRIES,
    SEARCH_CURSOR_TTL_S,
    SEARCH_BATCH_MAX_QUERIES,
    URL_FETCH_TIMEOUT_S,
    URL_FETCH_MAX_BYTES,
    URL_FETCH_MAX_REDIRECTS,
    URL_FETCH_ALLOW_PRIVATE,
    URL_FETCH_CA_FILE,
    URL_FETCH_DNS_TIMEOUT_S,
    IMAGE_ROOT,
    THUMBNAIL_CACHE_SIZE,
    THUMBNAIL_MAX_SIZE,
    THUMBNAIL_CONCURRENCY,
    IMAGE_CACHE_MAX_AGE_S,
    EVALUATION_DIR,
    EVALUATION_CACHE_MAX_AGE_S,
    ADMIN_API_KEYS,
    ALLOW_DEV_ADMIN_KEY,
    ADMIN_RATE_LIMIT_PER_MIN,
    ADMIN_RATE_LIMIT_BURST,
    ADMIN_MAX_BATCH_ITEMS,
    ADMIN_DEFAULT_CATALOGUE,
    ADMIN_WRITE_TIMEOUT_S,
    ADMIN_AUTH_MAX_FAILURES,
    ADMIN_AUTH_FAILURE_WINDOW_S,
    PUBLIC_RATE_PER_MIN,
    PUBLIC_RATE_BURST,
    PUBLIC_MAX_CONCURRENT_PER_CLIENT,
    TRUSTED_PROXIES,
    RATE_LIMIT_MAX_CLIENTS,
    CORS_ALLOW_ORIGINS,
    CLUSTER_MAX_ARTWORKS,
    CLUSTER_CACHE_S,
    CLUSTER_DEFAULT_COUNT,
    CLUSTER_MAX_COUNT,
    CLUSTER_SCROLL_PAGE,
    CLUSTER_SEED,
    CLUSTER_CACHE_ENTRIES,
)
