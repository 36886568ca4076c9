"""Container health check, shipped in every service image (Dockerfile HEALTHCHECK, docker-compose).

    python scripts/healthcheck.py grpc [SERVICE]   gRPC health Check, 127.0.0.1:$ARTSEARCH_PORT (SERVING: 0)
    python scripts/healthcheck.py http PATH        GET http://127.0.0.1:$ARTSEARCH_PORT/PATH (2xx -> exit 0)

The port comes from the same variable the service reads (ARTSEARCH_PORT; for the gRPC services also its old
name PORT, still read for one release), so changing a port in the environment never leaves a stale health
check behind. Exit 1 means
unhealthy; the reason goes to stderr (Docker keeps it in `docker inspect`). Kubernetes uses its native
`grpc:` and `httpGet:` probes instead of this script.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 2.0
DEFAULT_PORTS = {"grpc": "50051", "http": "8080"}
# The gRPC services' old name of ARTSEARCH_PORT (artsearch/settings.py), still read for one release.
OLD_GRPC_PORT_VARIABLE = "PORT"


def check_grpc(port: str, service: str) -> str | None:
    """None when the server reports SERVING for `service` ("" = the whole server), else the reason."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S
            )
        except grpc.RpcError as error:
            return f"gRPC health check failed: {error.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"gRPC health status {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def check_http(port: str, path: str) -> str | None:
    """None when GET answers 2xx, else the reason."""
    url = f"http://127.0.0.1:{port}/{path.lstrip('/')}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as error:
        return f"GET {url} failed: {error}"
    return None if 200 <= status < 300 else f"GET {url} answered {status}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in DEFAULT_PORTS:
        print(__doc__, file=sys.stderr)
        return 2
    kind, argument = argv[0], (argv[1] if len(argv) > 1 else "")
    if kind == "grpc":
        port = os.environ.get("ARTSEARCH_PORT") or os.environ.get(OLD_GRPC_PORT_VARIABLE)
        reason = check_grpc(port or DEFAULT_PORTS["grpc"], argument)
    else:
        reason = check_http(os.environ.get("ARTSEARCH_PORT") or DEFAULT_PORTS["http"], argument or "healthz")
    if reason:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
