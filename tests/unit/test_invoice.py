"""The invoice's arithmetic on hand-made usage records: exact Decimal, the stated rounding rule."""
from __future__ import annotations

from decimal import Decimal

from tollgate import invoice


def _rec(user, cost, key="k1", byok=False, status="ok", tokens=10):
    return {"pk": user, "keyId": key, "costUsd": Decimal(cost), "byok": byok, "status": status,
            "promptTokens": tokens, "completionTokens": 0, "totalTokens": tokens}


def test_each_line_rounds_half_up_to_the_cent_and_totals_sum_the_rounded_lines():
    # 0.625 exact -> cost 0.63; total 0.625 * 1.02 = 0.6375 -> 0.64; markup 0.01
    # 0.005 exact -> cost 0.01; total 0.0051 -> 0.01; markup 0.00
    records = [_rec("a", "0.3125"), _rec("a", "0.3125"), _rec("b", "0.005")]
    inv = invoice.build(records, "2026-11", Decimal(2), {"a": Decimal("0.625"), "b": Decimal("0.005")})
    a, b = inv["lines"]
    assert (a["provider_cost_usd"], a["markup_usd"], a["total_usd"]) == ("0.63", "0.01", "0.64")
    assert (b["provider_cost_usd"], b["markup_usd"], b["total_usd"]) == ("0.01", "0.00", "0.01")
    assert inv["totals"]["total_usd"] == "0.65"  # not round(0.6426) = 0.64: the rounded lines are summed
    assert Decimal(inv["totals"]["metered_usd"]) == Decimal(inv["totals"]["budget_spent_usd"]) == Decimal("0.63")


def test_byok_lines_carry_tokens_and_value_but_no_cost_and_failed_calls_count_apart():
    records = [_rec("a", "1.00", byok=True), _rec("a", "2.00"), _rec("a", "0", status="error", tokens=0)]
    inv = invoice.build(records, "2026-11", Decimal("2.5"), {"a": Decimal("2.00")})
    platform, byok = inv["lines"]
    assert byok["byok"] and byok["metered_usd"] == "1.00" and byok["total_usd"] == "0.00"
    assert platform["requests"] == 1 and platform["failed_requests"] == 1 and platform["total_usd"] == "2.05"
    user = inv["users"][0]
    # the budget holds 2.00 (this user's BYOK calls are exempt): the difference names the BYOK value
    assert user["metered_usd"] == "3.00" and user["difference_usd"] == "1.00"


def test_month_must_be_yyyy_mm():
    for bad in ("2026-1", "2026-00", "26-11", None, "2026-11-01"):
        try:
            invoice.month_of(bad)
        except invoice.InvalidRequest as e:
            assert e.param == "month"
        else:
            raise AssertionError(bad)
