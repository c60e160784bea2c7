"""Accuracy on the labelled evaluation set (tests/data/guard_eval): precision, recall and F1 per type, and the
bar each must clear. `dev` was used while tuning the detectors; `heldout` was written before and only its
aggregate numbers were looked at. A finding counts when the default input policy acts on it (flag, redact or
block), as a caller of Check would see it.

Prompt injection is also scored on texts in the style of the public corpora outside graders use (deepset
prompt-injections in English and German, jailbreak-classification and in-the-wild jailbreaks, Gandalf, HackAPrompt,
Tensor Trust), paraphrased since they cannot be downloaded here. Each row is tagged [label, family, language].
`public_style` was written before the detector was tuned on it (its untuned numbers: recall 0.63, 2.4% of benign
texts flagged); `public_style_heldout` was written after tuning and never tuned on, so its bar is what the
detector honestly generalises to (it measured recall 0.77 and 1 of 62 benign texts flagged; the code before
tuning: 0.68 and 0)."""

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
# (injection recall, benign false-flag rate) bars on the public-style files. The held-out file is small (62 benign
# texts): 0.05 allows three false flags, where 0.03 would allow one.
PUBLIC_BARS = {"public_style": (0.9, 0.03), "public_style_heldout": (0.7, 0.05)}
PUBLIC_FAMILY_RECALL_BAR = 0.8  # no attack family of the tuning file is left behind


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
    assert sum(s.injection for s in tuning) >= 150 and sum(not s.injection for s in tuning) >= 200
    assert sum(s.injection for s in heldout) >= 60 and sum(not s.injection for s in heldout) >= 60
    older = load_samples(DATA / "dev.jsonl") + load_samples(DATA / "heldout.jsonl")
    every = tuning + heldout + older
    assert len({s.id for s in every}) == len(every)
    public_texts = [s.text.lower() for s in tuning + heldout]
    assert len(set(public_texts)) == len(public_texts)  # nothing repeated or copied between the public-style files
    assert not set(public_texts) & {s.text.lower() for s in older}  # nor from the older set
    for s in tuning + heldout:
        assert len(s.tags) == 3 and s.tags[0] == ("injection" if s.injection else "benign"), s.id
        assert not s.entities, s.id
    languages = {s.tags[2] for s in tuning if s.injection}
    assert {"en", "de", "fr", "es", "it", "pt", "nl"} <= languages


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
    # Per family on the tuning file: a broad recall can hide a family the detector has lost (grandma role-play,
    # authority claims, "now you are X" style changes...).
    samples = [s for s in load_samples(DATA / "public_style.jsonl") if s.injection]
    by_family: dict[str, list[bool]] = {}
    for s in samples:
        by_family.setdefault(s.tags[1], []).append(predict(s.text)[1])
    recall = {family: sum(hits) / len(hits) for family, hits in by_family.items()}
    assert min(recall.values()) >= PUBLIC_FAMILY_RECALL_BAR, recall
