"""Chargeback: a month's invoice per user and key, from the usage records, with a platform markup.

The invariant first: every figure comes from the usage records of the month (one per metered request,
written exactly once by the ledger's settle), so an invoice's exact metered total equals the sum of the
month's usage records, and for each user it is set beside the user-month budget item's `spentUsd`
(what the ledger moved to spent for the same requests) — the two are equal unless the user's BYOK calls
are exempt from their budget (then the budget holds the platform-key calls only).

Lines. One line per (user, key, BYOK or not): requests, tokens, and money. A request made with the
user's own provider key (BYOK) is listed with its tokens and its list-price value (`metered_usd`), but
carries no provider cost and so no markup: the provider bills the user directly. JWT and IAM
principals have no API key id: their line names the principal instead.

Rounding rule (Decimal only, never float):
  provider_cost_exact = Σ costUsd of the line's platform-key records            (exact)
  total_exact         = provider_cost_exact × (1 + markup_pct / 100)            (exact)
  provider_cost_usd   = provider_cost_exact rounded half-up to the cent
  total_usd           = total_exact rounded half-up to the cent
  markup_usd          = total_usd − provider_cost_usd   (so cost + markup = total on every line)
  invoice totals      = sums of the rounded lines (never a re-rounding of exact sums)
The markup is "2% platform markup" by default, as in the article this gateway follows.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable

from tollgate.errors import InvalidRequest
from tollgate.money import texts_in
from tollgate.store.counters import month_sk, user_pk

DEFAULT_MARKUP_PCT = Decimal(2)
CENT = Decimal("0.01")
ZERO = Decimal(0)
ROUNDING = ("markup computed exactly on each line's provider cost, then each line's cost and total rounded "
            "half-up to the cent (markup = rounded total - rounded cost); invoice totals are sums of the "
            "rounded lines")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

# Columns of a line, in CSV order (the CLI writes CSV with these headers; JSON lines use the same names).
LINE_FIELDS = ("user", "key", "byok", "requests", "failed_requests", "prompt_tokens", "completion_tokens",
               "total_tokens", "metered_usd", "provider_cost_usd", "markup_usd", "total_usd")


def cents(amount: Decimal) -> Decimal:
    """`amount` (USD) rounded half-up to the cent: Decimal('0.125') -> Decimal('0.13')."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class Line:
    """One invoice line: a user's requests through one key (or principal), BYOK or not. Money in USD."""

    user: str
    key: str
    byok: bool
    requests: int = 0  # successful (status ok)
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    metered_usd: Decimal = ZERO  # exact Σ costUsd of the records (for BYOK: their list-price value)

    def add(self, record: dict[str, Any]) -> None:
        if record.get("status") == "ok":
            self.requests += 1
        else:
            self.failed_requests += 1
        self.prompt_tokens += int(record.get("promptTokens", 0))
        self.completion_tokens += int(record.get("completionTokens", 0))
        self.total_tokens += int(record.get("totalTokens", 0))
        self.metered_usd += Decimal(record.get("costUsd", 0))

    def priced(self, markup_pct: Decimal) -> dict[str, Any]:
        """The line with its money: provider cost, markup and total (see the module's rounding rule)."""
        exact_cost = ZERO if self.byok else self.metered_usd
        cost, total = cents(exact_cost), cents(exact_cost * (1 + markup_pct / 100))
        out = asdict(self)
        out.update(metered_usd=self.metered_usd, provider_cost_usd=cost, markup_usd=total - cost, total_usd=total)
        return out


def month_of(value: str | None) -> str:
    """A month as "YYYY-MM". Raises InvalidRequest (param `month`) otherwise."""
    if not value or not _MONTH.match(value):
        raise InvalidRequest("'month' must be a month as YYYY-MM.", param="month")
    return value


def build(records: Iterable[dict[str, Any]], month: str, markup_pct: Decimal,
          budget_spent: dict[str, Decimal]) -> dict[str, Any]:
    """The invoice of `month` from its usage records (stored items: pk = user, costUsd, keyId, principal,
    byok, status, token counts) and each user's user-month budget `spentUsd` (USD).

    Returns {month, markup_pct, rounding, lines: [LINE_FIELDS...], users: [{user, provider_cost_usd,
    markup_usd, total_usd, metered_usd, budget_spent_usd, difference_usd}], totals: {...}}, money as
    plain-notation strings. `difference_usd` = metered (non-exempt) minus budget spend; 0 when they agree.
    """
    lines: dict[tuple[str, str, bool], Line] = {}
    for record in records:
        user = str(record["pk"])
        key = str(record.get("keyId") or record.get("principal") or "-")
        byok = bool(record.get("byok", False))
        lines.setdefault((user, key, byok), Line(user, key, byok)).add(record)
    priced = [lines[k].priced(markup_pct) for k in sorted(lines)]
    users = []
    for user in sorted({line["user"] for line in priced}):
        mine = [line for line in priced if line["user"] == user]
        metered = sum((line["metered_usd"] for line in mine), ZERO)
        spent = budget_spent.get(user, ZERO)
        users.append({"user": user, **_sums(mine), "metered_usd": metered, "budget_spent_usd": spent,
                      "difference_usd": metered - spent})
    totals = {**_sums(priced), "metered_usd": sum((u["metered_usd"] for u in users), ZERO),
              "budget_spent_usd": sum((u["budget_spent_usd"] for u in users), ZERO),
              "requests": sum(line["requests"] for line in priced),
              "total_tokens": sum(line["total_tokens"] for line in priced)}
    return texts_in({"month": month, "markup_pct": markup_pct, "rounding": ROUNDING, "lines": priced,
                     "users": users, "totals": totals})


def _sums(lines: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {name: sum((line[name] for line in lines), ZERO)
            for name in ("provider_cost_usd", "markup_usd", "total_usd")}


class Invoices:
    """Builds invoices from the stores: usage (store.usage.UsageStore) and limits (store.limits.LimitsStore)."""

    def __init__(self, usage: Any, limits: Any):
        self.usage = usage
        self.limits = limits

    def invoice(self, month: str, user: str | None, markup_pct: Decimal) -> dict[str, Any]:
        """The invoice of `month` ("YYYY-MM"), of one user or of every user with usage that month.
        A user's records are one Query; every user's is one Scan of the month (a monthly operator job)."""
        month = month_of(month)
        records = self.usage.for_user(user, month, month, limit=10**9) if user else self.usage.for_period(month)
        users = {user} if user else {str(r["pk"]) for r in records}
        period = month_sk(datetime(int(month[:4]), int(month[5:]), 1, tzinfo=timezone.utc))
        spent = {}
        for u in users:
            item = self.limits.counter(user_pk(u), period) or {}
            spent[u] = Decimal(item.get("spentUsd", 0))
        return build(records, month, markup_pct, spent)
