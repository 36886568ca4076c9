"""Runs the influence service: `python -m services.influence`. Configuration from the environment: HOST,
PORT, METRICS_PORT, LOG_LEVEL, INFLUENCE_DATA_DIR, INFLUENCE_STATE_DIR, INFLUENCE_MAX_HOPS, NEO4J_URI."""

from __future__ import annotations

import asyncio
import logging
import sys

from artsearch.config import ConfigError, Env
from artsearch.grpc_server import run_service
from artsearch.jsonlog import configure_logging
from services.influence.config import InfluenceConfig, open_influence_graph
from services.influence.server import InfluenceServicer, registration

log = logging.getLogger("services.influence")


async def serve(config: InfluenceConfig) -> None:
    graph = await open_influence_graph(config)
    stats = await graph.stats()
    log.info(
        "influence graph ready",
        extra={"backend": config.backend, "artists": stats.artists, "influences": stats.influences},
    )
    servicer = InfluenceServicer(graph, config.default_max_hops)
    await run_service(
        [registration(servicer)], config.address, metrics_port=config.metrics_port, on_shutdown=graph.close
    )


def main() -> None:
    try:
        config = InfluenceConfig.from_env(Env())
    except ConfigError as error:
        print(f"influence: {error}", file=sys.stderr)
        sys.exit(2)
    configure_logging("influence", config.log_level)
    try:
        asyncio.run(serve(config))
    except ConfigError as error:
        log.error("cannot start", extra={"error": str(error)})
        sys.exit(2)


if __name__ == "__main__":
    main()
