"""The guard's evaluation harness: load the labelled set (tests/data/guard_eval/*.jsonl) and score a detector
against it. Shared by the accuracy test and `agentmesh bench guard` (which scores Presidio the same way).

Entity types are scored per entity: a prediction counts when it has the gold type and overlaps the gold span
by at least half of the longer of the two. Prompt injection is scored per text (flagged or not)."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENTITY_TYPES: tuple[str, ...] = ("credit_card", "us_ssn", "iban", "email", "phone", "ip_address", "secret")

_MARKUP = re.compile(r"\[\[(?P<type>[a-z_]+):(?P<value>.*?)\]\]", re.DOTALL)
_GEN = re.compile(r"\{gen:(?P<kind>[a-z_]+)\}")


@dataclass(frozen=True, slots=True)
class Span:
    type: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled text: its entities (gold spans) and whether it is a prompt injection."""

    id: str
    text: str
    entities: tuple[Span, ...]
    injection: bool
    tags: tuple[str, ...] = ()


# --- secrets are generated at load time: no key-shaped literal is stored in the repository -----------------

_B64URL = string.ascii_letters + string.digits + "-_"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def generate_secret(kind: str, rng: random.Random) -> str:
    """A value with the shape of `kind`'s keys (random: never a working credential)."""

    def pick(pool: str, n: int) -> str:
        return "".join(rng.choice(pool) for _ in range(n))

    alnum = string.ascii_letters + string.digits
    upper_digits = string.ascii_uppercase + string.digits
    if kind == "aws":
        return "AKIA" + pick(upper_digits, 16)
    if kind == "github":
        return "gh" + rng.choice("pousr") + "_" + pick(alnum, 36)
    if kind == "slack":
        return f"xox{rng.choice('bpa')}-{pick(string.digits, 12)}-{pick(string.digits, 12)}-{pick(alnum, 24)}"
    if kind == "stripe":
        return rng.choice(["sk", "rk"]) + "_live_" + pick(alnum, 24)
    if kind == "google":
        return "AIza" + pick(alnum + "-_", 35)
    if kind == "openai":
        return "sk-proj-" + pick(alnum + "-_", 48)
    if kind == "anthropic":
        return "sk-ant-api03-" + pick(alnum + "-_", 93) + "AA"
    if kind == "jwt":
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        claims = {"sub": pick(string.digits, 10), "iat": rng.randint(1_600_000_000, 1_800_000_000)}
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        return f"{header}.{payload}.{pick(_B64URL, 43)}"
    if kind == "pem":
        label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        body = "\n".join(pick(alnum + "+/", 64) for _ in range(rng.randint(3, 8)))
        return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"
    if kind == "password":
        core = (
            pick(string.ascii_lowercase, 4)
            + pick(string.ascii_uppercase, 3)
            + pick(string.digits, 3)
            + rng.choice("!#%*?&")
        )
        return "".join(rng.sample(core, len(core))) + pick(alnum, rng.randint(2, 6))
    if kind == "api_key":
        return pick(alnum, 32)
    raise ValueError(f"unknown secret kind {kind!r}")


def parse_markup(sample_id: str, markup: str) -> tuple[str, tuple[Span, ...]]:
    """`[[type:value]]` -> (plain text, spans); `{gen:KIND}` values are generated, seeded by the sample id."""
    rng = random.Random(int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "big"))
    pieces: list[str] = []
    spans: list[Span] = []
    pos = length = 0
    for mt in _MARKUP.finditer(markup):
        before = markup[pos : mt.start()]
        pieces.append(before)
        length += len(before)
        value = _GEN.sub(lambda g: generate_secret(g.group("kind"), rng), mt.group("value"))
        spans.append(Span(mt.group("type"), length, length + len(value)))
        pieces.append(value)
        length += len(value)
        pos = mt.end()
    pieces.append(markup[pos:])
    return "".join(pieces), tuple(spans)


def load_samples(path: Path) -> list[Sample]:
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        text, spans = parse_markup(row["id"], row["text"])
        samples.append(Sample(row["id"], text, spans, bool(row.get("injection")), tuple(row.get("tags", ()))))
    return samples


# --- scoring ------------------------------------------------------------------------------------------------


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


@dataclass
class Report:
    """Per-type entity counts, plus injection recall and the false-flag rate on texts labelled benign."""

    entities: dict[str, Counts] = field(default_factory=dict)
    injection: Counts = field(default_factory=Counts)
    benign_texts: int = 0
    benign_flagged: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)
    """(sample id, kind, detail) of every miss and false alarm, for a reader tuning a detector."""

    @property
    def false_flag_rate(self) -> float:
        return self.benign_flagged / self.benign_texts if self.benign_texts else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "entities": {t: c.as_dict() for t, c in sorted(self.entities.items())},
            "injection": {
                **self.injection.as_dict(),
                "benign_texts": self.benign_texts,
                "false_flag_rate": round(self.false_flag_rate, 4),
            },
        }


def _overlaps(a: Span, b: Span) -> bool:
    inter = min(a.end, b.end) - max(a.start, b.start)
    return inter > 0 and inter * 2 >= max(a.end - a.start, b.end - b.start)


Predictor = Callable[[str], tuple[Sequence[Span], bool]]
"""text -> (predicted entity spans, whether the text is flagged as a prompt injection)."""


def score(samples: Iterable[Sample], predict: Predictor, *, types: Iterable[str] = ENTITY_TYPES) -> Report:
    wanted = frozenset(types)
    report = Report(entities={t: Counts() for t in sorted(wanted)})
    for sample in samples:
        predicted, flagged = predict(sample.text)
        predicted = [p for p in predicted if p.type in wanted]
        gold = [g for g in sample.entities if g.type in wanted]
        matched: set[int] = set()
        for g in gold:
            hit = next(
                (i for i, p in enumerate(predicted) if i not in matched and p.type == g.type and _overlaps(p, g)), None
            )
            if hit is None:
                report.entities[g.type].fn += 1
                report.misses.append((sample.id, f"missed {g.type}", sample.text[g.start : g.end]))
            else:
                matched.add(hit)
                report.entities[g.type].tp += 1
        for i, p in enumerate(predicted):
            if i not in matched:
                report.entities[p.type].fp += 1
                report.misses.append((sample.id, f"false {p.type}", sample.text[p.start : p.end]))
        if sample.injection:
            if flagged:
                report.injection.tp += 1
            else:
                report.injection.fn += 1
                report.misses.append((sample.id, "missed injection", sample.text[:120]))
        else:
            report.benign_texts += 1
            if flagged:
                report.benign_flagged += 1
                report.injection.fp += 1
                report.misses.append((sample.id, "false injection", sample.text[:120]))
    return report


def counts_by_type(samples: Iterable[Sample]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for s in samples:
        for e in s.entities:
            out[e.type] = out.get(e.type, 0) + 1
    return out


# --- the public sets (tests/data/guard_eval/build_public.py): rows keyed by source and split ------------------


def load_public(path: Path) -> dict[tuple[str, str], list[Sample]]:
    """public_indirect.jsonl (plain text, `injection`) or public_phone.jsonl (`markup`), grouped by (source, split)."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "markup" in row:
            text, spans = parse_markup(row["id"], row["markup"])
        else:
            text, spans = row["text"], ()
        sample = Sample(row["id"], text, spans, bool(row.get("injection")), (row["source"], row["split"]))
        groups.setdefault((row["source"], row["split"]), []).append(sample)
    return groups
