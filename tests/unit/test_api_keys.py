"""Admin API keys: parsing the configured hashes, identifying a presented key, the key-making command."""

from __future__ import annotations

import hashlib
import io
import secrets
import subprocess
import sys

import pytest

from artsearch.config import ConfigError, Env
from services.gateway.admin_settings import AdminSettings
from services.gateway.api_keys import (
    DEV_ADMIN_KEY,
    ApiKeyRing,
    config_entry,
    hash_key,
    key_weakness,
    main,
    new_key,
    parse_api_keys,
    refuse_dev_key,
)


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
    existing = "Zq3vN8kT1xWb6Lr0Ys5Hc2Jm9Pd4Fg7A"  # 32 characters, no pattern
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{existing}\n"))
    assert main(["hash", "ci"]) == 0
    assert capsys.readouterr().out.strip() == f"ADMIN_API_KEYS entry: {entry('ci', existing)}"
    assert main(["rotate", "ci"]) == 2
    assert main(["new", "bad name"]) == 2


# --- weak keys ----------------------------------------------------------------------------------------------

DEV_ENTRY = "dev:29b401073038b82dd8106b36b0e4105cb0fcf084a083efccb6f525c8973bd2d2"


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (DEV_ADMIN_KEY, "23 characters"),
        ("short-but-random-9f3K", "21 characters"),
        ("a" * 64, "a shorter string repeated"),
        ("ab" * 20, "a shorter string repeated"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbc", "too few distinct characters"),
        ("0101010101010101010101010101010123", "too few distinct characters"),
        ("passwordpasswordpasswordpassword", "a shorter string repeated"),
    ],
)
def test_the_hash_command_refuses_weak_keys(monkeypatch, capsys, key: str, why: str):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{key}\n"))
    assert main(["hash", "ops"]) == 2
    output = capsys.readouterr()
    assert output.out == "", "no entry may be printed for a refused key"
    assert "too weak" in output.err and why in output.err


def test_keys_from_the_usual_generators_are_strong_enough():
    for _ in range(200):
        assert key_weakness(new_key()) is None
        assert key_weakness(secrets.token_hex(16)) is None  # openssl rand -hex 16: 128 bits
        assert key_weakness(secrets.token_hex(32)) is None  # the deployment docs' recipe


def test_the_published_development_key_is_refused_unless_allowed():
    assert parse_api_keys(DEV_ENTRY)[0].sha256 == hash_key(DEV_ADMIN_KEY)
    with pytest.raises(ConfigError, match=r"development key .*ALLOW_DEV_ADMIN_KEY=true"):
        refuse_dev_key(parse_api_keys(f"{entry('ops', new_key())},{DEV_ENTRY}"), allowed=False)
    refuse_dev_key(parse_api_keys(DEV_ENTRY), allowed=True)
    refuse_dev_key(parse_api_keys(entry("ops", new_key())), allowed=False)


def test_the_gateway_settings_refuse_the_development_key_unless_allowed():
    with pytest.raises(ConfigError, match="'dev' is the published development key"):
        AdminSettings.from_env(Env({"ADMIN_API_KEYS": DEV_ENTRY}))
    with pytest.raises(ConfigError, match="'dev' is the published development key"):
        AdminSettings.from_env(Env({"ADMIN_API_KEYS": DEV_ENTRY, "ALLOW_DEV_ADMIN_KEY": "false"}))
    allowed = AdminSettings.from_env(Env({"ADMIN_API_KEYS": DEV_ENTRY, "ALLOW_DEV_ADMIN_KEY": "true"}))
    assert ApiKeyRing(allowed.api_keys).identify(DEV_ADMIN_KEY) == "dev"
    with pytest.raises(ConfigError, match="ALLOW_DEV_ADMIN_KEY"):
        AdminSettings.from_env(Env({"ADMIN_API_KEYS": DEV_ENTRY, "ALLOW_DEV_ADMIN_KEY": "perhaps"}))
