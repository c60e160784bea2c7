"""Phone number validity, as `phonenumbers.is_valid_number` decides it, at a fraction of its cost.

`is_valid_number` looks up a compiled pattern by its source (`re.compile` through re's cache) for every one of up
to ten number types of a region, and walks the 25 regions of the North American plan one by one: ~100 us for a
Canadian number. Here each region's number types are folded, per number length, into one pattern compiled once
(general description as a lookahead, then the types as one alternation), so a validity check is one `fullmatch`
per region tried. The metadata is phonenumbers' own; tests compare both on random numbers of many countries."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeGuard

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata, PhoneNumberDesc

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


def _lengths(desc: PhoneNumberDesc | None) -> frozenset[int]:
    return frozenset(desc.possible_length) if desc is not None and desc.possible_length else frozenset()


def _usable(desc: PhoneNumberDesc | None) -> TypeGuard[PhoneNumberDesc]:
    return desc is not None and bool(desc.national_number_pattern)


def _region(metadata: PhoneMetadata) -> _Region:
    general = metadata.general_desc
    types: list[PhoneNumberDesc | None] = [getattr(metadata, name) for name in _TYPES]
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
