"""The gateway handler end to end over emulated AWS and the fake provider: metered exactly once."""
from __future__ import annotations

import json
from decimal import Decimal

from tests.integration.world import body_of, headers_of
from tollgate.pricing import Catalogue
from tollgate.providers.base import Usage


def _usage_items(world, user="alice"):
    return world.dynamodb.query(
        TableName=world.env["TOLLGATE_USAGE_TABLE"], KeyConditionExpression="pk = :u",
        ExpressionAttributeValues={":u": {"S": user}})["Items"]


def test_chat_completion_is_metered_once_with_the_catalogue_price(world):
    raw, _ = world.create_key()
    principal = world.principal(raw)
    resp = world.call("POST", "/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 50,
    }, principal=principal)
    assert resp["statusCode"] == 200, resp["body"]
    body = body_of(resp)
    usage = body["usage"]
    items = _usage_items(world)
    assert len(items) == 1
    item = items[0]
    price = Catalogue.load().price("gpt-4o-mini")
    expected = Catalogue.cost(price, Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]))
    assert Decimal(item["costUsd"]["N"]) == expected > 0
    assert Decimal(headers_of(resp)["x-tollgate-cost-usd"]) == expected
    assert int(item["promptTokens"]["N"]) == usage["prompt_tokens"]
    assert item["status"]["S"] == "ok"
    assert headers_of(resp)["x-ratelimit-limit-requests"] == "60"


def test_unknown_model_is_refused_in_openai_shape_without_a_provider_call(world):
    raw, _ = world.create_key()
    resp = world.call("POST", "/v1/chat/completions", {"model": "gpt-unknown-9", "messages": []},
                      principal=world.principal(raw))
    assert resp["statusCode"] == 400
    assert body_of(resp)["error"]["code"] == "model_not_priced"
    assert world.fake.calls == []
    assert _usage_items(world) == []


def test_missing_scope_is_403_in_anthropic_shape(world):
    raw, _ = world.create_key(scopes=("ai:embed",))
    resp = world.call("POST", "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 10,
                                              "messages": [{"role": "user", "content": "hi"}]},
                      principal=world.principal(raw))
    assert resp["statusCode"] == 403
    assert body_of(resp) == {"type": "error", "error": {"type": "permission_error",
                                                        "message": "This credential lacks the 'ai:complete' scope.",
                                                        "code": "insufficient_scope"}}


def test_provider_500_releases_the_reservation_and_records_a_zero_cost_attempt(world):
    raw, _ = world.create_key()
    resp = world.call("POST", "/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "[[fake:status=500]] hi"}]},
        principal=world.principal(raw))
    assert resp["statusCode"] == 502
    items = _usage_items(world)
    assert [(i["status"]["S"], Decimal(i["costUsd"]["N"])) for i in items] == [("error", Decimal(0))]
    budget = world.call("GET", "/admin/budgets", principal=_admin(world), query={"user": "alice"})
    shown = body_of(budget)
    assert Decimal(shown["reserved_usd"]) == 0 and Decimal(shown["spent_usd"]) == 0


def _admin(world):
    raw, _ = world.create_key(user="root", scopes=("admin",))
    return world.principal(raw)


def test_the_provider_refusing_the_platform_key_is_a_502_not_the_clients_auth_error(world, monkeypatch):
    from tollgate import wiring

    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-invalid")
    wiring.reset()
    raw, _ = world.create_key()
    resp = world.call("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "hi"}]}, principal=world.principal(raw))
    assert resp["statusCode"] == 502
    assert body_of(resp)["error"]["code"] == "provider_auth_failed"
    assert "sk-fake-invalid" not in resp["body"]


def test_an_unknown_url_carrying_a_whole_secret_key_is_a_404_that_does_not_echo_it(world):
    from handlers import gateway

    raw, _ = world.create_key()
    answer = gateway.answer(gateway.Request("GET", f"/v1/keys/{raw}/{'x' * 500}", {}, b"", {"requestId": "r"}))
    text = answer.body.decode()
    assert answer.status == 404 and "Unknown request URL" in text
    assert raw not in text and raw[:12] in text and "x" * 100 not in text


def test_a_whole_secret_key_given_as_a_model_id_is_refused_without_echoing_it(world):
    raw, _ = world.create_key()
    resp = world.call("GET", f"/v1/models/{raw}", principal=world.principal(raw))
    assert resp["statusCode"] == 400 and raw not in resp["body"]
    assert body_of(resp)["error"]["param"] == "model"
