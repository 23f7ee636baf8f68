"""The hot-key simulation (tools.sim_hotkey) on a tiny configuration: the real ledger against the simulated
table keeps the hard cap and balances, and the table evaluates the ledger's expressions as DynamoDB does."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from tollgate.store import escrow
from tools.sim_hotkey.__main__ import BUDGETS, _levels, room, run
from tools.sim_hotkey.params import Params
from tools.sim_hotkey.table import Tables


def test_a_tiny_run_admits_within_the_budget_and_balances():
    p = replace(Params(), offered_rps=150, warmup_s=0.0, seconds=1.0)
    near = run(p, "adaptive", None, "near", Decimal("0.3"))
    assert near.admitted and near.refused  # the budget ran out during the run
    assert near.overshoot_usd <= 0 and near.balanced and near.left_usd >= 0
    assert near.settle_failed == 0  # every admitted request was metered
    assert near.refused_with_money == 0  # every refusal: the level's total could not fit the request
    again = run(p, "adaptive", None, "near", Decimal("0.3"))
    assert (again.admitted, again.refused, again.left_usd) == (near.admitted, near.refused, near.left_usd)  # seeded


def test_the_table_cancels_on_a_failed_condition_with_the_old_item():
    t = Tables({"b": ("pk", "sk")})
    key = {"pk": {"S": "a"}, "sk": {"S": "x"}}
    take = {"Update": {"TableName": "b", "Key": key,
                       "UpdateExpression": "SET r = if_not_exists(r, :l) - :c, n = if_not_exists(n, :z) + :one",
                       "ConditionExpression": "attribute_not_exists(r) OR (r >= :c AND NOT r = :never)",
                       "ExpressionAttributeValues": {":l": {"N": "1"}, ":c": {"N": "0.6"}, ":z": {"N": "0"},
                                                     ":one": {"N": "1"}, ":never": {"N": "7"}},
                       "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}
    assert t.transact([take]) is None
    assert t.items[("b", "a", "x")] == {"pk": "a", "sk": "x", "r": Decimal("0.4"), "n": 1}
    [reason] = t.transact([take])
    assert reason["Code"] == "ConditionalCheckFailed" and reason["Item"]["r"] == {"N": "0.4"}


def test_a_refusal_counts_as_with_money_when_the_pool_and_slices_together_fit_the_request():
    from tollgate.store.counters import Window

    levels = _levels(Decimal("10"))
    window = Window("RATE#k", "MIN#x", 100, 1_000_000, 60, 1_900_000_000)
    t = Tables({BUDGETS: ("pk", "sk")})
    for lvl in levels:  # $0.02 in each pool, $0.03 on slice 5: no single item fits $0.04, the level does
        t.items[(BUDGETS, lvl.pk, lvl.sk)] = {"remainingUsd": Decimal("0.02")}
        t.items[(BUDGETS, escrow.slice_pk(lvl.pk, 5), lvl.sk)] = {"remainingUsd": Decimal("0.03")}
    assert room(t, levels, window, Decimal("0.05"), 100)
    assert not room(t, levels, window, Decimal("0.0500001"), 100)
    t.items[(BUDGETS, window.pk, window.sk)] = {"remainingRequests": 0, "remainingTokens": 5}
    assert not room(t, levels, window, Decimal("0.01"), 100)  # the window has no request left
    t.items[(BUDGETS, escrow.slice_pk(window.pk, 2), window.sk)] = {"remainingRequests": 1, "remainingTokens": 95}
    assert room(t, levels, window, Decimal("0.01"), 100)  # ... but its slice 2 has, with the tokens
