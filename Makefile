# The two commands of the README: `make serve` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test test-fast setup-gateway setup-dev protos wheelhouse base-image image image-online

setup-gateway:
	scripts/install.sh gateway $(VENV)

setup-dev:
	scripts/install.sh dev $(VENV)

serve: setup-gateway
	$(BIN)/tsva serve

test: setup-dev
	$(BIN)/python -m pytest

# The unit tier only: in process, no servers, under a minute (tests/unit).
test-fast: setup-dev
	$(BIN)/python -m pytest -m "not e2e"

# Regenerates the Python stubs in common/tsva/v1 from protos/ (tests check they are current).
protos:
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=common --pyi_out=common \
	  --grpc_python_out=common protos/tsva/v1/tsva.proto

# The gateway image. `make image` builds it without network: a bookworm base made locally
# (scripts/base_image.sh, needs root and debootstrap) and the wheels of requirements/wheelhouse/
# (scripts/wheelhouse.sh). `make image-online` is the plain build on python:3.11-slim-bookworm.
IMAGE ?= tsva-gateway
BASE_IMAGE ?= tsva-base:bookworm

wheelhouse:
	scripts/wheelhouse.sh

base-image:
	scripts/base_image.sh $(BASE_IMAGE)

image: wheelhouse base-image
	docker build --network none --build-arg PYTHON_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

image-online:
	docker build -t $(IMAGE) .

