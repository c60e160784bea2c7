"""Tier-one prompt injection, second signal: a small naive Bayes model over lower-cased words and word pairs.

The phrase patterns of `_injection` catch the wordings they were written for; this model weighs the words
themselves, so it also reacts to attacks worded in ways no pattern covers. It is trained by
`python -m services.guard.train_injection_model` on the labelled guard files (never on the blind one) and loaded
here once, at import, from `injection_model.json` into immutable structures.

Features: a text is lower-cased and cut into sentences at `.!?:;` and line breaks (a blank line also ends a
paragraph), sentences into words at white space, with the punctuation, brackets and quotes of STRIP stripped
from both ends of each word. A sentence's features are its words and its pairs of neighbouring words, the first
word also paired with `<s>`; a sentence of more than `max_words` words is cut into pieces of that many.

Scoring: per window of up to `window_sentences` consecutive sentences of one paragraph, the bias plus the sum of
the weights of the window's features, each counted once; the best window counts (a window without features
scores the bias). So a long text with one attacking sentence scores as that sentence would: length neither
raises nor dilutes the score.

The model only ever flags: its confidence is 0 below the calibrated flag logit, then rises linearly from 0.5
(the default flag threshold) to `cap` (well under the block threshold) at the top logit.

Speed: the tokenising is done by str methods in C (lower, replace, split, a mapped strip) and the loop in Python
visits only the tokens in the model's vocabulary (`compress`): ~55 us per KB of documentation prose, 60-80 on
chat-like text, where most words are in the vocabulary. `sentences` is the plain reference definition the
training script uses; tests check that the fast path computes exactly the same."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain, compress, count, repeat
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

MODEL_PATH = Path(__file__).with_name("injection_model.json")
FORMAT = 2
START = "<s>"
"""The pseudo-word before a sentence's first word: `<s> ignore` is an order, `ignore` anywhere less so."""
NEWLINE = "\x00"
"""A line break's token (not white space, which str.split drops); a NUL in the text counts as one too."""
TERMINATORS = ".!?:;\x00"
_TERMINATOR_RE = re.compile(r"[.!?:;\n\x00]")
# Stripped from both ends of a word: the punctuation, brackets and quotes that wrap words in prose, markdown and
# code (the most frequent first: strip's cost grows with this string's length). Digits and rarer symbols stay: a
# token holding them is no word of the model.
STRIP = "`,)(-|/*[\"#>=]<_'{}\u201c\u201d\u2018\u00ab\u00bb\u201e\u2014\u2013"


def tokens(text: str) -> list[str]:
    """The text lower-cased, split at white space, each terminator a token of its own (`.`, `:`, NEWLINE...), each
    other token stripped of STRIP characters at both ends (which can leave it empty)."""
    low = text.lower()
    if "\u2019" in low:
        low = low.replace("\u2019", "'")
    if "\n" in low:
        low = low.replace("\n", " \x00 ")
    for mark in ".!?:;":
        if mark in low:
            low = low.replace(mark, f" {mark} ")
    pieces = low.split()
    return list(map(str.strip, pieces, repeat(STRIP, len(pieces))))


def sentences(text: str, max_words: int) -> list[tuple[int, list[str]]]:
    """(paragraph number, words) of each sentence with words, a sentence of more than `max_words` cut into
    pieces. Words may be empty (a token of punctuation only): it separates its neighbours but is no feature.
    The reference definition, used by training; `InjectionModel.logit` computes the same in one pass."""
    out: list[tuple[int, list[str]]] = []
    paragraph = 0
    words: list[str] = []
    newline_before = False
    for t in [*tokens(text), "."]:
        if t and t in TERMINATORS:
            out.extend((paragraph, words[i : i + max_words]) for i in range(0, len(words), max_words))
            words = []
            if t == NEWLINE:
                paragraph += newline_before
                newline_before = True
            else:
                newline_before = False
            continue
        newline_before = False
        words.append(t)
    return out


def sentence_spans(text: str, max_words: int, upto: int | None = None) -> list[tuple[int, int]]:
    """[start, end) in `text` of each sentence of `sentences(text, max_words)` (a cut sentence's pieces each
    have the whole sentence's span); with `upto`, at least those up to that index, when there are so many."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in chain(_TERMINATOR_RE.finditer(text), (None,)):
        end = m.start() if m else len(text)
        n = len(text[pos:end].split())
        spans.extend(repeat((pos, end), -(-n // max_words)))
        if upto is not None and len(spans) > upto:
            break
        pos = m.end() if m else end
    return spans


# Vocabulary entries of the terminators, told apart by identity: built at run time, since the compiler would
# fold two equal tuple literals into one object.
_END = cast("tuple[None, None]", tuple([None, None]))
_NEWLINE = cast("tuple[None, None]", tuple([None, None]))
_NO_FEATURES: Mapping[object, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class InjectionModel:
    """Feature weights (log-likelihood ratios: a word, or two words joined by a space), the bias, the window
    size and the calibration from logit to confidence."""

    weights: Mapping[str, float]
    bias: float
    flag_logit: float
    """At and above this logit the model flags (confidence 0.5)."""
    top_logit: float
    """At and above this logit the confidence is `cap`."""
    cap: float
    window_sentences: int
    max_words: int
    _vocab: Mapping[str, tuple[float | None, Mapping[str, float] | None]]
    """word -> (its weight, {next word: weight of the pair}) for every word that is a feature, opens a pair or
    follows <s> in one; terminators -> markers."""
    _openers: Mapping[str, float]
    """first word of a sentence -> weight of the pair (<s>, word)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InjectionModel:
        """From the parsed JSON of a model file (or a trainer's dict of the same shape)."""
        if data.get("format") != FORMAT:
            raise ValueError(f"injection model: format {data.get('format')!r}, expected {FORMAT}")
        raw = data["weights"]
        if not isinstance(raw, Mapping):
            raise ValueError("injection model: weights must be an object")
        weights = {str(k): float(v) for k, v in raw.items()}
        singles: dict[str, float] = {}
        pairs: dict[str, dict[str, float]] = {}
        for feature, w in weights.items():
            first, _, second = feature.partition(" ")
            if second:
                pairs.setdefault(first, {})[second] = w
            else:
                singles[feature] = w
        # A pair is looked up from its first word, looking ahead: a word that is only ever second in a pair
        # (mostly function words) need not be in the vocabulary, which saves a third of the look-ups in prose.
        openers = pairs.pop(START, {})
        words = set(singles) | set(pairs) | set(openers)
        vocab: dict[str, tuple[float | None, Mapping[str, float] | None]] = {
            w: (singles.get(w), MappingProxyType(pairs[w]) if w in pairs else None) for w in words
        }
        vocab.update(dict.fromkeys(TERMINATORS, _END))
        vocab[NEWLINE] = _NEWLINE
        model = cls(
            weights=MappingProxyType(weights),
            bias=float(data["bias"]),
            flag_logit=float(data["flag_logit"]),
            top_logit=float(data["top_logit"]),
            cap=float(data["cap"]),
            window_sentences=int(data["window_sentences"]),
            max_words=int(data["max_words"]),
            _vocab=MappingProxyType(vocab),
            _openers=MappingProxyType(openers),
        )
        if not (
            model.flag_logit < model.top_logit
            and 0.5 <= model.cap < 0.9
            and model.window_sentences >= 1
            and model.max_words >= 1
        ):
            raise ValueError("injection model: calibration or window out of range")
        return model

    def _sentence_features(self, text: str) -> list[tuple[int, Mapping[object, float], float]]:
        """(paragraph, {feature: weight} of its features in the model, their sum) per sentence, as `sentences`
        cuts them."""
        toks = tokens(text)
        toks.append(".")  # ends the last sentence; also what a look-ahead past the last word finds
        out: list[tuple[int, Mapping[object, float], float]] = []
        known: dict[object, float] = {}
        paragraph = 0
        start = 0  # index of the current sentence's (or piece's) first token
        piece_end = max_words = self.max_words  # index one past the current piece's last token
        last_newline = -2
        openers = self._openers
        empty = _NO_FEATURES
        entries = list(map(self._vocab.get, toks))
        for i in compress(count(), entries):  # the tokens in the vocabulary (entries are non-empty tuples)
            entry = entries[i]
            if entry is _END or entry is _NEWLINE:
                if i > start:
                    out.append((paragraph, known, sum(known.values())) if known else (paragraph, empty, 0.0))
                    if i - start > max_words:  # the pieces of a long sentence after its last word in the vocabulary
                        out.extend(repeat((paragraph, empty, 0.0), (i - start - 1) // max_words))
                    known = {}
                if entry is _NEWLINE:
                    if last_newline == i - 1:
                        paragraph += 1
                    last_newline = i
                start = i + 1
                piece_end = start + max_words
                continue
            if i >= piece_end:  # past the end of a piece of a long sentence
                out.append((paragraph, known, sum(known.values())) if known else (paragraph, empty, 0.0))
                k = (i - start) // max_words
                out.extend(repeat((paragraph, empty, 0.0), k - 1))
                known = {}
                start += k * max_words
                piece_end = start + max_words
            word = toks[i]
            x, follow = entry  # type: ignore[misc]  # compress() skipped the None entries
            if x is not None:
                known[word] = x
            if follow is not None and i + 1 < piece_end:
                after = toks[i + 1]
                x = follow.get(after)
                if x is not None:
                    known[(word, after)] = x
            if i == start:
                x = openers.get(word)
                if x is not None:
                    known[(START, word)] = x
        return out

    def scan(self, text: str) -> tuple[float, int, int]:
        """(logit, first, last sentence index) of the best window; (bias, -1, -1) when no window scores above 0
        (the score of a window without features: evidence against an attack never goes below the prior)."""
        found = self._sentence_features(text)
        best, lo, hi = 0.0, -1, -1
        n = len(found)
        width = self.window_sentences
        for i, (paragraph, known, score) in enumerate(found):
            if not known:
                continue
            if score > best:
                best, lo, hi = score, i, i
            window = known
            for j in range(i + 1, min(n, i + width)):
                more_paragraph, more, more_score = found[j]
                if more_paragraph != paragraph:
                    break
                if not more:
                    continue  # the same features as the window before
                if window.keys().isdisjoint(more):
                    score += more_score
                    if j + 1 < i + width:
                        window = {**window, **more}
                else:  # a feature repeated: it counts once
                    window = {**window, **more}
                    score = sum(window.values())
                if score > best:
                    best, lo, hi = score, i, j
        return self.bias + best, lo, hi

    def logit(self, text: str) -> float:
        return self.scan(text)[0]

    def confidence(self, logit: float) -> float:
        """0 under the flag logit; 0.5 at it, rising linearly to `cap` at the top logit."""
        if logit < self.flag_logit:
            return 0.0
        share = min(1.0, (logit - self.flag_logit) / (self.top_logit - self.flag_logit))
        return round(0.5 + (self.cap - 0.5) * share, 3)

    def evidence(self, text: str) -> tuple[int, int, float]:
        """(start, end, confidence): the best window's span in `text` (the whole text when it has no word)."""
        logit, lo, hi = self.scan(text)
        confidence = self.confidence(logit)
        if confidence == 0.0 or lo < 0:
            return 0, len(text), confidence
        spans = sentence_spans(text, self.max_words, upto=hi)
        return spans[lo][0], spans[hi][1], confidence


def load_model(path: Path = MODEL_PATH) -> InjectionModel:
    return InjectionModel.from_dict(json.loads(path.read_text(encoding="utf-8")))


MODEL = load_model()


def injection_probability(text: str) -> float:
    """The model's probability that `text` (its most suspicious window) is a prompt injection. Naive Bayes is
    overconfident: this is a ranking, `injection_evidence` gives the calibrated confidence."""
    z = MODEL.logit(text)
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def injection_evidence(text: str) -> tuple[int, int, float]:
    """(start, end, confidence) of the most suspicious window: confidence 0 below the flag logit, else in
    [0.5, cap], never reaching the block threshold."""
    return MODEL.evidence(text)
