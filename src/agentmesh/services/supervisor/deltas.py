"""The final answer as text deltas. They are cut from an answer the output guard has already checked as a whole, so
streaming adds no unchecked byte; pieces are whole sentences (a sentence longer than the window is cut at the last
space within it), so a client can render them as they come."""

from __future__ import annotations

import re

WINDOW = 200  # most characters in one delta
# A sentence ends at . ! ? (with closing quotes or brackets) followed by whitespace, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


def answer_chunks(text: str, window: int = WINDOW) -> list[str]:
    """`text` as pieces of at most `window` characters that concatenate to it exactly, cut after sentences."""
    pieces: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        pieces.extend(_windowed(text[start : m.end()], window))
        start = m.end()
    if start < len(text):
        pieces.extend(_windowed(text[start:], window))
    return pieces


def _windowed(sentence: str, window: int) -> list[str]:
    out = []
    while len(sentence) > window:
        cut = sentence.rfind(" ", 0, window) + 1 or window  # after a space, else hard at the window
        out.append(sentence[:cut])
        sentence = sentence[cut:]
    if sentence:
        out.append(sentence)
    return out


__all__ = ["WINDOW", "answer_chunks"]
