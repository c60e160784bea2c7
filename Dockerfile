# One image for every agentmesh process: `serve NAME`, `sim`, `db migrate`, `keys ...`, `ask`, `trace`,
# and `python -m gateway.render` (with the entrypoint overridden). docker-compose.yml shows each use.
#
#   docker build -t agentmesh:local .
#   docker run --rm agentmesh:local --help

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the dependencies, the generated stubs and a non-editable install ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone: a code change does not reinstall them. The `local` extra
# (Envoy and Postgres as wheels, for `agentmesh up`) is left out: in containers those are their own images.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && cat /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY protos/ protos/
COPY src/ src/
COPY services/ services/
COPY gateway/ gateway/

# The gRPC stubs are not committed (src/agentmesh/v1 is gitignored): generate them from protos/, the
# same way `make` does, before the install picks the package up.
RUN rm -rf src/agentmesh/v1 src/buf/validate && mkdir -p src/agentmesh/v1 \
    && python -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src --grpc_python_out=src \
        protos/agentmesh/v1/*.proto \
    && python -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src protos/buf/validate/validate.proto \
    && echo '"""Generated."""' > src/agentmesh/v1/__init__.py \
    && echo '"""Generated."""' > src/buf/validate/__init__.py \
    && pip install --no-deps .

# Fail the build, not the first container, if the stubs or package data (migrations, guard policy, Envoy
# template) are missing from the install. -P: import the installed packages, not the sources in /src.
RUN python -P -c "import agentmesh.v1.supervisor_pb2_grpc, buf.validate.validate_pb2, gateway.render as r, services.guard.policy; \
from agentmesh.db import CORE_MIGRATIONS; from services.supervisor.store import MIGRATIONS; \
assert 'site-packages' in r.__file__, r.__file__; \
assert r.TEMPLATE_PATH.is_file(), r.TEMPLATE_PATH; \
assert any(CORE_MIGRATIONS.glob('*.sql')) and any(MIGRATIONS.directory.glob('*.sql')); \
r.render_envoy_config(r.compose_spec())"

# --- runtime: the virtualenv only, as a non-root user -----------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 agentmesh \
    && useradd --system --uid 10001 --gid agentmesh --create-home --home-dir /home/agentmesh agentmesh \
    # Where the gateway-config job writes the rendered Envoy config, and where the certs job writes the mTLS
    # files (docker-compose.yml); a named volume mounted here takes this ownership when it is first created.
    && mkdir -p /var/lib/agentmesh/gateway /etc/agentmesh/tls \
    && chown agentmesh:agentmesh /var/lib/agentmesh/gateway /etc/agentmesh/tls \
    && chmod 0700 /etc/agentmesh/tls

COPY --from=build /opt/venv /opt/venv

# Numeric, so a runtime can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
WORKDIR /home/agentmesh

# Every service listens on its settings port (50051..50055) and the simulator on 8765; compose publishes
# none of them: the gateway is the way in.
EXPOSE 50051 50052 50053 50054 50055 8765

ENTRYPOINT ["agentmesh"]
CMD ["--help"]
