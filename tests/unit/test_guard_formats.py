"""Numbers as public PII corpora and real users write them, beyond the textbook layouts: phone extensions, the
`00` international prefix, national numbers behind a trunk 0, made-up numbers in a phone's layout, 12-digit
Maestro cards, and IBANs generated short for their country; and the look-alikes that must stay unflagged."""

from __future__ import annotations

import pytest

from agentmesh.services.guard.detectors import Finding, detect_credit_cards, detect_ibans, detect_phones


def values(findings: list[Finding], text: str, at_least: float = 0.5) -> list[str]:
    return [text[f.start : f.end] for f in findings if f.confidence >= at_least]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("call 883-237-8876x232 after five", "883-237-8876x232"),
        ("desk: +1-912-490-4047 ext. 966 (mornings)", "+1-912-490-4047 ext. 966"),
        ("from abroad dial 001-335-504-9258", "001-335-504-9258"),  # 335 is not an assigned area code
        ("our office (0114) 4960907 is open", "(0114) 4960907"),  # a trunk 0 in brackets, as written in the UK
        ("my number is 0118 496 0982", "0118 496 0982"),
        ("appelez le 05 45 23 28 60 demain, c'est mon mobile", "05 45 23 28 60"),
        ("Telefon: 030 1234567", "030 1234567"),
        ("携帯 call 090-2667-8698", "090-2667-8698"),
        ("WhatsApp +55 61 9141-7776", "+55 61 9141-7776"),
        ("reach me on +44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
        ("+31 6 12345678 is mine", "+31 6 12345678"),
        ("it was (591) 341-7776, I think", "(591) 341-7776"),  # unassigned range, but a phone's layout
    ],
)
def test_phones_in_the_layouts_people_use(text: str, value: str) -> None:
    assert values(detect_phones(text), text) == [value]


@pytest.mark.parametrize(
    "text",
    [
        "ISBN 0-547-08613-X on the shelf",  # ISBN-10 with an X check digit
        "ISBN 0-306-70192-8",
        "ship to ZIP 02327-7967",  # ZIP+4 with a leading 0
        "catalogue 0109248343 is sold out",  # bare trunk-0 digits need a phone word
        "order 1234567890 shipped",
        "batch 00611-1555 arrived",  # `00` starts ZIP codes too: not a phone unless a valid one
        "see page 5162.0466",
    ],
)
def test_number_lookalikes_are_not_phones(text: str) -> None:
    assert values(detect_phones(text), text) == []


def _luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "7" * (length - len(prefix) - 1)
    for check in "0123456789":
        digits = body + check
        total = sum(
            int(d) if i % 2 == 0 else (2 * int(d) - 9 if int(d) > 4 else 2 * int(d))
            for i, d in enumerate(reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def test_twelve_digit_maestro_cards_are_found_and_other_twelve_digit_numbers_are_not() -> None:
    maestro = _luhn_complete("5020", 12)
    text = f"maestro card {maestro} exp 09/27"
    assert values(detect_credit_cards(text), text, at_least=0.3) == [maestro]
    visa_prefix = _luhn_complete("4111", 12)  # Luhn-valid, but no network issues 12-digit Visas
    assert detect_credit_cards(f"card {visa_prefix}") == []


def _iban(country: str, bban: str) -> str:
    numeric = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{country}{98 - numeric % 97:02d}{bban}"


def test_an_iban_short_for_its_country_counts_when_mod97_holds() -> None:
    short = _iban("GB", "ASKH379849638964")  # 20 characters where GB has 22: generated data does this
    text = f"please wire to {short} today"
    [finding] = detect_ibans(text)
    assert text[finding.start : finding.end] == short and 0.3 <= finding.confidence < 0.9
    broken = short[:4] + ("1" if short[4] != "1" else "2") + short[5:]
    assert detect_ibans(f"please wire to {broken} today") == []
