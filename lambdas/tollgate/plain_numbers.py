"""Plain ASCII decimal notation: the only number text the gateway's own API and the CLI accept.

Python's int() and Decimal() also accept underscores ("1_0" is 10), any Unicode decimal digit ("١٠" is
10), surrounding whitespace ("10 "), signs and, for Decimal, exponents and "NaN"; none of these is
guessed at. Standard library only (the CLI imports it).
"""
from __future__ import annotations

import re

_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def is_plain_integer(text: str) -> bool:
    """ASCII digits only: "10", "007"; not "1_0", "١٠", " 10", "+1", "-1", "1e3"."""
    return bool(_INTEGER.fullmatch(text))


def is_plain_decimal(text: str) -> bool:
    """ASCII digits with at most one decimal point: "10", "1.50", ".5", "2."; not "1_0", "١٠", "10 ",
    "1,5", "1e3", "-1", "NaN"."""
    return bool(_DECIMAL.fullmatch(text))
