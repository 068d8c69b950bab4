"""PostgreSQL's text output of the values the course's ``unique_row_id`` formula casts.

The course computes ``md5(COALESCE(CAST(VendorID AS text), '') || ...)`` inside
PostgreSQL, so a value's contribution is PostgreSQL's text form of the *stored* value, not
the characters of the CSV file: ``.79`` is stored as float8 0.79 and casts to ``0.79``,
``4.40`` casts to ``4.4``. These functions give the same text in Python, so the loader can
compute the ids while it streams. They accept only what they can convert exactly; anything
else is refused rather than hashed differently from PostgreSQL.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SPECIAL = {
    b"nan": "NaN",
    b"+nan": "NaN",
    b"-nan": "NaN",
    b"infinity": "Infinity",
    b"+infinity": "Infinity",
    b"inf": "Infinity",
    b"+inf": "Infinity",
    b"-infinity": "-Infinity",
    b"-inf": "-Infinity",
}
_DATE = re.compile(rb"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")
_TIME = re.compile(rb" (?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d")
_FRACTION = re.compile(rb"\.(\d{1,6})")

#: float8out switches to exponent notation outside 1e-4 <= |x| < 1e15 (printf's %g rule
#: with DBL_DIG = 15); Python's repr switches at 1e16.
_EXP_LOW = -4
_EXP_HIGH = 15
_SMALL = float(2**53)


def float8_text(value: float) -> str:
    """``CAST(value AS text)`` for a float8, as PostgreSQL 12+ prints it (shortest round-trip)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    text = _shortest(value)
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    if not digits:
        return sign + "0"
    # decimal exponent of the first significant digit
    point = len(whole) + exponent
    leading_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    first = point - leading_zeros - 1
    digits = digits.rstrip("0")
    if _EXP_LOW <= first < _EXP_HIGH:
        if first >= 0:
            int_part = digits[: first + 1].ljust(first + 1, "0")
            frac_part = digits[first + 1 :]
        else:
            int_part = "0"
            frac_part = "0" * (-first - 1) + digits
        return sign + int_part + ("." + frac_part if frac_part else "")
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{'-' if first < 0 else '+'}{abs(first):02d}"


def _shortest(value: float) -> str:
    """The shortest decimal that reads back as ``value``, as PostgreSQL's Ryu finds it.

    Python's ``repr`` accepts a decimal lying exactly halfway to the neighbouring double
    (round-half-even maps it back); PostgreSQL's Ryu excludes those interval bounds and then
    needs a digit more (``4.623573780652374e+16`` is ``4.6235737806523744e+16`` there).
    Only huge or tiny magnitudes can hit this, never cents and miles.
    """
    text = repr(value)
    # below 2**53 a midpoint between two doubles needs far more than 17 digits
    if abs(value) < _SMALL or not _on_bound(value, Fraction(text)):
        return text
    digits = len(text.partition("e")[0].replace(".", "").replace("-", "").strip("0"))
    for count in range(digits + 1, 18):
        candidate = f"{value:.{count - 1}e}"
        if not _on_bound(value, Fraction(candidate)):
            return candidate
    return f"{value:.16e}"


def _on_bound(value: float, decimal: Fraction) -> bool:
    exact = Fraction(value)
    above, below = math.nextafter(value, math.inf), math.nextafter(value, -math.inf)
    up = (
        (exact + Fraction(above)) / 2
        if math.isfinite(above)
        else exact + (exact - Fraction(below)) / 2
    )
    down = (
        (exact + Fraction(below)) / 2
        if math.isfinite(below)
        else exact - (Fraction(above) - exact) / 2
    )
    return decimal in (up, down)


def number_text(raw: bytes) -> bytes | None:
    """The text a CSV number field becomes once stored as float8 and cast back; None if it
    is not a number PostgreSQL would read the same way."""
    stripped = raw.strip(b" \t")
    if _NUMBER.fullmatch(stripped):
        return float8_text(float(stripped)).encode("ascii")
    special = _SPECIAL.get(stripped.lower())
    return special.encode("ascii") if special else None


def timestamp_text(raw: bytes) -> bytes | None:
    """A ``YYYY-MM-DD HH:MM:SS[.ffffff]`` field as PostgreSQL's ``timestamp::text`` prints it
    (ISO DateStyle: trailing zeros of the fraction dropped); None for any other shape.

    Impossible dates (February 30th) pass here; PostgreSQL rejects them when it stores the row.
    """
    if len(raw) < 19 or not _DATE.fullmatch(raw, 0, 10) or not _TIME.fullmatch(raw, 10, 19):
        return None
    if len(raw) == 19:
        return raw
    fraction = _FRACTION.fullmatch(raw, 19)
    if fraction is None:
        return None
    digits = fraction.group(1).rstrip(b"0")
    return raw[:19] + (b"." + digits if digits else b"")
