# Each target installs what it needs first, so any of them works on a fresh machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: help setup dev down status demo test test-unit lint crds openapi generate bench clean images base-image test-images

help:
	@echo "make dev    - bring up the local stack (Kubernetes control plane, process nodes, MinIO, operator, API)"
	@echo "make down   - stop the local stack, leaving no process behind"
	@echo "make demo   - run a real FFmpeg job end to end on the local stack"
	@echo "make test   - run the test suite (brings its own stack up if none is running)"
	@echo "make lint   - ruff, mypy and the import contracts (import-linter)"
	@echo "make bench  - run the benchmarks, results in bench/results/"
	@echo "make generate - regenerate the CRD and api/openapi.json from the code"
	@echo "make images - build the worker, worker-gpu, api and operator images (docker, buildah or podman)"
	@echo "make test-images - run each built image under runc against the local stack"

setup: $(STAMP)
	@bash hack/install-system-deps.sh
	@bash hack/build-control-plane.sh >/dev/null

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q -U pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

dev: setup
	@$(VENV)/bin/devstack up
	@echo "next: . .devstack/env && kubectl get nodes"

down:
	@if [ -x $(VENV)/bin/devstack ]; then $(VENV)/bin/devstack down; else echo "nothing to stop"; fi

status:
	@$(VENV)/bin/devstack status

demo: dev
	@$(PY) hack/demo.py

# The images' tests (marker `images`) run in `make test-images`, after `make images`.
test: setup
	@$(VENV)/bin/pytest -q -p no:cacheprovider -m "not images" $(PYTEST_ARGS)

test-unit: $(STAMP)
	@$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports
	@$(VENV)/bin/mypy crds/ffmpegjob_model api/ffmpeg_api operator/ffmpeg_operator worker-image/ffmpeg_worker hack/devstack client/kubeffmpeg bench mcp-server/ffmpeg_mcp

crds: $(STAMP)
	@$(PY) -m ffmpegjob_model.crd

openapi: $(STAMP)
	@$(PY) -m ffmpeg_api.openapi

# Everything that is generated from the code: the CRD (repo and chart copies) and the OpenAPI document.
generate: crds openapi

# Images (docs/install.md, "Images"). BASE_IMAGE, IMAGE_PREFIX, IMAGE_TAG, IMAGE_TOOL and
# CA_BUNDLE are read from the environment (hack/images.sh says what each does).
images:
	@bash hack/install-system-deps.sh images
	@bash hack/images.sh

# A Debian bookworm base from Debian's packages (mmdebstrap), for machines without a registry.
base-image:
	@bash hack/install-system-deps.sh images
	@bash hack/base-image.sh

test-images: setup images
	@$(VENV)/bin/pytest -q -p no:cacheprovider -m images tests/integration/test_images.py $(PYTEST_ARGS)

bench: dev
	@$(PY) -m bench.run

clean: down
	rm -rf .devstack $(VENV)
