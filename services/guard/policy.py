"""The guard's policy (what to do per finding type, direction and confidence) and `decide`, the pure function
that runs the detectors, applies the policy and redacts."""

from __future__ import annotations

import enum
import importlib.resources
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from services.guard.detectors import FINDING_TYPES, detect


class Action(enum.IntEnum):
    """What the guard does; ordered by strength so that the overall action is `max()` over findings."""

    ALLOW = 0
    FLAG = 1
    REDACT = 2
    BLOCK = 3


class Direction(enum.StrEnum):
    """Which way a text flows: to the LLM (input) or to the user (output)."""

    INPUT = "input"
    OUTPUT = "output"


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; the message names the file and the offending key."""


@dataclass(frozen=True, slots=True)
class Rule:
    """How one finding type is treated in one direction.

    confidence >= block_at -> BLOCK; flag_at <= confidence < block_at -> `action`; below flag_at -> ALLOW."""

    action: Action = Action.FLAG
    """The default action for findings between the two thresholds."""
    flag_at: float = 0.0
    """Findings below this confidence are allowed (and never redacted)."""
    block_at: float | None = None
    """Findings at or above this confidence block the text; None: never block on this type."""

    def action_for(self, confidence: float) -> Action:
        if self.block_at is not None and confidence >= self.block_at:
            return Action.BLOCK
        if confidence >= self.flag_at:
            return self.action
        return Action.ALLOW


_ALLOW_ALL = Rule(action=Action.ALLOW)


@dataclass(frozen=True)
class Policy:
    """Rules per direction and finding type; a type with no rule is allowed."""

    rules: Mapping[Direction, Mapping[str, Rule]]

    def rule(self, direction: Direction, finding_type: str) -> Rule:
        return self.rules.get(direction, {}).get(finding_type, _ALLOW_ALL)


@dataclass(frozen=True, slots=True)
class PolicyFinding:
    """A detector finding with the action the policy assigns to it alone."""

    type: str
    start: int
    end: int
    confidence: float
    action: Action


@dataclass(frozen=True)
class Decision:
    """The guard's answer for one text."""

    action: Action
    """The strongest action over all findings (ALLOW when there are none)."""
    findings: tuple[PolicyFinding, ...]
    """Everything found, in text order."""
    redacted_text: str
    """The text with redacted findings replaced by placeholders; the input itself when nothing was redacted."""
    placeholders: Mapping[str, str] = field(repr=False)
    """Placeholder -> original value, for restoring values in a final answer. Sensitive: never log it."""


# Types whose value can be replaced by a placeholder and the text still make sense. A flagged finding of
# these types is redacted too when the text is being redacted anyway.
REDACTABLE_TYPES: frozenset[str] = frozenset(
    {"credit_card", "us_ssn", "iban", "email", "phone", "ip_address", "secret"}
)


def decide(text: str, direction: Direction | str, policy: Policy) -> Decision:
    """Run every detector over `text`, apply `policy` for `direction` and redact what it says to redact."""
    try:
        direction = Direction(direction)
    except ValueError:
        raise ValueError(f"unknown direction {direction!r}: expected 'input' or 'output'") from None
    findings = tuple(
        PolicyFinding(f.type, f.start, f.end, f.confidence, policy.rule(direction, f.type).action_for(f.confidence))
        for f in detect(text)
    )
    overall = max((f.action for f in findings), default=Action.ALLOW)
    to_redact = [
        f for f in findings
        if f.action is Action.REDACT
        or (overall is Action.REDACT and f.action is Action.FLAG and f.type in REDACTABLE_TYPES)
    ]
    redacted, placeholders = _redact(text, to_redact)
    return Decision(overall, findings, redacted, MappingProxyType(placeholders))


def _redact(text: str, findings: list[PolicyFinding]) -> tuple[str, dict[str, str]]:
    """Replace each span with <TYPE_N>, numbered per type in text order; the same value keeps its placeholder."""
    if not findings:
        return text, {}
    by_value: dict[tuple[str, str], str] = {}
    counters: Counter[str] = Counter()
    pieces: list[str] = []
    pos = 0
    for f in findings:  # in text order and non-overlapping: detect() resolved overlaps
        value = text[f.start : f.end]
        placeholder = by_value.get((f.type, value))
        if placeholder is None:
            while True:  # skip numbers the text already uses, so restoring cannot touch the user's own words
                counters[f.type] += 1
                placeholder = f"<{f.type.upper()}_{counters[f.type]}>"
                if placeholder not in text:
                    break
            by_value[(f.type, value)] = placeholder
        pieces += (text[pos : f.start], placeholder)
        pos = f.end
    pieces.append(text[pos:])
    return "".join(pieces), {placeholder: value for (_, value), placeholder in by_value.items()}


# --- loading -----------------------------------------------------------------------------------------------

_RULE_KEYS = frozenset({"action", "flag_at", "block_at"})
_TOP_KEYS = frozenset({"version", *(d.value for d in Direction)})


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy file; None reads the packaged `default_policy.yaml`."""
    if path is None:
        resource = importlib.resources.files("services.guard").joinpath("default_policy.yaml")
        source, raw = "default_policy.yaml", resource.read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{source}: cannot read the policy: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    return _parse(data, source)


def _parse(data: Any, source: str) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with 'input' and 'output' at the top level")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise PolicyError(f"{source}: unknown top-level key(s) {sorted(map(str, unknown))}; expected {sorted(_TOP_KEYS)}")
    if data.get("version", 1) != 1:
        raise PolicyError(f"{source}: version: unsupported {data['version']!r}; this guard reads version 1")
    rules: dict[Direction, Mapping[str, Rule]] = {}
    for direction in Direction:
        section = data.get(direction.value)
        if not isinstance(section, dict):
            raise PolicyError(f"{source}: {direction.value}: expected a mapping of finding type to rule")
        per_type: dict[str, Rule] = {}
        for finding_type, spec in section.items():
            where = f"{source}: {direction.value}.{finding_type}"
            if finding_type not in FINDING_TYPES:
                raise PolicyError(f"{where}: unknown finding type; expected one of {sorted(FINDING_TYPES)}")
            per_type[finding_type] = _parse_rule(spec, where)
        rules[direction] = MappingProxyType(per_type)
    return Policy(MappingProxyType(rules))


def _parse_rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise PolicyError(f"{where}: expected a mapping with keys {sorted(_RULE_KEYS)}")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(map(str, unknown))}; expected {sorted(_RULE_KEYS)}")
    name = spec.get("action", "flag")
    try:
        action = Action[str(name).upper()]
    except KeyError:
        expected = ", ".join(a.name.lower() for a in Action)
        raise PolicyError(f"{where}.action: unknown action {name!r}; expected one of {expected}") from None
    flag_at = _threshold(spec.get("flag_at", 0.0), f"{where}.flag_at")
    block_at = None if spec.get("block_at") is None else _threshold(spec["block_at"], f"{where}.block_at")
    if block_at is not None and flag_at > block_at:
        raise PolicyError(f"{where}: flag_at ({flag_at}) is above block_at ({block_at})")
    return Rule(action=action, flag_at=flag_at, block_at=block_at)


def _threshold(value: Any, where: str) -> float:
    # bool is an int subclass: `flag_at: yes` is a typo, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise PolicyError(f"{where}: expected a number between 0 and 1, got {value!r}")
    return float(value)
