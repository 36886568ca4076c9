"""Typed reads of environment variables, failing fast on a malformed one: the parsing under the settings'
declarations (artsearch/settings.py), which every read goes through."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the service refuses to start."""


_MISSING = object()
# The default of a setting that must be set.
REQUIRED: object = _MISSING


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

    def raw(self, name: str) -> str | None:
        """The variable's text; None when unset or empty (an empty variable counts as unset everywhere)."""
        value = self._environ.get(name)
        return value if value else None

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
