# artsearch — one command runs the demo, one runs the tests.
#   make demo   set up everything (venv, model, demo catalogue), start the four services, ingest, query
#   make test   the whole test suite (unit, per-service, integration, end to end)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  := models/efficientnet-lite0/model.onnx
GCOMPRIS := data/catalogues/gcompris/metadata.csv

.PHONY: help venv protos model catalogue demo test test-fast lint format clean

help:
	@echo "make demo | make test | make model | make catalogue | make protos | make lint | make clean"

$(STAMP): requirements.lock requirements-export.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-export.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

protos: $(STAMP)
	$(BIN)/python -m artsearch.protogen

model: $(MODEL)
$(MODEL): $(STAMP) services/encoder/export_onnx.py services/encoder/onnx_graph.py
	$(BIN)/python -m services.encoder.export_onnx --output $(MODEL)

catalogue: $(GCOMPRIS)
$(GCOMPRIS): $(STAMP)
	$(BIN)/artsearch catalogue gcompris --output data/catalogues/gcompris

demo: $(STAMP) $(MODEL) $(GCOMPRIS)
	$(BIN)/artsearch demo --catalogue data/catalogues/gcompris --model $(MODEL)

test: $(STAMP) $(MODEL) $(GCOMPRIS) lint
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) models data var .pytest_cache .ruff_cache
