"""The admin API's settings (environment variables: see services/gateway/admin.py's docstring).

Apart from admin.py so that config.py and catalogue_admin.py can name them without importing the
admin routes (which import catalogue_admin: a cycle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artsearch import settings as core
from artsearch.config import ConfigError, Env
from services.gateway import settings as declared
from services.gateway.api_keys import ApiKey, parse_api_keys, refuse_dev_key
from services.gateway.artwork_records import check_catalogue_name
from services.gateway.clients import IPNetwork, trusted_proxies_from_env
from services.gateway.errors import ApiError

DEFAULT_CATALOGUE = "uploads"


@dataclass(frozen=True)
class AdminSettings:
    api_keys: tuple[ApiKey, ...] = ()
    rate_limit_per_min: float = 60.0
    rate_limit_burst: int = 20
    max_batch_items: int = 32
    default_catalogue: str = DEFAULT_CATALOGUE
    image_root: Path | None = None
    max_image_pixels: int = 50_000_000
    # A write (upsert, edit, delete, new artists) is not on the query path: a database committing to
    # disk may take longer than the tight read deadlines allow, and a timed-out write may still land.
    write_timeout_s: float = 10.0
    # Wrong keys one client may present in quick succession (0: any number), and the window they refill in.
    auth_max_failures: int = 10
    auth_failure_window_s: float = 60.0
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_clients: int = 100_000

    @classmethod
    def from_env(cls, env: Env) -> AdminSettings:
        catalogue = declared.ADMIN_DEFAULT_CATALOGUE.read(env)
        try:
            check_catalogue_name(catalogue)
        except ApiError as error:
            raise ConfigError(f"ADMIN_DEFAULT_CATALOGUE: {error.message}") from None
        image_root = declared.IMAGE_ROOT.raw(env)  # the path as given; media.py checks it
        api_keys = parse_api_keys(declared.ADMIN_API_KEYS.read(env))
        refuse_dev_key(api_keys, allowed=declared.ALLOW_DEV_ADMIN_KEY.read(env))
        return cls(
            api_keys=api_keys,
            rate_limit_per_min=declared.ADMIN_RATE_LIMIT_PER_MIN.read(env),
            rate_limit_burst=declared.ADMIN_RATE_LIMIT_BURST.read(env),
            max_batch_items=declared.ADMIN_MAX_BATCH_ITEMS.read(env),
            default_catalogue=catalogue,
            image_root=Path(image_root) if image_root else None,
            max_image_pixels=core.MAX_IMAGE_PIXELS.read(env),
            write_timeout_s=declared.ADMIN_WRITE_TIMEOUT_S.read(env),
            auth_max_failures=declared.ADMIN_AUTH_MAX_FAILURES.read(env),
            auth_failure_window_s=declared.ADMIN_AUTH_FAILURE_WINDOW_S.read(env),
            trusted_proxies=trusted_proxies_from_env(env),
            max_clients=declared.RATE_LIMIT_MAX_CLIENTS.read(env),
        )
