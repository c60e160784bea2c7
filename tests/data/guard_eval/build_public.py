"""Builds public_indirect.jsonl and public_phone.jsonl from public, permissively licensed test data (see README.md).

Run from a machine that has the three repositories checked out at the commits below (their git directories given
as arguments); the output is committed, so tests never need the sources. Each row's split ("tune" or "heldout") is
fixed by a hash of its source text before anything is scored, so the held-out half was never looked at.

    python tests/data/guard_eval/build_public.py BIPIA_GIT LIBPHONENUMBER_GIT PRESIDIO_GIT
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIPIA_COMMIT = "1a2a91da6bb12838e05d1b2e54d98e2f37b835f3"
LIBPHONENUMBER_COMMIT = "f7e3e88c92b905c8d6edb81f336dbe25edc05b52"
PRESIDIO_COMMIT = "0aa9f8e44275cb52c00fbbebe19168e934e1f076"


def _show(git_dir: str, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
    ).stdout


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def split_of(text: str) -> str:
    return "heldout" if _h(text) % 2 else "tune"


def _insert(context: str, attack: str, where: int) -> str:
    """BIPIA's three positions: before, after, or at a line break near the middle of the document."""
    if where == 0:
        return f"{attack}\n{context}"
    if where == 1:
        return f"{context}\n{attack}"
    breaks = [m.start() for m in re.finditer(r"\n", context)] or [len(context) // 2]
    mid = min(breaks, key=lambda i: abs(i - len(context) // 2))
    return f"{context[:mid]}\n{attack}\n{context[mid:]}"


def bipia(git_dir: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    emails = [
        json.loads(line)["context"]
        for s in ("train", "test")
        for line in _show(git_dir, BIPIA_COMMIT, f"benchmark/email/{s}.jsonl").splitlines()
    ]
    code = [
        "\n".join(json.loads(line)["context"])
        for s in ("train", "test")
        for line in _show(git_dir, BIPIA_COMMIT, f"benchmark/code/{s}.jsonl").splitlines()
    ]
    for kind, contexts, files in (
        ("email", emails, ("text_attack_train", "text_attack_test")),
        ("code", code, ("code_attack_train", "code_attack_test")),
    ):
        for ctx in contexts:
            rows.append({"source": f"bipia_{kind}", "text": ctx, "injection": False, "split": split_of(ctx)})
        for f in files:
            for category, attacks in json.loads(_show(git_dir, BIPIA_COMMIT, f"benchmark/{f}.json")).items():
                for attack in attacks:
                    h = _h(attack)
                    text = _insert(contexts[h % len(contexts)], attack, (h >> 8) % 3)
                    rows.append(
                        {
                            "source": f"bipia_{kind}",
                            "text": text,
                            "injection": True,
                            "split": split_of(attack),
                            "category": category,
                            "attack": attack,
                        }
                    )
    return rows


# Carrier sentences for the bare numbers of libphonenumber's matcher tests: the number is the public datum. The
# sentence is picked by other bits of the hash than the split's, so both halves get every sentence.
_CARRIERS = (
    "Call me at {n} tomorrow.",
    "Tel: {n}",
    "You can reach the front desk on {n} during office hours.",
    "Contact: Maria Lopez, {n}, ext. desk 4",
    "Please ring {n} if the delivery is late.",
    "ref {n} (see attached)",
)
_NUMBER_TEST = re.compile(r'new NumberTest\("((?:[^"\\]|\\.)*)", RegionCode\.(\w+)\)')


def phones(lpn_git: str, presidio_git: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    java = _show(
        lpn_git,
        LIBPHONENUMBER_COMMIT,
        "java/libphonenumber/test/com/google/i18n/phonenumbers/PhoneNumberMatcherTest.java",
    )
    for section in ("IMPOSSIBLE_CASES", "VALID_CASES", "STRICT_GROUPING_CASES", "EXACT_GROUPING_CASES"):
        body = java.split(f"NumberTest[] {section} = {{", 1)[1].split("};", 1)[0]
        for raw, region in _NUMBER_TEST.findall(body):
            number = raw.encode().decode("unicode_escape")
            template = _CARRIERS[(_h(number) >> 8) % len(_CARRIERS)]
            text = template.format(n=number)
            start = text.index(number)
            phone = section != "IMPOSSIBLE_CASES"
            markup = text[:start] + (f"[[phone:{number}]]" if phone else number) + text[start + len(number) :]
            rows.append(
                {
                    "source": f"libphonenumber_{section.lower()}",
                    "region": region,
                    "markup": markup,
                    "phone": phone,
                    "split": split_of(number),
                }
            )
    py = _show(presidio_git, PRESIDIO_COMMIT, "presidio-analyzer/tests/test_phone_recognizer.py")
    py = py.split("def test_when_all_phones_then_succeed", 1)[0]  # later cases depend on a leniency setting
    for text, positions in re.findall(
        r'\("([^"]+)",\s*\n?\s*\d+, \["PHONE_NUMBER"[^\]]*\],\s*\n?\s*\(((?:\(\d+, \d+\),\s*)+)\)', py
    ):
        spans = [tuple(map(int, p)) for p in re.findall(r"\((\d+), (\d+)\)", positions)]
        markup, last = "", 0
        for s, e in spans:
            markup += text[last:s] + f"[[phone:{text[s:e]}]]"
            last = e
        markup += text[last:]
        if not any(r["markup"] == markup for r in rows):
            rows.append({"source": "presidio_tests", "markup": markup, "phone": True, "split": split_of(text)})
    return rows


# Countries whose national format is common in English-language text; chosen before any scoring.
_NATIONAL_REGIONS = (
    "US",
    "CA",
    "GB",
    "IE",
    "AU",
    "NZ",
    "IN",
    "ZA",
    "DE",
    "FR",
    "IT",
    "ES",
    "NL",
    "BE",
    "CH",
    "AT",
    "SE",
    "PL",
    "BR",
    "MX",
    "JP",
    "KR",
    "CN",
    "RU",
    "TR",
)


def example_numbers() -> list[dict[str, object]]:
    """libphonenumber's example numbers (its metadata, as the `phonenumbers` package ships it): each region's
    fixed-line and mobile example in international format, and in national format for _NATIONAL_REGIONS."""
    import phonenumbers  # the guard's own dependency; imported here so the rest runs without it

    rows: list[dict[str, object]] = []
    kinds = (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            fmts = [("international", phonenumbers.PhoneNumberFormat.INTERNATIONAL)]
            if region in _NATIONAL_REGIONS:
                fmts.append(("national", phonenumbers.PhoneNumberFormat.NATIONAL))
            for name, fmt in fmts:
                written = phonenumbers.format_number(number, fmt)
                template = _CARRIERS[(_h(written) >> 8) % len(_CARRIERS)]
                text = template.format(n=written)
                start = text.index(written)
                markup = text[:start] + f"[[phone:{written}]]" + text[start + len(written) :]
                rows.append(
                    {
                        "source": f"libphonenumber_examples_{name}",
                        "region": region,
                        "markup": markup,
                        "phone": True,
                        "split": split_of(written),
                    }
                )
    return rows


def main(argv: list[str]) -> None:
    bipia_git, lpn_git, presidio_git = argv
    with (HERE / "public_indirect.jsonl").open("w") as f:
        for i, row in enumerate(bipia(bipia_git)):
            f.write(json.dumps({"id": f"pi-{i:04d}", **row}, ensure_ascii=False) + "\n")
    with (HERE / "public_phone.jsonl").open("w") as f:
        for i, row in enumerate(phones(lpn_git, presidio_git) + example_numbers()):
            f.write(json.dumps({"id": f"pp-{i:04d}", **row}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
