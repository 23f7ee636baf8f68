"""Plain-text output: aligned tables, key/value blocks, money and times (no dependencies)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Sequence, TextIO

EMPTY = "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()) -> str:
    """Columns padded to their widest cell, two spaces apart; columns in `right` are right-aligned."""
    right = set(right)
    cells = [[str(h) for h in headers]] + [[EMPTY if c is None or c == "" else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, Any]], indent: str = "  ") -> str:
    """A key/value block with the values lined up."""
    pairs = [(k, EMPTY if v is None or v == "" else str(v)) for k, v in pairs]
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}".rstrip() for k, v in pairs)


def money(value: Any, *, none: str = EMPTY) -> str:
    """$ and every significant digit, at least cents: "10" -> $10.00, "0.000012" -> $0.000012."""
    if value is None or value == "":
        return none
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if not d.is_finite():
        return str(value)
    sign = "-" if d < 0 else ""
    text = format(abs(d), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{frac}"


def number(value: Any) -> str:
    if value is None or value == "":
        return EMPTY
    return str(value)


def when(value: str | None, *, seconds: bool = True, none: str = EMPTY) -> str:
    """An ISO-8601 time as "2026-11-27 14:10:42" in UTC (as given if it does not parse)."""
    if not value:
        return none
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def print_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")
