"""The guard's fast paths give the answers of the slow ones they replace: phone validity against phonenumbers'
own `is_valid_number`, and the shape-based scans against the plain regex scans over the text."""

from __future__ import annotations

import random
import re
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from agentmesh.services.guard._phone import is_valid
from agentmesh.services.guard.detectors import _IBAN_RE, Scan, _iban_matches, _luhn_ok, detect, detect_phones
from bench.guard_eval import load_samples

DATA = Path(__file__).resolve().parents[1] / "data" / "guard_eval"
_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.VOIP,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
]


def _variants(number: phonenumbers.PhoneNumber, rng: random.Random) -> list[phonenumbers.PhoneNumber]:
    """The number, and near misses: one digit changed, one dropped, one added."""
    nsn = phonenumbers.national_significant_number(number)
    out = [nsn]
    for _ in range(4):
        i = rng.randrange(len(nsn))
        out.append(nsn[:i] + str(rng.randrange(10)) + nsn[i + 1 :])
    out += [nsn[:-1], nsn + str(rng.randrange(10))]
    return [phonenumbers.parse(f"+{number.country_code}{v}") for v in out if v]


def _examples() -> list[phonenumbers.PhoneNumber]:
    rng = random.Random(5)
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in _TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers += _variants(example, rng)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers += _variants(example, rng)
    return numbers


def test_phone_validity_matches_phonenumbers_on_every_regions_examples_and_near_misses() -> None:
    numbers = _examples()
    assert len(numbers) > 5_000
    valid = 0
    for number in numbers:
        expected = phonenumbers.is_valid_number(number)
        valid += expected
        assert is_valid(number.country_code, phonenumbers.national_significant_number(number)) == expected, number
    assert 0.2 < valid / len(numbers) < 0.9  # both answers are well represented


@pytest.mark.parametrize("country_code", [1, 7, 33, 39, 44, 49, 55, 61, 81, 86, 91, 234, 971])
def test_phone_validity_matches_phonenumbers_on_random_numbers(country_code: int) -> None:
    rng = random.Random(country_code)
    for _ in range(3_000):
        length = rng.randint(6, 12)
        national = str(rng.randrange(10 ** (length - 1), 10**length))
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
        assert is_valid(country_code, national) == phonenumbers.is_valid_number(number), national


def test_unknown_calling_codes_are_not_valid() -> None:
    assert 999 not in COUNTRY_CODE_TO_REGION_CODE
    assert not is_valid(999, "1234567890")


def test_an_international_number_with_its_national_prefix_in_brackets_is_still_found() -> None:
    # The fast path reads +44 then 020...: not valid as written, so phonenumbers' parse gets the last word.
    text = "call me on +44 (0)20 7946 0958 tomorrow"
    assert [text[f.start : f.end] for f in detect_phones(text)] == ["+44 (0)20 7946 0958"]


_RUN_RE = re.compile(r"\d(?:[ \t().\-/]{0,3}\d){3,}", re.ASCII)  # what the shape-based scan replaces


@pytest.fixture(scope="module")
def texts() -> list[str]:
    samples = load_samples(DATA / "dev.jsonl") + load_samples(DATA / "heldout.jsonl")
    joined = [" ".join(s.text for s in samples[i : i + 7]) for i in range(0, len(samples), 7)]
    return [s.text for s in samples] + joined


def test_numeric_runs_from_the_shape_are_the_runs_of_the_text(texts: list[str]) -> None:
    assert sum(len(Scan(t).numeric_runs) for t in texts) > 500
    for text in texts:
        assert list(Scan(text).numeric_runs) == [m.span() for m in _RUN_RE.finditer(text)], text


def test_iban_candidates_from_the_shape_are_the_matches_of_the_text(texts: list[str]) -> None:
    found = 0
    for text in texts:
        expected = [m.span() for m in _IBAN_RE.finditer(text)]
        assert [m.span() for m in _iban_matches(Scan(text))] == expected, text
        found += len(expected)
    assert found > 50


def test_offsets_stay_right_after_characters_beyond_latin1() -> None:
    text = "日本語のテキスト 🎉 card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00 — ok"
    values = {f.type: text[f.start : f.end] for f in detect(text)}
    assert values["credit_card"] == "4111 1111 1111 1111"
    assert values["iban"] == "DE89 3704 0044 0532 0130 00"


def _luhn_reference(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        total += (d * 2 - 9 if d > 4 else d * 2) if i % 2 else d
    return total % 10 == 0


def test_the_byte_level_luhn_check_agrees_with_the_textbook_one() -> None:
    rng = random.Random(3)
    numbers = [str(rng.randrange(10**11, 10**19)) for _ in range(20_000)]
    assert sum(map(_luhn_reference, numbers)) > 1_000  # both answers are well represented
    for digits in numbers:
        assert _luhn_ok(digits) == _luhn_reference(digits), digits
    assert not _luhn_ok("4111111111111\u0661111")  # an Arabic-Indic digit: not a card as printed


def test_phone_candidates_taken_from_the_runs_are_the_patterns_candidates(texts: list[str]) -> None:
    from agentmesh.services.guard._phone import _PHONE_CANDIDATE_RE, _PHONE_LEAD, _phone_candidates
    from agentmesh.services.guard._text import RUN_TAIL

    extra = [
        "+1 (555) 867-5309",
        "call (0161) 4960066.",
        "ID1234567 and x 7654321)",
        "tel:+44 20 7946 0958",
        "a_5551234567 b",
        "(+49) 30 1234567",
        "1234567",
        "12 345 67",
        "+ 1 555 867 5309",
    ]
    checked = 0
    for text in [*texts, *extra]:
        expected, prev_end = [], 0
        for start, end in Scan(text).numeric_runs:
            if end - start >= 7:
                lo = max(prev_end, start - _PHONE_LEAD)
                expected += [m.span() for m in _PHONE_CANDIDATE_RE.finditer(text, lo, end + RUN_TAIL)]
            prev_end = end
        assert list(_phone_candidates(Scan(text))) == expected, text
        checked += len(expected)
    assert checked > 300
