"""The hot-key simulation (tools.sim_hotkey) on a tiny configuration: the real ledger against the simulated
table keeps the hard cap and balances, and the table evaluates the ledger's expressions as DynamoDB does."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from tools.sim_hotkey.__main__ import run
from tools.sim_hotkey.params import Params
from tools.sim_hotkey.table import Tables


def test_a_tiny_run_admits_within_the_budget_and_balances():
    p = replace(Params(), offered_rps=150, warmup_s=0.0, seconds=1.0)
    near = run(p, "adaptive", None, "near", Decimal("0.3"))
    assert near.admitted and near.refused  # the budget ran out during the run
    assert near.overshoot_usd <= 0 and near.balanced and near.left_usd >= 0
    assert near.settle_failed == 0  # every admitted request was metered
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
