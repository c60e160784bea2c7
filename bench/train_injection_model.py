"""Train the guard's statistical prompt-injection model (`_injection_model`) and write injection_model.json.

    python -m bench.train_injection_model [--out PATH] [--prose]

Deterministic: the same files give the same model file, byte for byte. Pure Python (the model is a closed-form
naive Bayes; no numpy needed).

- Training data: the labelled guard files dev, heldout, public_style, public_style_heldout, public_style_more and
  public_style_blind (tests/data/guard_eval; the last was the blind test of the first model). Never
  public_style_blind2: it is the test now.
- Features: per text, the set (each counted once) of its lower-cased words and pairs of neighbouring words
  within a sentence, a sentence's first word also paired with `<s>`. Function words of the languages the guard
  reads are left out as single words, and pairs of two function words are left out (`you are` stays,
  `of the` goes): they say more about a text's length and genre than about an attack.
- Model: binarised multinomial naive Bayes with add-alpha smoothing. A word's log-likelihood ratio is capped at
  WEIGHT_CAP: a word seen only in attacks (`above`, `print`, `instead`) is evidence, not proof, and documentation
  prose, which the training files lack, is full of such words. The MAX_FEATURES features with the largest
  |weight| x document frequency are kept.
- Calibration, by stratified FOLDS-fold cross-validation over the training texts (out-of-fold logits, scored
  window by window as at inference): the flag logit is where at most FLAG_FALSE_RATE of benign texts flag, and
  confidence rises from 0.5 there to CAP at the highest out-of-fold benign logit. CAP (0.65) is under the
  default block threshold (0.9): the model alone can flag a text for review, never block it.
- FLAG_FALSE_RATE is 1%, under the 2% the training files would allow, as a margin for text unlike them: of the
  documentation paragraphs of the installed packages (see --prose), 0.9% flag at 2%, 0.5% at 1.5%, 0.1% at 1%
  and 0.03% at 0.75%; and a long document offers many windows. It was 0.75% until it was measured on real public
  corpora (deepset/prompt-injections and a blind neuralchemy slice, both outside the repository): 1% added 7 of
  263 deepset attacks and 4 of 297 blind ones for one more benign text flagged in each."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from agentmesh.services.guard._injection_model import FORMAT, MODEL_PATH, START, InjectionModel, sentences

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "guard_eval"
TRAINING_FILES = ("dev", "heldout", "public_style", "public_style_heldout", "public_style_more", "public_style_blind")
ALPHA = 0.5
WEIGHT_CAP = 2.0
MAX_FEATURES = 8000
WINDOW_SENTENCES = 3
MAX_WORDS = 50
FOLDS = 5
SEED = 0
FLAG_FALSE_RATE = 0.01
CAP = 0.65
DIGITS = 3

# Function words (en, de, fr, es, it, pt, nl) and the like: not features alone, nor in pairs of two.
STOP_WORDS = frozenset(
    """
a an the and or but if then of to in on at by for with from as is are was were be been being am do does did have has
had this that these those it its i me my we our you your he she they them their his her him what which who whom there
here so than too very can will would should could may might must not no nor just also only own same such into about
over under again further once all any both each few more most other some up down out off
der die das und oder ein eine einen einem einer ist sind war zu im in mit von für auf den dem des es ich du sie wir ihr
er nicht auch als wie was wenn dass aber mir mich dir dich sich
le la les un une des et ou de du en est que qui pour dans sur pas ce je tu il nous vous
el los las y o es que en por para con un una lo se no
il lo gli e che di per con non un una
o os as e que de em para com um uma não
de het een en of is dat die in op te voor met niet ik je
""".split()
)


def text_features(text: str) -> set[str]:
    """The features of a text, each once (as the model counts them within a window)."""
    out: set[str] = set()
    for _, words in sentences(text, MAX_WORDS):
        prev = START
        for w in words:
            if w and w not in STOP_WORDS:
                out.add(w)
            if w and prev and not (w in STOP_WORDS and prev in STOP_WORDS):
                out.add(f"{prev} {w}")
            prev = w
    return out


def load_training(data: Path = DATA) -> dict[str, list[tuple[str, bool]]]:
    """File name -> (text, is an injection) of each of its rows."""
    from bench.guard_eval import load_samples

    return {name: [(s.text, s.injection) for s in load_samples(data / f"{name}.jsonl")] for name in TRAINING_FILES}


def fit(docs: Sequence[set[str]], labels: Sequence[bool]) -> tuple[dict[str, float], float]:
    """(feature -> weight, bias) of the naive Bayes model, capped and pruned."""
    df = {True: Counter[str](), False: Counter[str]()}
    for features, label in zip(docs, labels, strict=True):
        df[label].update(features)
    vocab = sorted(set(df[True]) | set(df[False]))
    totals = {c: sum(df[c].values()) + ALPHA * len(vocab) for c in (True, False)}
    scored = []
    for f in vocab:
        w = math.log((df[True][f] + ALPHA) / totals[True]) - math.log((df[False][f] + ALPHA) / totals[False])
        w = min(WEIGHT_CAP, w)
        scored.append((-abs(w) * (df[True][f] + df[False][f]), f, w))
    scored.sort()
    weights = {f: round(w, DIGITS) for _, f, w in scored[:MAX_FEATURES] if round(w, DIGITS) != 0}
    positives = sum(labels)
    bias = math.log(positives / (len(labels) - positives))
    return weights, round(bias, DIGITS)


def _model(weights: dict[str, float], bias: float, flag_logit: float = 0.0, top_logit: float = 1.0) -> InjectionModel:
    return InjectionModel.from_dict(
        {
            "format": FORMAT,
            "weights": weights,
            "bias": bias,
            "flag_logit": flag_logit,
            "top_logit": top_logit,
            "cap": CAP,
            "window_sentences": WINDOW_SENTENCES,
            "max_words": MAX_WORDS,
        }
    )


def folds(labels: Sequence[bool], k: int = FOLDS, seed: int = SEED) -> list[int]:
    """A fold number per text, stratified by label, shuffled with a fixed seed."""
    rng = random.Random(seed)
    fold = [0] * len(labels)
    for label in (True, False):
        idx = [i for i, y in enumerate(labels) if y is label]
        rng.shuffle(idx)
        for n, i in enumerate(idx):
            fold[i] = n % k
    return fold


def out_of_fold_logits(texts: Sequence[str], labels: Sequence[bool], docs: Sequence[set[str]]) -> list[float]:
    fold = folds(labels)
    logits = [0.0] * len(texts)
    for k in range(FOLDS):
        train = [i for i in range(len(texts)) if fold[i] != k]
        model = _model(*fit([docs[i] for i in train], [labels[i] for i in train]))
        for i in range(len(texts)):
            if fold[i] == k:
                logits[i] = model.logit(texts[i])
    return logits


def calibrate(logits: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """(flag_logit, top_logit): at most FLAG_FALSE_RATE of benign texts at or above flag_logit."""
    benign = sorted((z for z, y in zip(logits, labels, strict=True) if not y), reverse=True)
    allowed = math.floor(FLAG_FALSE_RATE * len(benign))
    # Just above the (allowed+1)-th highest benign logit, so that only `allowed` benign texts reach it.
    flag = round(benign[allowed] + 10.0**-DIGITS, DIGITS)
    top = round(max(benign[0], flag + 1.0), DIGITS)
    return flag, top


def train(data: Path = DATA) -> dict[str, object]:
    files = load_training(data)
    rows = [row for name in TRAINING_FILES for row in files[name]]
    texts = [t for t, _ in rows]
    labels = [y for _, y in rows]
    docs = [text_features(t) for t in texts]
    logits = out_of_fold_logits(texts, labels, docs)
    flag, top = calibrate(logits, labels)
    weights, bias = fit(docs, labels)
    flagged = [z >= flag for z in logits]
    positives = sum(labels)
    cv = {
        "folds": FOLDS,
        "recall": round(sum(f for f, y in zip(flagged, labels, strict=True) if y) / positives, 4),
        "benign_flag_rate": round(
            sum(f for f, y in zip(flagged, labels, strict=True) if not y) / (len(labels) - positives), 4
        ),
    }
    return {
        "format": FORMAT,
        "about": "Naive Bayes over words and word pairs; see bench/train_injection_model.py.",
        "trained_on": {name: len(files[name]) for name in TRAINING_FILES},
        "cross_validation": cv,
        "bias": bias,
        "flag_logit": flag,
        "top_logit": top,
        "cap": CAP,
        "window_sentences": WINDOW_SENTENCES,
        "max_words": MAX_WORDS,
        "weights": dict(sorted(weights.items())),
    }


def dumps(model: dict[str, object]) -> str:
    return json.dumps(model, ensure_ascii=False, indent=0, sort_keys=False) + "\n"


def prose_paragraphs(root: Path) -> Iterable[str]:
    """Paragraphs (40+ characters) of the .md/.rst files and dist-info METADATA descriptions under `root`."""
    import email
    import re

    blank = re.compile(r"\n\s*\n")
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".md", ".rst") and p.is_file()):
        yield from (t.strip() for t in blank.split(path.read_text(errors="replace")) if len(t.strip()) >= 40)
    for path in sorted(root.glob("*.dist-info/METADATA")):
        body = email.message_from_string(path.read_text(errors="replace")).get_payload()
        if isinstance(body, str):
            yield from (t.strip() for t in blank.split(body) if len(t.strip()) >= 40)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument(
        "--prose",
        action="store_true",
        help="also count the documentation paragraphs of the installed packages the model flags",
    )
    args = parser.parse_args(argv)
    model = train()
    text = dumps(model)
    args.out.write_text(text, encoding="utf-8")
    weights = model["weights"]
    assert isinstance(weights, dict)
    print(
        f"wrote {args.out}: {len(weights)} features, {len(text.encode()) // 1024} KB; "
        f"cross-validation {model['cross_validation']}"
    )
    if args.prose:
        import sysconfig

        m = InjectionModel.from_dict(model)
        paragraphs = list(prose_paragraphs(Path(sysconfig.get_paths()["purelib"])))
        hits = [p for p in paragraphs if m.confidence(m.logit(p)) >= 0.5]
        print(f"prose: the model flags {len(hits)} of {len(paragraphs)} paragraphs")
        for p in hits[:20]:
            print("  ", p[:160].replace("\n", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
