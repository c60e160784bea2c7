"""The prompt-injection phrase families, read from `injection_phrases.yaml` and compiled once, at import.

The data file holds named pieces of regex (`words`, written `{NAME}` where used) and the families' branches, each a
weight and a regex. This module expands the words, compiles every branch, and builds what the scan in `_injection`
needs: one trigger pattern (the union of the branches' literal prefixes, read off the parsed patterns, so it cannot
drift from them) and, for each trigger, the branches that can start where it fired, strongest first.

Dispatch is by the trigger that fired, not by its first letter. A branch can match only where the text starts with
one of its prefixes, and the trigger's text starts there too, so one of the two extends the other: the candidates
where "i want you to act" fired are the branches with such a prefix (two or three), not the forty that start with
"i". (The trie usually stops at the shortest prefix on its path, but not always: "what\\b is the" and "what is\\b"
part at the boundary.)"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import yaml

from agentmesh.services.guard._scan import bounded, literal_prefixes, trie

_DATA_FILE = "injection_phrases.yaml"
_WORD_REF_RE = re.compile(r"\{([A-Z][A-Z_]*)\}")  # a regex quantifier is {n} or {n,m}, never capitals
_WS_RUN_RE = re.compile(r"\s+")


class Branch(NamedTuple):
    """One way a family is said: a hit of `pattern` (on lowercased text) has confidence `weight` on its own."""

    family: str
    weight: float
    pattern: re.Pattern[str]


class Phrases(NamedTuple):
    """The compiled families: `trigger` finds where a branch may start, `ordered` the branches to try there."""

    words: Mapping[str, str]
    branches: tuple[Branch, ...]
    trigger: re.Pattern[str]
    ordered: Mapping[str, tuple[Branch, ...]]
    all_ordered: tuple[Branch, ...]


def load(raw: str | None = None) -> Phrases:
    """Compile the phrase families in `raw` (YAML text); None reads the packaged `injection_phrases.yaml`.
    Raises ValueError when the data is malformed: an unknown {WORD}, a bad regex, a branch without a literal start."""
    if raw is None:
        resource = importlib.resources.files(__package__ or "agentmesh.services.guard").joinpath(_DATA_FILE)
        raw = resource.read_text(encoding="utf-8")
    data = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict) or not isinstance(data.get("families"), list):
        raise ValueError(f"{_DATA_FILE}: expected a mapping with 'words' and a list of 'families'")
    words: dict[str, str] = {}
    for name, text in (data.get("words") or {}).items():
        words[name] = _expand(_joined(text), words, f"word {name}")  # a word may use the words before it
    branches: list[Branch] = []
    for entry in data["families"]:
        family, items = _entry(entry)
        for item in items:
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"{_DATA_FILE}: a branch of {family!r} is not one 'weight: regex' pair: {item!r}")
            [(weight, text)] = item.items()
            if not isinstance(weight, (int, float)) or not 0 < weight <= 1:
                raise ValueError(f"{_DATA_FILE}: a branch of {family!r} has weight {weight!r}, not in (0, 1]")
            regex = _expand(_joined(text), words, f"a branch of {family!r}")
            try:
                branches.append(Branch(family, float(weight), re.compile(regex)))
            except re.error as exc:
                raise ValueError(f"{_DATA_FILE}: a branch of {family!r} does not compile ({exc}): {regex!r}") from exc
    trigger, candidates = _compile_scan(branches)
    ordered = {key: _by_strength(branches, ix) for key, ix in candidates.items()}
    return Phrases(
        words=MappingProxyType(words),
        branches=tuple(branches),
        trigger=trigger,
        ordered=MappingProxyType(ordered),
        all_ordered=_by_strength(branches, range(len(branches))),
    )


def _entry(entry: Any) -> tuple[str, list[Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("family"), str) or not entry.get("about"):
        raise ValueError(f"{_DATA_FILE}: a family needs a name ('family') and what it catches ('about'): {entry!r}")
    if not isinstance(entry.get("branches"), list) or not entry["branches"]:
        raise ValueError(f"{_DATA_FILE}: family {entry['family']!r} has no branches")
    return entry["family"], entry["branches"]


def _joined(text: Any) -> str:
    """A regex as the file wraps it: a literal block whose lines are one pattern (line breaks are not part of it)."""
    if not isinstance(text, str):
        raise ValueError(f"{_DATA_FILE}: expected a regex string, got {text!r}")
    return "".join(text.splitlines())


def _expand(text: str, words: Mapping[str, str], where: str) -> str:
    def word(m: re.Match[str]) -> str:
        if m.group(1) not in words:
            raise ValueError(f"{_DATA_FILE}: {where} uses {{{m.group(1)}}}, which is not defined before it")
        return words[m.group(1)]

    return _WORD_REF_RE.sub(word, text)


def _prefix_key(prefix: str) -> str:
    """A prefix as the trigger's matched text reads once whitespace runs are single spaces (boundaries are empty)."""
    return prefix.replace("\0", "")


def _compile_scan(branches: list[Branch]) -> tuple[re.Pattern[str], dict[str, frozenset[int]]]:
    by_key: dict[str, set[int]] = {}
    word_starts: set[str] = set()
    other_starts: set[str] = set()
    for i, branch in enumerate(branches):
        # Prefixes of the whole branch, so that "you are now" triggers and a bare "you" does not.
        prefixes = bounded(literal_prefixes(branch.pattern.pattern))
        if "" in prefixes or "\0" in prefixes:
            raise ValueError(
                f"{_DATA_FILE}: a branch of {branch.family!r} has no literal start: {branch.pattern.pattern!r}"
            )
        for prefix in prefixes:
            by_key.setdefault(_prefix_key(prefix), set()).add(i)
            (word_starts if prefix[0].isalpha() and ord(prefix[0]) < 0x3000 else other_starts).add(prefix)
    trigger = r"\b" + trie(word_starts) + ("|" + trie(other_starts) if other_starts else "")
    keys = sorted(by_key)
    candidates: dict[str, frozenset[int]] = {}
    for n, key in enumerate(keys):
        found = set(by_key[key])
        for longer in keys[n + 1 :]:  # sorted: the keys that extend `key` follow it
            if not longer.startswith(key):
                break
            found |= by_key[longer]
        for end in range(1, len(key)):  # and the keys that `key` extends
            found |= by_key.get(key[:end], set())
        candidates[key] = frozenset(found)
    return re.compile(trigger), candidates


def _by_strength(branches: list[Branch], indices: Iterable[int]) -> tuple[Branch, ...]:
    """Strongest first; among equal weights, the data file's order."""
    return tuple(branches[i] for i in sorted(indices, key=lambda i: (-branches[i].weight, i)))


PHRASES = load()
TRIGGER_RE = PHRASES.trigger
WORDS = PHRASES.words
_ORDERED = PHRASES.ordered
_ALL_ORDERED = PHRASES.all_ordered


def first_branch(trigger: str, low: str, start: int) -> tuple[Branch, re.Match[str]] | None:
    """The strongest branch that matches `low` at `start`, among those that can match where `trigger` fired. Each
    branch is compiled on its own: one alternation per set of candidates would mean hundreds of them (~1 s to
    compile), and trying them in order is what an alternation does."""
    key = _WS_RUN_RE.sub(" ", trigger) if not trigger.isalpha() else trigger
    for branch in _ORDERED.get(key, _ALL_ORDERED):
        m = branch.pattern.match(low, start)
        if m is not None:
            return branch, m
    return None
