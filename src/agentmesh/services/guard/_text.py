"""What every tier-one detector shares: the Finding it reports, the Scan of a text that detectors read once
between them, and context words (words near a match raise or lower its confidence, as Presidio's context
enhancer does)."""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTEXT_CHARS = 40
# Cards, SSNs, phones and IPv4 addresses are tried only inside the text's runs of digits (`Scan.numeric_runs`).
# The lookaheads after a match read at most two characters past a run (`(?![\w]|[.,]\d)`), a phone's `\)?` one.
RUN_TAIL = 2
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lower_keep_offsets(text: str) -> str:
    """Lowercase without moving offsets: str.lower() is used unless it changes the length (a few letters,
    such as the Turkish dotted I, lower to two code points); then only ASCII is lowered."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: its kind, its [start, end) span in the text and how sure the detector is."""

    type: str
    start: int
    end: int
    confidence: float


def clamp_score(x: float) -> float:
    """`x` within 0..1, rounded so that sums such as 0.7 + 0.1 compare with policy thresholds as a reader
    expects."""
    # Rounded so that sums such as 0.7 + 0.1 compare with policy thresholds as a reader expects.
    return round(min(1.0, max(0.0, x)), 3)


def context_words(*words: str) -> re.Pattern[str]:
    """Any of `words` (lower-case regexes, each starting with a plain letter) as a whole word, to search in
    lower-cased text (see `near`). The alternatives are grouped by first letter behind a lookahead on those
    letters: the engine then rejects most positions at one character. Together with matching case-sensitively
    on a lower-cased window, ~2 us per `near` where one case-insensitive flat alternation took ~3.5."""
    by_first: dict[str, list[str]] = {}
    for w in words:
        if not w[0].isalpha() or w[1:2] in ("?", "*", "+", "{") or re.search(r"(?<!\\)[A-Z]", w):
            raise ValueError(f"context word {w!r} must be lower case and start with a plain letter")
        by_first.setdefault(w[0], []).append(w[1:])
    alternatives = "|".join(f"{first}(?:{'|'.join(rests)})" for first, rests in sorted(by_first.items()))
    return re.compile(rf"(?=[{''.join(sorted(by_first))}])(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


def near(pattern: re.Pattern[str], text: str, start: int, end: int, chars: int = CONTEXT_CHARS) -> bool:
    """A context word within `chars` characters before or after the span (found in one search over the two
    windows, lower-cased, joined by a line break). Each window takes one character more on its outer side, so
    that a word the window would cut (re*call*) is seen whole, not taken for the shorter one."""
    before = text[max(0, start - chars - 1) : start]
    return pattern.search(f"{before}\n{text[end : end + chars + 1]}".lower()) is not None


# Card, SSN, phone and IPv4 matches are all runs of 4+ digits with at most a few separators between digits
# ([ \t().\-/] holds every separator those patterns take), and each lies inside one run of this pattern. So the
# text is scanned once for such runs and each detector tries its own pattern only inside a run long enough for
# it: one pass over the text instead of four. The pass is made over the text's shape (below), where a run starts
# with a literal byte that the engine finds with memchr rather than testing `\d` at every character.
_NUMERIC_RUN_RE = re.compile(rb"0(?: {0,3}0){3,}")


def _shape_table() -> bytes:
    table = bytearray(b"x" * 256)
    table[ord("0") : ord("9") + 1] = b"0" * 10
    table[ord("A") : ord("Z") + 1] = b"A" * 26
    for sep in b" \t().-/":
        table[sep] = ord(" ")
    return bytes(table)


# An ASCII digit -> 0, an ASCII capital -> A, a separator of digits -> space, anything else -> x.
_SHAPE = _shape_table()


class Scan:
    """A text under scan, and what several detectors read from it, computed once on first use. A detector takes a
    text or a Scan; `detect` passes one Scan to all of them.

    `shape` is the text one byte per character (latin-1, anything beyond it replaced), mapped by `_SHAPE`: offsets
    in it are offsets in the text, and bytes.find/memchr-speed searches in it find where a detector's pattern can
    start (~1.5 us per KB to build, where a digit or capital class scanned over the text costs ~10). Only ASCII
    digits count as digits: numbers written in other scripts' digits are not looked for."""

    __slots__ = ("_low", "_runs", "_shape", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._shape: bytes | None = None
        self._runs: tuple[tuple[int, int], ...] | None = None
        self._low: str | None = None

    @property
    def low(self) -> str:
        """The text lower-cased with offsets kept (secret keywords and injection phrases are looked for in it)."""
        if self._low is None:
            self._low = lower_keep_offsets(self.text)
        return self._low

    @property
    def shape(self) -> bytes:
        if self._shape is None:
            self._shape = self.text.encode("latin-1", "replace").translate(_SHAPE)
        return self._shape

    @property
    def numeric_runs(self) -> tuple[tuple[int, int], ...]:
        """(start, end) of every run of digits in the text."""
        if self._runs is None:
            self._runs = tuple([m.span() for m in _NUMERIC_RUN_RE.finditer(self.shape)])
        return self._runs


def as_scan(text: str | Scan) -> Scan:
    return text if isinstance(text, Scan) else Scan(text)
