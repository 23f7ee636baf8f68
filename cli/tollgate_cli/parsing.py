"""argparse value types: a bad value is a usage error (exit code 2) with a clear message."""
from __future__ import annotations

import argparse
import re
from datetime import date, timedelta
from decimal import Decimal

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


def duration(text: str) -> timedelta:
    """"30s", "15m", "12h", "30d", "2w" -> timedelta (above zero)."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use a number and s/m/h/d/w, e.g. 30d or 12h")
    if int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: it must be longer than zero, e.g. 1s "
                                         "(a key that should stop working now is revoked: `tollgate keys revoke`)")
    return timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})


# Digits with at most one decimal point: no thousands separators ("1,5" is not 15), no underscores
# (Decimal("1_0") is 10), no exponents, signs or spaces inside.
_PLAIN_DECIMAL = re.compile(r"\$?(\d+(\.\d*)?|\.\d+)")


def usd(text: str) -> str:
    """A non-negative dollar amount as a plain decimal ("10", "0.50"; a leading $ is allowed), passed on as
    a decimal string. Anything else, "1,5" and "1_0" included, is refused rather than guessed at."""
    cleaned = text.strip()
    if not _PLAIN_DECIMAL.fullmatch(cleaned):
        raise argparse.ArgumentTypeError(
            f"invalid amount {text!r}: use a plain decimal number of dollars with a point, e.g. 10 or 1.50 "
            "(no commas, underscores or exponents)")
    return format(Decimal(cleaned.removeprefix("$")), "f")


# An API key is "sk-" + 48 characters; its id, the first 12, is what commands take.
KEY_ID_CHARS = 12


def key_id(text: str) -> str:
    """An API key id (the first 12 characters of a key). A whole secret key is refused without being
    repeated back: it would land in the terminal, in logs and in the gateway's error messages."""
    value = text.strip()
    if value.startswith("sk-") and len(value) > KEY_ID_CHARS:
        raise argparse.ArgumentTypeError(
            f"that is a whole secret API key, not a key id: pass the {KEY_ID_CHARS}-character key id (the "
            f"key's first {KEY_ID_CHARS} characters, as `tollgate keys list` shows it), never the secret")
    return value


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
