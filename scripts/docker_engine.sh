#!/usr/bin/env bash
# A Docker engine for `make images`, `make compose-demo` and the container tests (tests/containers/).
#
#   bash scripts/docker_engine.sh            # what `make docker-engine` runs; `make test` runs it too
#
# Where an engine already answers (Docker Desktop, a system service), nothing is done. Otherwise, as root on
# a Debian machine, it installs what is missing from Debian's packages — docker.io (the engine), docker-compose
# (Compose 1.29: the `docker-compose` command) and debootstrap (the local base image, scripts/images.py) —
# and starts `dockerd` in the background (log: /var/log/artsearch-dockerd.log), then waits until it answers.
#
# Exit status: 0 when an engine answers at the end. When none can be had (not root, no apt-get, dockerd
# refuses to start), it says why and exits 3; the container tests then skip, giving that reason.
# ARTSEARCH_DOCKER_ENGINE=require turns "cannot" into a failure (exit 1), for CI machines that must run them.
set -uo pipefail

LOG=${DOCKERD_LOG:-/var/log/artsearch-dockerd.log}
WAIT_SECONDS=${DOCKERD_WAIT_SECONDS:-60}

engine_answers() {
  command -v docker >/dev/null 2>&1 && timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

cannot() {
  echo "docker-engine: no Docker engine: $*" >&2
  if [ "${ARTSEARCH_DOCKER_ENGINE:-}" = require ]; then exit 1; fi
  exit 3
}

# What is missing of: an engine (only where none answers), a compose command, debootstrap.
missing_packages() {
  local need_engine=$1
  [ "$need_engine" = yes ] && ! command -v dockerd >/dev/null 2>&1 && echo docker.io
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || echo docker-compose
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || echo debootstrap
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages "$1")
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || cannot "${missing[*]} not installed, and installing them needs root"
  command -v apt-get >/dev/null 2>&1 || cannot "${missing[*]} not installed, and there is no apt-get"
  echo "docker-engine: installing ${missing[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A stale package list can name versions the mirror no longer has: refresh once and retry.
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || cannot "apt-get install ${missing[*]} failed"
}

start_engine() {
  [ "$(id -u)" -eq 0 ] || cannot "dockerd is not running, and starting it needs root"
  command -v dockerd >/dev/null 2>&1 || cannot "dockerd is not installed"
  echo "docker-engine: starting dockerd (log: $LOG)" >&2
  mkdir -p "$(dirname "$LOG")"
  # setsid + nohup: the engine outlives this script and the make that ran it (tests start later).
  setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
  local waited=0
  until engine_answers; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      tail -n 5 "$LOG" >&2
      cannot "dockerd did not answer within ${WAIT_SECONDS} s (see $LOG)"
    fi
  done
}

if engine_answers; then
  # The compose command and debootstrap (the local base image) may still be missing: best effort.
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 && [ -n "$(missing_packages no)" ]; then
    (install_packages no) || echo "docker-engine: could not install $(missing_packages no | xargs)" >&2
  fi
else
  install_packages yes
  start_engine
fi
echo "docker-engine: engine $(docker version --format '{{.Server.Version}}') answers" >&2
