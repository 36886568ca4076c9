"""Admin API keys: stored as SHA-256 hashes only, checked in constant time.

Configuration: ADMIN_API_KEYS = comma-separated `name:sha256hex` entries. `name` says whose key it is (logs,
rate limit); the hash is `sha256(key)` in hex. The gateway never sees a plain key except in a request.

    python -m services.gateway.api_keys new NAME    # prints a fresh key and its ADMIN_API_KEYS entry
    python -m services.gateway.api_keys hash NAME   # reads a key on stdin, prints its entry

Weak keys. A hash says nothing about the strength of its key, so strength is checked where a plain key is
seen: `hash` refuses a key shorter than MIN_KEY_CHARS, a shorter string repeated, or one whose characters
carry less than MIN_KEY_BITS (length times the Shannon entropy of its character frequencies: few distinct
characters). These checks cannot see that a sentence or a sequence is guessable: prefer `new`. The one
weak key whose hash is known, the development key `dev-admin-key-change-me` that the compose files and the
Kubernetes placeholder Secret ship, is refused at start unless ALLOW_DEV_ADMIN_KEY=true (set by the
development settings only).
"""

from __future__ import annotations

import hashlib
import hmac
import math
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
MIN_KEY_CHARS = 32
# 32 random hex digits (`openssl rand -hex 16`, 128 bits) measure 115 on average and hardly ever under 95;
# repeated patterns far less (32 characters alternating two: 32).
MIN_KEY_BITS = 80.0
DEV_ADMIN_KEY = "dev-admin-key-change-me"
DEV_ADMIN_KEY_SHA256 = hashlib.sha256(DEV_ADMIN_KEY.encode("utf-8")).digest()


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


def key_weakness(key: str) -> str | None:
    """Why a plain key is too weak to configure, or None (see the module doc)."""
    if len(key) < MIN_KEY_CHARS:
        return f"it has {len(key)} characters; use at least {MIN_KEY_CHARS}"
    if key in (key + key)[1:-1]:
        return "it is a shorter string repeated (a guessable pattern)"
    if key_bits(key) < MIN_KEY_BITS:
        return "it repeats too few distinct characters (a guessable pattern)"
    return None


def key_bits(key: str) -> float:
    """len(key) x the Shannon entropy of its character frequencies, in bits: an upper bound on what a key
    this repetitive can hold (random keys of the same length measure close to their true strength)."""
    counts = [key.count(char) for char in set(key)]
    return sum(n * math.log2(len(key) / n) for n in counts)


def refuse_dev_key(keys: Sequence[ApiKey], allowed: bool) -> None:
    """ConfigError when an entry holds the well-known development key and ALLOW_DEV_ADMIN_KEY is not set."""
    for key in keys:
        if hmac.compare_digest(key.sha256, DEV_ADMIN_KEY_SHA256) and not allowed:
            raise ConfigError(
                f"ADMIN_API_KEYS entry {key.name!r} is the published development key {DEV_ADMIN_KEY!r}: "
                "make a key with `python -m services.gateway.api_keys new NAME`, or set "
                "ALLOW_DEV_ADMIN_KEY=true on a development set-up"
            )


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
    weakness = key_weakness(key)
    if weakness is not None:
        print(
            f"refused: the key is too weak to configure ({weakness}); `new {name}` makes one", file=sys.stderr
        )
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
