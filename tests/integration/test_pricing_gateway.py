"""Pricing through the gateway: an agent's turn on a key with default limits, and calls billed outside
plain token prices (a service tier, server-side tools, 1-hour cache writes) metered at what the provider
reports, never above what was reserved for a call within its bound."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import boto3
import pytest

from tests.integration.concurrency import principal
from tests.integration.world import headers_of
from tollgate.errors import InvalidRequest
from tollgate.pricing import Catalogue
from tollgate.providers.base import CHAT, MESSAGES, ProviderResult, Usage
from tollgate.service import MeteredGateway, MeteredRequest
from tollgate.settings import DEFAULT_TPM, Settings
from tollgate.store.counters import principal_pk
from tollgate.store.dynamo import from_item
from tollgate.store.ledger import Ledger


def _claude_code_turn(size: int = 118_000) -> dict:
    """The shape of a Claude Code turn: a big system prompt and tool list, max_tokens 32,000."""
    tools = [{"name": f"tool_{i}", "description": "d" * 2000, "input_schema": {"type": "object"}} for i in range(20)]
    body = {"model": "claude-opus-4-8", "max_tokens": 32_000, "tools": tools,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": ""}]}
    body["messages"][0]["content"] = "please fix the failing test. " * ((size - len(str(body))) // 29)
    return body


def test_claude_code_turns_run_on_a_key_with_default_limits(world):
    """Several ~118 KB turns with max_tokens 32,000 in one minute: admitted (the TPM estimate is ~62,000,
    not the 148,000-token byte bound), each metered with a cost, the window settled to actual counts."""
    from datetime import datetime, timezone

    def minute() -> datetime:
        return datetime.now(timezone.utc).replace(second=0, microsecond=0)

    raw, _ = world.create_key()
    who = world.principal(raw)
    remaining = []  # (the minute the call ran in, or None if it straddled two; remaining tokens)
    for _ in range(5):
        before = minute()
        resp = world.call("POST", "/v1/messages", _claude_code_turn(), principal=who)
        assert resp["statusCode"] == 200, resp["body"]
        headers = headers_of(resp)
        assert Decimal(headers["x-tollgate-cost-usd"]) > 0
        assert headers["x-ratelimit-limit-tokens"] == str(DEFAULT_TPM)
        remaining.append((before if minute() == before else None, int(headers["x-ratelimit-remaining-tokens"])))
        assert remaining[-1][1] > 0
    # within one minute's window each turn leaves less (a new minute starts a new window)
    pairs = [(a, b) for (m, a), (n, b) in zip(remaining, remaining[1:]) if m is not None and m == n]
    assert pairs and all(b < a for a, b in pairs)


def test_the_token_window_settles_to_what_the_provider_counts(world):
    """Anthropic leaves cache reads out of its input-tokens-per-minute: so does the settled window."""
    raw, _ = world.create_key()
    body = {"model": "claude-haiku-4-5", "max_tokens": 200,
            "messages": [{"role": "user", "content": "x" * 40_000 + "[[fake:cached_tokens=5000]]"}]}
    resp = world.call("POST", "/v1/messages", body, principal=world.principal(raw))
    assert resp["statusCode"] == 200, resp["body"]
    usage = json.loads(resp["body"])["usage"]
    assert usage["cache_read_input_tokens"] == 5000
    hours = boto3.client("dynamodb").query(  # the window: attributes of its minute on the key's hour item
        TableName=world.env["TOLLGATE_BUDGETS_TABLE"], KeyConditionExpression="pk = :p AND begins_with(sk, :h)",
        ExpressionAttributeValues={":p": {"S": principal_pk(world.principal(raw).account)}, ":h": {"S": "HOUR#"}})["Items"]
    assert len(hours) == 1
    [tokens_left] = [a for a in from_item(hours[0]) if a.startswith("tokensLeftAtMinute")]
    counted = usage["input_tokens"] + usage.get("cache_creation_input_tokens", 0) + usage["output_tokens"]
    assert int(from_item(hours[0])[tokens_left]) == DEFAULT_TPM - counted


class _Scripted:
    """A provider that answers with the usage a test gives it, and remembers what it was sent."""

    def __init__(self, name: str, usage: Usage):
        self.name, self.usage, self.sent = name, usage, []

    def call(self, operation, body, *, api_key):
        self.sent.append(body)
        return ProviderResult(200, b'{"ok": true}', "application/json", self.usage, body["model"])


def _gateway(provider: _Scripted) -> MeteredGateway:
    settings = Settings.from_env()
    ledger = Ledger(settings.budgets_table, settings.usage_table, boto3.client("dynamodb"))
    return MeteredGateway(settings, Catalogue.load(), ledger, {provider.name: provider},
                          lambda principal, name: ("sk-platform", False))


def _record(world, user: str) -> dict:
    items = boto3.client("dynamodb").query(
        TableName=world.env["TOLLGATE_USAGE_TABLE"], KeyConditionExpression="pk = :u",
        ExpressionAttributeValues={":u": {"S": user}})["Items"]
    assert len(items) == 1
    return from_item(items[0])


def _reserved(gateway: MeteredGateway, body: dict, operation: str) -> Decimal:
    price = gateway.catalogue.price(body["model"])
    bound = gateway._bound(operation, price, body)
    return gateway.catalogue.worst_case_cost(price, bound.input_tokens, bound.output_tokens,
                                             tiers=bound.service_tiers, tool_calls=bound.tool_calls)


_TEXT = "a question of about two thousand tokens " * 80  # 3,200 bytes: the usage below is within its bound


@pytest.mark.parametrize("case", ["priority", "web_search", "one_hour_cache"])
def test_billed_extras_are_metered_at_what_the_provider_reports(world, case):
    user = f"u-{case}"
    if case == "priority":
        # gpt-5 on priority: 2,000 x 2.50 + 300 x 20 per million = $0.011
        body = {"model": "gpt-5", "messages": [{"role": "user", "content": _TEXT}], "max_completion_tokens": 500,
                "service_tier": "priority"}
        provider, operation, expected = _Scripted("openai", Usage(2000, 300, service_tier="priority")), CHAT, "0.011"
    elif case == "web_search":
        # claude-sonnet-4-5: 5,000 x 3 + 200 x 15 per million + 2 searches x $0.01 = $0.038
        body = {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "news?"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]}
        provider = _Scripted("anthropic", Usage(5000, 200, server_tool_calls={"web_search": 2}))
        operation, expected = MESSAGES, "0.038"
    else:
        # claude-haiku-4-5: 265 input + 1,000 one-hour cache writes + 16 output = $0.002345
        body = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": _TEXT}],
                "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
        provider = _Scripted("anthropic", Usage(1265, 16, cache_write_tokens=1000, cache_write_1h_tokens=1000))
        operation, expected = MESSAGES, "0.002345"
    gateway = _gateway(provider)
    path = "/v1/messages" if operation == MESSAGES else "/v1/chat/completions"
    reply = gateway.handle(MeteredRequest(str(uuid.uuid4()), path, principal(user, f"sk-{user}"), body))
    assert reply.status == 200 and reply.cost == Decimal(expected)
    assert Decimal(reply.headers["x-tollgate-cost-usd"]) == Decimal(expected)
    record = _record(world, user)
    assert record["costUsd"] == Decimal(expected)
    assert {"priority": record.get("serviceTier") == "priority",
            "web_search": record.get("serverToolCalls") == {"web_search": 2},
            "one_hour_cache": record.get("cacheWrite1hTokens") == 1000}[case]
    assert _reserved(gateway, body, operation) >= reply.cost


def test_an_unpriced_tier_or_tool_is_refused_before_any_provider_call(world):
    provider = _Scripted("openai", Usage(1, 1))
    gateway = _gateway(provider)
    for extra in ({"service_tier": "priority"}, {"tools": [{"type": "image_generation"}]}):
        body = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "hi"}], **extra}
        with pytest.raises(InvalidRequest):
            gateway.handle(MeteredRequest(str(uuid.uuid4()), "/v1/chat/completions", principal("v", "sk-v"), body))
    assert provider.sent == []
