"""tollgate.store.same_item: Updates of one item joined for a transaction, and their reasons spread back."""
from __future__ import annotations

import pytest

from tollgate.store import same_item
from tollgate.store.dynamo import to_item, values


def _update(key: str, expression: str, condition: str | None = None, names: dict | None = None, **vals) -> dict:
    body = {"TableName": "t", "Key": to_item({"pk": key}), "UpdateExpression": expression,
            "ExpressionAttributeValues": values(**vals)}
    if condition:
        body["ConditionExpression"] = condition
        body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    if names:
        body["ExpressionAttributeNames"] = names
    return {"Update": body}


def test_updates_of_one_item_are_sent_as_one_with_their_placeholders_apart():
    level = _update("k", "SET remainingUsd = if_not_exists(remainingUsd, :limit) - :cost, #ttl = if_not_exists(#ttl, :ttl)",
                    "attribute_not_exists(remainingUsd) OR remainingUsd >= :cost", {"#ttl": "ttl"},
                    limit=5, cost=1, ttl=100)
    other = {"Put": {"TableName": "u", "Item": to_item({"pk": "x"})}}
    window = _update("k", "SET r = if_not_exists(r, :limit) - :cost, #ttl = if_not_exists(#ttl, :ttl) REMOVE r0, r1",
                     "attribute_not_exists(r) OR r >= :cost", {"#ttl": "ttl"}, limit=60, cost=1, ttl=200)
    sent, groups = same_item.merge([level, other, window])
    assert groups == [[0, 2], [1]] and sent[1] == other
    body = sent[0]["Update"]
    assert body["UpdateExpression"] == ("SET remainingUsd = if_not_exists(remainingUsd, :limit) - :cost, "
                                        "#ttl_1 = if_not_exists(#ttl_1, :ttl_1), r = if_not_exists(r, :limit_1) - :cost_1 "
                                        "REMOVE r0, r1")  # the ttl once, at the larger value
    assert body["ConditionExpression"] == ("(attribute_not_exists(remainingUsd) OR remainingUsd >= :cost) AND "
                                           "(attribute_not_exists(r) OR r >= :cost_1)")
    assert body["ExpressionAttributeValues"] == values(limit=5, cost=1, limit_1=60, cost_1=1, ttl_1=200)
    assert body["ExpressionAttributeNames"] == {"#ttl_1": "ttl"}  # unused placeholders left out
    assert body["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


def test_a_set_and_an_add_on_one_item_join_and_nothing_else_is_touched():
    settle = _update("k", "SET reservedUsd = reservedUsd - :cost", cost=1)
    refund = _update("k", "ADD tokens :t", t=40)
    elsewhere = _update("j", "ADD tokens :t", t=40)
    sent, groups = same_item.merge([settle, refund, elsewhere])
    assert groups == [[0, 1], [2]] and sent[1] == elsewhere
    assert sent[0]["Update"]["UpdateExpression"] == "SET reservedUsd = reservedUsd - :cost ADD tokens :t_1"
    assert "ConditionExpression" not in sent[0]["Update"]


def test_two_computed_values_of_one_attribute_cannot_be_joined():
    with pytest.raises(ValueError):
        same_item.merge([_update("k", "SET a = a - :x", x=1), _update("k", "SET a = a + :x", x=2)])


def test_each_original_update_gets_the_reason_of_the_item_it_was_sent_in():
    failed, fine = {"Code": "ConditionalCheckFailed", "Item": {"pk": {"S": "k"}}}, {"Code": "None"}
    assert same_item.spread([failed, fine], [[0, 2], [1]]) == [failed, fine, failed]
    assert same_item.spread([], [[0, 1]]) == [{}, {}]  # no reasons given: none for any


def test_conditions_are_joined_without_redundant_parentheses():
    slice_k = _update("k", "SET a = a - :n", "a >= :n", n=1)
    pool = _update("k", "SET b = b - :n", "(attribute_not_exists(b) OR b >= :n)", n=1)
    loose = _update("k", "SET c = c - :n", "attribute_not_exists(w) AND (attribute_not_exists(c) OR c >= :n)", n=1)
    [sent], _ = same_item.merge([slice_k, pool, loose])
    assert sent["Update"]["ConditionExpression"] == (
        "a >= :n AND (attribute_not_exists(b) OR b >= :n_1) AND attribute_not_exists(w) AND (attribute_not_exists(c) OR c >= :n_2)")
