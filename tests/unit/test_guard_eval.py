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
- `public_style_blind` was the *blind* file of the first model: written in the second round before the detector's
  patterns were read or run on it, and measured once. Patterns alone: recall 0.472 (59 of 125), 0 of 124 benign
  texts flagged. With the first statistical model (`_injection_model`: naive Bayes over words and word pairs,
  trained on dev, heldout, public_style and public_style_heldout, capped under the block threshold): recall 0.680
  (85 of 125), 1 of 124 benign texts flagged. Having been measured twice, it is now a *training* file.
- `public_style_more` is a larger training file (337 attacks, 367 benign texts, all families, en/de/fr/es/it/pt/nl,
  many hard benign negatives: long harmless role-play prompts, security discussions, "Now write ...", "Imagine you
  are ...", summarise/translate the text above, licence and documentation prose).
- `public_style_blind2` is the *blind* file now: written before public_style_more and before the model was
  retrained, never trained on, and measured once after retraining, with no change made after. Its bar is the
  honest number. Patterns alone: recall 0.596 (53 of 89), 1 of 93 benign texts flagged. With the model retrained on
  dev, heldout, public_style, public_style_heldout, public_style_more and public_style_blind: recall 0.888 (79 of
  89), the same 1 of 93 benign flagged (a question about HackAPrompt's "I have been PWNED", flagged by the
  patterns), none blocked. (The first model on it: recall 0.820, 3 of 93 benign flagged.) One change was made
  after that measurement, and it was not made for this file: six benign "Vergiss alles, was du über ... gehört
  hast" texts were added to public_style_more because the retrained model had started flagging a unit-test
  look-alike. That second look measured recall 0.876 (78 of 89), 1 of 93 benign flagged; the bar sits under both
  numbers. The same person wrote the blind file and the training files, so public corpora will probably score
  lower. After the model's flag rate moved from 0.75% to 1% of benign texts (chosen on real public corpora, see
  the README) it measures 0.910 (81 of 89), the same 1 of 93 benign flagged.

The model is trained on every file here but public_style_blind2, so their numbers are in-sample for it: only
public_style_blind2 measures it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from agentmesh.services.guard import Action, decide, load_policy
from bench.guard_eval import Report, Sample, Span, load_samples, score

DATA = Path(__file__).resolve().parents[1] / "data" / "guard_eval"
POLICY = load_policy()
F1_BAR = {
    "credit_card": 0.95,
    "us_ssn": 0.95,
    "iban": 0.95,
    "email": 0.95,
    "phone": 0.9,
    "ip_address": 0.9,
    "secret": 0.9,
}
INJECTION_RECALL_BAR = 0.9
FALSE_FLAG_BAR = 0.03
# (injection recall, benign false-flag rate) bars on the public-style files. The training files measure 0.96-1.0
# recall (in-sample): their bars leave a margin for later changes. The held-out file is small (62 benign texts): 0.05
# allows three false flags, where 0.03 would allow one. The blind file's bar sits a little under what it measured
# once (0.888, then 0.876 after one later fix; 1 of 93 benign flagged): 0.03 allows two false flags.
PUBLIC_BARS = {
    "public_style": (0.95, 0.03),
    "public_style_heldout": (0.95, 0.05),
    "public_style_blind": (0.9, 0.02),
    "public_style_more": (0.95, 0.02),
    "public_style_blind2": (0.85, 0.03),
}
PUBLIC_TUNING = ("public_style", "public_style_heldout", "public_style_blind", "public_style_more")
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
    blind1 = load_samples(DATA / "public_style_blind.jsonl")
    more = load_samples(DATA / "public_style_more.jsonl")
    blind = load_samples(DATA / "public_style_blind2.jsonl")
    assert sum(s.injection for s in tuning) >= 150 and sum(not s.injection for s in tuning) >= 200
    assert sum(s.injection for s in heldout) >= 60 and sum(not s.injection for s in heldout) >= 60
    assert sum(s.injection for s in blind1) >= 80 and sum(not s.injection for s in blind1) >= 80
    assert sum(s.injection for s in more) >= 300 and sum(not s.injection for s in more) >= 300
    assert sum(s.injection for s in blind) >= 80 and sum(not s.injection for s in blind) >= 80
    older = load_samples(DATA / "dev.jsonl") + load_samples(DATA / "heldout.jsonl")
    public = tuning + heldout + blind1 + more + blind
    every = public + older
    assert len({s.id for s in every}) == len(every)
    public_texts = [s.text.lower() for s in public]
    assert len(set(public_texts)) == len(public_texts)  # nothing repeated or copied between the public-style files
    assert not set(public_texts) & {s.text.lower() for s in older}  # nor from the older set
    for s in public:
        assert len(s.tags) == 3 and s.tags[0] == ("injection" if s.injection else "benign"), s.id
        assert not s.entities, s.id
    for samples in (tuning, blind1, more, blind):
        languages = {s.tags[2] for s in samples if s.injection}
        assert {"en", "de", "fr", "es", "it", "pt", "nl"} <= languages
    # The blind file and the larger training file cover the tuning file's attack families and its hard benign kinds.
    for samples in (more, blind):
        assert {s.tags[1] for s in tuning if s.injection} <= {s.tags[1] for s in samples if s.injection}
        kinds = {s.tags[1] for s in samples if not s.injection}
        assert {"hard_negative", "security_discussion", "act_as", "roleplay_benign"} <= kinds


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
    # Per family on the training files: a broad recall can hide a family the detector has lost (grandma role-play,
    # authority claims, "now you are X" style changes...). Not on the blind file (with the model, after the fix:
    # override 7 of 11, German 16 of 18, access_granted 4 of 5, grandma 4 of 5, others 5/6 to all; patterns alone:
    # override 4 of 11, German 7 of 18, style_change 2 of 6, grandma 2 of 5).
    samples = [s for name in PUBLIC_TUNING for s in load_samples(DATA / f"{name}.jsonl") if s.injection]
    by_family: dict[str, list[bool]] = {}
    for s in samples:
        by_family.setdefault(s.tags[1], []).append(predict(s.text)[1])
    recall = {family: sum(hits) / len(hits) for family, hits in by_family.items()}
    assert min(recall.values()) >= PUBLIC_FAMILY_RECALL_BAR, recall
