"""Money is Decimal, never float; as text it is plain notation (0.0000001, not 1E-7)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any


def text(amount: Any) -> str:
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    out = format(value, "f")
    return out


def texts_in(value: Any) -> Any:
    """`value` with every Decimal in it (at any depth of dicts and lists) as plain-notation text, ready for
    JSON (which has no exact decimal type); anything else as it is."""
    if isinstance(value, Decimal):
        return text(value)
    if isinstance(value, dict):
        return {k: texts_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [texts_in(v) for v in value]
    return value
