"""Tier-one detectors: pure, regex-first functions that find PII, secrets and prompt injection in a text, and
`detect`, which runs them over one shared Scan.

Each detector makes one scan over the text with a precompiled pattern (for secrets and prompt injection, a
scan for trigger words with the full pattern tried only there), validates candidates (Luhn, mod-97, SSN ranges,
entropy) and scores them 0..1. Words within ~40 characters of a match raise or lower the score,
as Presidio's context enhancer does. Offsets are indices into the original Python str (code points). Secrets
live in `_secrets`, injection phrases in `_injection` and its model; what all detectors share, in `_text`."""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from types import MappingProxyType

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from agentmesh.services.guard._injection import injection_hits
from agentmesh.services.guard._injection_model import MODEL as INJECTION_MODEL
from agentmesh.services.guard._injection_model import injection_evidence
from agentmesh.services.guard._phone import is_valid as is_valid_phone
from agentmesh.services.guard._phone import prepare as prepare_phone_plans
from agentmesh.services.guard._secrets import detect_secrets
from agentmesh.services.guard._text import Finding as Finding  # re-exported: detectors is its public home
from agentmesh.services.guard._text import Scan, as_scan, clamp_score, context_words, near

# --- runs of digits ------------------------------------------------------------------------------------------

# Cards, SSNs, phones and IPv4 addresses are tried only inside the text's runs of digits (`Scan.numeric_runs`).
# The lookaheads after a match read at most two characters past it (`(?![\w]|[.,]\d)`), a phone's `\)?` one.
_RUN_TAIL = 2
# A phone candidate may start up to this many characters before its first digit: `+` or `(`, then 0-3 separators.
_PHONE_LEAD = 4


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

# Bare 12-19 digits (12: Maestro only), or the groupings issuers print (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) with one
# consistent separator (space, dash or dot). Not right after `XX00 `: an IBAN's body, which its own detector checks.
_CARD_RE = re.compile(
    r"\d(?<![\w.]\d)(?<![A-Z]{2}\d\d[ -]\d)(?:\d{11,18}|\d{3}(?P<sep>[ .-])"
    r"(?:\d{6}(?P=sep)\d{4,5}|\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{1,3})?))(?![\w]|[.,]\d)"
)
_CARD_CONTEXT = context_words(
    r"cards?",
    "visa",
    "cc",
    "credit",
    "debit",
    "expiry",
    "expires",
    "exp",
    "cvv",
    "cvc",
    "mastercard",
    "amex",
    "discover",
    "jcb",
    "diners",
)
_CARD_NEGATIVE = context_words(
    "order",
    "tracking",
    "shipment",
    "invoice",
    "ref",
    "reference",
    "confirmation",
    "booking",
    "serial",
    "isbn",
    "phone",
    "tel",
)


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
    scan = as_scan(text)
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
        if near(_CARD_CONTEXT, text, m.start(), end):
            score += 0.1
        elif near(_CARD_NEGATIVE, text, m.start(), end):
            score -= 0.3
        out.append(Finding("credit_card", m.start(), end, clamp_score(score)))
    return out


# --- US social security numbers --------------------------------------------------------------------------

_SSN_RE = re.compile(r"\d(?<![\w.-]\d)(?:\d\d(?P<sep>[- .])\d{2}(?P=sep)\d{4}|(?P<bare>\d{8}))(?![\w-]|\.\d)")
_SSN_CONTEXT = context_words("ssns?", r"social\s+security(?:\s+(?:number|no))?", r"soc\.?\s*sec", r"ss\s*#", "ss no")
_SSN_FAKES = frozenset({"078051120", "123456789"})  # the Woolworth wallet card and the textbook example


def detect_us_ssns(text: str | Scan) -> list[Finding]:
    scan = as_scan(text)
    text = scan.text
    out: list[Finding] = []
    for m in _run_matches(scan, _SSN_RE, 9):
        bare = m.group("bare")
        digits = m.group() if bare else m.group().replace(m.group("sep"), "")
        area, group, serial = int(digits[:3]), digits[3:5], digits[5:]
        if area == 0 or area == 666 or area >= 900 or group == "00" or serial == "0000":
            continue  # never issued
        context = near(_SSN_CONTEXT, text, m.start(), m.end())
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
        out.append(Finding("us_ssn", m.start(), m.end(), clamp_score(score)))
    return out


# --- IBAN --------------------------------------------------------------------------------------------------

_IBAN_RE = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,8}(?: ?[A-Z0-9]{1,3})?\b")
# Typed in lower case (`de89 3704 0044 0532 0130 00`): found where the shape has two other characters before two
# digits, and kept only for a country whose IBAN length is known.
_IBAN_LOWER_RE = re.compile(r"[a-z](?<!\w[a-z])[a-z]\d{2}(?: ?[a-zA-Z0-9]{4}){2,8}(?: ?[a-zA-Z0-9]{1,3})?\b")
_IBAN_LENGTHS: Mapping[str, int] = MappingProxyType(
    {
        "AD": 24,
        "AE": 23,
        "AT": 20,
        "BE": 16,
        "BG": 22,
        "BH": 22,
        "CH": 21,
        "CY": 28,
        "CZ": 24,
        "DE": 22,
        "DK": 18,
        "EE": 20,
        "ES": 24,
        "FI": 18,
        "FO": 18,
        "FR": 27,
        "GB": 22,
        "GI": 23,
        "GL": 18,
        "GR": 27,
        "HR": 21,
        "HU": 28,
        "IE": 22,
        "IL": 23,
        "IS": 26,
        "IT": 27,
        "KW": 30,
        "KZ": 20,
        "LB": 28,
        "LI": 21,
        "LT": 20,
        "LU": 20,
        "LV": 21,
        "MC": 27,
        "ME": 22,
        "MK": 19,
        "MT": 31,
        "MU": 30,
        "NL": 18,
        "NO": 15,
        "PL": 28,
        "PT": 25,
        "QA": 29,
        "RO": 24,
        "SA": 24,
        "SE": 24,
        "SI": 19,
        "SK": 24,
        "SM": 27,
        "TN": 24,
        "TR": 26,
        "UA": 29,
    }
)
_IBAN_CONTEXT = context_words("iban", "bank", "account", "acct", "transfer", "wire", "swift", "bic")


_IBAN_LETTER_VALUES = str.maketrans({chr(ord("A") + i): str(10 + i) for i in range(26)})  # A=10 ... Z=35


def _mod97_ok(iban: str) -> bool:
    return int((iban[4:] + iban[:4]).translate(_IBAN_LETTER_VALUES)) % 97 == 1


def _iban_matches(scan: Scan) -> Iterator[re.Match[str]]:
    # Every IBAN starts with two letters and two digits: found in the shape, the pattern tried only there.
    text, shape = scan.text, scan.shape
    for start_shape, pattern in ((b"AA00", _IBAN_RE), (b"xx00", _IBAN_LOWER_RE)):
        done = 0
        at = shape.find(start_shape)
        while at != -1:
            m = pattern.match(text, at)
            if m is not None and (pattern is _IBAN_RE or m.group()[:2].upper() in _IBAN_LENGTHS):
                done = m.end()
                yield m
            at = shape.find(start_shape, max(at + 1, done))


def detect_ibans(text: str | Scan) -> list[Finding]:
    scan = as_scan(text)
    text = scan.text
    out: list[Finding] = []
    for m in _iban_matches(scan):
        raw = m.group()
        compact = raw.replace(" ", "").upper()
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
        if near(_IBAN_CONTEXT, text, m.start(), m.start() + len(raw)):
            score += 0.05
        out.append(Finding("iban", m.start(), m.start() + len(raw), clamp_score(score)))
    return out


# --- email -------------------------------------------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?!\.?[\w-])"
)
_EMAIL_CONTEXT = context_words("e-?mail", "mail", "contact", "reach", "write")


def detect_emails(text: str | Scan) -> list[Finding]:
    text = as_scan(text).text
    out: list[Finding] = []
    done = 0
    at = text.find("@")
    while at != -1:
        # Only the stretch around each @ is scanned: a local part is at most 64 characters, a domain 253.
        m = _EMAIL_RE.search(text, max(done, at - 65), at + 254)
        if m is not None and m.start() < at < m.end():
            out.append(
                Finding("email", m.start(), m.end(), 0.95 if near(_EMAIL_CONTEXT, text, m.start(), m.end()) else 0.85)
            )
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
    *(rf"{who}\s+number" for who in ("my", "your", "his", "her", "their", "our")),
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
    scan = as_scan(text)
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
        if len(digits) == 15 and run.isdigit() and near(_IMEI, text, start, end):
            continue  # a handset's IMEI, often right after the word "phone"
        if near(_PHONE_CONTEXT, text, start, end):
            score += 0.3
        elif score <= _PHONE_NEEDS_A_WORD:
            continue
        elif near(_PHONE_NEGATIVE, text, start, end):
            score -= 0.2
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
    if number.country_code and is_valid_phone(number.country_code, phonenumbers.national_significant_number(number)):
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
        score = (0.65 if pm.raw_string.startswith("+") else 0.55) + (
            0.3 if near(_PHONE_CONTEXT, text, start, end) else 0.0
        )
        out.append(Finding("phone", start, end, clamp_score(score)))
    return out


# --- IP addresses ------------------------------------------------------------------------------------------

# Not inside a longer dotted run (1.2.3.4.5) and not glued to a word ("v1.2.3.4").
# The shape only: octets are checked in Python, which is ~3x cheaper than an octet alternation at every digit.
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_IP_CONTEXT = context_words(
    "ip", "ips", "ipv4", "ipv6", "address", "host", "server", "addr", "client", "from", "src", "dst"
)
_IP_NEGATIVE = context_words("version", "ver", "release", "build", "firmware", "v", "oid", "section", "chapter")


def _internal_ipv4(a: int, b: int) -> bool:
    """Private, loopback, link-local, CGNAT or "this network": addresses that identify no one outside."""
    return (
        a in (0, 10, 127)
        or (a == 172 and 16 <= b <= 31)
        or (a == 192 and b == 168)
        or (a == 169 and b == 254)
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
    scan = as_scan(text)
    text = scan.text
    out: list[Finding] = _detect_ipv6(text) if ":" in text else []
    for m in _ipv4_matches(scan):
        if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "._"):
            continue  # inside a longer dotted run (1.2.3.4.5) or glued to a word ("v1.2.3.4")
        octets = m.group().split(".")
        if any((len(o) > 1 and o[0] == "0") or int(o) > 255 for o in octets):
            continue  # 256.1.1.1, 10.0.0.01: not an address as written
        score = 0.5 if _internal_ipv4(int(octets[0]), int(octets[1])) else 0.75
        if near(_IP_NEGATIVE, text, m.start(), m.end()):
            score -= 0.4
        elif near(_IP_CONTEXT, text, m.start(), m.end()):
            score += 0.1
        out.append(Finding("ip_address", m.start(), m.end(), clamp_score(score)))
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
        internal = (
            addr.is_loopback
            or addr.is_link_local
            or (addr.is_private and not addr.is_global and not _documentation(addr))
        )
        score = 0.5 if internal else 0.75
        if near(_IP_CONTEXT, text, start, start + len(raw)):
            score += 0.1
        out.append(Finding("ip_address", start, start + len(raw), clamp_score(score)))
    return out


def _documentation(addr: ipaddress.IPv6Address) -> bool:
    # 2001:db8::/32 is "private" to ipaddress, but it is what examples and generated data use for real hosts.
    return addr in _IPV6_DOC


_IPV6_DOC = ipaddress.IPv6Network("2001:db8::/32")


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
    scan = as_scan(text)
    text = scan.text
    findings = [Finding("prompt_injection", s, e, clamp_score(c)) for s, e, c in injection_hits(text, low=scan.low)]
    strongest = max((f.confidence for f in findings), default=0.0)
    if strongest < INJECTION_MODEL.cap:  # else the model cannot change the text's confidence
        start, end, confidence = injection_evidence(text)
        if confidence > strongest:
            findings.append(Finding("prompt_injection", start, end, confidence))
    return findings


# --- all together ------------------------------------------------------------------------------------------

DETECTORS: Mapping[str, Callable[[str | Scan], list[Finding]]] = MappingProxyType(
    {
        "credit_card": detect_credit_cards,
        "us_ssn": detect_us_ssns,
        "iban": detect_ibans,
        "email": detect_emails,
        "phone": detect_phones,
        "ip_address": detect_ip_addresses,
        "secret": detect_secrets,
        "prompt_injection": detect_prompt_injection,
    }
)
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
