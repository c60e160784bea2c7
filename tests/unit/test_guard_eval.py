"""Accuracy on the labelled evaluation set (tests/data/guard_eval): precision, recall and F1 per type, and the
bar each must clear. `dev` was used while tuning the detectors; `heldout` was written before and only its
aggregate numbers were looked at. A finding counts when the default input policy acts on it (flag, redact or
block), as a caller of Check would see it.

Prompt injection is also scored on texts in the style of the public corpora outside graders use (deepset
prompt-injections in English and German, jailbreak-classification and in-the-wild jailbreaks, Gandalf, HackAPrompt,
Tensor Trust), paraphrased since they cannot be downloaded here. Each row is tagged [label, family, language].

- `public_style` and `public_style_heldout` are *tuning* files. `public_style` was written before the detector was
  tuned on it (untuned: recall 0.63, 2.4% of benign texts flagged; after the first round: 0.956 and 0.5%).
  `public_style_heldout` was written blind after that round (it measured 0.774 and 1 of 62 benign flagged) and was
  then tuned on in the second round, with `public_style` (now 0.994 and 0.5%; 1.0 and 0 of 62). Their bars guard
  against regressions; they say nothing about generalisation.
- `public_style_blind` is the *blind* file: written in the second round before the detector's patterns were read or
  run on it, in new wording, and measured once after tuning, with no change made after. Its bar is the honest
  number. Patterns alone: recall 0.472 (59 of 125), 0 of 124 benign texts flagged; most misses were attacks whose
  wording no phrase family covers (new verbs and idioms, other languages, authority claims without a known keyword).
  With the statistical model added (`_injection_model`: naive Bayes over words and word pairs, trained on dev,
  heldout, public_style and public_style_heldout, calibrated by cross-validation on them, capped under the block
  threshold), measured once, after its design was frozen: recall 0.680 (85 of 125), 1 of 124 benign texts
  flagged (0.8%), none blocked. The model alone catches 67, 26 of them missed by the patterns.

The model is trained on dev, heldout and the two public-style tuning files, so their numbers are in-sample for it:
only the blind file measures it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from services.guard import Action, decide, load_policy
from services.guard.evaluation import Report, Sample, Span, load_samples, score

DATA = Path(__file__).resolve().parents[1] / "data" / "guard_eval"
POLICY = load_policy()
F1_BAR = {"credit_card": 0.95, "us_ssn": 0.95, "iban": 0.95, "email": 0.95, "phone": 0.9, "ip_address": 0.9, "secret": 0.9}
INJECTION_RECALL_BAR = 0.9
FALSE_FLAG_BAR = 0.03
# (injection recall, benign false-flag rate) bars on the public-style files. Both tuning files measure ~0.99 recall:
# their bars leave a margin for later changes. The held-out file is small (62 benign texts): 0.05 allows three false
# flags, where 0.03 would allow one. The blind file's bar sits just under what it measured once with the model
# (0.680, 1 of 124 benign flagged): 0.02 allows two false flags.
PUBLIC_BARS = {"public_style": (0.95, 0.03), "public_style_heldout": (0.95, 0.05), "public_style_blind": (0.65, 0.02)}
PUBLIC_TUNING = ("public_style", "public_style_heldout")
PUBLIC_FAMILY_RECALL_BAR = 0.8  # no attack family of the tuning files is left behind


def predict(text: str) -> tuple[Sequence[Span], bool]:
    decision = decide(text, "input", POLICY)
    spans = [Span(f.type, f.start, f.end) for f in decision.findings if f.type != "prompt_injection"]
    flagged = any(f.type == "prompt_injection" and f.action >= Action.FLAG for f in decision.findings)
    return spans, flagged


@pytest.fixture(scope="module", params=["dev", "heldout"])
def report(request: pytest.FixtureRequest) -> tuple[str, list[Sample], Report]:
    samples = load_samples(DATA / f"{request.param}.jsonl")
    return request.param, samples, score(samples, predict)


@pytest.fixture(scope="module", params=sorted(PUBLIC_BARS))
def public_report(request: pytest.FixtureRequest) -> tuple[str, list[Sample], Report]:
    samples = load_samples(DATA / f"{request.param}.jsonl")
    return request.param, samples, score(samples, predict)


def test_the_set_is_large_enough() -> None:
    samples = load_samples(DATA / "dev.jsonl") + load_samples(DATA / "heldout.jsonl")
    positives = [s for s in samples if s.entities or s.injection]
    negatives = [s for s in samples if not s.entities and not s.injection]
    assert len(positives) >= 300 and len(negatives) >= 300
    assert sum(s.injection for s in samples) >= 150
    assert sum("lookalike" in s.tags for s in samples) >= 150  # tricky negatives: Luhn failures, bad SSN ranges...
    assert len({s.id for s in samples}) == len(samples)


@pytest.mark.parametrize("entity_type", sorted(F1_BAR))
def test_entity_f1_clears_the_bar(report: tuple[str, list[Sample], Report], entity_type: str) -> None:
    split, _, r = report
    counts = r.entities[entity_type]
    misses = [m for m in r.misses if m[1].endswith(entity_type)][:10]
    assert counts.tp > 0, f"{split}: no {entity_type} in the set"
    assert counts.f1 >= F1_BAR[entity_type], f"{split} {entity_type}: {counts.as_dict()}; e.g. {misses}"


def test_injection_recall_and_false_flags_clear_the_bar(report: tuple[str, list[Sample], Report]) -> None:
    split, _, r = report
    summary = json.dumps(r.as_dict()["injection"])
    assert r.injection.recall >= INJECTION_RECALL_BAR, f"{split}: {summary}"
    assert r.false_flag_rate <= FALSE_FLAG_BAR, f"{split}: {summary}"


def test_no_tricky_negative_is_taken_for_pii(report: tuple[str, list[Sample], Report]) -> None:
    # Order numbers failing Luhn, never-issued SSNs, IBANs failing mod-97, versions, dates, UUIDs, hashes.
    split, samples, _ = report
    lookalikes = [s for s in samples if "lookalike" in s.tags]
    taken = [(s.id, s.text) for s in lookalikes if predict(s.text)[0]]
    assert len(taken) <= 0.01 * len(lookalikes), f"{split}: {taken[:10]}"


# --- prompt injection on texts in the style of public corpora ---------------------------------------------------


def test_the_public_style_sets_are_large_and_labelled() -> None:
    tuning = load_samples(DATA / "public_style.jsonl")
    heldout = load_samples(DATA / "public_style_heldout.jsonl")
    blind = load_samples(DATA / "public_style_blind.jsonl")
    assert sum(s.injection for s in tuning) >= 150 and sum(not s.injection for s in tuning) >= 200
    assert sum(s.injection for s in heldout) >= 60 and sum(not s.injection for s in heldout) >= 60
    assert sum(s.injection for s in blind) >= 80 and sum(not s.injection for s in blind) >= 80
    older = load_samples(DATA / "dev.jsonl") + load_samples(DATA / "heldout.jsonl")
    every = tuning + heldout + blind + older
    assert len({s.id for s in every}) == len(every)
    public_texts = [s.text.lower() for s in tuning + heldout + blind]
    assert len(set(public_texts)) == len(public_texts)  # nothing repeated or copied between the public-style files
    assert not set(public_texts) & {s.text.lower() for s in older}  # nor from the older set
    for s in tuning + heldout + blind:
        assert len(s.tags) == 3 and s.tags[0] == ("injection" if s.injection else "benign"), s.id
        assert not s.entities, s.id
    for samples in (tuning, blind):
        languages = {s.tags[2] for s in samples if s.injection}
        assert {"en", "de", "fr", "es", "it", "pt", "nl"} <= languages
    # The blind file covers the tuning file's attack families and its hard benign kinds.
    assert {s.tags[1] for s in tuning if s.injection} <= {s.tags[1] for s in blind if s.injection}
    assert {"hard_negative", "security_discussion", "act_as", "roleplay_benign"} <= {s.tags[1] for s in blind if not s.injection}


def test_public_style_injection_recall_and_false_flags_clear_the_bar(
    public_report: tuple[str, list[Sample], Report],
) -> None:
    split, _, r = public_report
    recall_bar, false_flag_bar = PUBLIC_BARS[split]
    misses = [m for m in r.misses if m[1] in ("missed injection", "false injection")][:10]
    summary = json.dumps(r.as_dict()["injection"])
    assert r.injection.recall >= recall_bar, f"{split}: {summary}; e.g. {misses}"
    assert r.false_flag_rate <= false_flag_bar, f"{split}: {summary}; e.g. {misses}"


def test_every_public_style_attack_family_is_caught() -> None:
    # Per family on the tuning files: a broad recall can hide a family the detector has lost (grandma role-play,
    # authority claims, "now you are X" style changes...). Not on the blind file, whose families are not all there
    # (patterns alone: grandma 2 of 9, authority 3 of 9, German 8 of 21; with the model: 6, 5 and 14; other
    # languages 6 of 14).
    samples = [s for name in PUBLIC_TUNING for s in load_samples(DATA / f"{name}.jsonl") if s.injection]
    by_family: dict[str, list[bool]] = {}
    for s in samples:
        by_family.setdefault(s.tags[1], []).append(predict(s.text)[1])
    recall = {family: sum(hits) / len(hits) for family, hits in by_family.items()}
    assert min(recall.values()) >= PUBLIC_FAMILY_RECALL_BAR, recall
