"""What a run sees of its thread: the newest messages that fit a character budget (read at a run's start, or a
queued run's start, and fixed then, so a resumed run sees the same)."""

from __future__ import annotations

from typing import Any

_CUT_MARK = "[earlier text cut] "


def bound_history(messages: list[dict[str, Any]], max_chars: int) -> list[dict[str, Any]]:
    """The newest of `messages` (oldest first) whose contents fit in `max_chars` (0: no bound), oldest first; the
    oldest one kept is cut at its start when only its end fits. A thread of long turns so stays within what the
    agents accept (their context limit) and what a run's token budget pays for."""
    if not max_chars:
        return messages
    kept: list[dict[str, Any]] = []
    left = max_chars
    for m in reversed(messages):
        content = m["content"]
        if len(content) > left:
            if left > 2 * len(_CUT_MARK):
                kept.append({**m, "content": _CUT_MARK + content[len(content) - left + len(_CUT_MARK) :]})
            break
        kept.append(m)
        left -= len(content)
    return kept[::-1]


__all__ = ["bound_history"]
