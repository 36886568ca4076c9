import pytest

from artsearch.config import ConfigError, Env


def test_required_variable_fails_fast_with_its_name():
    with pytest.raises(ConfigError, match="MODEL_PATH"):
        Env({}).str("MODEL_PATH")


def test_defaults_and_typed_values():
    env = Env({"SOME_PORT": "50060", "RATIO": "0.5", "FLAG": "yes", "EMPTY": ""})
    assert env.int("SOME_PORT", 1) == 50060
    assert env.int("MISSING", 7) == 7
    assert env.float("RATIO", 1.0) == 0.5
    assert env.bool("FLAG", False) is True
    assert env.str("EMPTY", "fallback") == "fallback"
    assert env.optional("EMPTY") is None


@pytest.mark.parametrize(
    ("environ", "read"),
    [
        ({"SOME_PORT": "eighty"}, lambda e: e.int("SOME_PORT", 1)),
        ({"SOME_PORT": "-1"}, lambda e: e.int("SOME_PORT", 1, minimum=0)),
        ({"RATIO": "x"}, lambda e: e.float("RATIO", 1.0)),
        ({"FLAG": "maybe"}, lambda e: e.bool("FLAG", True)),
    ],
)
def test_malformed_values_are_rejected(environ, read):
    with pytest.raises(ConfigError, match=next(iter(environ))):
        read(Env(environ))


def test_optional_directory_must_exist(tmp_path):
    env = Env({"DIR": str(tmp_path), "FILE": str(tmp_path / "f"), "GONE": str(tmp_path / "nope")})
    (tmp_path / "f").write_text("x")
    assert env.optional_directory("DIR") == tmp_path.resolve()
    assert env.optional_directory("UNSET") is None
    for name in ("FILE", "GONE"):
        with pytest.raises(ConfigError, match=f"{name}=.* is not a directory"):
            env.optional_directory(name)
