"""Settings are declared once and documented from the declarations: the committed configuration table is what
`make settings-doc` generates, every environment read of the core and the services goes through a
declaration, and nothing in the repository itself uses a deprecated name any more."""

import ast
import re
import subprocess
from pathlib import Path

from artsearch_tools import settings_doc
from services.search.edge_store import EdgeSettings
from services.search.qdrant_store import QdrantServerSettings

ROOT = settings_doc.ROOT
# The one module that reads the process environment itself (Env, under the declarations).
ENV_READER = ROOT / "artsearch" / "env.py"
TYPED_READS = {"str", "int", "float", "bool", "optional", "optional_directory", "raw"}
# Variables of the libraries the tools start, passed on as the user set them: not artsearch's settings.
LIBRARY_VARIABLES = {"OMP_WAIT_POLICY"}
# Mentions of an old name that are meant: the health check reads PORT as the services still do.
OLD_NAME_ALLOWED = {
    "scripts/healthcheck.py",
    "tests/unit/test_settings.py",
    "tests/unit/test_settings_doc.py",
}


def test_committed_configuration_table_is_fresh():
    stale = settings_doc.stale_docs()
    assert not stale, f"stale configuration table in {stale}: run `make settings-doc` and commit the result"


def test_each_setting_is_declared_once_per_reader():
    seen: dict[tuple[str, str], str] = {}
    current = {s.name for s in settings_doc.all_settings()}
    for setting in settings_doc.all_settings():
        assert setting.doc.strip() and setting.services, setting.name
        for reader in setting.services:
            assert (setting.name, reader) not in seen, f"{setting.name} declared twice for {reader}"
            seen[(setting.name, reader)] = setting.name
        assert not set(setting.deprecated_names) & current, f"an old name of {setting.name} is in use again"


def _source_files() -> list[Path]:
    return [
        p for top in ("artsearch", "services") for p in (ROOT / top).rglob("*.py") if "/v1/" not in str(p)
    ]


def _undeclared_reads(path: Path) -> list[str]:
    """os.environ / os.getenv anywhere, and Env reads by a literal name (not through a declaration)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "getenv"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and path != ENV_READER
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: os.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in TYPED_READS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and re.fullmatch(r"[A-Z][A-Z0-9_]+", node.args[0].value)
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.attr}({node.args[0].value!r})")
    return found


def test_every_environment_read_goes_through_a_declaration():
    undeclared = [read for path in _source_files() for read in _undeclared_reads(path)]
    assert not undeclared, (
        "declare these settings (artsearch/settings.py, services/<name>/settings.py):\n"
        + ("\n".join(undeclared))
    )


def _named_reads(path: Path) -> list[str]:
    """Reads of one variable by a literal name: os.environ.get("X"), os.getenv("X"), os.environ["X"], and
    Env reads. (A copy of the whole environment, passed on to a child process, is no setting.)"""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        name = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            if called in {"os.environ.get", "os.getenv", "environ.get"} or (
                isinstance(node.func, ast.Attribute) and node.func.attr in TYPED_READS
            ):
                name = node.args[0].value
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            name = node.slice.value
        if isinstance(name, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", name) and name not in LIBRARY_VARIABLES:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return found


def test_the_tools_read_their_settings_through_declarations():
    undeclared = [read for path in (ROOT / "artsearch_tools").rglob("*.py") for read in _named_reads(path)]
    assert not undeclared, "declare these settings (artsearch_tools/settings.py):\n" + "\n".join(undeclared)


def _repository_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in listed if (ROOT / name).is_file() and name not in OLD_NAME_ALLOWED]


def _old_name_uses(old: str, text: str) -> list[int]:
    """Lines that set or name the variable `old` (quoted, `$OLD`, `OLD=`, `OLD: `), bar declarations."""
    pattern = re.compile(rf"""(["'`]{old}["'`]|\${{?{old}\b|(?<![\w$]){old}(=|: ))""")
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if pattern.search(line) and "deprecated_names" not in line
    ]


def test_nothing_in_the_repository_uses_a_deprecated_name():
    generated = settings_doc.GENERATED_BLOCK
    uses = []
    for name in _repository_files():
        try:
            text = (ROOT / name).read_text()
        except UnicodeDecodeError:
            continue
        text = generated.sub("", text)
        for old, new in settings_doc.deprecated_names().items():
            uses += [f"{name}:{line}: {old} (now {new})" for line in _old_name_uses(old, text)]
    assert not uses, "deprecated setting names still used:\n" + "\n".join(uses)


def test_declared_defaults_are_the_stores_defaults():
    from services.search import settings as search

    edge, server = EdgeSettings(), QdrantServerSettings()
    assert (search.SEARCH_HNSW_M.default, search.SEARCH_HNSW_EF_CONSTRUCT.default) == (
        edge.hnsw_m,
        edge.hnsw_ef_construct,
    )
    assert (search.SEARCH_HNSW_EF.default, search.QDRANT_HNSW_EF.default) == (
        edge.search_ef,
        server.search_ef,
    )
    assert (search.SEARCH_QUANTIZATION.default, search.SEARCH_VECTOR_DATATYPE.default) == (
        edge.quantization,
        edge.vector_datatype,
    )
    assert (search.SEARCH_INDEX_THRESHOLD.default, search.SEARCH_INDEX_DELAY_S.default) == (
        edge.index_threshold,
        edge.index_delay_s,
    )
    assert search.SEARCH_VECTORS_ON_DISK.default == edge.vectors_on_disk
    assert (
        search.QDRANT_SHARD_NUMBER.default,
        search.QDRANT_REPLICATION_FACTOR.default,
        search.QDRANT_WRITE_CONSISTENCY.default,
        search.QDRANT_QUANTIZATION.default,
        search.QDRANT_RETRIES.default,
        search.QDRANT_SNAPSHOTS_PATH.default,
    ) == (
        server.shard_number,
        server.replication_factor,
        server.write_consistency_factor,
        server.quantization,
        server.retries,
        server.snapshots_path,
    )


def test_reading_an_empty_environment_gives_the_settings_classes_own_defaults(tmp_path: Path):
    """The declared defaults are the ones the code had before the declarations (behaviour unchanged)."""
    from artsearch.config import Env
    from services.encoder.config import EncoderConfig
    from services.gateway.admin_settings import AdminSettings
    from services.gateway.clusters import MIN_CLUSTERS, ClusterSettings
    from services.gateway.config import GatewayConfig
    from services.gateway.evaluation_pictures import EvaluationPictureSettings
    from services.gateway.media import MIN_THUMBNAIL_SIZE, MediaSettings
    from services.gateway.public_limits import PublicLimitSettings
    from services.gateway.settings import CLUSTER_MAX_COUNT, THUMBNAIL_MAX_SIZE
    from services.search.config import SearchConfig

    empty = Env({})
    for settings_class in (AdminSettings, ClusterSettings, EvaluationPictureSettings, MediaSettings):
        assert settings_class.from_env(empty) == settings_class()
    assert PublicLimitSettings.from_env(empty) == PublicLimitSettings()
    assert (CLUSTER_MAX_COUNT.minimum, THUMBNAIL_MAX_SIZE.minimum) == (MIN_CLUSTERS, MIN_THUMBNAIL_SIZE)
    addresses = {"ENCODER_ADDR": "a:1", "SEARCH_ADDR": "b:2", "INFLUENCE_ADDR": "c:3"}
    gateway = GatewayConfig.from_env(Env(addresses))
    assert (gateway.host, gateway.port, gateway.max_upload_bytes, gateway.url_fetch.max_bytes) == (
        "127.0.0.1",
        8080,
        20 * 1024 * 1024,
        20 * 1024 * 1024,
    )
    assert (gateway.default_k, gateway.max_k, gateway.default_pool, gateway.max_pool) == (25, 100, 100, 1000)
    assert (gateway.model_alias_ttl_s, gateway.query_cache_ttl_s, gateway.search_cursor_ttl_s) == (
        5.0,
        300.0,
        600.0,
    )
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    encoder = EncoderConfig.from_env(Env({"MODEL_PATH": str(model)}))
    assert encoder == EncoderConfig(model_path=model, max_queued_images=encoder.max_queued_images)
    search = SearchConfig.from_env(Env({"SEARCH_DATA_DIR": str(tmp_path)}))
    assert (search.edge, search.server) == (EdgeSettings(), QdrantServerSettings())
    assert search == SearchConfig(data_dir=tmp_path, edge=search.edge, server=search.server)
