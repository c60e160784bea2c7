#!/bin/sh
# How the image installs agentmesh, in two steps so a code change does not reinstall the dependencies. The
# Dockerfile runs it, and so does the image check in `make test` (tests/integration/test_image.py), which
# cannot run Docker here: one script, so the check installs exactly what the image does.
#
#   install.sh deps VENV_PYTHON SRC   # the runtime lock only: no `local`, no `dev`, no `bench` extra
#   install.sh app  VENV_PYTHON SRC   # generated stubs, then a non-editable install without dependencies
set -eu
step=$1 python=$2 src=$3
case "$step" in
deps)
    "$python" -m pip install --no-cache-dir -r "$src/requirements/runtime.lock"
    ;;
app)
    # The gRPC stubs are not committed (src/agentmesh/v1 is gitignored): generate them from protos/, as
    # `make` does, before the install picks the package up.
    rm -rf "$src/src/agentmesh/v1" "$src/src/buf/validate" && mkdir -p "$src/src/agentmesh/v1"
    "$python" -m grpc_tools.protoc -I"$src/protos" --python_out="$src/src" --pyi_out="$src/src" \
        --grpc_python_out="$src/src" "$src"/protos/agentmesh/v1/*.proto
    "$python" -m grpc_tools.protoc -I"$src/protos" --python_out="$src/src" --pyi_out="$src/src" \
        "$src/protos/buf/validate/validate.proto"
    echo '"""Generated."""' > "$src/src/agentmesh/v1/__init__.py"
    echo '"""Generated."""' > "$src/src/buf/validate/__init__.py"
    # "$src/": a path to pip even when SRC has no slash (a bare `src` would be a PyPI project of that name).
    "$python" -m pip install --no-cache-dir --no-deps "$src/"
    # Fail the build, not the first container, when stubs or package data (migrations, guard policy and
    # model, Envoy template) are missing. -P and another directory: import the installed package, not $src.
    (cd / && "$python" -P -c "
import agentmesh.v1.supervisor_pb2_grpc, buf.validate.validate_pb2
import agentmesh.gateway.render as r
from agentmesh.db import CORE_MIGRATIONS
from agentmesh.services.supervisor.migrations import MIGRATIONS as S
from agentmesh.services.guard.migrations import MIGRATIONS as G
import agentmesh.services.guard.policy
assert 'site-packages' in r.__file__, r.__file__
assert r.TEMPLATE_PATH.is_file(), r.TEMPLATE_PATH
assert all(any(d.glob('*.sql')) for d in (CORE_MIGRATIONS, S.directory, G.directory))
r.render_envoy_config(r.compose_spec())
")
    ;;
*)
    echo "usage: install.sh deps|app VENV_PYTHON SRC" >&2
    exit 2
    ;;
esac
