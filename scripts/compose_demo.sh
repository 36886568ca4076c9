#!/usr/bin/env bash
# `make compose-demo`: the production shape on this machine, from the project's images
# (docker-compose.local.yml): brings the stack up, ingests the demo catalogue through the CLI container,
# answers a query, and leaves the gateway serving on http://127.0.0.1:8080 (ARTSEARCH_PORT moves it).
# Stop: `docker-compose -p artsearch -f docker-compose.local.yml down` (-v also deletes the volumes).
# `make images` and `make catalogue` run first (the Makefile sees to it).
#
# Environment: COMPOSE_PROJECT_NAME (artsearch), ARTSEARCH_CATALOGUES (./data/catalogues), ARTSEARCH_PORT
# (8080) and the compose file's other variables (LOCAL_TRITON_URL= LOCAL_NEO4J_URI= for the embedded backends;
# ENCODER_PORT, SEARCH_PORT, INFLUENCE_PORT for the services' published ports).
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-artsearch}
FILE=docker-compose.local.yml
GATEWAY=http://127.0.0.1:${ARTSEARCH_PORT:-8080}
CATALOGUE=gcompris
PYTHON=${PYTHON:-.venv/bin/python}

if docker compose version >/dev/null 2>&1; then
  compose() { docker compose -f "$FILE" "$@"; }
elif command -v docker-compose >/dev/null 2>&1; then
  compose() { docker-compose -f "$FILE" "$@"; }
else
  echo "compose-demo: neither \`docker compose\` nor \`docker-compose\` (run \`make docker-engine\`)" >&2
  exit 1
fi

echo "compose-demo: starting the stack ($FILE, project $COMPOSE_PROJECT_NAME)" >&2
# --wait is Compose v2 only; depends_on: service_healthy already orders the start, the gateway is awaited below.
compose up -d --no-build

echo "compose-demo: waiting for the gateway's /readyz" >&2
for _ in $(seq 1 120); do
  if "$PYTHON" - "$GATEWAY/readyz" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
PY
  sleep 1
done
"$PYTHON" - "$GATEWAY/readyz" <<'PY' || { compose ps; compose logs --tail=30; exit 1; }
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
PY

echo "compose-demo: ingesting /catalogues/$CATALOGUE through the CLI container" >&2
compose run --rm ingest ingest "/catalogues/$CATALOGUE"

folder=${ARTSEARCH_CATALOGUES:-./data/catalogues}/$CATALOGUE
sample=$(find "$folder" -maxdepth 1 -name 'van-gogh-*.jpg' | sort | head -n 1)
echo "compose-demo: a query with $sample" >&2
"$PYTHON" -m artsearch_tools.cli query "$sample" --gateway "$GATEWAY" --k 5
compose ps
echo "compose-demo: serving on $GATEWAY (stop: docker-compose -p $COMPOSE_PROJECT_NAME -f $FILE down [-v])" >&2
