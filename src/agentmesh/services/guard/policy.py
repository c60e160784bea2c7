"""The guard's policy (what to do per finding type, direction and confidence) and `decide`, the pure function
that runs the detectors, applies the policy and redacts."""

from __future__ import annotations

import bisect
import enum
import importlib.resources
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import yaml

from agentmesh.services.guard.detectors import FINDING_TYPES, Finding, detect

log = logging.getLogger(__name__)


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


class LlmVerdict(enum.StrEnum):
    """What tier two said about a grey-zone finding."""

    INJECTION = "injection"
    BENIGN = "benign"
    UNAVAILABLE = "unavailable"
    """Down, slow, over budget or unparseable: the tier-one decision stands."""


@dataclass(frozen=True, slots=True)
class PolicyFinding:
    """A detector finding with the action the policy assigns to it alone."""

    type: str
    start: int
    end: int
    confidence: float
    action: Action
    llm_verdict: LlmVerdict | None = None
    """Set when tier two was asked about this finding."""


@dataclass(frozen=True)
class Decision:
    """The guard's answer for one text."""

    action: Action
    """The strongest action over all findings (ALLOW when there are none)."""
    findings: tuple[PolicyFinding, ...]
    """What the policy acts on, in text order; findings it allows are left out."""
    redacted_text: str
    """The text with redacted findings replaced by placeholders; the input itself when nothing was redacted."""
    placeholders: Mapping[str, str] = field(repr=False)
    """Placeholder -> original value of the placeholders in redacted_text (new ones and ones reused from the
    vault). Sensitive: never log it."""
    detected: tuple[Finding, ...] = ()
    """Every detector finding, allowed ones too (spans and scores only): what tier two and the review queue see."""


# Types whose value can be replaced by a placeholder and the text still make sense. A flagged finding of
# these types is redacted too when the text is being redacted anyway.
REDACTABLE_TYPES: frozenset[str] = frozenset(
    {"credit_card", "us_ssn", "iban", "email", "phone", "ip_address", "secret"}
)
_PLACEHOLDER_RE = re.compile(r"<([A-Z_]+)_(\d+)>")


def decide(
    text: str, direction: Direction | str, policy: Policy, *, vault: Mapping[str, str] | None = None
) -> Decision:
    """Run every detector over `text`, apply `policy` for `direction` and redact what it says to redact.

    `vault` (placeholder -> value from earlier texts of the same conversation): a value found again keeps its
    placeholder, and new placeholders never reuse its names."""
    return apply_policy(text, detect(text), direction, policy, vault=vault)


def apply_policy(
    text: str,
    detected: Sequence[Finding],
    direction: Direction | str,
    policy: Policy,
    *,
    vault: Mapping[str, str] | None = None,
    verdicts: Mapping[tuple[str, int, int], LlmVerdict] | None = None,
) -> Decision:
    """The policy's decision on findings already detected (tier two re-applies it after changing confidences).
    `verdicts` annotates findings by (type, start, end)."""
    try:
        direction = Direction(direction)
    except ValueError:
        raise ValueError(f"unknown direction {direction!r}: expected 'input' or 'output'") from None
    verdicts = verdicts or {}
    findings = []
    for f in detected:
        action = policy.rule(direction, f.type).action_for(f.confidence)
        if action is not Action.ALLOW:
            findings.append(
                PolicyFinding(f.type, f.start, f.end, f.confidence, action, verdicts.get((f.type, f.start, f.end)))
            )
    overall = max((f.action for f in findings), default=Action.ALLOW)
    to_redact = [
        f
        for f in findings
        if f.action is Action.REDACT
        or (overall is Action.REDACT and f.action is Action.FLAG and f.type in REDACTABLE_TYPES)
    ]
    redacted, placeholders, _ = redact_spans(text, to_redact, vault=vault)
    return Decision(overall, tuple(findings), redacted, MappingProxyType(placeholders), tuple(detected))


class _Span(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


def redact_spans(
    text: str, spans: Sequence[_Span], *, vault: Mapping[str, str] | None = None, keep: Sequence[_Span] = ()
) -> tuple[str, dict[str, str], list[tuple[int, int]]]:
    """Replace each span with <TYPE_N>, numbered per type in text order; the same value keeps its placeholder.

    Returns the text, placeholder -> value for the placeholders used, and the new (start, end) of each span in
    `keep` (spans left in place, such as injection phrases, whose offsets move with the replacements)."""
    vault = vault or {}
    if not spans:
        return text, {}, [(k.start, k.end) for k in keep]
    by_value: dict[tuple[str, str], str] = {}
    counters: Counter[str] = Counter()
    for held, value in vault.items():
        m = _PLACEHOLDER_RE.fullmatch(held)
        if m is not None:
            by_value[(m.group(1).lower(), value)] = held
            counters[m.group(1).lower()] = max(counters[m.group(1).lower()], int(m.group(2)))
    used: dict[str, str] = {}
    pieces: list[str] = []
    shifts: list[tuple[int, int]] = []  # (original offset, shift from there on)
    pos = shift = 0
    for f in spans:  # in text order and non-overlapping: detect() resolved overlaps
        value = text[f.start : f.end]
        placeholder = by_value.get((f.type, value))
        if placeholder is None:
            while True:  # skip numbers the text already uses, so restoring cannot touch the user's own words
                counters[f.type] += 1
                placeholder = f"<{f.type.upper()}_{counters[f.type]}>"
                if placeholder not in text and placeholder not in vault:
                    break
            by_value[(f.type, value)] = placeholder
        used[placeholder] = value
        pieces += (text[pos : f.start], placeholder)
        pos = f.end
        shift += len(placeholder) - (f.end - f.start)
        shifts.append((f.end, shift))
    pieces.append(text[pos:])

    def moved(offset: int) -> int:
        i = bisect.bisect_right(shifts, offset, key=lambda s: s[0])
        return offset + (shifts[i - 1][1] if i else 0)

    return "".join(pieces), used, [(moved(k.start), moved(k.end)) for k in keep]


def restore(text: str, placeholders: Mapping[str, str]) -> str:
    """Put values back for the placeholders in `text` that `placeholders` knows; others stay as they are."""
    if not placeholders or "<" not in text:
        return text
    return _PLACEHOLDER_RE.sub(lambda m: placeholders.get(m.group(), m.group()), text)


def redact_for_review(decision: Decision, text: str) -> tuple[str, list[PolicyFinding]]:
    """The text as a reviewer may see it: every PII and secret the detectors saw replaced (whatever the policy
    did with it), injection phrases kept; and the decision's findings with offsets into that text."""
    sensitive = [f for f in decision.detected if f.type in REDACTABLE_TYPES]
    keep = list(decision.findings)
    redacted, _, spans = redact_spans(text, sensitive, keep=keep)
    # A redacted finding's new span is its placeholder: the one that starts where the finding now starts.
    moved = [replace(f, start=s, end=e) for f, (s, e) in zip(keep, spans, strict=True)]
    for i, f in enumerate(moved):
        if f.type in REDACTABLE_TYPES:
            m = _PLACEHOLDER_RE.match(redacted, f.start)
            if m is not None:
                moved[i] = replace(f, end=m.end())
    return redacted, moved


# --- a policy file that is reloaded when it changes --------------------------------------------------------


class PolicySource:
    """The current policy from a file: re-read when its modification time (or size) changes, checked at most
    every `check_interval_s`, or on `reload()` (SIGHUP). An invalid new version is logged and the last good
    one stays; the file must be valid at start (`PolicyError` from the constructor)."""

    def __init__(
        self, path: Path | None, *, check_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._interval = check_interval_s
        self._clock = clock
        self._stamp = self._stat()
        self._policy = load_policy(path)
        self._checked = clock()

    @property
    def path(self) -> Path | None:
        return self._path

    def __call__(self) -> Policy:
        if self._path is not None and self._clock() - self._checked >= self._interval:
            self._checked = self._clock()
            if self._stat() != self._stamp:
                self.reload()
        return self._policy

    def reload(self) -> bool:
        """Re-read the file now; False (and the old policy kept) when it is unreadable or invalid."""
        stamp = self._stat()
        try:
            policy = load_policy(self._path)
        except PolicyError as exc:
            self._stamp = stamp  # do not retry an unchanged broken file every second
            log.error("policy reload failed; keeping the previous policy", extra={"error": str(exc)})
            return False
        self._policy, self._stamp = policy, stamp
        log.info("policy reloaded", extra={"path": str(self._path) if self._path else "default"})
        return True

    def _stat(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size


# --- loading -----------------------------------------------------------------------------------------------

_RULE_KEYS = frozenset({"action", "flag_at", "block_at"})
_TOP_KEYS = frozenset({"version", *(d.value for d in Direction)})


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy file; None reads the packaged `default_policy.yaml`."""
    if path is None:
        resource = importlib.resources.files(__package__ or "agentmesh.services.guard").joinpath("default_policy.yaml")
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


def _parse(data: object, source: str) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with 'input' and 'output' at the top level")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise PolicyError(
            f"{source}: unknown top-level key(s) {sorted(map(str, unknown))}; expected {sorted(_TOP_KEYS)}"
        )
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


def _parse_rule(spec: object, where: str) -> Rule:
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


def _threshold(value: object, where: str) -> float:
    # bool is an int subclass: `flag_at: yes` is a typo, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise PolicyError(f"{where}: expected a number between 0 and 1, got {value!r}")
    return float(value)
