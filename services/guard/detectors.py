"""Tier-one detectors: pure, regex-first functions that find PII, secrets and prompt injection in a text.

Each detector makes one scan over the text with a precompiled pattern (for secrets and prompt injection, a
scan for trigger words with the full pattern tried only there), validates candidates (Luhn, mod-97, SSN ranges,
entropy) and scores them 0..1. Words within ~40 characters of a match raise or lower the score,
as Presidio's context enhancer does. Offsets are indices into the original Python str (code points)."""

from __future__ import annotations

import base64
import bisect
import ipaddress
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from services.guard._injection import injection_hits, lower_keep_offsets
from services.guard._injection_model import MODEL as INJECTION_MODEL
from services.guard._injection_model import injection_evidence
from services.guard._phone import is_valid as is_valid_phone
from services.guard._phone import prepare as prepare_phone_plans
from services.guard._scan import PrefixScan

CONTEXT_CHARS = 40


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: its kind, its [start, end) span in the text and how sure the detector is."""

    type: str
    start: int
    end: int
    confidence: float


def _score(x: float) -> float:
    # Rounded so that sums such as 0.7 + 0.1 compare with policy thresholds as a reader expects.
    return round(min(1.0, max(0.0, x)), 3)


def _words(*words: str) -> re.Pattern[str]:
    """Any of `words` (lower-case regexes, each starting with a plain letter) as a whole word, to search in
    lower-cased text (see `_near`). The alternatives are grouped by first letter behind a lookahead on those
    letters: the engine then rejects most positions at one character. Together with matching case-sensitively
    on a lower-cased window, ~2 us per `_near` where one case-insensitive flat alternation took ~3.5."""
    by_first: dict[str, list[str]] = {}
    for w in words:
        if not w[0].isalpha() or w[1:2] in ("?", "*", "+", "{") or re.search(r"(?<!\\)[A-Z]", w):
            raise ValueError(f"context word {w!r} must be lower case and start with a plain letter")
        by_first.setdefault(w[0], []).append(w[1:])
    alternatives = "|".join(f"{first}(?:{'|'.join(rests)})" for first, rests in sorted(by_first.items()))
    return re.compile(rf"(?=[{''.join(sorted(by_first))}])(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


def _near(pattern: re.Pattern[str], text: str, start: int, end: int, chars: int = CONTEXT_CHARS) -> bool:
    """A context word within `chars` characters before or after the span (found in one search over the two
    windows, lower-cased, joined by a line break). Each window takes one character more on its outer side, so
    that a word the window would cut (re*call*) is seen whole, not taken for the shorter one."""
    before = text[max(0, start - chars - 1) : start]
    return pattern.search(f"{before}\n{text[end : end + chars + 1]}".lower()) is not None


# --- runs of digits ------------------------------------------------------------------------------------------

# Card, SSN, phone and IPv4 matches are all runs of 4+ digits with at most a few separators between digits
# ([ \t().\-/] holds every separator those patterns take), and each lies inside one run of this pattern. So the
# text is scanned once for such runs and each detector tries its own pattern only inside a run long enough for
# it: one pass over the text instead of four. The pass is made over the text's shape (below), where a run starts
# with a literal byte that the engine finds with memchr rather than testing `\d` at every character.
_NUMERIC_RUN_RE = re.compile(rb"0(?: {0,3}0){3,}")
# The lookaheads after a match read at most two characters past it (`(?![\w]|[.,]\d)`), a phone's `\)?` one.
_RUN_TAIL = 2
# A phone candidate may start up to this many characters before its first digit: `+` or `(`, then 0-3 separators.
_PHONE_LEAD = 4


def _shape_table() -> bytes:
    table = bytearray(b"x" * 256)
    table[ord("0") : ord("9") + 1] = b"0" * 10
    table[ord("A") : ord("Z") + 1] = b"A" * 26
    for sep in b" \t().-/":
        table[sep] = ord(" ")
    return bytes(table)


# An ASCII digit -> 0, an ASCII capital -> A, a separator of digits -> space, anything else -> x.
_SHAPE = _shape_table()


class Scan:
    """A text under scan, and what several detectors read from it, computed once on first use. A detector takes a
    text or a Scan; `detect` passes one Scan to all of them.

    `shape` is the text one byte per character (latin-1, anything beyond it replaced), mapped by `_SHAPE`: offsets
    in it are offsets in the text, and bytes.find/memchr-speed searches in it find where a detector's pattern can
    start (~1.5 us per KB to build, where a digit or capital class scanned over the text costs ~10). Only ASCII digits count
    as digits: numbers written in other scripts' digits are not looked for."""

    __slots__ = ("_low", "_runs", "_shape", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._shape: bytes | None = None
        self._runs: tuple[tuple[int, int], ...] | None = None
        self._low: str | None = None

    @property
    def low(self) -> str:
        """The text lower-cased with offsets kept (secret keywords and injection phrases are looked for in it)."""
        if self._low is None:
            self._low = lower_keep_offsets(self.text)
        return self._low

    @property
    def shape(self) -> bytes:
        if self._shape is None:
            self._shape = self.text.encode("latin-1", "replace").translate(_SHAPE)
        return self._shape

    @property
    def numeric_runs(self) -> tuple[tuple[int, int], ...]:
        """(start, end) of every run of digits in the text."""
        if self._runs is None:
            self._runs = tuple([m.span() for m in _NUMERIC_RUN_RE.finditer(self.shape)])
        return self._runs


def _scan(text: str | Scan) -> Scan:
    return text if isinstance(text, Scan) else Scan(text)


def _windows(scan: Scan, min_chars: int) -> Iterator[tuple[int, int]]:
    """(pos, endpos) around each run of at least `min_chars` characters: a detector's pattern searched there finds
    the same matches as over the whole text (lookbehinds still see before pos; the tail covers lookaheads)."""
    for start, end in scan.numeric_runs:
        if end - start >= min_chars:
            yield start, end + _RUN_TAIL


def _run_matches(scan: Scan, pattern: re.Pattern[str], min_chars: int) -> Iterator[re.Match[str]]:
    """`pattern`'s matches, searched only around the runs of digits long enough to hold one."""
    for pos, endpos in _windows(scan, min_chars):
        yield from pattern.finditer(scan.text, pos, endpos)


# --- credit cards ----------------------------------------------------------------------------------------

# Bare 12-19 digits (12: Maestro only), or the groupings issuers print (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) with one consistent
# separator. Not right after `XX00 `: that is the body of an IBAN, checked by its own detector.
_CARD_RE = re.compile(
    r"\d(?<![\w.]\d)(?<![A-Z]{2}\d\d[ -]\d)(?:\d{11,18}|\d{3}(?P<sep>[ -])"
    r"(?:\d{6}(?P=sep)\d{4,5}|\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{1,3})?))(?![\w]|[.,]\d)"
)
_CARD_CONTEXT = _words(r"cards?", "visa", "cc", "credit", "debit", "expiry", "expires", "exp", "cvv", "cvc",
                       "mastercard", "amex", "discover", "jcb", "diners")
_CARD_NEGATIVE = _words("order", "tracking", "shipment", "invoice", "ref", "reference", "confirmation",
                        "booking", "serial", "isbn", "phone", "tel")


# A digit's byte -> the digit doubled, its two digits summed (as a byte value: `sum()` adds them up in C).
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


def _luhn_ok(digits: str) -> bool:
    # On bytes: sum() of a bytes slice adds its byte values in C, no int() per digit (~4x faster than a loop).
    raw = digits.encode("ascii", "replace")
    if b"?" in raw:
        return False  # a digit of another script: not a card number as issuers print them
    odd = raw[-1::-2]
    return (sum(odd) - 48 * len(odd) + sum(raw[-2::-2].translate(_LUHN_DOUBLED))) % 10 == 0


def _maestro(digits: str) -> bool:
    """Maestro's prefixes (50, 56-69): the one network that issues 12-digit cards."""
    return digits[:2] == "50" or "56" <= digits[:2] <= "69"


def _known_iin(digits: str) -> bool:
    """A known network's prefix with a length that network issues."""
    n = len(digits)
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    return (
        (digits[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16)  # Mastercard
        or (p2 in (34, 37) and n == 15)  # Amex
        or ((p4 == 6011 or p2 == 65 or 644 <= p3 <= 649) and 16 <= n <= 19)  # Discover
        or (3528 <= p4 <= 3589 and 16 <= n <= 19)  # JCB
        or ((p2 in (36, 38) or 300 <= p3 <= 305) and 14 <= n <= 19)  # Diners
    )


def detect_credit_cards(text: str | Scan) -> list[Finding]:
    scan = _scan(text)
    text = scan.text
    out: list[Finding] = []
    for m in _run_matches(scan, _CARD_RE, 12):
        sep = m.group("sep")
        groups = m.group().split(sep) if sep else [m.group()]
        # A card followed by another number ("... 1111 2025") is matched whole: try the longest valid prefix.
        for n_groups in range(len(groups), 0, -1):
            digits = "".join(groups[:n_groups])
            if (13 <= len(digits) <= 19 or (len(digits) == 12 and _maestro(digits))) and _luhn_ok(digits):
                break
        else:
            continue
        end = m.start() + len(sep.join(groups[:n_groups])) if sep else m.end()
        score = 0.85 if _known_iin(digits) else 0.45
        if _near(_CARD_CONTEXT, text, m.start(), end):
            score += 0.1
        elif _near(_CARD_NEGATIVE, text, m.start(), end):
            score -= 0.3
        out.append(Finding("credit_card", m.start(), end, _score(score)))
    return out


# --- US social security numbers --------------------------------------------------------------------------

_SSN_RE = re.compile(
    r"\d(?<![\w.-]\d)(?:\d\d(?P<sep>[- .])\d{2}(?P=sep)\d{4}|(?P<bare>\d{8}))(?![\w-]|\.\d)"
)
_SSN_CONTEXT = _words("ssns?", r"social\s+security(?:\s+(?:number|no))?", r"soc\.?\s*sec", r"ss\s*#", "ss no")
_SSN_FAKES = frozenset({"078051120", "123456789"})  # the Woolworth wallet card and the textbook example


def detect_us_ssns(text: str | Scan) -> list[Finding]:
    scan = _scan(text)
    text = scan.text
    out: list[Finding] = []
    for m in _run_matches(scan, _SSN_RE, 9):
        bare = m.group("bare")
        digits = m.group() if bare else m.group().replace(m.group("sep"), "")
        area, group, serial = int(digits[:3]), digits[3:5], digits[5:]
        if area == 0 or area == 666 or area >= 900 or group == "00" or serial == "0000":
            continue  # never issued
        context = _near(_SSN_CONTEXT, text, m.start(), m.end())
        if bare:
            if not context:
                continue  # nine bare digits are far more often something else
            score = 0.65
        else:
            # Dashes are how SSNs are written; spaces and dots mostly need a word saying so.
            base, boost = {"-": (0.75, 0.2), " ": (0.55, 0.3)}.get(m.group("sep"), (0.45, 0.35))
            score = base + (boost if context else 0.0)
        if digits in _SSN_FAKES:
            score = min(score, 0.35)
        out.append(Finding("us_ssn", m.start(), m.end(), _score(score)))
    return out


# --- IBAN --------------------------------------------------------------------------------------------------

_IBAN_RE = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,8}(?: ?[A-Z0-9]{1,3})?\b")
_IBAN_LENGTHS: Mapping[str, int] = MappingProxyType({
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GI": 23, "GL": 18, "GR": 27,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "ME": 22, "MK": 19, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PL": 28, "PT": 25, "QA": 29, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24,
    "TR": 26, "UA": 29,
})
_IBAN_CONTEXT = _words("iban", "bank", "account", "acct", "transfer", "wire", "swift", "bic")


_IBAN_LETTER_VALUES = str.maketrans({chr(ord("A") + i): str(10 + i) for i in range(26)})  # A=10 ... Z=35


def _mod97_ok(iban: str) -> bool:
    return int((iban[4:] + iban[:4]).translate(_IBAN_LETTER_VALUES)) % 97 == 1


def _iban_matches(scan: Scan) -> Iterator[re.Match[str]]:
    # Every IBAN starts with two capitals and two digits: found in the shape, the pattern tried only there.
    text, shape, done = scan.text, scan.shape, 0
    at = shape.find(b"AA00")
    while at != -1:
        m = _IBAN_RE.match(text, at)
        if m is not None:
            done = m.end()
            yield m
        at = shape.find(b"AA00", max(at + 1, done))


def detect_ibans(text: str | Scan) -> list[Finding]:
    scan = _scan(text)
    text = scan.text
    out: list[Finding] = []
    for m in _iban_matches(scan):
        raw = m.group()
        compact = raw.replace(" ", "")
        expected = _IBAN_LENGTHS.get(compact[:2])
        if expected is not None and len(compact) >= expected:
            # The pattern may run on into a following 4-character word; cut at the country's length.
            keep, seen = 0, 0
            while seen < expected:
                seen += raw[keep] != " "
                keep += 1
            if keep < len(raw) and raw[keep] != " ":
                continue  # the country's length ends inside a group: not an IBAN as written
            raw, compact, score = raw[:keep], compact[:expected], 0.9
        elif 15 <= len(compact) <= 34:
            score = 0.6  # a country we do not know the length of, or short for its country: mod-97 decides
        else:
            continue
        if not _mod97_ok(compact):
            continue
        if _near(_IBAN_CONTEXT, text, m.start(), m.start() + len(raw)):
            score += 0.05
        out.append(Finding("iban", m.start(), m.start() + len(raw), _score(score)))
    return out


# --- email -------------------------------------------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?!\.?[\w-])"
)
_EMAIL_CONTEXT = _words("e-?mail", "mail", "contact", "reach", "write")


def detect_emails(text: str | Scan) -> list[Finding]:
    text = _scan(text).text
    out: list[Finding] = []
    done = 0
    at = text.find("@")
    while at != -1:
        # Only the stretch around each @ is scanned: a local part is at most 64 characters, a domain 253.
        m = _EMAIL_RE.search(text, max(done, at - 65), at + 254)
        if m is not None and m.start() < at < m.end():
            out.append(Finding("email", m.start(), m.end(),
                               0.95 if _near(_EMAIL_CONTEXT, text, m.start(), m.end()) else 0.85))
            done = m.end()
        at = text.find("@", max(at + 1, done))
    return out


# --- phone numbers -----------------------------------------------------------------------------------------

# phonenumbers' matcher costs ~0.7 ms per 2 KB even when there is nothing to find, so only digit runs that could
# be a phone number (7+ digits with phone punctuation between them) are looked at, and a run that holds one
# number is checked by cheap shape rules and `parse` + `is_valid_number` (~15 us) rather than the matcher.
_PHONE_CANDIDATE_RE = re.compile(r"[+(\d](?<![\w+(][+(\d])(?:[ \t().\-/]{0,3}\d){6,}\)?")
_E164_MAX_DIGITS = 15
# In a run too long for one number, what says there may be phone numbers in it: `+`, `(`, or 3-3-4 digits.
_PHONE_SHAPE_RE = re.compile(r"[+(]|(?<!\d)\d{3}[-. ]\d{3}[-. ]\d{4}(?!\d)")
_PHONE_CONTEXT = _words("call", "calls", "phone", "phones", "tel", "telephone", "mobile", "cell", "fax", "sms", "whatsapp",
                        "text me", "dial", "ring", "hotline", "landline", "contact", "phone number", "voicemail",
                        r"texts?\s+(?:to|at)", r"messages?\s+(?:to|at|on)", r"sms\s+(?:to|at|on)",
                        r"reach(?:ed)?\s+(?:me|us|him|her|them)",
                        *(rf"{who}\s+number" for who in ("my", "your", "his", "her", "their", "our")),
                        # the same in the languages the injection detector reads
                        "telefon", "telefono", "tel\u00e9fono", "t\u00e9l\u00e9phone", "telefoon", "handy", "mobil",
                        "portable", "m\u00f3vil", "movil", "celular", "cellulare", "appelez", "anrufen", "llama",
                        "ll\u00e1mame", "chiamami", "ligue", "bel")
_PHONE_NEGATIVE = _words("order", "invoice", "tracking", "account", "acct", "ref", "reference", "serial", "id", "isbn",
                         "customer number", "policy", "ticket", "case")
_IMEI = _words("imei")
_PHONE_MIN_LOOSE_DIGITS = 10
_PHONE_NEEDS_A_WORD = 0.3  # a number scored this low is a phone only with a phone word near it
# An extension after the number: 555-867-5309x123, ... ext. 12
_EXTENSION_STARTS = frozenset(" xXeE")
_PHONE_EXTENSION_RE = re.compile(r"(?:x| ?(?:ext|extension)\.? ?)\d{1,6}(?!\d)", re.IGNORECASE)
# 3-3-4 digits as North American numbers are written: (555) 867-5309, 555.867.5309, 1-555-867-5309
_NANP_LAYOUT_RE = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}")
# Countries whose national numbers (trunk prefix 0) are looked for: the most common in English-language text
# and the EU's largest; others are found when written internationally (+CC).
_NATIONAL_COUNTRIES = (44, 49, 33, 39, 34, 31, 32, 41, 43, 61, 64, 91, 81, 353, 27, 55)
prepare_phone_plans((1, *_NATIONAL_COUNTRIES))
_NON_DIGITS_RE = re.compile(r"\D+")


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
                for m in _PHONE_CANDIDATE_RE.finditer(text, lo, end + _RUN_TAIL):
                    yield m.span()
            elif shape.count(b"0", start, end) >= 7:
                yield start, end + (text[end : end + 1] == ")")
        prev_end = end


def detect_phones(text: str | Scan) -> list[Finding]:
    scan = _scan(text)
    text = scan.text
    out: list[Finding] = []
    for start, cand_end in _phone_candidates(scan):
        ext = _PHONE_EXTENSION_RE.match(text, cand_end) if text[cand_end : cand_end + 1] in _EXTENSION_STARTS else None
        tail = ext.end() if ext else cand_end
        if tail < len(text) and (text[tail].isalnum() or text[tail] == "_" or text[tail : tail + 2] in ("-X", "-x")):
            continue  # glued to a word (an id such as 5551234567abc), or an ISBN-10 with its X check digit
        run = text[start:cand_end]
        if run.endswith(")") and "(" not in run:
            run = run[:-1]
        if run.startswith("(") and ")" not in run:
            start, run = start + 1, run[1:]
        digits = _NON_DIGITS_RE.sub("", run)
        if len(digits) > _E164_MAX_DIGITS + 2:  # `00` + the longest international number
            if _PHONE_SHAPE_RE.search(run):  # several numbers in one run: let the matcher split them
                out.extend(_phones_by_matcher(text, start, start + len(run)))
            continue
        score = _phone_score(run, digits)
        if score is None:
            continue
        end = ext.end() if ext else start + len(run)
        if len(digits) == 15 and run.isdigit() and _near(_IMEI, text, start, end):
            continue  # a handset's IMEI, often right after the word "phone"
        if _near(_PHONE_CONTEXT, text, start, end):
            score += 0.3
        elif score <= _PHONE_NEEDS_A_WORD:
            continue
        elif _near(_PHONE_NEGATIVE, text, start, end):
            score -= 0.2
        out.append(Finding("phone", start, end, _score(score)))
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
            if is_valid_phone(1, national):
                return 0.55 if formatted else 0.4  # ten bare digits are an order number as often as a phone
            if formatted and _NANP_LAYOUT_RE.fullmatch(run):
                return 0.5  # written as a phone number (555-867-5309), in a range not assigned yet
    if digits[0] == "0" and digits[1] != "0" and 9 <= len(digits) <= 12:
        # A national number behind its trunk prefix (020 7946 0958, 06 12 34 56 78), valid in one of the
        # countries most text comes from. With ~16 countries' plans most such numbers are valid somewhere, so
        # alone only an area code in brackets (0161) counts, as phone numbers are written; else a phone word
        # must say so (ISBNs and ZIP+4 codes look alike).
        if any(is_valid_phone(code, digits[1:]) or is_valid_phone(code, digits) for code in _NATIONAL_COUNTRIES):
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
    if is_valid_phone(number.country_code, phonenumbers.national_significant_number(number)):
        return 0.65
    # A calling code and a length that country dials, but in no range of it: made-up and example numbers,
    # still someone's number as far as the text goes. Only after a `+`: `00` starts ZIP codes and ISBNs too.
    return 0.5 if run.startswith("+") and phonenumbers.is_possible_number(number) else None


def _valid_international(digits: str) -> bool:
    # Calling codes are prefix-free: the first 1-3 digits that are one are the one.
    for n in (1, 2, 3):
        if int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE:
            return is_valid_phone(int(digits[:n]), digits[n:])
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
        score = (0.65 if pm.raw_string.startswith("+") else 0.55) + (0.3 if _near(_PHONE_CONTEXT, text, start, end) else 0.0)
        out.append(Finding("phone", start, end, _score(score)))
    return out


# --- IP addresses ------------------------------------------------------------------------------------------

# Not inside a longer dotted run (1.2.3.4.5) and not glued to a word ("v1.2.3.4").
# The shape only: octets are checked in Python, which is ~3x cheaper than an octet alternation at every digit.
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_IP_CONTEXT = _words("ip", "ips", "ipv4", "ipv6", "address", "host", "server", "addr", "client", "from", "src", "dst")
_IP_NEGATIVE = _words("version", "ver", "release", "build", "firmware", "v", "oid", "section", "chapter")


def _internal_ipv4(a: int, b: int) -> bool:
    """Private, loopback, link-local, CGNAT or "this network": addresses that identify no one outside."""
    return (
        a in (0, 10, 127) or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168) or (a == 169 and b == 254)
        or (a == 100 and 64 <= b <= 127)
    )


# Hex groups with at least two colons; ipaddress decides.
_IPV6_COLON_RE = re.compile(r":(?=[0-9A-Fa-f]{0,4}:)")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")
_IPV6_CHARS_DOTTED = _IPV6_CHARS | {"."}


def _ipv4_matches(scan: Scan) -> Iterator[re.Match[str]]:
    text = scan.text
    for start, end in scan.numeric_runs:
        if end - start >= 7 and text.count(".", start, end) >= 3:
            yield from _IPV4_RE.finditer(text, start, end + _RUN_TAIL)


def detect_ip_addresses(text: str | Scan) -> list[Finding]:
    scan = _scan(text)
    text = scan.text
    out: list[Finding] = _detect_ipv6(text) if ":" in text else []
    for m in _ipv4_matches(scan):
        if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "._"):
            continue  # inside a longer dotted run (1.2.3.4.5) or glued to a word ("v1.2.3.4")
        octets = m.group().split(".")
        if any((len(o) > 1 and o[0] == "0") or int(o) > 255 for o in octets):
            continue  # 256.1.1.1, 10.0.0.01: not an address as written
        score = 0.5 if _internal_ipv4(int(octets[0]), int(octets[1])) else 0.75
        if _near(_IP_NEGATIVE, text, m.start(), m.end()):
            score -= 0.4
        elif _near(_IP_CONTEXT, text, m.start(), m.end()):
            score += 0.1
        out.append(Finding("ip_address", m.start(), m.end(), _score(score)))
    return sorted(out, key=lambda f: f.start)


def _detect_ipv6(text: str) -> list[Finding]:
    out: list[Finding] = []
    done = 0
    # A literal ":" is found fast; only where a second colon follows within one group is the run around it read.
    for colon in _IPV6_COLON_RE.finditer(text):
        if colon.start() < done:
            continue
        start = colon.start()
        while start > 0 and text[start - 1] in _IPV6_CHARS:
            start -= 1
        end = colon.start()
        while end < len(text) and text[end] in _IPV6_CHARS_DOTTED:
            end += 1
        done = end
        if start and (text[start - 1].isalnum() or text[start - 1] in "_."):
            continue  # glued to a word (`std::vec`, `a1:b2`)
        raw = text[start:end].rstrip(".")
        if raw.endswith(":") and not raw.endswith("::"):
            raw = raw[:-1]
        try:
            addr = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        if addr.is_unspecified:
            continue
        internal = addr.is_loopback or addr.is_link_local or (addr.is_private and not addr.is_global and not _documentation(addr))
        score = 0.5 if internal else 0.75
        if _near(_IP_CONTEXT, text, start, start + len(raw)):
            score += 0.1
        out.append(Finding("ip_address", start, start + len(raw), _score(score)))
    return out


def _documentation(addr: ipaddress.IPv6Address) -> bool:
    # 2001:db8::/32 is "private" to ipaddress, but it is what examples and generated data use for real hosts.
    return addr in _IPV6_DOC


_IPV6_DOC = ipaddress.IPv6Network("2001:db8::/32")


# --- secrets -----------------------------------------------------------------------------------------------

_SECRET_WEIGHTS: Mapping[str, float] = MappingProxyType({
    "private_key": 0.99, "aws": 0.95, "github": 0.95, "gitlab": 0.95, "slack": 0.9, "slack_webhook": 0.9,
    "stripe": 0.95, "stripe_test": 0.85, "google": 0.9, "google_oauth": 0.9, "anthropic": 0.97, "openai": 0.9,
    "sendgrid": 0.95, "square": 0.95, "npm": 0.95, "pypi": 0.95, "huggingface": 0.9, "shopify": 0.95, "digitalocean": 0.95,
    "jwt": 0.9,
})
# Provider key shapes, matched case-sensitively on the original text at a trigger's position.
_PROVIDER_RE = re.compile(
    r"(?P<private_key>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----)"
    r"|(?P<aws>\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[0-9A-Z]{16}\b)"
    r"|(?P<github>\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b)"
    r"|(?P<gitlab>\b(?:gl(?:pat|ptt|dt|rt)-[0-9A-Za-z_-]{20,}|GR1348941[0-9A-Za-z_-]{20,}))"
    r"|(?P<square>\bsq0(?:atp-[0-9A-Za-z_-]{22}|csp-[0-9A-Za-z_-]{43})(?![0-9A-Za-z_-]))"
    r"|(?P<slack>\bxox[baprs]-[A-Za-z0-9-]{10,})"
    r"|(?P<slack_webhook>https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,})"
    r"|(?P<stripe>\b[rs]k_live_[A-Za-z0-9]{16,247}\b)"
    r"|(?P<stripe_test>\b[rs]k_test_[A-Za-z0-9]{16,247}\b)"
    r"|(?P<google>\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-]))"
    r"|(?P<google_oauth>\bya29\.[0-9A-Za-z_-]{20,})"
    r"|(?P<anthropic>\bsk-ant-[A-Za-z0-9_-]{20,})"
    r"|(?P<openai>\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,})"
    r"|(?P<sendgrid>\bSG\.[0-9A-Za-z_-]{22}\.[0-9A-Za-z_-]{43}(?![0-9A-Za-z_-]))"
    r"|(?P<npm>\bnpm_[A-Za-z0-9]{36}\b)"
    r"|(?P<pypi>\bpypi-AgEIcHlwaS5vcmc[0-9A-Za-z_-]{50,})"
    r"|(?P<huggingface>\bhf_[A-Za-z]{34}\b)"
    r"|(?P<shopify>\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b)"
    r"|(?P<digitalocean>\bdo[opr]_v1_[a-f0-9]{64}\b)"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
)
_PROVIDER_PREFIXES = (
    r"-----begin |akia|asia|abia|acca|agpa|aida|aroa|aipa|anpa|anva|a3t|gh[pousr]_|github_pat_|gl(?:pat|ptt|dt|rt)-"
    r"|gr1348941|sq0atp-|sq0csp-|xox[baprs]-|https://hooks\.slack\.com/|[rs]k_(?:live|test)_|aiza|ya29\.|sk-|sg\.|npm_|pypi-|hf_"
    r"|shp(?:at|ca|pa|ss)_|do[opr]_v1_|eyj"
)
# Words that introduce a secret. No lookbehind: a keyword may end an identifier (DB_PASSWORD, adminPassword);
# `_keyword_end` decides from the text around it.
_SECRET_KEYWORDS = (
    r"(?:secret[_ -]?access[_ -]?key|secret[_ -]?key|access[_ -]?key(?:[_ -]?id)?|api[_ -]?key|apikey|client[_ -]?secret"
    r"|private[_ -]?key|(?:auth|access|refresh|bearer|api)[_ -]?token|account[_ -]?key|shared[_ -]?access[_ -]?key"
    r"|authorization|secret|token|bearer|password|passwd|passphrase|pwd|pass|pword|pw|credentials?|creds?|key"
    # the same in other languages (the text is lower-cased for ASCII only)
    r"|passwort|kennwort|contrase(?:ñ|n)a|senha|wachtwoord|mot de passe|mdp|пароль|密码|パスワード|비밀번호|비번|암호|패스워드"
    r")s?(?![a-z0-9])"
)
# Credentials written into a command or a URL: curl's `-u user:password`, `scheme://user:password@host`.
_USER_ARG = r"(?:--user[ =]|-u\s)"
# The one scan over the (ASCII-lowercased) text: where a provider key could start, a secret keyword stands, or
# credentials may follow. Case-insensitive matching and capture groups each make Python's re several times
# slower on a plain scan.
_SECRET_TRIGGER = PrefixScan(f"{_PROVIDER_PREFIXES}|://|{_USER_ARG}|{_SECRET_KEYWORDS}")
_SECRET_KEYWORD_RE = re.compile(_SECRET_KEYWORDS)
_USER_ARG_RE = re.compile(_USER_ARG + r"""\s*["']?([^\s:"'/<>]{1,64}):([^\s"'<>]{3,128})""")
_URL_CREDENTIALS_RE = re.compile(r"""://([^\s:/@"'<>]{1,64}):([^\s/@"'<>]{1,128})@[\w-]+""")
# `key=VALUE`, `key: VALUE`, `"key": "VALUE"`, `key => VALUE`, `<key>VALUE`, `Authorization: Bearer VALUE`,
# `key is VALUE`.
_ASSIGN_RE = re.compile(r"[\s\"']*(?:=>|[:=]+|>)[\s\"']*(?:(?:basic|bearer|token|digest)\s+)?|\s+is\s+", re.IGNORECASE)
# A quoted value right after the keyword is taken whole: passwords hold the `,;{}()` that end a bare token.
_QUOTED_VALUE_RE = re.compile(r"""["']?\s*(?:=>|:=|[:=])\s*(?:"([^"\n]{1,256})"|'([^'\n]{1,256})')""")
_PEM_MAX_BODY = 16_384  # an RSA-4096 key is ~3.3 KB; a footer further away closes something else
_PEM_FOOTER_RE = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# Bounded, so that a long run of `key:key:key:...` cannot make every keyword rescan the rest of the text.
_TOKEN_RE = re.compile(r"[^\s\"'`,;()<>\[\]{}|]{1,256}")
_HANGUL_PARTICLE_RE = re.compile(r"[\uac00-\ud7a3]{1,4}(?=[\x21-\x7e])")  # 비번은Prl23Db: a particle glued on
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_EMAIL_LIKE_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Names rather than values: `Keyword.Pseudo`, `ec.EllipticCurvePrivateKey`, `attached_file_0`, `_1_KeyScalar`.
_DOTTED_NAME_RE = re.compile(r"~?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(\))?")
_SNAKE_NAME_RE = re.compile(r"_?[A-Za-z0-9]+(?:[_-]+[A-Za-z0-9]+)+|_[A-Za-z0-9]+")
_NAME_PART_SPLIT_RE = re.compile(r"[_.()~-]+")
_VOWELS = frozenset("aeiouAEIOU")
_MODULE_RE = re.compile(r"[a-z_]+\.")  # rust_openssl.hpke.MLKEM768X25519PrivateKey: a module path
_LETTER_DIGIT_EDGE_RE = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_CASE_EDGE_RE = re.compile(r"(?<=[a-z])(?=[A-Z])")
_WORDS_ONLY_RE = re.compile(r"[#.]?[A-Za-z]+(?:[._-][A-Za-z]+)*")
_HASH_CONTEXT = _words("commit", "sha", "sha1", "sha256", "hash", "revision", "rev", "checksum", "digest", "md5")
_STRONG_KEYWORDS = frozenset({"secret", "token", "password", "passwd", "apikey", "apitoken", "accesstoken", "authtoken",
                              "clientsecret", "secretaccesskey", "secretkey", "privatekey", "passphrase", "authorization",
                              "accountkey", "sharedaccesskey"})
_PASSWORD_KEYWORDS = frozenset({"password", "passwd", "passphrase", "pwd", "pas", "pw", "pword", "passwort", "kennwort",
                                "contraseña", "contrasena", "senha", "wachtwoord", "motdepasse", "mdp", "пароль", "密码",
                                "パスワード", "비밀번호", "비번", "암호", "패스워드"})
# After `key_` or `password_`, these words keep the name a secret's name (DB_PASSWORD_PROD, API_KEY_B64); any
# other (password_hash, token_type, key_down_event) names something else.
_KEYWORD_TAILS = frozenset({"key", "keys", "token", "tokens", "secret", "secrets", "value", "val", "str", "string",
                            "b64", "base64", "raw", "env", "prod", "production", "dev", "test", "live", "staging",
                            "hex", "plain", "plaintext", "text", "encoded"})
# A bare `key` is too common (sort_key, bucket_key, key_down): it counts only after one of these words.
_KEY_HEADS = frozenset({"api", "secret", "private", "access", "encryption", "signing", "master", "auth", "license",
                        "licence", "account", "app", "client", "service", "shared", "aes", "hmac", "crypto", "enc",
                        "decryption", "session", "admin", "root", "deploy", "ssh", "subscription", "consumer",
                        "webhook", "sas", "storage", "jwt", "cipher"})
# Tokens that are not secret by name: public keys, anti-CSRF tokens, pagination cursors.
_PUBLIC_HEADS = frozenset({"public", "publishable", "pub", "csrf", "xsrf", "next", "page", "continuation", "cursor",
                           "sync", "sort", "primary", "foreign", "partition", "cache", "idempotency"})
_PLACEHOLDERS = frozenset({"pass", "pwd", "changeme", "change_me", "example", "sample", "dummy", "redacted", "hidden",
                           "none", "null", "nil", "undefined", "empty", "placeholder", "token", "apikey", "api_key",
                           "your_api_key", "yourapikey"})
# A value that names itself (`password1`, `my_secret`, `testpassword`) is an example, not a secret.
_SELF_NAMING = ("password", "passwd", "secret")
_AUTH_SCHEME_RE = re.compile(r"(?:basic|bearer|token|digest)\s+", re.IGNORECASE)
_TOKENS_AFTER_KEYWORD = 4  # "a few words": `my api key is XYZ`, `"token": "XYZ"`
_NAME_SPLIT_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _char_classes(s: str) -> int:
    return (
        any(c.islower() for c in s) + any(c.isupper() for c in s) + any(c.isdigit() for c in s)
        + any(not c.isalnum() for c in s)
    )


def _placeholder(value: str) -> bool:
    """`changeme`, `<your-key>`, `${DB_PASSWORD}`, `xxxxxxxx`, `********`: a slot for a secret, not one."""
    v = value.lower()
    return (
        v in _PLACEHOLDERS or v.startswith(("<", "&lt;", "${", "{{ ", "%(", "$", "{{secrets", "**"))
        or "xxxx" in v or "****" in v or "..." in v or "\u2026" in v or len(set(v)) <= 2
        or (len(v) < 16 and any(word in v for word in _SELF_NAMING))
    )


def _wordish(part: str) -> bool:
    """A part of a name (`file`, `5m`, `s2member`, `KeyScalar`), not of a generated key (`eyJGRpVu1c2VzY2`)."""
    return (len(part) <= 24 and len(_LETTER_DIGIT_EDGE_RE.findall(part)) <= 2
            and len(_CASE_EDGE_RE.findall(part)) <= 3)


def _name_like(token: str, *, quoted: bool = False) -> bool:
    """An identifier, a dotted reference, a path or plain words: what follows `key=` in code far more often than
    a value does."""
    bare = token.rstrip("=")
    parts = _NAME_SPLIT_RE.findall(bare) if bare.isalnum() else []
    if bare.isalpha() and len(parts) >= 2 and sum(c in _VOWELS for c in bare) >= 0.3 * len(bare):
        return True  # CamelCase words (AuthConfigAccessKeyID): random letters hold ~20% vowels, words ~40%
    if _mixed_case_noise(bare):
        return False  # letters only, but their case flips as no name's does
    return (
        (_DOTTED_NAME_RE.fullmatch(token) is not None
         and (_MODULE_RE.match(token) is not None or all(map(_wordish, _NAME_PART_SPLIT_RE.split(token)))))
        or _WORDS_ONLY_RE.fullmatch(bare) is not None
        or (len(parts) >= 2 and sum(map(len, parts)) == len(bare) and len(bare) >= 4 * len(parts))  # CamelCase
        or (_SNAKE_NAME_RE.fullmatch(token) is not None and all(map(_wordish, _NAME_PART_SPLIT_RE.split(token))))
        or token.startswith(("./", "../", "/", "~/", ".", "@", "*", "-", "\\"))
        or (not quoted and "=" in bare)  # `x=True`: an argument; base64 pads only at the end
    )


def _token_score(token: str, keyword: str, *, assigned: bool, first: bool, quoted: bool = False) -> float | None:
    """Score a token seen just after a secret keyword, or None when it does not look like a secret. The shape
    is scored first (cheap, and most tokens fail it); only a candidate is checked for being a name or a slot."""
    score = _shape_score(token, keyword, assigned=assigned, first=first)
    if score is None or not token.isascii():  # secrets are ASCII; `パスワードを教えて` is a sentence going on
        return None
    if "://" in token or _EMAIL_LIKE_RE.fullmatch(token) or _placeholder(token) or _name_like(token, quoted=quoted):
        return None  # a URL, an address, a slot for a value, or a name (`$DB_PASSWORD`, `settings.TOKEN`)
    return score


def _shape_score(token: str, keyword: str, *, assigned: bool, first: bool) -> float | None:
    kw = re.sub(r"[\s_-]", "", keyword.lower()).removesuffix("s")
    if kw == "pas" and not assigned:
        return None  # "pass" is a verb far more often: `pass *labels*`, `pass --verbose`
    strong, password = kw in _STRONG_KEYWORDS or kw in _PASSWORD_KEYWORDS, kw in _PASSWORD_KEYWORDS
    if _UUID_RE.fullmatch(token):
        return 0.5 if assigned and strong else None  # an id, unless a key's name says otherwise (npm, Heroku)
    if _HEX_RE.fullmatch(token):
        # Hex strings are usually hashes; only an explicit `token=abc123...` counts, and then weakly.
        return 0.6 if assigned and strong and len(token) >= 20 else None
    classes = _char_classes(token)
    has_digit = any(c.isdigit() for c in token)
    # Generated keys this long all but always hold a digit ((52/62)**20 ~ 3% do not); names such as
    # `secrets.GITHUB_TOKEN` or `MyServiceClientFactory` never do.
    if len(token) >= 20 and classes >= 2 and has_digit and _entropy(token) >= 3.5:
        return 0.85 if assigned else 0.75
    if ((assigned or first) and strong and len(token) >= 24 and classes >= 2 and _entropy(token) >= 4.0
            and not token.isalpha()) or ((assigned or first) and len(token) >= 24 and _mixed_case_noise(token)):
        return 0.75  # `api key is aahTOWJptbnkGgvq...`: letters only, but no word looks like that
    if password and (assigned or first) and len(token) >= 8 and classes >= 3 and _entropy(token) >= 2.5:
        return 0.8 if assigned else 0.7  # `password: Prl23Db#@`, `--password 7Nv&uaO3jF8Ul`
    if assigned and len(token) >= 10 and classes >= 3 and _entropy(token) >= 3.0:
        return 0.7  # a shortish key given explicitly (`api-token: Sk94HG7f6KB`)
    if first and strong and len(token) >= 12 and classes >= 3 and has_digit and _entropy(token) >= 3.3:
        return 0.6  # `client secret AIhq5Xyb1Gga9Q9`
    if password and (assigned or first) and len(token) >= 6 and not token.isalpha():
        return 0.6  # `db_password = "t7w^Rk"`, `password: super$ecret`
    return None


def _mixed_case_noise(token: str) -> bool:
    """Letters whose case flips far more often than in identifiers (CamelCase flips once per word)."""
    if not token.isalpha() or _entropy(token) < 4.0:
        return False
    flips = sum(a.islower() != b.islower() for a, b in itertools.pairwise(token))
    return flips >= len(token) / 3


def _keyword_end(text: str, low: str, kw: re.Match[str]) -> int | None:
    """Where the name the keyword match stands in ends (after `_KEY`, `_PROD`: SECRET_KEY = ...), or None when
    it names no secret: the keyword sits inside a word (monkey, bypass), or the identifier around it means
    something else (password_hash, bucket_key, publicKey). A keyword may end an identifier: DB_PASSWORD,
    adminPassword."""
    start, end = kw.span()
    before = low[start - 1] if start else " "
    camel = before.isalnum() and text[start].isupper() and not text[start - 1].isupper()
    if before.isalnum() and not camel:
        return None
    tail = end
    while tail < len(low) and low[tail] in "_.-" and (m := _TOKEN_TAIL_RE.match(low, tail + 1)):
        if m.group() not in _KEYWORD_TAILS and not m.group().isdigit():
            return None
        tail = m.end()
    head = ""
    if camel or before in "_.-":
        run_end = start if camel else start - 1
        run_start = run_end
        while run_start > 0 and text[run_start - 1].isalnum():
            run_start -= 1
        parts = _NAME_SPLIT_RE.findall(text[run_start:run_end])
        head = parts[-1].lower() if parts else ""
    if head in _PUBLIC_HEADS or (kw.group().rstrip("s") == "key" and head and head not in _KEY_HEADS):
        return None
    return tail


_TOKEN_TAIL_RE = re.compile(r"[a-z0-9]+")


def _provider_finding(text: str, start: int) -> Finding | None:
    """A provider key starting at `start`, scored by its kind; None for none or a look-alike."""
    m = _PROVIDER_RE.match(text, start)
    kind = m.lastgroup if m else None  # the outermost named group: the one that closed last
    if m is None or kind is None or kind == "private_key":
        return None
    value = m.group()
    if kind == "openai" and not any(c.isdigit() for c in value):
        return None  # `sk-this-is-just-a-long-slug` is prose; keys mix digits in
    if kind == "jwt" and not _jwt_header_ok(value):
        return None
    if kind == "aws" and len(set(value[4:])) <= 3:
        return None  # AKIAXXXXXXXXXXXXXXXX: a slot for a key (the documentation's AKIA...EXAMPLE has a key's shape)
    return Finding("secret", m.start(), m.end(), _SECRET_WEIGHTS[kind])


def _jwt_header_ok(token: str) -> bool:
    """A JWT's first segment decodes to a JSON object naming its algorithm or type (a token, not a look-alike)."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeDecodeError):  # binascii.Error and JSONDecodeError are ValueErrors
        return False
    return isinstance(header, dict) and ("alg" in header or "typ" in header)


def _credential_finding(text: str, m: re.Match[str]) -> Finding | None:
    """The password of `-u user:password` or `scheme://user:password@host`."""
    user, value = m.group(1), m.group(2)
    if _placeholder(value) or value.startswith(("{", "%", "#")) or value.lower() == user.lower():
        return None  # a slot, a template, or demo credentials (postgres:postgres, test:test)
    return Finding("secret", m.start(2), m.end(2), 0.5 if value.isalpha() else 0.85)


def _secret_after_keyword(text: str, kw: re.Match[str], kw_end: int) -> tuple[Finding | None, int]:
    """The secret among the few tokens after a keyword (whose name ends at `kw_end`), and where the first of
    those tokens ends."""
    quoted = _QUOTED_VALUE_RE.match(text, kw_end)
    if quoted:
        group = 1 if quoted.group(1) is not None else 2
        start = quoted.start(group)
        if scheme := _AUTH_SCHEME_RE.match(text, start, quoted.end(group)):
            start = scheme.end()  # "Authorization": "Bearer VALUE"
        value = text[start : quoted.end(group)]
        found = _provider_finding(text, start)
        # A value that starts with `,` or `}` came after a closing quote: `"Password:", next: "..."`.
        if found is None and value == value.strip() and value[:1] not in (",", ";"):
            score = _token_score(value, kw.group(), assigned=True, first=True, quoted=True)
            if score is not None and not _near(_HASH_CONTEXT, text, kw.start(), quoted.end()):
                found = Finding("secret", start, quoted.end(group), score)
        if found is not None:
            return found, found.end
    first_end = kw_end
    for i, tm in enumerate(_TOKEN_RE.finditer(text, kw_end)):
        if i >= _TOKENS_AFTER_KEYWORD or tm.start() - kw_end > CONTEXT_CHARS:
            break
        if i == 0:
            first_end = tm.end()
        raw = tm.group()
        particle = _HANGUL_PARTICLE_RE.match(raw)
        stripped = raw[particle.end() :] if particle else raw
        stripped = stripped.lstrip(":=")
        start = tm.start() + len(raw) - len(stripped)
        token = stripped.rstrip(".,!?:;")
        if len(token) < 6:
            continue
        found = _provider_finding(text, start)
        if found is not None:
            return found, found.end
        between = text[kw_end:start]
        assigned = _ASSIGN_RE.fullmatch(between) is not None
        score = _token_score(token, kw.group(), assigned=assigned, first=i == 0)
        if score is None or _near(_HASH_CONTEXT, text, kw.start(), tm.end()):
            continue
        return Finding("secret", start, start + len(token), score), start + len(token)
    return None, first_end


def detect_secrets(text: str | Scan) -> list[Finding]:
    scan = _scan(text)
    text, low = scan.text, scan.low
    out: list[Finding] = []
    # End of the last key, or of the run a keyword was glued to: keywords inside it (a PEM body, `key:key:...`)
    # are not looked at again, which keeps the scan linear.
    covered = 0
    footer: tuple[int, int] = (-1, -1)  # (start, end) of the next PEM footer: searched once, not per header
    for t in _SECRET_TRIGGER.finditer(low):
        if t.start() < covered:
            continue
        found: Finding | None = None
        if text.startswith("-----BEGIN ", t.start()) and (m := _PROVIDER_RE.match(text, t.start())):
            if footer[0] < m.end():
                fm = _PEM_FOOTER_RE.search(text, m.end())
                footer = (fm.start(), fm.end()) if fm else (len(text), -1)
            # The whole block when its footer follows, else the header alone (a truncated paste).
            end = footer[1] if footer[1] > 0 and footer[0] - m.end() <= _PEM_MAX_BODY else m.end()
            found = Finding("secret", m.start(), end, _SECRET_WEIGHTS["private_key"])
        elif (found := _provider_finding(text, t.start())) is not None:
            pass
        elif low.startswith("://", t.start()):
            if m := _URL_CREDENTIALS_RE.match(text, t.start()):
                found, covered = _credential_finding(text, m), m.end()  # `user:pass@` is not read again
        elif low.startswith(("-u", "--user"), t.start()):
            if (t.start() == 0 or low[t.start() - 1].isspace()) and (m := _USER_ARG_RE.match(text, t.start())):
                found = _credential_finding(text, m)
        elif _SECRET_KEYWORD_RE.fullmatch(low, t.start(), t.end()) and (kw_end := _keyword_end(text, low, t)):
            found, covered = _secret_after_keyword(text, t, kw_end)
        if found is not None:
            out.append(found)
            covered = max(covered, found.end)
    return out


# --- prompt injection --------------------------------------------------------------------------------------


def detect_prompt_injection(text: str | Scan) -> list[Finding]:
    """Instruction overrides, role hijacks, system-prompt extraction, delimiter and encoding tricks, in several
    languages (see `_injection`); scores are combined over the whole text.

    A second signal, a naive Bayes model over words and word pairs (`_injection_model`), catches wordings no
    pattern covers. It only flags: its confidence is capped at INJECTION_MODEL.cap (0.65), under block_at, so
    blocking stays with the patterns. The text's confidence is the higher of the two, with no boost when both
    fire: the model learnt from the texts the patterns were tuned on, so where the patterns fire it mostly
    agrees, and that agreement is not independent evidence. Its finding (the most suspicious window of up to
    three sentences) is added only when it is more confident than every pattern hit."""
    scan = _scan(text)
    text = scan.text
    findings = [Finding("prompt_injection", s, e, _score(c)) for s, e, c in injection_hits(text, low=scan.low)]
    strongest = max((f.confidence for f in findings), default=0.0)
    if strongest < INJECTION_MODEL.cap:  # else the model cannot change the text's confidence
        start, end, confidence = injection_evidence(text)
        if confidence > strongest:
            findings.append(Finding("prompt_injection", start, end, confidence))
    return findings


# --- all together ------------------------------------------------------------------------------------------

DETECTORS: Mapping[str, Callable[[str | Scan], list[Finding]]] = MappingProxyType({
    "credit_card": detect_credit_cards,
    "us_ssn": detect_us_ssns,
    "iban": detect_ibans,
    "email": detect_emails,
    "phone": detect_phones,
    "ip_address": detect_ip_addresses,
    "secret": detect_secrets,
    "prompt_injection": detect_prompt_injection,
})
FINDING_TYPES: frozenset[str] = frozenset(DETECTORS)


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep the higher-confidence finding (then the longer one) wherever spans overlap; sorted by start."""
    kept: list[Finding] = []  # disjoint and sorted by start, so only the neighbours of a slot can overlap
    for f in sorted(findings, key=lambda f: (-f.confidence, f.start - f.end, f.start)):
        i = bisect.bisect_left(kept, f.start, key=lambda k: k.start)
        if (i > 0 and kept[i - 1].end > f.start) or (i < len(kept) and kept[i].start < f.end):
            continue
        kept.insert(i, f)
    return kept


def detect(text: str, types: Collection[str] = FINDING_TYPES) -> list[Finding]:
    """The detectors of `types` (default: all) over `text`, overlaps resolved, in text order."""
    scan = Scan(text)
    return resolve_overlaps(f for kind in types for f in DETECTORS[kind](scan))
