"""Admin API keys: parsing the configured hashes, identifying a presented key, the key-making command."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import pytest

from artsearch.config import ConfigError
from services.gateway.api_keys import ApiKeyRing, config_entry, hash_key, main, new_key, parse_api_keys


def entry(name: str, key: str) -> str:
    return f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"


def test_configured_keys_are_parsed_into_names_and_digests():
    keys = parse_api_keys(f" {entry('alice', 'k1')} ,{entry('bob', 'k2').upper().replace('BOB', 'bob')},")
    assert [k.name for k in keys] == ["alice", "bob"]
    assert keys[0].sha256 == hashlib.sha256(b"k1").digest()
    assert keys[1].sha256 == hashlib.sha256(b"k2").digest()  # upper-case hex accepted
    assert parse_api_keys(None) == () and parse_api_keys("") == () and parse_api_keys(" , ") == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("alice", "name:sha256hex"),
        (":" + "0" * 64, "name:sha256hex"),
        ("al ice:" + "0" * 64, "name:sha256hex"),
        ("alice:1234", "64 hex digits"),
        ("alice:" + "g" * 64, "64 hex digits"),
        ("alice:plain-key-by-mistake", "64 hex digits"),
        (f"{entry('alice', 'a')},{entry('alice', 'b')}", "twice"),
    ],
)
def test_malformed_configuration_fails_at_start_naming_the_entry(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_api_keys(raw)


def test_a_ring_identifies_the_owner_of_a_key_and_nobody_else():
    ring = ApiKeyRing(parse_api_keys(f"{entry('alice', 'secret-a')},{entry('bob', 'secret-b')}"))
    assert ring
    assert ring.identify("secret-a") == "alice"
    assert ring.identify("secret-b") == "bob"
    for wrong in (
        "",
        "secret-",
        "secret-a ",
        "SECRET-A",
        hashlib.sha256(b"secret-a").hexdigest(),
        "x" * 10_000,
    ):
        assert ring.identify(wrong) is None
    assert ring.identify("\ud800") is None  # not encodable: no crash
    assert not ApiKeyRing(())
    assert ApiKeyRing(()).identify("secret-a") is None


def test_new_keys_are_random_and_their_entry_holds_only_the_hash():
    first, second = new_key(), new_key()
    assert first != second and len(first) >= 40
    line = config_entry("ops-team", first)
    assert first not in line and line == f"ops-team:{hash_key(first).hex()}"
    assert ApiKeyRing(parse_api_keys(line)).identify(first) == "ops-team"
    with pytest.raises(ValueError, match="key name"):
        config_entry("bad,name", first)


def test_the_command_prints_a_key_and_an_entry_that_accepts_it(repo_root):
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway.api_keys", "new", "curator"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    key = next(value for label, value in lines.items() if label.startswith("key"))
    configured = lines["ADMIN_API_KEYS entry"]
    assert configured.startswith("curator:") and key not in configured
    assert ApiKeyRing(parse_api_keys(configured)).identify(key) == "curator"


def test_the_hash_command_reads_the_key_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("my-existing-key\n"))
    assert main(["hash", "ci"]) == 0
    assert capsys.readouterr().out.strip() == f"ADMIN_API_KEYS entry: {entry('ci', 'my-existing-key')}"
    assert main(["rotate", "ci"]) == 2
    assert main(["new", "bad name"]) == 2
