"""`python -m services.influence`: serve InfluenceService until SIGTERM/SIGINT.

Settings (environment): declared in services/influence/settings.py and artsearch/settings.py; the table of
them all is in docs/architecture.md, "Configuration".
"""

from __future__ import annotations

import logging
import sys

from artsearch.grpc_server import run_service, service_main
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.server import InfluenceServicer, registration

log = logging.getLogger("services.influence")


async def serve(config: InfluenceConfig) -> None:
    graph = await open_influence_graph(config)
    stats = await graph.stats()
    log.info(
        "influence graph ready",
        extra={"backend": config.backend, "artists": stats.artists, "influences": stats.influences},
    )
    await run_service(
        [registration(InfluenceServicer(graph, config.default_max_hops))],
        config.listen,
        on_shutdown=graph.close,
    )


if __name__ == "__main__":
    sys.exit(service_main("influence", InfluenceConfig.from_env, serve))
