"""The settings' declarations (artsearch/settings.py): typed reads, bounds, required settings, and old names
accepted for one release with one warning, refused when ambiguous."""

import logging
from pathlib import Path

import pytest

from artsearch import settings
from artsearch.config import ConfigError, Env, ListenSettings
from artsearch.settings import (
    BoolSetting,
    DirectorySetting,
    FloatSetting,
    IntSetting,
    OptionalSetting,
    StrSetting,
)
from services.encoder.config import EncoderConfig
from services.influence.config import neo4j_settings_from_env

RETRIES = IntSetting(
    name="TEST_RETRIES",
    doc="t",
    services=("t",),
    default=3,
    minimum=0,
    deprecated_names=("TEST_OLD_RETRIES",),
)
RATIO = FloatSetting(name="TEST_RATIO", doc="t", services=("t",), default=0.5, minimum=0.0)
FLAG = BoolSetting(name="TEST_FLAG", doc="t", services=("t",), default=True)
NAME = StrSetting(name="TEST_NAME", doc="t", services=("t",))
MAYBE = OptionalSetting(name="TEST_MAYBE", doc="t", services=("t",))
FOLDER = DirectorySetting(name="TEST_FOLDER", doc="t", services=("t",))


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Each test sees the first use of an old name (the once-per-process record starts empty)."""
    settings._warned.clear()
    yield
    settings._warned.clear()


def deprecation_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "artsearch.settings" and "deprecated" in r.message
    ]


def test_typed_values_and_defaults(tmp_path: Path):
    env = Env(
        {
            "TEST_RETRIES": "7",
            "TEST_RATIO": "0.25",
            "TEST_FLAG": "off",
            "TEST_NAME": "x",
            "TEST_MAYBE": "",
            "TEST_FOLDER": str(tmp_path),
        }
    )
    assert (RETRIES.read(env), RATIO.read(env), FLAG.read(env), NAME.read(env)) == (7, 0.25, False, "x")
    assert MAYBE.read(env) is None  # empty counts as unset
    assert FOLDER.read(env) == tmp_path.resolve()
    empty = Env({})
    assert (RETRIES.read(empty), RATIO.read(empty), FLAG.read(empty), FOLDER.read(empty)) == (
        3,
        0.5,
        True,
        None,
    )
    assert RETRIES.read(empty, 9) == 9  # a default computed at start-up replaces the declared one


@pytest.mark.parametrize(
    ("environ", "setting", "message"),
    [
        ({"TEST_RETRIES": "many"}, RETRIES, "TEST_RETRIES='many' is not an integer"),
        ({"TEST_RETRIES": "-1"}, RETRIES, "TEST_RETRIES=-1 must be >= 0"),
        ({"TEST_RATIO": "-0.1"}, RATIO, "TEST_RATIO=-0.1 must be >= 0"),
        ({"TEST_FLAG": "maybe"}, FLAG, "TEST_FLAG='maybe' is not a boolean"),
        ({}, NAME, "TEST_NAME is required but not set"),
        ({"TEST_FOLDER": "/no/such/folder"}, FOLDER, "TEST_FOLDER='/no/such/folder' is not a directory"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(environ, setting, message):
    with pytest.raises(ConfigError, match=message):
        setting.read(Env(environ))


def test_an_old_name_alone_is_used_and_warned_about_once(caplog: pytest.LogCaptureFixture):
    env = Env({"TEST_OLD_RETRIES": "5"})
    with caplog.at_level(logging.WARNING, logger="artsearch.settings"):
        assert RETRIES.read(env) == 5
        assert RETRIES.read(env) == 5
        assert RETRIES.read(Env({"TEST_OLD_RETRIES": "6"})) == 6
    assert deprecation_lines(caplog) == [
        "environment variable TEST_OLD_RETRIES is deprecated: set TEST_RETRIES instead "
        "(the old name is still read for one release)"
    ]


def test_a_bad_value_under_an_old_name_is_refused_naming_the_old_name():
    with pytest.raises(ConfigError, match="TEST_OLD_RETRIES=-2 must be >= 0"):
        RETRIES.read(Env({"TEST_OLD_RETRIES": "-2"}))


def test_old_and_new_names_set_differently_are_refused():
    with pytest.raises(ConfigError, match="TEST_RETRIES and TEST_OLD_RETRIES are set to different values"):
        RETRIES.read(Env({"TEST_RETRIES": "1", "TEST_OLD_RETRIES": "2"}))


def test_old_and_new_names_set_alike_read_the_new_one_with_a_warning(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="artsearch.settings"):
        assert RETRIES.read(Env({"TEST_RETRIES": "4", "TEST_OLD_RETRIES": "4"})) == 4
    assert len(deprecation_lines(caplog)) == 1


def test_new_name_only_logs_nothing(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="artsearch.settings"):
        assert RETRIES.read(Env({"TEST_RETRIES": "2"})) == 2
    assert deprecation_lines(caplog) == []


def test_a_grpc_service_still_listens_where_its_old_host_and_port_say(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="artsearch.settings"):
        listen = ListenSettings.from_env(Env({"HOST": "0.0.0.0", "PORT": "6001"}), 50051)
    assert listen.address == "0.0.0.0:6001"
    assert {line.split()[2] for line in deprecation_lines(caplog)} == {"HOST", "PORT"}
    assert ListenSettings.from_env(Env({"ARTSEARCH_PORT": "6002"}), 50051).port == 6002
    ambiguous = "ARTSEARCH_PORT and PORT are set to different values: PORT is the old name of ARTSEARCH_PORT"
    with pytest.raises(ConfigError, match=ambiguous):
        ListenSettings.from_env(Env({"ARTSEARCH_PORT": "6002", "PORT": "6003"}), 50051)


def test_renamed_encoder_and_influence_settings_keep_their_old_names(tmp_path: Path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    config = EncoderConfig.from_env(Env({"MODEL_PATH": str(model), "MAX_BATCH_IMAGES": "8"}))
    assert config.max_batch_images == 8
    assert (
        EncoderConfig.from_env(Env({"MODEL_PATH": str(model), "MAX_REQUEST_IMAGES": "9"})).max_batch_images
        == 9
    )
    old = neo4j_settings_from_env(
        Env({"NEO4J_URI": "bolt://127.0.0.1:1", "NEO4J_REFRESH_SECONDS": "7", "NEO4J_CONNECT_TIMEOUT": "2"})
    )
    new = neo4j_settings_from_env(
        Env({"NEO4J_URI": "bolt://127.0.0.1:1", "NEO4J_REFRESH_S": "7", "NEO4J_CONNECT_TIMEOUT_S": "2"})
    )
    assert old == new
    assert (new.refresh_seconds, new.connect_timeout) == (7.0, 2.0)


def test_the_gateway_never_reads_the_grpc_services_old_names():
    from services.gateway import settings as gateway

    assert gateway.GATEWAY_PORT.read(Env({"PORT": "9"})) == 8080
    assert gateway.GATEWAY_HOST.read(Env({"HOST": "0.0.0.0"})) == "127.0.0.1"
