"""Phone numbers: `detect_phones` (the tier-one detector) and their validity, as `phonenumbers.is_valid_number`
decides it, at a fraction of its cost.

`is_valid_number` looks up a compiled pattern by its source (`re.compile` through re's cache) for every one of up
to ten number types of a region, and walks the 25 regions of the North American plan one by one: ~100 us for a
Canadian number. Here each region's number types are folded, per number length, into one pattern compiled once
(general description as a lookahead, then the types as one alternation), so a validity check is one `fullmatch`
per region tried. The metadata is phonenumbers' own; tests compare both on random numbers of many countries."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata

from agentmesh.services.guard._text import RUN_TAIL, Finding, Scan, as_scan, clamp_score, context_words, near

# The order `_number_type_helper` tries them in; any match makes the number valid.
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
_ANY_LENGTH = range(1, 18)  # a description without possible lengths takes the general one's (at most 17 digits)


@dataclass(frozen=True, slots=True)
class _Region:
    leading_digits: re.Pattern[str] | None  # set for the regions that share a calling code and say which is theirs
    valid_by_length: Mapping[int, re.Pattern[str]]  # fullmatch => a valid number of this region


def _lengths(desc: Any) -> frozenset[int]:
    return frozenset(desc.possible_length) if desc is not None and desc.possible_length else frozenset()


def _usable(desc: Any) -> bool:
    return desc is not None and bool(desc.national_number_pattern)


def _region(metadata: Any) -> _Region:
    general = metadata.general_desc
    types = [getattr(metadata, name) for name in _TYPES]
    if metadata.same_mobile_and_fixed_line_pattern:
        types = types[:-1]  # mobile is tried only when its pattern differs from fixed line's
    by_length: dict[int, re.Pattern[str]] = {}
    if _usable(general):
        for length in _lengths(general) or _ANY_LENGTH:
            alternatives = [
                f"(?:{d.national_number_pattern})"
                for d in types
                if _usable(d) and (not _lengths(d) or length in _lengths(d))
            ]
            if alternatives:
                by_length[length] = re.compile(
                    f"(?=(?:{general.national_number_pattern})\\Z)(?:{'|'.join(alternatives)})"
                )
    leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
    return _Region(leading, MappingProxyType(by_length))


@functools.cache  # metadata is static: each calling code's patterns are compiled once, on first use
def _regions(country_code: int) -> tuple[_Region, ...]:
    out = []
    for code in COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        metadata = (
            PhoneMetadata.metadata_for_nongeo_region(country_code, None)
            if code == REGION_CODE_FOR_NON_GEO_ENTITY
            else PhoneMetadata.metadata_for_region(code, None)
        )
        if metadata is not None:
            out.append(_region(metadata))
    return tuple(out)


def _valid_in(region: _Region, national: str) -> bool:
    pattern = region.valid_by_length.get(len(national))
    return pattern is not None and pattern.fullmatch(national) is not None


def is_valid(country_code: int, national: str) -> bool:
    """Whether `national` (the national significant number, digits only) is a valid number of `country_code`:
    the region is chosen as phonenumbers chooses it (its leading digits, else the first region it is valid in)."""
    regions = _regions(country_code)
    if len(regions) == 1:
        return _valid_in(regions[0], national)
    for region in regions:
        if region.leading_digits is not None:
            if region.leading_digits.match(national):
                return _valid_in(region, national)
        elif _valid_in(region, national):
            return True
    return False


def prepare(country_codes: tuple[int, ...]) -> None:
    """Compile these calling codes' patterns now (~4 ms each) rather than inside the first check that needs them."""
    for code in country_codes:
        _regions(code)


# --- detection ---- -----------------------------------------------------------------------------------------

# phonenumbers' matcher costs ~0.7 ms per 2 KB even when there is nothing to find, so only digit runs that could
# be a phone number (7+ digits with phone punctuation between them) are looked at, and a run that holds one
# number is checked by cheap shape rules and `parse` + `is_valid_number` (~15 us) rather than the matcher.
# A phone candidate may start up to this many characters before its first digit: `+` or `(`, then 0-3 separators.
_PHONE_LEAD = 4
_PHONE_CANDIDATE_RE = re.compile(r"[+(\d](?<![\w+(][+(\d])(?:[ \t().\-/]{0,3}\d){6,}\)?")
_E164_MAX_DIGITS = 15
# In a run too long for one number, what says there may be phone numbers in it: `+`, `(`, or 3-3-4 digits.
_PHONE_SHAPE_RE = re.compile(r"[+(]|(?<!\d)\d{3}[-. ]\d{3}[-. ]\d{4}(?!\d)")
_PHONE_CONTEXT = context_words(
    "call",
    "calls",
    "phone",
    "phones",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "fax",
    "sms",
    "whatsapp",
    "text me",
    "dial",
    "ring",
    "hotline",
    "landline",
    "contact",
    "phone number",
    "voicemail",
    r"texts?\s+(?:to|at)",
    r"messages?\s+(?:to|at|on)",
    r"sms\s+(?:to|at|on)",
    r"reach(?:ed)?\s+(?:me|us|him|her|them)",
    r"reach\s+(?:\w+\s+){1,3}(?:on|at)",  # "reach the front desk on ..."
    # "my number", "my Japanese number", "my work number"; not "my order number"
    *(
        rf"{who}\s+(?:(?!order|account|acct|invoice|tracking|customer|policy|ticket|case|reference|serial|id\b)\w+\s+)?number"
        for who in ("my", "your", "his", "her", "their", "our")
    ),
    # the same in the languages the injection detector reads
    "telefon",
    "telefono",
    "tel\u00e9fono",
    "t\u00e9l\u00e9phone",
    "telefoon",
    "handy",
    "mobil",
    "portable",
    "m\u00f3vil",
    "movil",
    "celular",
    "cellulare",
    "appelez",
    "anrufen",
    "llama",
    "ll\u00e1mame",
    "chiamami",
    "ligue",
    "bel",
)
_PHONE_NEGATIVE = context_words(
    "order",
    "invoice",
    "tracking",
    "account",
    "acct",
    "ref",
    "reference",
    "serial",
    "id",
    "isbn",
    "customer number",
    "policy",
    "ticket",
    "case",
)
_IMEI = context_words("imei")
_PHONE_MIN_LOOSE_DIGITS = 10
_PHONE_NEEDS_A_WORD = 0.3  # a number scored this low is a phone only with a phone word near it
# An extension after the number: 555-867-5309x123, ... ext. 12
_EXTENSION_STARTS = frozenset(" xXeE")
_PHONE_EXTENSION_RE = re.compile(r"(?:x| ?(?:ext|extension)\.? ?)\d{1,6}(?!\d)", re.IGNORECASE)
# 3-3-4 digits as North American numbers are written: (555) 867-5309, 555.867.5309, 1-555-867-5309
# Groups of 3, 3 and 4 digits (a leading 1, brackets, one separator between groups at most): how people write them.
_NANP_GROUPS_RE = re.compile(r"(?:1[ .\-/]?)?(?:\(\d{3}\) ?|\d{3})[ .\-/]?\d{3}[ .\-/]?\d{4}")
_NANP_LAYOUT_RE = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}")
# Countries whose national numbers (trunk prefix 0) are looked for: the most common in English-language text
# and the EU's largest; others are found when written internationally (+CC).
_NATIONAL_COUNTRIES = (44, 49, 33, 39, 34, 31, 32, 41, 43, 61, 64, 91, 81, 353, 27, 55)
prepare((1, *_NATIONAL_COUNTRIES))
_NON_DIGITS_RE = re.compile(r"\D+")
_DECIMAL_RE = re.compile(r"\d+\.\d{1,2}")  # 4294967296.0: a float, whatever word is near ("most recent call")
_FULLWIDTH_RE = re.compile("[\uff10-\uff19]")
_FULLWIDTH = str.maketrans(
    {**{0xFF10 + i: str(i) for i in range(10)}, 0xFF0B: "+", 0xFF0D: "-", 0xFF08: "(", 0xFF09: ")", 0x3000: " "}
)
# A run that opens with a year-month-day date is a timestamp ("2012-01-02 08:00", "20120102 08"), not a phone.
_DATE_LEAD_RE = re.compile(r"(?:19|20)\d\d([-/.]?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])(?!\d)")


def _phone_candidates(scan: Scan) -> Iterator[tuple[int, int]]:
    """(start, end) of what `_PHONE_CANDIDATE_RE` finds, run by run. A candidate is a whole run of 7+ digits (the
    pattern takes the run's separators, greedily, to its last digit) and a `)` after it; the pattern itself runs
    only where a `+` or `(` may lead the number or the run is glued to a word (it then decides where to start)."""
    text, shape, prev_end = scan.text, scan.shape, 0
    for start, end in scan.numeric_runs:
        if end - start >= 7:
            # Back far enough for a leading `+` or `(`, but not into the previous run (its candidates are done).
            lo = max(prev_end, start - _PHONE_LEAD)
            before = text[lo:start]
            if before and (before[-1].isalnum() or before[-1] == "_" or "+" in before or "(" in before):
                for m in _PHONE_CANDIDATE_RE.finditer(text, lo, end + RUN_TAIL):
                    yield m.span()
            elif shape.count(b"0", start, end) >= 7:
                yield start, end + (text[end : end + 1] == ")")
        prev_end = end


def detect_phones(text: str | Scan) -> list[Finding]:
    scan = as_scan(text)
    if _FULLWIDTH_RE.search(scan.text):  # East Asian text types digits full width; one char each, offsets hold
        scan = as_scan(scan.text.translate(_FULLWIDTH))
    text = scan.text
    out: list[Finding] = []
    for start, cand_end in _phone_candidates(scan):
        ext = _PHONE_EXTENSION_RE.match(text, cand_end) if text[cand_end : cand_end + 1] in _EXTENSION_STARTS else None
        tail = ext.end() if ext else cand_end
        if tail < len(text) and (text[tail].isalnum() or text[tail] in "_=" or text[tail : tail + 2] in ("-X", "-x")):
            continue  # glued to a word (an id such as 5551234567abc), an ISBN-10 with its X check digit, a sum
        run = text[start:cand_end]
        if run.endswith(")") and "(" not in run:
            run = run[:-1]
        if run.startswith("(") and ")" not in run:
            start, run = start + 1, run[1:]
        if _DATE_LEAD_RE.match(run) or _DECIMAL_RE.fullmatch(run):
            continue
        digits = _NON_DIGITS_RE.sub("", run)
        if len(digits) > _E164_MAX_DIGITS + 2:  # `00` + the longest international number
            if _PHONE_SHAPE_RE.search(run):  # several numbers in one run: let the matcher split them
                out.extend(_phones_by_matcher(text, start, start + len(run)))
            continue
        score = _phone_score(run, digits)
        if score is None:
            continue
        end = ext.end() if ext else start + len(run)
        if len(digits) == 15 and run.isdigit() and near(_IMEI, text, start, end):
            continue  # a handset's IMEI, often right after the word "phone"
        if near(_PHONE_CONTEXT, text, start, end):
            score += 0.3
        elif score <= _PHONE_NEEDS_A_WORD:
            continue
        elif not run.startswith("+") and near(_PHONE_NEGATIVE, text, start, end):
            score -= 0.2  # a `+` and a calling code are a phone's alone: no order or reference number starts so
        out.append(Finding("phone", start, end, clamp_score(score)))
    return out


def _phone_score(run: str, digits: str) -> float | None:
    """How much `run` (its digits: `digits`) looks like a phone number before context words, or None."""
    formatted = not run.isdigit()
    if run.startswith("+") or (digits.startswith("00") and formatted):
        international = digits if run.startswith("+") else digits[2:]
        if not (international[0] == "1" and len(international) == 11):
            return _international_score(run, international)
        digits, run = international, run.lstrip("+0 .-")  # North American: judged as written at home
    if len(digits) == 10 or (len(digits) == 11 and digits[0] == "1"):
        national = digits[-10:]
        # North American numbering: area code and exchange start with 2-9, which rules out most order numbers
        # and dates before any pattern is tried.
        if national[0] >= "2" and national[3] >= "2":
            if is_valid(1, national):
                bare = run[1:-1] if run[:1] == "(" and run[-1:] == ")" else run  # the whole number in brackets
                if formatted and not (_NANP_GROUPS_RE.fullmatch(run) or _NANP_GROUPS_RE.fullmatch(bare)):
                    return _PHONE_NEEDS_A_WORD  # digits grouped otherwise: "180.48 (290.454)", "22 (65-67-69-65"
                return 0.55 if formatted else 0.4  # ten bare digits are an order number as often as a phone
            if formatted and _NANP_LAYOUT_RE.fullmatch(run):
                return 0.5  # written as a phone number (555-867-5309), in a range not assigned yet
    if digits[0] == "0" and digits[1] != "0" and 9 <= len(digits) <= 12:
        # A national number behind its trunk prefix (020 7946 0958, 06 12 34 56 78), valid in one of the
        # countries most text comes from. With ~16 countries' plans most such numbers are valid somewhere, so
        # alone only an area code in brackets (0161) counts, as phone numbers are written; else a phone word
        # must say so (ISBNs and ZIP+4 codes look alike).
        if any(is_valid(code, digits[1:]) or is_valid(code, digits) for code in _NATIONAL_COUNTRIES):
            return 0.5 if run.startswith("(0") else _PHONE_NEEDS_A_WORD
    if _PHONE_MIN_LOOSE_DIGITS <= len(digits) <= _E164_MAX_DIGITS and not digits.startswith("0"):
        return _PHONE_NEEDS_A_WORD  # e.g. a number from the 555 examples range
    return None


def _international_score(run: str, international: str) -> float | None:
    """A number after `+` or `00`; `international` holds its digits after that prefix."""
    if len(international) > _E164_MAX_DIGITS:
        return None
    # As written (calling code, then the national number) first; `parse` (~20 us) only for what that does not
    # accept, such as a national prefix kept in brackets: +44 (0)20 ...
    if _valid_international(international):
        return 0.65
    number = _parse_phone("+" + international, None)
    if number is None:
        return None
    if number.country_code is not None and is_valid(
        number.country_code, phonenumbers.national_significant_number(number)
    ):
        return 0.65
    # A calling code and a length that country dials, but in no range of it: made-up and example numbers,
    # still someone's number as far as the text goes. Only after a `+`: `00` starts ZIP codes and ISBNs too.
    return 0.5 if run.startswith("+") and phonenumbers.is_possible_number(number) else None


def _valid_international(digits: str) -> bool:
    # Calling codes are prefix-free: the first 1-3 digits that are one are the one.
    for n in (1, 2, 3):
        if int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE:
            return is_valid(int(digits[:n]), digits[n:])
    return False


def _parse_phone(run: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(run, region)
    except phonenumbers.NumberParseException:
        return None


def _phones_by_matcher(text: str, lo: int, hi: int) -> list[Finding]:
    out = []
    # A character of margin each side lets the matcher see what borders the run (a letter, a digit).
    lo, hi = max(0, lo - 1), min(len(text), hi + 1)
    for pm in phonenumbers.PhoneNumberMatcher(text[lo:hi], "US", leniency=phonenumbers.Leniency.VALID):
        start, end = lo + pm.start, lo + pm.end
        score = (0.65 if pm.raw_string.startswith("+") else 0.55) + (
            0.3 if near(_PHONE_CONTEXT, text, start, end) else 0.0
        )
        out.append(Finding("phone", start, end, clamp_score(score)))
    return out
