"""Settings of the `artsearch` command's tools, declared as the services' are (artsearch/settings.py), so that
the configuration table documents them too."""

from __future__ import annotations

from artsearch.settings import INGEST, Setting, StrSetting
from artsearch_tools.regions import DEFAULT_REGION_GRID

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

SETTINGS: tuple[Setting[object], ...] = (INGEST_STATE_DIR, INGEST_REGIONS)
