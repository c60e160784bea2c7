"""Small helpers the CLI commands share: where the database and the dev key are."""

from __future__ import annotations

import os
from pathlib import Path

from agentmesh.cli._exit import CliError, ExitCode
from agentmesh.settings import Settings

DEV_KEY_FILE = "dev-api-key"
DB_URL_FILE = "database-url"


def database_url(settings: Settings) -> str | None:
    """DATABASE_URL, else the embedded server that `agentmesh up` started (its URL is under data_dir)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    path = settings.data_dir / DB_URL_FILE
    return path.read_text().strip() if path.exists() else None


def require_database_url(settings: Settings) -> str:
    """database_url(), or a CliError telling the user how to get one."""
    dsn = database_url(settings)
    if dsn is None:
        raise CliError("no database: set DATABASE_URL or start the mesh with `agentmesh up`", ExitCode.UNAVAILABLE)
    return dsn


def api_key(settings: Settings, given: str | None) -> str | None:
    if given:
        return given
    if os.environ.get("AGENTMESH_API_KEY"):
        return os.environ["AGENTMESH_API_KEY"]
    path = settings.data_dir / DEV_KEY_FILE
    return path.read_text().strip() if path.exists() else None


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
