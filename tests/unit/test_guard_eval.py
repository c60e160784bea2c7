"""Accuracy on the labelled evaluation set (tests/data/guard_eval): precision, recall and F1 per type, and the
bar each must clear. `dev` was used while tuning the detectors; `heldout` was written before and only its
aggregate numbers were looked at. A finding counts when the default input policy acts on it (flag, redact or
block), as a caller of Check would see it."""

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


def predict(text: str) -> tuple[Sequence[Span], bool]:
    decision = decide(text, "input", POLICY)
    spans = [Span(f.type, f.start, f.end) for f in decision.findings if f.type != "prompt_injection"]
    flagged = any(f.type == "prompt_injection" and f.action >= Action.FLAG for f in decision.findings)
    return spans, flagged


@pytest.fixture(scope="module", params=["dev", "heldout"])
def report(request: pytest.FixtureRequest) -> tuple[str, list[Sample], Report]:
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
