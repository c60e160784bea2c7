"""The final answer cut into text deltas (after the guard checked it): whole sentences, bounded, lossless."""

from __future__ import annotations

import pytest

from agentmesh.services.supervisor.deltas import WINDOW, answer_chunks


@pytest.mark.parametrize(
    "text",
    [
        "",
        "One sentence.",
        "First. Second! Third? Fourth",
        'He said "stop." Then left.\n\nNew paragraph (with a note.) End',
        "word " * 120,  # one sentence far over the window: cut at spaces
        "x" * 450,  # no space at all: cut hard at the window
    ],
)
def test_pieces_concatenate_to_the_answer_and_stay_within_the_window(text: str) -> None:
    pieces = answer_chunks(text)
    assert "".join(pieces) == text
    assert all(0 < len(p) <= WINDOW for p in pieces)


def test_pieces_end_after_sentences() -> None:
    assert answer_chunks("First. Second! Third? Fourth") == ["First. ", "Second! ", "Third? ", "Fourth"]
    assert answer_chunks("a\n\nb") == ["a\n\n", "b"]
    assert answer_chunks("x" * 450) == ["x" * 200, "x" * 200, "x" * 50]
