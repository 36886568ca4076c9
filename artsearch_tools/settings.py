"""Settings of the `artsearch` command's tools, declared as the services' are (artsearch/settings.py), so that
the configuration table documents them too. The tools read them when a command runs, not while its options
are parsed: a malformed value stops that command with a clear message, never `artsearch --help`."""

from __future__ import annotations

from artsearch.config import DEFAULT_PORTS
from artsearch.env import Env
from artsearch.settings import INGEST, IntSetting, OptionalSetting, Setting, StrSetting
from artsearch_tools.regions import DEFAULT_REGION_GRID

DEMO = "artsearch demo"
CLIENTS = "artsearch query / eval photos"
REINDEX = "artsearch reindex"
IMPORT = "artsearch import-influences"

INGEST_STATE_DIR = StrSetting(
    name="INGEST_STATE_DIR",
    doc="Where ingest progress is recorded (`--state-dir`).",
    services=(INGEST,),
    default="var/ingest",
)
INGEST_REGIONS = StrSetting(
    name="INGEST_REGIONS",
    doc=(
        "The region grid encoded beside each picture (`--regions`; `off`: none) "
        "([ingest.md](ingest.md#regions))."
    ),
    services=(INGEST,),
    default=str(DEFAULT_REGION_GRID),
)
LOCAL_GATEWAY_PORT = IntSetting(
    name="ARTSEARCH_PORT",
    doc=(
        "The gateway's port on this machine: `artsearch demo` serves on it; `artsearch query` and "
        "`artsearch eval photos` send to it unless `--gateway` is given."
    ),
    services=(DEMO, CLIENTS),
    default=DEFAULT_PORTS["gateway"],
    minimum=1,
)
DEMO_SERVICE_PORTS = {
    service: IntSetting(
        name=f"{service.upper()}_PORT",
        doc=f"The port `artsearch demo` starts the {service} service on.",
        services=(DEMO,),
        default=DEFAULT_PORTS[service],
        minimum=1,
    )
    for service in ("encoder", "search", "influence")
}
_ADDRESS_READERS = {"encoder": (INGEST,), "search": (INGEST, REINDEX), "influence": (INGEST,)}
SERVICE_ADDRESSES = {
    service: StrSetting(
        name=f"{service.upper()}_ADDR",
        doc=f"The {service} service the tools work with, unless `--{service}` is given (`host:port`).",
        services=readers,
        default=f"127.0.0.1:{DEFAULT_PORTS[service]}",
    )
    for service, readers in _ADDRESS_READERS.items()
}
REINDEX_IMAGE_ROOT = OptionalSetting(
    name="IMAGE_ROOT",
    doc="Where `artsearch reindex` finds catalogue images (a folder per catalogue), unless `--image-root`.",
    services=(REINDEX,),
)
IMPORT_NEO4J_URI = OptionalSetting(
    name="NEO4J_URI",
    doc="The Neo4j database `artsearch import-influences` writes to, unless `--neo4j-uri` is given.",
    services=(IMPORT,),
)
IMPORT_STATE_DIR = OptionalSetting(
    name="INFLUENCE_STATE_DIR",
    doc=(
        "Without Neo4j, the embedded graph's additions folder `artsearch import-influences` writes to, "
        "unless `--state-dir` is given."
    ),
    services=(IMPORT,),
)

SETTINGS: tuple[Setting[object], ...] = (
    INGEST_STATE_DIR,
    INGEST_REGIONS,
    LOCAL_GATEWAY_PORT,
    *DEMO_SERVICE_PORTS.values(),
    *SERVICE_ADDRESSES.values(),
    REINDEX_IMAGE_ROOT,
    IMPORT_NEO4J_URI,
    IMPORT_STATE_DIR,
)


LOCAL_GATEWAY_HELP = "the gateway's URL (default http://127.0.0.1:$ARTSEARCH_PORT, 8080 when unset)"


def local_gateway_url(env: Env | None = None) -> str:
    """The gateway on this machine, at LOCAL_GATEWAY_PORT."""
    return f"http://127.0.0.1:{LOCAL_GATEWAY_PORT.read(env or Env())}"


def service_address(service: str, env: Env | None = None) -> str:
    """Where the tools reach `service` (encoder, search, influence)."""
    return SERVICE_ADDRESSES[service].read(env or Env())


def service_address_help(service: str) -> str:
    setting = SERVICE_ADDRESSES[service]
    return f"default ${setting.name}, else {setting.default}"


def demo_ports(env: Env | None = None) -> dict[str, int]:
    """The ports `artsearch demo` starts the four services on."""
    env = env or Env()
    ports = {service: setting.read(env) for service, setting in DEMO_SERVICE_PORTS.items()}
    return {**ports, "gateway": LOCAL_GATEWAY_PORT.read(env)}
