"""Routing to a catalog's own agents: the shipped researcher, analyst and executor keep their fixed order; any
other agent of the routing prompt is a specialist, chosen when its description shares words with the request
(as a model reading the `Agent NAME: description` lines would), and its answer ends the run."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

GENERALISTS = frozenset({"researcher", "analyst", "executor"})
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")
_AGENT_LINE_RE = re.compile(r"\s*Agent\s+([a-z][a-z0-9_-]*)\s*:\s*(.*)$")
_COMMON = frozenset(
    """this that with from into give what when which will your about please them then than they their there
    these those have need want make like also only some more most very just each other over""".split()
)


def stems(text: str) -> set[str]:
    """Content words cut to 5 letters, a trailing s dropped: "translates" meets "translate", "texts" "text"."""
    return {w.lower().rstrip("s")[:5] for w in _WORD_RE.findall(text) if len(w) >= 4 and w.lower() not in _COMMON}


def descriptions(text: str) -> dict[str, str]:
    """The `Agent NAME: description` lines of a routing prompt."""
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := _AGENT_LINE_RE.match(line))}


def specialist(text: str, request: str, allowed: Sequence[str], done: Collection[str]) -> str | None:
    """The best-fitting specialist not yet done, "FINISH" once one that fits has answered, else None."""
    wanted = stems(request)
    fits = {
        name: len(stems(description) & wanted)
        for name, description in descriptions(text).items()
        if name.lower() not in GENERALISTS and stems(description) & wanted
    }
    if any(name.lower() in done for name in fits):
        return "FINISH"
    return max((n for n in allowed if n in fits and n.lower() not in done), key=lambda n: fits[n], default=None)
