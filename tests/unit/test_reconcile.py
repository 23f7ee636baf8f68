"""The reconciliation's arithmetic with in-memory collaborators: drift, missing, unmetered, apportioning."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tollgate import reconcile
from tollgate.errors import InvalidRequest

DAY = date(2026, 11, 30)


class Usage:
    def __init__(self, records):
        self.records = records

    def for_period(self, period):
        return [r for r in self.records if r["sk"].startswith(period)]


class Daily:
    def __init__(self):
        self.totals, self.summaries = {}, {}

    def write(self, day, provider, model, estimates, actual):
        for user in estimates:
            self.totals[(user, provider, model)] = (estimates[user][0], None if actual is None else actual[user])

    def write_summary(self, day, provider, summary):
        self.summaries[provider] = summary


class Source:
    def __init__(self, provider, usd):
        self.provider, self.usd = provider, usd

    def billed(self, day):
        return reconcile.Billed(self.usd, None if self.usd is not None else "no bucket for the day")


def _rec(user, model, cost, tokens, provider="openai", byok=False):
    return {"pk": user, "sk": f"{DAY.isoformat()}T10:00:00Z#r", "provider": provider, "model": model,
            "costUsd": Decimal(cost), "totalTokens": tokens, "byok": byok}


def _run(records, usd, emitted=None):
    daily = Daily()
    emit = (lambda *a: emitted.append(a)) if emitted is not None else None
    report = reconcile.Reconciler(Usage(records), daily, {"openai": Source("openai", usd)},
                                  lambda m: m.split("-2024")[0], emit=emit).run(DAY)
    return report["providers"][0], daily


def test_dated_provider_model_names_match_and_byok_is_left_out():
    records = [_rec("a", "gpt-4o-mini", "0.30", 30), _rec("b", "gpt-4o-mini", "0.10", 10),
               _rec("c", "gpt-4o-mini", "9.99", 99, byok=True)]
    p, daily = _run(records, {"gpt-4o-mini-2024-07-18": Decimal("0.40")})
    assert p["status"] == "ok" and Decimal(p["drift_pct"]) == 0
    assert daily.totals[("a", "openai", "gpt-4o-mini")] == (Decimal("0.30"), Decimal("0.30"))
    assert ("c", "openai", "gpt-4o-mini") not in daily.totals


def test_one_model_missing_from_a_bill_is_missing_not_zero_and_an_unknown_one_is_unmetered():
    records = [_rec("a", "gpt-4o-mini", "0.30", 30), _rec("a", "gpt-4o", "1.00", 10)]
    p, daily = _run(records, {"gpt-4o-mini": Decimal("0.30"), "o3": Decimal("0.50")})
    rows = {m["model"]: m for m in p["models"]}
    assert rows["gpt-4o"]["status"] == "missing" and rows["gpt-4o"]["drift_pct"] is None
    assert rows["o3"]["status"] == "unmetered" and rows["o3"]["actual_usd"] == "0.50"
    assert daily.totals[("a", "openai", "gpt-4o")] == (Decimal("1.00"), None)
    assert p["status"] == "missing" and p["drift_pct"] is None and p["reason"] == "no figure for gpt-4o"


def test_an_empty_bill_for_a_day_with_usage_is_missing_not_minus_100_percent():
    emitted = []
    p, _ = _run([_rec("a", "gpt-4o-mini", "1.00", 10)], {}, emitted)
    assert p["status"] == "missing" and p["drift_pct"] is None
    assert emitted == [("ReconciliationMissing", "Count", 1.0, "openai")]


def test_drift_above_the_threshold_is_drift_and_is_published_as_its_absolute_percent():
    emitted = []
    p, _ = _run([_rec("a", "gpt-4o-mini", "1.00", 10)], {"gpt-4o-mini": Decimal("0.96")}, emitted)
    assert p["status"] == "drift" and Decimal(p["drift_pct"]) == -4
    assert emitted == [("ReconciliationDriftPct", "Percent", 4.0, "openai")]


def test_no_bill_publishes_missing_and_no_drift():
    emitted = []
    p, _ = _run([_rec("a", "gpt-4o-mini", "1.00", 10)], None, emitted)
    assert p["status"] == "missing" and p["actual_usd"] is None and p["reason"] == "no bucket for the day"
    assert emitted == [("ReconciliationMissing", "Count", 1.0, "openai")]


def test_apportioned_shares_add_up_exactly():
    shares = reconcile.apportion(Decimal("1"), {"a": Decimal(1), "b": Decimal(1), "c": Decimal(1)})
    assert sum(shares.values()) == Decimal(1) and shares["a"] == shares["b"] == Decimal("0.333333333333")
    assert reconcile.apportion(Decimal("0.5"), {"a": Decimal(0), "b": Decimal(0)}) == {"a": Decimal("0.25"),
                                                                                          "b": Decimal("0.25")}


@pytest.mark.parametrize("bad", ["2026-02-30", "yesterday", "20261130", "9999-12-31", "2026-12-01", "0001-01-01"])
def test_a_bad_day_is_invalid_request(bad):
    with pytest.raises(InvalidRequest):
        reconcile.day_of(bad, DAY)
    assert reconcile.day_of(None, DAY) == date(2026, 11, 29)


@pytest.mark.parametrize("estimated, billed, shown", [
    ("5.39", "4.37", "-18.92"),   # exactly -18.92393320964749536178107607...
    ("8", "8.0004", "0.00"),      # 0.005: half to even
    ("8", "8.0012", "0.02"),      # 0.015: half to even
])
def test_drift_pct_is_reported_to_two_decimals_half_even_while_the_status_compares_exactly(estimated, billed, shown):
    p, _ = _run([_rec("a", "gpt-4o-mini", estimated, 10)], {"gpt-4o-mini": Decimal(billed)})
    assert str(p["drift_pct"]) == shown and str(p["models"][0]["drift_pct"]) == shown


def test_the_status_uses_the_exact_drift_not_the_rounded_one():
    threshold = reconcile.DEFAULT_THRESHOLD_PCT
    over = Decimal(1) + (threshold + Decimal("0.004")) / 100  # rounds to the threshold, is above it
    p, _ = _run([_rec("a", "gpt-4o-mini", "1", 10)], {"gpt-4o-mini": over})
    assert Decimal(p["drift_pct"]) == threshold and p["status"] == "drift"
