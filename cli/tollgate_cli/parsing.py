"""argparse value types: a bad value is a usage error (exit code 2) with a clear message."""
from __future__ import annotations

import argparse
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Callable

from tollgate.auth.api_keys import KEY_ID_LENGTH, PREFIX, SECRET_LENGTH
from tollgate.plain_numbers import is_plain_decimal, is_plain_integer
from tollgate_cli import invocation
from tollgate_cli.redaction import looks_secret

_KEY_ID = re.compile(rf"{PREFIX}[A-Za-z0-9]{{{KEY_ID_LENGTH - len(PREFIX)}}}")
_WHOLE_KEY = re.compile(rf"{PREFIX}[A-Za-z0-9]{{{SECRET_LENGTH}}}")

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_UNIT_ORDER = "wdhms"
_PART = re.compile(r"([0-9]+)([a-z]*)")  # [0-9]: \d is any Unicode digit


def _short(span: timedelta) -> str:
    """A whole number of seconds as the largest fitting unit: 30d, 12h, 90m, 45s."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration_type(*, maximum: timedelta | None = None,
                  zero_hint: Callable[[], str] = lambda: "") -> Callable[[str], timedelta]:
    """An argparse type reading "30s", "15m", "12h", "30d", "2w" or a compound such as "1h30m" (units
    largest first, each once) as a timedelta above zero and at most `maximum`. Each refused value is
    told why: no unit, an unknown unit, a fraction, a sign, zero, units out of order, too long.
    `zero_hint()` is added to the message for zero (e.g. what to do instead)."""
    rule = "longer than zero" + (f" and at most {_short(maximum)}" if maximum else "")

    def parse(text: str) -> timedelta:
        value = text.strip().lower().replace(" ", "")

        def bad(reason: str) -> argparse.ArgumentTypeError:
            return argparse.ArgumentTypeError(f"invalid duration {text!r}: {reason}")

        if not value:
            raise bad("it is empty; use a number and a unit (s, m, h, d or w), e.g. 30d or 12h")
        if value[0] == "-":
            raise bad(f"it is negative: a duration is {rule}, e.g. 1h")
        if re.fullmatch(r"[0-9]+", value):
            if int(value) == 0:
                raise bad(f"it must be {rule}, with a unit, e.g. 1h{zero_hint()}")
            raise bad(f"it has no unit: add s, m, h, d or w, e.g. {value}m or {value}h")
        if re.search(r"[0-9][.,][0-9]", value):
            raise bad("use whole numbers, e.g. 90m rather than 1.5h")
        parts = _PART.findall(value)
        if "".join(n + u for n, u in parts) != value:
            raise bad("use a number and a unit (s, m, h, d or w), e.g. 30d, 12h or 1h30m")
        for _, unit in parts:
            if unit not in _UNITS:
                raise bad(f"unknown unit {unit or '(none)'!r}: use s, m, h, d or w, e.g. 30d, 12h or 1h30m")
        order = [_UNIT_ORDER.index(u) for _, u in parts]
        if order != sorted(set(order)):
            raise bad("in a compound each unit comes once, largest first, e.g. 1h30m or 1d12h")
        span = sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta())
        if span <= timedelta(0):
            raise bad(f"it must be {rule}, e.g. 1s{zero_hint()}")
        if maximum is not None and span > maximum:
            raise bad(f"it must be {rule} ({_short(span)} is longer)")
        return span

    return parse


def _revoke_hint() -> str:
    return f" (a key that should stop working now is revoked: `{invocation.command()} keys revoke KEY_ID`)"


def key_duration(*, maximum: timedelta | None = None) -> Callable[[str], timedelta]:
    """duration_type for a key's lifetime or grace period: zero is refused with a pointer to `keys revoke`."""
    return duration_type(maximum=maximum, zero_hint=_revoke_hint)


duration = key_duration()


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
    """An API key id: `sk-` and 9 letters or digits (tollgate.auth.api_keys: the first KEY_ID_LENGTH
    characters of a key). Anything else is refused before it is sent, and never repeated back when it
    looks like a secret (a whole key, a key without its `sk-`, `Bearer ...`): it would land in the
    terminal, in logs and in the gateway's error messages."""
    value = text.strip()
    if _KEY_ID.fullmatch(value):
        return value
    told = f"as `{invocation.command()} keys list` shows it"
    if value.lower().startswith("bearer "):
        raise argparse.ArgumentTypeError(
            f"drop 'Bearer ': pass the {KEY_ID_LENGTH}-character key id alone ({told}), never the secret")
    if value.startswith(PREFIX):
        if _WHOLE_KEY.fullmatch(value) or len(value) > 2 * KEY_ID_LENGTH:
            raise argparse.ArgumentTypeError(
                f"that is a whole secret API key, not a key id: pass the {KEY_ID_LENGTH}-character key id (the "
                f"key's first {KEY_ID_LENGTH} characters, {told}), never the secret")
    elif looks_secret(value):
        raise argparse.ArgumentTypeError(
            f"that looks like a secret (e.g. a key without its {PREFIX!r}), not a key id: pass the "
            f"{KEY_ID_LENGTH}-character key id ({told}); the value is not repeated")
    shape = f"{PREFIX} and {KEY_ID_LENGTH - len(PREFIX)} letters or digits, {KEY_ID_LENGTH} characters"
    raise argparse.ArgumentTypeError(
        f"not a key id ({len(value)} characters): a key id is {shape}, {told}")


def scopes_of(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type for one `--scopes` word: a scope, or several joined by commas (as `keys list` prints
    them: `ai:complete,byok:manage`); each must be one of `allowed`. Returns the scopes in that word (a list:
    with nargs="+" argparse gives a list of them; `flat` joins them)."""
    def parse(text: str) -> list[str]:
        found = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [part for part in found if part not in allowed]
        if not found or unknown:
            raise argparse.ArgumentTypeError(
                f"invalid scope {unknown[0] if unknown else text!r}: use one or more of {', '.join(allowed)} "
                "(separated by spaces or commas)")
        return found

    return parse


def flat(groups: list[list[str]] | None) -> list[str]:
    """The scopes of every `--scopes` word (scopes_of), in order, each once."""
    return list(dict.fromkeys(scope for group in groups or [] for scope in group))


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
