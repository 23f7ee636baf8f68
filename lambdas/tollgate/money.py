"""Money is Decimal, never float; as text it is plain notation (0.0000001, not 1E-7)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any


def text(amount: Any) -> str:
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    out = format(value, "f")
    return out
