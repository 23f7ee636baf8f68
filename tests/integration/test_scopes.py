"""Every route is checked for its scope from the one route table; IAM callers act for others only with act-as."""
from __future__ import annotations

import json

import pytest

from tests.integration.world import body_of
from tollgate import routes, scopes, wiring
from tollgate.auth.principal import Principal

SCOPED = [r for r in routes.ROUTES if r.scope and r.auth not in (routes.IAM, routes.NONE)]


def _path(route):
    return route.path.replace("{keyId}", "sk-abcdefghi").replace("{provider}", "openai")


@pytest.mark.parametrize("route", SCOPED, ids=lambda r: f"{r.method} {r.path}")
def test_a_missing_scope_is_403_in_the_routes_error_shape(world, route):
    everything_else = frozenset(scopes.ALL) - {route.scope}
    principal = Principal(kind="api_key", id="sk-scopetest1", user="sam", scopes=everything_else)
    resp = world.call(route.method, _path(route), {"model": "gpt-4o-mini"}, principal=principal)
    assert resp["statusCode"] == 403, resp["body"]
    body = body_of(resp)
    if route.wire == routes.ANTHROPIC:
        assert body["error"]["type"] == "permission_error"
    else:
        assert body["error"]["code"] == "insufficient_scope"
    assert world.fake.calls == []


AGENT_ROLE = "arn:aws:sts::123456789012:assumed-role/tollgate-agent-task/abc123"
REPORTS_ROLE = "arn:aws:sts::123456789012:assumed-role/reports-job/xyz"


@pytest.fixture
def iam_world(world, monkeypatch):
    monkeypatch.setenv("TOLLGATE_IAM_PRINCIPALS", json.dumps({
        "tollgate-agent-task": {"scopes": ["ai:complete", "act-as"], "user": "agent-service"},
        "reports-job": {"scopes": ["ai:complete"], "user": "reports"},
    }))
    wiring.reset()
    return world


def _chat():
    return {"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def _usage_users(world):
    items = world.dynamodb.scan(TableName=world.env["TOLLGATE_USAGE_TABLE"])["Items"]
    return sorted(i["pk"]["S"] for i in items)


def test_an_iam_principal_with_act_as_acts_for_the_named_user(iam_world):
    resp = iam_world.call("POST", "/internal/v1/chat/completions", _chat(), identity={"userArn": AGENT_ROLE},
                          headers={"x-tollgate-on-behalf-of": "alice"})
    assert resp["statusCode"] == 200, resp["body"]
    assert _usage_users(iam_world) == ["alice"]


def test_an_iam_principal_without_act_as_cannot_act_for_another_user(iam_world):
    resp = iam_world.call("POST", "/internal/v1/chat/completions", _chat(), identity={"userArn": REPORTS_ROLE},
                          headers={"x-tollgate-on-behalf-of": "alice"})
    assert resp["statusCode"] == 403
    assert "act-as" in body_of(resp)["error"]["message"]
    ok = iam_world.call("POST", "/internal/v1/chat/completions", _chat(), identity={"userArn": REPORTS_ROLE})
    assert ok["statusCode"] == 200 and _usage_users(iam_world) == ["reports"]


def test_an_unmapped_iam_role_is_refused(iam_world):
    resp = iam_world.call("POST", "/internal/v1/chat/completions", _chat(),
                          identity={"userArn": "arn:aws:sts::123456789012:assumed-role/someone-else/s"})
    assert resp["statusCode"] == 401


def test_the_on_behalf_of_header_is_ignored_on_api_key_routes(world):
    raw, _ = world.create_key(user="bob")
    resp = world.call("POST", "/v1/chat/completions", _chat(), principal=world.principal(raw),
                      headers={"x-tollgate-on-behalf-of": "alice"})
    assert resp["statusCode"] == 200 and _usage_users(world) == ["bob"]


def test_a_run_is_charged_only_while_acting_for_its_own_user(iam_world):
    from decimal import Decimal

    from tollgate import budgets
    from tollgate.store.dynamo import to_item

    iam_world.dynamodb.put_item(TableName=iam_world.env["TOLLGATE_BUDGETS_TABLE"], Item=to_item({
        "pk": budgets.run_pk("run-1"), "sk": budgets.RUN_SK, "user": "alice", "limitUsd": Decimal("1"),
        "remainingUsd": Decimal("1"), "reservedUsd": Decimal(0), "spentUsd": Decimal(0)}))
    as_bob = iam_world.call("POST", "/internal/v1/chat/completions", _chat(), identity={"userArn": AGENT_ROLE},
                            headers={"x-tollgate-on-behalf-of": "bob", "x-tollgate-run-id": "run-1"})
    assert as_bob["statusCode"] == 403 and body_of(as_bob)["error"]["code"] == "run_owner_mismatch"
    as_alice = iam_world.call("POST", "/internal/v1/chat/completions", _chat(), identity={"userArn": AGENT_ROLE},
                              headers={"x-tollgate-on-behalf-of": "alice", "x-tollgate-run-id": "run-1"})
    assert as_alice["statusCode"] == 200
    assert _usage_users(iam_world) == ["alice"]


def test_an_agent_call_within_its_run_budget_costs_two_dynamodb_calls(iam_world):
    from decimal import Decimal

    from tollgate import budgets
    from tollgate.store.dynamo import to_item

    iam_world.dynamodb.put_item(TableName=iam_world.env["TOLLGATE_BUDGETS_TABLE"], Item=to_item({
        "pk": budgets.run_pk("run-2"), "sk": budgets.RUN_SK, "user": "alice", "limitUsd": Decimal("5"),
        "remainingUsd": Decimal("5"), "reservedUsd": Decimal(0), "spentUsd": Decimal(0)}))
    headers = {"x-tollgate-on-behalf-of": "alice", "x-tollgate-run-id": "run-2"}
    iam_world.call("POST", "/internal/v1/chat/completions", _chat(), identity={"userArn": AGENT_ROLE}, headers=headers)
    calls = []
    wiring.dynamodb().meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    resp = iam_world.call("POST", "/internal/v1/chat/completions", {**_chat(), "messages": [
        {"role": "user", "content": "another"}]}, identity={"userArn": AGENT_ROLE}, headers=headers)
    assert resp["statusCode"] == 200
    assert calls == ["TransactWriteItems", "TransactWriteItems"]
