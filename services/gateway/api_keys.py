"""Admin API keys: stored as SHA-256 hashes only, checked in constant time.

Configuration: ADMIN_API_KEYS = comma-separated `name:sha256hex` entries. `name` says whose key it is (logs,
rate limit); the hash is `sha256(key)` in hex. The gateway never sees a plain key except in a request.

    python -m services.gateway.api_keys new NAME    # prints a fresh key and its ADMIN_API_KEYS entry
    python -m services.gateway.api_keys hash NAME   # reads a key on stdin, prints its entry
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from artsearch.config import ConfigError

KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
KEY_BYTES = 32  # 256 bits of randomness: 43 URL-safe characters
MAX_PRESENTED_KEY_CHARS = 512


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: bytes  # the digest of the key, 32 bytes


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def config_entry(name: str, key: str) -> str:
    """The ADMIN_API_KEYS entry for a key: `name:sha256hex`."""
    if not KEY_NAME.fullmatch(name):
        raise ValueError(
            f"key name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ . - (starting with a letter/digit)"
        )
    return f"{name}:{hash_key(key).hex()}"


def parse_api_keys(raw: str | None) -> tuple[ApiKey, ...]:
    """The keys of an ADMIN_API_KEYS value ("" or None: none). ConfigError naming the bad entry."""
    keys: dict[str, ApiKey] = {}
    for position, entry in enumerate((raw or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        name, separator, digest = entry.partition(":")
        name, digest = name.strip(), digest.strip().lower()
        if not separator or not KEY_NAME.fullmatch(name):
            raise ConfigError(f"ADMIN_API_KEYS entry {position}: expected name:sha256hex with a plain name")
        if not SHA256_HEX.fullmatch(digest):
            raise ConfigError(f"ADMIN_API_KEYS entry {position} ({name}): the hash must be 64 hex digits")
        if name in keys:
            raise ConfigError(f"ADMIN_API_KEYS: key name {name!r} appears twice")
        keys[name] = ApiKey(name, bytes.fromhex(digest))
    return tuple(keys.values())


class ApiKeyRing:
    """The configured keys; `identify` says whose a presented key is."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def identify(self, presented: str) -> str | None:
        """The name of the key, or None. Compares the presented key's hash with every configured hash
        (hmac.compare_digest, no early exit), so the time taken says nothing about which one matched."""
        if not presented or len(presented) > MAX_PRESENTED_KEY_CHARS:
            return None
        try:
            digest = hash_key(presented)
        except UnicodeEncodeError:
            return None
        owner = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256):
                owner = key.name
        return owner


def main(argv: Sequence[str]) -> int:
    usage = "usage: python -m services.gateway.api_keys new NAME | hash NAME (key on stdin)"
    if len(argv) != 2 or argv[0] not in {"new", "hash"}:
        print(usage, file=sys.stderr)
        return 2
    command, name = argv
    key = new_key() if command == "new" else sys.stdin.readline().strip()
    if not key:
        print("no key on stdin", file=sys.stderr)
        return 2
    try:
        entry = config_entry(name, key)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if command == "new":
        print(f"key (give it to {name}; it is not stored anywhere): {key}")
    print(f"ADMIN_API_KEYS entry: {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
