"""Tier-one detectors: pure, regex-first functions that find PII, secrets and prompt injection in a text, and
`detect`, which runs them over one shared Scan.

Each detector makes one scan over the text with a precompiled pattern (for secrets and prompt injection, a
scan for trigger words with the full pattern tried only there), validates candidates (Luhn, mod-97, SSN ranges,
entropy) and scores them 0..1. Words within ~40 characters of a match raise or lower the score,
as Presidio's context enhancer does. Offsets are indices into the original Python str (code points). Secrets
live in `_secrets`, phone numbers in `_phone`, injection phrases in `_injection` (the phrase data in `_phrases`)
and its model; what all detectors share, in `_text`."""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from types import MappingProxyType

from agentmesh.services.guard._injection import injection_hits
from agentmesh.services.guard._injection_model import MODEL as INJECTION_MODEL
from agentmesh.services.guard._injection_model import injection_evidence
from agentmesh.services.guard._phone import detect_phones
from agentmesh.services.guard._secrets import detect_secrets
from agentmesh.services.guard._text import RUN_TAIL, Scan, as_scan, clamp_score, context_words, near
from agentmesh.services.guard._text import Finding as Finding  # re-exported: detectors is its public home

# --- runs of digits ------------------------------------------------------------------------------------------

# Cards, SSNs, phones and IPv4 addresses are tried only inside the text's runs of digits (`Scan.numeric_runs`);
# RUN_TAIL (in `_text`) covers the lookaheads that read past a match.


def _windows(scan: Scan, min_chars: int) -> Iterator[tuple[int, int]]:
    """(pos, endpos) around each run of at least `min_chars` characters: a detector's pattern searched there finds
    the same matches as over the whole text (lookbehinds still see before pos; the tail covers lookaheads)."""
    for start, end in scan.numeric_runs:
        if end - start >= min_chars:
            yield start, end + RUN_TAIL


def _run_matches(scan: Scan, pattern: re.Pattern[str], min_chars: int) -> Iterator[re.Match[str]]:
    """`pattern`'s matches, searched only around the runs of digits long enough to hold one."""
    for pos, endpos in _windows(scan, min_chars):
        yield from pattern.finditer(scan.text, pos, endpos)


# --- credit cards ----------------------------------------------------------------------------------------

# Bare 12-19 digits (12: Maestro only), or the groupings issuers print (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) with one consistent
# separator (space, dash or dot). Not right after `XX00 `: that is the body of an IBAN, checked by its own detector.
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
            yield from _IPV4_RE.finditer(text, start, end + RUN_TAIL)


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
