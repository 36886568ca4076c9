# artsearch — one command runs the demo, one runs the tests.
#   make demo   set up everything (venv, model, demo catalogue), start the four services, ingest, query
#   make test   the whole test suite (unit, per-service, integration, end to end, containers)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  := models/efficientnet-lite0/model.onnx
# The same network quantized to int8, calibrated on the demo paintings: a model version of its own.
MODEL_INT8 := models/efficientnet-lite0-int8/model.onnx
GCOMPRIS := data/catalogues/gcompris/metadata.csv

.PHONY: help venv protos model catalogue demo test test-fast lint format clean bench eval loadtest triton-server triton-repo browser eval-retrieval retrain eval-retrain k8s-validate docker-engine images compose-demo test-docker-engine test-repeat loadtest-faults eval-photos

help:
	@echo "make demo | make test | make model | make catalogue | make images | make compose-demo | make lint | make clean"

# `-e .` installs artsearch, services and the client package artsearch_client (clients/python, mapped by
# pyproject.toml's packages.find), which the CLI and the tests import.
$(STAMP): requirements.lock requirements-export.lock pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-export.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

protos: $(STAMP)
	$(BIN)/python -m artsearch_tools.protogen

model: $(MODEL) $(MODEL_INT8)
$(MODEL): $(STAMP) artsearch_tools/model_export/export_onnx.py artsearch_tools/model_export/onnx_graph.py
	$(BIN)/python -m artsearch_tools.model_export.export_onnx --output $(MODEL)
$(MODEL_INT8): $(MODEL) $(GCOMPRIS) artsearch_tools/model_export/quantize_onnx.py
	$(BIN)/python -m artsearch_tools.model_export.quantize_onnx --fp32 $(MODEL) --calibration data/catalogues/gcompris --output $(MODEL_INT8)

catalogue: $(GCOMPRIS)
$(GCOMPRIS): $(STAMP)
	$(BIN)/artsearch catalogue gcompris --output data/catalogues/gcompris

demo: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/artsearch demo --catalogue data/catalogues/gcompris --model $(MODEL)

# The real Triton Inference Server binary (CPU, python backend) from PyPI's nvidia-pytriton wheel, for tests.
TRITON := .cache/tritonserver/bin/tritonserver
triton-server: $(TRITON)
$(TRITON): $(STAMP) scripts/fetch_tritonserver.py
	$(BIN)/python scripts/fetch_tritonserver.py --dest .cache/tritonserver

# Debian chromium + chromium-driver for the web UI test (tests/e2e/test_web_ui.py); quick when installed.
browser:
	bash scripts/install_browser.sh

# A Docker engine: Debian's docker.io (+ docker-compose, debootstrap) installed and dockerd started where none
# answers (root); nothing to do where one does.
docker-engine:
	bash scripts/docker_engine.sh

# Every image: artsearch/{encoder,search,influence,gateway,cli}:dev and the local stand-ins
# artsearch/{tritonserver-cpu,falkordb}:dev, on python:3.11-slim or, where no registry answers, on a base made
# from Debian packages (scripts/images.py).
images: $(STAMP) $(MODEL) $(MODEL_INT8) docker-engine
	$(BIN)/python scripts/images.py build

# The stack from those images (docker-compose.local.yml): up, ingest the demo catalogue through the CLI
# container, one query; the gateway keeps serving on 127.0.0.1:8080.
compose-demo: images $(GCOMPRIS)
	bash scripts/compose_demo.sh

# For `make test`: the container suite needs an engine and the images; where no engine can be had (not root,
# no apt-get) the script exits 3, nothing is built and those tests skip, saying why. CI sets
# ARTSEARCH_DOCKER_ENGINE=require, which makes that an error. (The suite builds again: seconds when up to date.)
test-docker-engine: $(STAMP) $(MODEL) $(MODEL_INT8)
	@if bash scripts/docker_engine.sh; then $(BIN)/python scripts/images.py build; \
	 else status=$$?; [ $$status -eq 3 ]; fi

# deploy/triton/model_repository with the exported ONNX model in place (production layout).
triton-repo: $(MODEL)
	$(BIN)/python -m artsearch_tools.model_export.triton_repository --model $(MODEL) --repository deploy/triton/model_repository

# Speed: writes bench/results/*.json and prints ratios against a yardstick measured in the same run.
bench: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/python -m bench.encoder
	$(BIN)/python -m bench.influence
	$(BIN)/python -m bench.search

# End to end: the gateway and all services on embedded defaults, ~10k artworks, concurrency 1..64, loopback
# only, about two minutes; writes bench/results/loadtest.json (ratio to the encoder's raw throughput).
loadtest: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/python -m bench.loadtest

# The production shape under traffic while each back end is killed, paused and restarted (docker-compose.local.yml
# on free loopback ports, ~6 minutes); writes bench/results/faults.json (lost writes, answers past deadline).
loadtest-faults: images $(GCOMPRIS)
	$(BIN)/python -m bench.faults

# Quality: descriptor retrieval metrics on the labelled sets, beside a colour-histogram baseline and chance.
eval: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/artsearch eval descriptors

# Leave-one-out retrieval per aspect, ANN vs exact, k-means purity, influence re-rank, style prediction,
# and the pictures in docs/img (about two minutes).
eval-retrieval: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/artsearch eval retrieval

# Visitor photos (gallery wall, grey print, detail, ...) through the whole stack with >= 5,000 distractors
# ingested (report seeds; bench/results/visitor_photos.json). Own state folder var/eval-photos. On 2 cores the
# distractors' ingest with the default region grid takes over an hour (docs/evaluation.md).
eval-photos: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/python -m bench.visitor_photos

# A projection head fine-tuned on the demo catalogue, exported as a new model version, and whether it helps.
RETRAINED := models/efficientnet-lite0-retrained/model.onnx
retrain: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/artsearch retrain --catalogue data/catalogues/gcompris --output $(RETRAINED) --holdout 0.25
eval-retrain: retrain
	$(BIN)/artsearch eval retrain --retrained $(RETRAINED)

test: $(STAMP) $(MODEL) $(MODEL_INT8) $(GCOMPRIS) $(TRITON) browser test-docker-engine lint
	$(BIN)/pytest -q

# The Kubernetes manifests and compose file, offline (also part of `make test`).
k8s-validate: $(STAMP)
	$(BIN)/pytest -q tests/deploy

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# A test that failed once and passed on a rerun is a bug: this reruns the slow suites N times and stops at the
# first run that fails, naming it, e.g. `make test-repeat N=10 SUITES=tests/integration PYTEST_ARGS="-k triton"`.
N ?= 5
SUITES ?= tests/e2e tests/integration tests/services
PYTEST_ARGS ?= -x
test-repeat: $(STAMP) $(MODEL) $(GCOMPRIS) $(TRITON)
	@for run in $$(seq 1 $(N)); do \
	  echo "== test-repeat: run $$run of $(N): pytest -m slow $(PYTEST_ARGS) $(SUITES)"; \
	  if ! $(BIN)/pytest -q -m slow $(PYTEST_ARGS) $(SUITES); then \
	    echo "== test-repeat: run $$run of $(N) FAILED (runs 1 to $$((run - 1)) passed)"; exit 1; \
	  fi; \
	done; \
	echo "== test-repeat: all $(N) runs passed"

# The import layers too (pyproject.toml [tool.importlinter]): tools > services > core, no service imports another.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) models data var .pytest_cache .ruff_cache
