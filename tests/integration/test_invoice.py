"""Chargeback through the admin handler over emulated AWS: several users and keys, a BYOK user; the
invoice reconciles with the usage records and the user-month budget spend, and CSV agrees with JSON."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from tests.integration.world import body_of
from tollgate.clock import utc_now
from tollgate.store.dynamo import from_item
from tollgate_cli.commands.invoice import to_csv

CHAT = "/v1/chat/completions"


def _chat(text, model="gpt-4o-mini"):
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 40}


def _claude(text):
    return {"model": "claude-haiku-4-5", "max_tokens": 40, "messages": [{"role": "user", "content": text}]}


@pytest.fixture
def month_of_traffic(world):
    """alice: two keys (openai and anthropic calls); bob: one key and his own OpenAI key (BYOK)."""
    a1, _ = world.create_key("alice")
    a2, _ = world.create_key("alice")
    for i, text in enumerate(["one", "two words here", "three"]):
        assert world.call("POST", CHAT, _chat(text), principal=world.principal(a1))["statusCode"] == 200
    answer = world.call("POST", "/v1/messages", _claude("hello there"), principal=world.principal(a2))
    assert answer["statusCode"] == 200
    b, _ = world.create_key("bob", scopes=("ai:complete", "byok:manage"))
    assert world.call("POST", CHAT, _chat("platform call", "gpt-4o"), principal=world.principal(b))["statusCode"] == 200
    put = world.call("PUT", "/v1/provider-keys/openai", {"api_key": "sk-bob-own-openai-key-1234"},
                     principal=world.principal(b))
    assert put["statusCode"] == 200, put["body"]
    assert world.call("POST", CHAT, _chat("own key call"), principal=world.principal(b))["statusCode"] == 200
    admin, _ = world.create_key("root", scopes=("admin",))
    return world.principal(admin), utc_now().strftime("%Y-%m")


def _invoice(world, admin, **query):
    resp = world.call("GET", "/admin/invoice", principal=admin, query=query)
    assert resp["statusCode"] == 200, resp["body"]
    return body_of(resp)


def _usage_records(world):
    return [from_item(i) for i in world.dynamodb.scan(TableName=world.env["TOLLGATE_USAGE_TABLE"])["Items"]]


def _budget_spent(world, user, month):
    item = world.dynamodb.get_item(TableName=world.env["TOLLGATE_BUDGETS_TABLE"],
                                   Key={"pk": {"S": f"BUDGET#USER#{user}"}, "sk": {"S": f"MONTH#{month}"}})["Item"]
    return Decimal(from_item(item)["spentUsd"])


def test_invoice_totals_equal_usage_records_and_budget_spend(world, month_of_traffic):
    admin, month = month_of_traffic
    inv = _invoice(world, admin, month=month)
    records = _usage_records(world)
    metered = sum(Decimal(r["costUsd"]) for r in records)
    spent = _budget_spent(world, "alice", month) + _budget_spent(world, "bob", month)
    assert metered > 0
    assert Decimal(inv["totals"]["metered_usd"]) == metered == spent
    assert Decimal(inv["totals"]["budget_spent_usd"]) == spent
    assert all(Decimal(u["difference_usd"]) == 0 for u in inv["users"])
    assert inv["totals"]["requests"] == len(records) == 6
    # per user and key: alice's two keys are two lines; bob has a platform line and a BYOK line
    assert sorted((ln["user"], ln["byok"], ln["requests"]) for ln in inv["lines"]) == [
        ("alice", False, 1), ("alice", False, 3), ("bob", False, 1), ("bob", True, 1)]


def test_byok_calls_are_listed_without_provider_cost(world, month_of_traffic):
    admin, month = month_of_traffic
    inv = _invoice(world, admin, month=month, user="bob")
    byok = next(ln for ln in inv["lines"] if ln["byok"])
    assert byok["requests"] == 1 and byok["total_tokens"] > 0 and Decimal(byok["metered_usd"]) > 0
    assert Decimal(byok["provider_cost_usd"]) == Decimal(byok["markup_usd"]) == Decimal(byok["total_usd"]) == 0
    platform = next(ln for ln in inv["lines"] if not ln["byok"])
    assert Decimal(inv["totals"]["total_usd"]) == Decimal(platform["total_usd"])
    assert {u["user"] for u in inv["users"]} == {"bob"}


def test_markup_follows_the_stated_rounding_rule(world, month_of_traffic):
    admin, month = month_of_traffic
    inv = _invoice(world, admin, month=month, markup_pct="2")
    assert inv["markup_pct"] == "2" and "half-up" in inv["rounding"]
    for ln in inv["lines"]:
        exact = Decimal(0) if ln["byok"] else Decimal(ln["metered_usd"])
        assert Decimal(ln["provider_cost_usd"]) == exact.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
        assert Decimal(ln["total_usd"]) == (exact * Decimal("1.02")).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
        assert Decimal(ln["provider_cost_usd"]) + Decimal(ln["markup_usd"]) == Decimal(ln["total_usd"])
    assert Decimal(inv["totals"]["total_usd"]) == sum(Decimal(ln["total_usd"]) for ln in inv["lines"])


def test_csv_and_json_agree(world, month_of_traffic):
    admin, month = month_of_traffic
    inv = _invoice(world, admin, month=month)
    rows = list(csv.DictReader(io.StringIO(to_csv(inv))))
    assert len(rows) == len(inv["lines"]) == 4
    for row, line in zip(rows, inv["lines"]):
        assert row == {k: str(v) for k, v in line.items()}
    for name in ("provider_cost_usd", "markup_usd", "total_usd", "metered_usd"):
        assert sum(Decimal(r[name]) for r in rows) == Decimal(inv["totals"][name])


def test_an_empty_month_is_an_empty_invoice(world, month_of_traffic):
    admin, _ = month_of_traffic
    inv = _invoice(world, admin, month="2001-01")
    assert inv["lines"] == [] and inv["totals"]["total_usd"] == "0"


@pytest.mark.parametrize("query, param", [({"month": "2026-13"}, "month"), ({}, "month"),
                                          ({"month": "2026-11", "markup_pct": "-1"}, "markup_pct"),
                                          ({"month": "2026-11", "markup_pct": "abc"}, "markup_pct"),
                                          ({"month": "2026-11", "markup_pct": "101"}, "markup_pct")])
def test_a_bad_query_is_400_naming_it(world, month_of_traffic, query, param):
    admin, _ = month_of_traffic
    resp = world.call("GET", "/admin/invoice", principal=admin, query=query)
    assert resp["statusCode"] == 400 and body_of(resp)["error"]["param"] == param
