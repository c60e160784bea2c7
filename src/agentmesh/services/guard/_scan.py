"""Fast trigger scans for Python's regex engine: the literal prefixes a pattern's matches must start with, read
off its parsed form, compiled into a trie. A trie is walked in a handful of comparisons per position, where a
flat alternation of ~150 words (or one that starts with a lookbehind) costs many times more: the detectors
scan for triggers this way and try their full patterns only where a trigger stands."""

from __future__ import annotations

import re
import re._constants as _sre  # the parsed form of a pattern, read once at import
import re._parser as _sre_parser
from collections.abc import Iterator
from typing import Any

_BOUNDARY = "\0"  # a word boundary inside a prefix (\b in the trie)
_SPACE = " "  # a run of whitespace inside a prefix (\s+ in the trie)
_MAX_PREFIXES = 400  # past this many, a pattern's prefixes stop at its first word


def literal_prefixes(pattern: str) -> set[str]:
    """The literal strings every match of `pattern` starts with; an empty string among them means "no literal
    prefix" (the pattern can start anywhere). A trailing NUL marks a prefix that ends at a word boundary."""
    return _prefixes(_sre_parser.parse(pattern), "")


def _prefixes(items: Any, prefix: str) -> set[str]:
    items = list(items)
    for i, (op, av) in enumerate(items):
        rest = items[i + 1 :]
        if op is _sre.AT:
            if prefix and av is _sre.AT_BOUNDARY:
                return _prefixes(rest, prefix if prefix.endswith(_BOUNDARY) else prefix + _BOUNDARY)
            if prefix:
                return {prefix}
            continue
        if op in (_sre.ASSERT, _sre.ASSERT_NOT) and not prefix:
            continue
        if op is _sre.LITERAL:
            prefix += chr(av)
            continue
        if op in (_sre.BRANCH, _sre.SUBPATTERN):
            alternatives = av[1] if op is _sre.BRANCH else [av[-1]]
            # Each alternative, followed by the rest of the sequence, is its own pattern.
            return {q for alt in alternatives for q in _prefixes([*alt, *rest], prefix)}
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[0] >= 1 and prefix and _is_space(av[2]):
            return _prefixes(rest, prefix + _SPACE)  # whitespace between words: the next word joins the prefix
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[0] >= 1:
            inner = list(av[2])
            if len(inner) == 1 and inner[0][0] is _sre.LITERAL:
                return {prefix + chr(inner[0][1]) * av[0]}
            return _prefixes(inner, prefix)
        if op is _sre.IN and all(o is _sre.LITERAL for o, _ in av) and len(av) <= 16:
            return {q for _, c in av for q in _prefixes(rest, prefix + chr(c))}
        return {prefix}
    return {prefix}


def _is_space(items: Any) -> bool:
    inner = list(items)
    return (
        len(inner) == 1
        and inner[0][0] is _sre.IN
        and [c for _, c in inner[0][1]] in ([_sre.CATEGORY_SPACE], [_sre.CATEGORY_UNI_SPACE])
    )


def bounded(prefixes: set[str], limit: int = _MAX_PREFIXES) -> set[str]:
    """`prefixes`, or when there are too many (alternations multiply them), each cut after its first word."""
    if len(prefixes) <= limit:
        return prefixes
    return {p.split(_SPACE, 1)[0] for p in prefixes}


def trie(words: set[str]) -> str:
    """A regex matching any of `words` (NUL: a word boundary), nested by shared first characters."""
    by_first: dict[str, set[str]] = {}
    for w in words:
        by_first.setdefault(w[0], set()).add(w[1:])
    parts = []
    for first, rests in sorted(by_first.items()):
        head = r"\b" if first == _BOUNDARY else r"\s+" if first == _SPACE else re.escape(first)
        if "" in rests:  # a shorter word ends here: it is enough to trigger
            parts.append(head)
        else:
            parts.append(head + trie(rests))
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


class PrefixScan:
    """finditer() of `pattern`, found by scanning for its literal prefixes first (same matches, left to right,
    non-overlapping). The pattern must have a literal prefix on every branch."""

    def __init__(self, pattern: str) -> None:
        prefixes = bounded(literal_prefixes(pattern))
        if "" in prefixes or _BOUNDARY in prefixes:
            raise ValueError(f"a branch of {pattern[:60]!r}... has no literal prefix")
        self._trigger = re.compile(trie(prefixes))
        self._pattern = re.compile(pattern)

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        match, search = self._pattern.match, self._trigger.search
        pos = 0
        while (t := search(text, pos)) is not None:
            m = match(text, t.start())
            if m is None:
                pos = t.start() + 1  # a trigger may span words: another match may start inside it
                continue
            pos = max(m.end(), t.start() + 1)
            yield m
