"""Unit prices from prices.json: us-east-1 list prices, each with the page it comes from and the date it was read."""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

PRICES_FILE = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class Price:
    """One unit price: `usd` (USD per `unit`), read from `source` on `as_of` (ISO date)."""

    key: str
    usd: Decimal
    unit: str
    as_of: str
    source: str


def load(path: Path = PRICES_FILE) -> dict[str, Price]:
    """Prices by key. Raises KeyError if an entry lacks usd, unit, as_of or source (every price is sourced)."""
    data = json.loads(path.read_text())
    return {key: Price(key, Decimal(p["usd"]), p["unit"], p["as_of"], p["source"]) for key, p in data["prices"].items()}
