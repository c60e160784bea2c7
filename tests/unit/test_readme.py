"""The README's configuration table names every setting (so it cannot silently go stale)."""

from __future__ import annotations

from pathlib import Path

from agentmesh.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def env_names() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.append(alias.choices[0] if alias is not None else f"AGENTMESH_{name.upper()}")  # type: ignore[union-attr]
    return names


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [n for n in env_names() if f"| `{n}` |" not in text]
    assert not missing, f"README configuration table lacks: {missing}"


def test_every_setting_has_a_description() -> None:
    assert all(f.description for f in Settings.model_fields.values())
