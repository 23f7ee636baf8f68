"""argparse value types: a bad value is a usage error (exit code 2) with a clear message."""
from __future__ import annotations

import argparse
import re
from datetime import date, timedelta
from decimal import Decimal

from tollgate.auth.api_keys import KEY_ID_LENGTH, is_whole_secret
from tollgate.plain_numbers import is_plain_decimal, is_plain_integer

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$", re.IGNORECASE)  # [0-9]: \d is any Unicode digit


def duration(text: str) -> timedelta:
    """"30s", "15m", "12h", "30d", "2w" -> timedelta (above zero)."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use a number and s/m/h/d/w, e.g. 30d or 12h")
    if int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: it must be longer than zero, e.g. 1s "
                                         "(a key that should stop working now is revoked: `tollgate keys revoke`)")
    return timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})


def usd(text: str) -> str:
    """A non-negative dollar amount as a plain decimal ("10", "0.50"; a leading $ is allowed), passed on as
    a decimal string. Anything else, "1,5" and "1_0" included, is refused rather than guessed at."""
    cleaned = text.strip().removeprefix("$")
    if not is_plain_decimal(cleaned):
        raise argparse.ArgumentTypeError(
            f"invalid amount {text!r}: use a plain decimal number of dollars with a point, e.g. 10 or 1.50 "
            "(no commas, underscores or exponents)")
    return format(Decimal(cleaned), "f")


def key_id(text: str) -> str:
    """An API key id (the first 12 characters of a key). A whole secret key (the gateway's own test,
    tollgate.auth.api_keys.is_whole_secret) is refused without being repeated back: it would land in the
    terminal, in logs and in the gateway's error messages."""
    if is_whole_secret(text):
        raise argparse.ArgumentTypeError(
            f"that is a whole secret API key, not a key id: pass the {KEY_ID_LENGTH}-character key id (the "
            f"key's first {KEY_ID_LENGTH} characters, as `tollgate keys list` shows it), never the secret")
    return text.strip()


def positive_int(text: str) -> int:
    """A whole number above 0 in plain ASCII digits ("1_0", "١٠" and " 10" are refused)."""
    if not is_plain_integer(text) or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a whole number above 0 in plain digits, e.g. 60")
    return int(text)


def positive_float(text: str) -> float:
    """A number of seconds above 0 in plain ASCII decimal notation (e.g. 30 or 2.5)."""
    if not is_plain_decimal(text) or not float(text) > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a number of seconds above 0, e.g. 30 or 2.5")
    return float(text)


def percent(text: str) -> str:
    """A percentage from 0 to 100 in plain decimal notation ("2", "2.5"; a trailing % is allowed), passed
    on as a decimal string."""
    cleaned = text.strip().removesuffix("%")
    if not is_plain_decimal(cleaned) or Decimal(cleaned) > 100:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}: use a percentage from 0 to 100, e.g. 2 or 2.5")
    return format(Decimal(cleaned), "f")


def day(text: str) -> str:
    """YYYY-MM-DD, passed on as given."""
    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: use YYYY-MM-DD") from None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: use YYYY-MM-DD")
    return text
