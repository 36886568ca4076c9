"""The admin API's settings (environment variables: see services/gateway/admin.py's docstring).

Apart from admin.py so that config.py and catalogue_admin.py can name them without importing the
admin routes (which import catalogue_admin: a cycle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artsearch.config import ConfigError, Env
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
        catalogue = env.str("ADMIN_DEFAULT_CATALOGUE", DEFAULT_CATALOGUE)
        try:
            check_catalogue_name(catalogue)
        except ApiError as error:
            raise ConfigError(f"ADMIN_DEFAULT_CATALOGUE: {error.message}") from None
        image_root = env.optional("IMAGE_ROOT")
        api_keys = parse_api_keys(env.optional("ADMIN_API_KEYS"))
        refuse_dev_key(api_keys, allowed=env.bool("ALLOW_DEV_ADMIN_KEY", False))
        return cls(
            api_keys=api_keys,
            rate_limit_per_min=env.float("ADMIN_RATE_LIMIT_PER_MIN", 60.0, minimum=0.001),
            rate_limit_burst=env.int("ADMIN_RATE_LIMIT_BURST", 20, minimum=1),
            max_batch_items=env.int("ADMIN_MAX_BATCH_ITEMS", 32, minimum=1),
            default_catalogue=catalogue,
            image_root=Path(image_root) if image_root else None,
            max_image_pixels=env.int("MAX_IMAGE_PIXELS", 50_000_000, minimum=64),
            write_timeout_s=env.float("ADMIN_WRITE_TIMEOUT_S", 10.0, minimum=0.01),
            auth_max_failures=env.int("ADMIN_AUTH_MAX_FAILURES", 10, minimum=0),
            auth_failure_window_s=env.float("ADMIN_AUTH_FAILURE_WINDOW_S", 60.0, minimum=1.0),
            trusted_proxies=trusted_proxies_from_env(env),
            max_clients=env.int("RATE_LIMIT_MAX_CLIENTS", 100_000, minimum=1),
        )
