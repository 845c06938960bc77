"""ABC note lengths as multiples of the unit length, and back: the arithmetic of the canonical spelling."""

from __future__ import annotations

import functools
import re
from fractions import Fraction


@functools.lru_cache(maxsize=4096)
def length_of(text: str) -> Fraction:
    """An ABC length suffix as a multiple of the unit: "" 1, "3" 3, "/" 1/2, "//" 1/4, "3/2" 3/2."""
    if not text:
        return Fraction(1)
    numerator, slashes, denominator = re.fullmatch(r"(\d*)(/*)(\d*)", text).groups()
    value = Fraction(int(numerator) if numerator else 1)
    if denominator:
        return value / int(denominator)
    return value / (2 ** len(slashes))


@functools.lru_cache(maxsize=4096)
def length_text(value: Fraction) -> str:
    """A multiple of L:1/8 as the shortest ABC length suffix."""
    if value == 1:
        return ""
    if value.denominator == 1:
        return str(value.numerator)
    numerator = "" if value.numerator == 1 else str(value.numerator)
    return f"{numerator}/" if value.denominator == 2 else f"{numerator}/{value.denominator}"


@functools.lru_cache(maxsize=8192)
def scaled_length(text: str, factor: Fraction) -> str:
    """An ABC length suffix multiplied by a factor (a unit change, broken rhythm), as a suffix again."""
    return length_text(length_of(text) * factor)
