# The two commands of the README: `make serve` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test setup-gateway setup-dev protos

setup-gateway:
	scripts/install.sh gateway $(VENV)

setup-dev:
	scripts/install.sh dev $(VENV)

serve: setup-gateway
	$(BIN)/tsva serve

test: setup-dev
	$(BIN)/python -m pytest

# Regenerates the Python stubs in clients/tsva/v1 from protos/ (tests check they are current).
protos:
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=clients --pyi_out=clients \
	  --grpc_python_out=clients protos/tsva/v1/tsva.proto
