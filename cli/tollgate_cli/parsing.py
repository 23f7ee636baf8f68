"""argparse value types: a bad value is a usage error (exit code 2) with a clear message."""
from __future__ import annotations

import argparse
import re
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


def duration(text: str) -> timedelta:
    """"30s", "15m", "12h", "30d", "2w" -> timedelta."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use a number and s/m/h/d/w, e.g. 30d or 12h")
    return timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})


def usd(text: str) -> str:
    """A non-negative dollar amount, passed on as a decimal string ("10", "0.50"; a leading $ is allowed)."""
    cleaned = text.strip().removeprefix("$").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"invalid amount {text!r}: use a non-negative number of dollars, e.g. 10.00")
    return format(value, "f")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a whole number above 0")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a number of seconds above 0")
    return value


def day(text: str) -> str:
    """YYYY-MM-DD, passed on as given."""
    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: use YYYY-MM-DD") from None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: use YYYY-MM-DD")
    return text
