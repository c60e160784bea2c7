"""docker-compose.yml as the tests read it: its services (YAML merge keys resolved) and compose's variable
interpolation, so a test can run a service's own command with the environment compose would give it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of the forms docker-compose.yml uses: ${VAR}, ${VAR-default}, ${VAR:-default}, $$."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.groups()
        if name in env and (op != ":-" or env[name]):
            return env[name]
        return default if op else ""

    return _VAR.sub(one, value)


def compose_services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def compose_env(service: Mapping[str, Any], shell: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as compose hands it over with `shell` as the shell's variables (an entry without a
    value is passed through from the shell, else left out)."""
    out = {}
    for key, value in service.get("environment", {}).items():
        if value is None:
            if key in shell:
                out[key] = shell[key]
            continue
        out[key] = interpolate(str(value), shell)
    return out
