"""End to end through the local stack with the real SDKs (issue 12, "cost tests with the right values"):
what is billed outside plain token prices is metered at the catalogue's price from what the provider
reports — a web search call (per call), a priority-tier call (the tier's rates), a reasoning model's
reasoning tokens (billed as output). The fake reports each as the provider does (local/fake_extras.py)."""
from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest

from tollgate.pricing import Catalogue
from tollgate.providers.base import Usage
from tests.e2e.cli import tollgate

SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}


def _key(local_stack, user):
    return tollgate(local_stack, "keys", "create", "--user", user, "--scopes", "ai:complete")["key"]


def _only_record(local_stack, user):
    [record] = tollgate(local_stack, "usage", "--user", user)["records"]
    assert record["status"] == "ok"
    return record


def _usage(record, **extra) -> Usage:
    return Usage(input_tokens=record["prompt_tokens"], output_tokens=record["completion_tokens"],
                 cached_input_tokens=record["cached_tokens"], cache_write_tokens=record["cache_write_tokens"],
                 **extra)


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.load()


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_web_search_call_is_metered_at_its_per_call_price(local_stack, catalogue, stream):
    user = f"e2e-extras-search-{'stream' if stream else 'plain'}"
    client = anthropic.Anthropic(base_url=local_stack.url, api_key=_key(local_stack, user), max_retries=0)
    request = {"model": "claude-haiku-4-5", "max_tokens": 50, "tools": [SEARCH],
               "messages": [{"role": "user", "content": "what is new today?"}]}
    if stream:
        with client.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**request)
    assert message.usage.server_tool_use.web_search_requests == 1

    record = _only_record(local_stack, user)
    assert record["server_tool_calls"] == {"web_search": 1}
    price = catalogue.price("claude-haiku-4-5")
    tokens_only = catalogue.cost(price, _usage(record))
    assert Decimal(record["cost_usd"]) == catalogue.cost(price, _usage(record, server_tool_calls={"web_search": 1}))
    assert Decimal(record["cost_usd"]) - tokens_only == price.tool_price("web_search") == Decimal("0.01")


def test_a_responses_web_search_call_is_metered_at_its_per_call_price(local_stack, catalogue):
    user = "e2e-extras-search-responses"
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=_key(local_stack, user), max_retries=0)
    response = client.responses.create(model="gpt-4o-mini", input="what is new today? [[fake:server_tool_calls=2]]",
                                       tools=[{"type": "web_search"}], max_tool_calls=2)
    assert [i.type for i in response.output] == ["web_search_call", "web_search_call", "message"]

    record = _only_record(local_stack, user)
    assert record["server_tool_calls"] == {"web_search": 2}
    price = catalogue.price("gpt-4o-mini")
    expected = catalogue.cost(price, _usage(record, server_tool_calls={"web_search": 2}))
    assert Decimal(record["cost_usd"]) == expected
    assert expected - catalogue.cost(price, _usage(record)) == 2 * price.tool_price("web_search") == Decimal("0.02")


def test_a_priority_tier_call_is_metered_at_the_priority_rates(local_stack, catalogue):
    user = "e2e-extras-priority"
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=_key(local_stack, user), max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", service_tier="priority", max_tokens=20,
                                                messages=[{"role": "user", "content": "fast please"}])
    assert completion.service_tier == "priority"

    record = _only_record(local_stack, user)
    assert record["service_tier"] == "priority"
    price = catalogue.price("gpt-4o-mini")
    priority = price.service_tiers["priority"]
    expected = (Decimal(record["prompt_tokens"]) * priority.input + Decimal(record["completion_tokens"]) *
                priority.output) / 1_000_000  # no cached input in this call
    assert record["cached_tokens"] == 0
    assert Decimal(record["cost_usd"]) == expected == catalogue.cost(price, _usage(record, service_tier="priority"))
    assert expected > catalogue.cost(price, _usage(record))  # dearer than the standard tier


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_reasoning_models_reasoning_tokens_are_billed_as_output(local_stack, catalogue, api):
    user = f"e2e-extras-reasoning-{api}"
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=_key(local_stack, user), max_retries=0)
    prompt = "think [[fake:reasoning_tokens=40]]"
    if api == "chat":
        answer = client.chat.completions.create(model="o4-mini", reasoning_effort="low", max_completion_tokens=100,
                                                messages=[{"role": "user", "content": prompt}])
        reported = (answer.usage.completion_tokens, answer.usage.completion_tokens_details.reasoning_tokens)
    else:
        answer = client.responses.create(model="o4-mini", reasoning={"effort": "low"}, max_output_tokens=100,
                                         input=prompt)
        reported = (answer.usage.output_tokens, answer.usage.output_tokens_details.reasoning_tokens)
    assert reported == (16 + 40, 40)  # 16 visible tokens, 40 reasoning tokens: all output

    record = _only_record(local_stack, user)
    assert (record["completion_tokens"], record["reasoning_tokens"]) == reported
    price = catalogue.price("o4-mini")
    expected = (Decimal(record["prompt_tokens"]) * price.input + Decimal(56) * price.output) / 1_000_000
    assert Decimal(record["cost_usd"]) == expected == catalogue.cost(price, _usage(record, reasoning_tokens=40))


def test_one_hour_cache_writes_are_billed_at_twice_the_input_price(local_stack, catalogue):
    """Issue 12's example: claude-haiku-4-5, 265 input + 1,000 one-hour cache writes + 16 output = $0.002345."""
    from local.fake_provider import prompt_tokens

    user = "e2e-extras-cache-1h"
    client = anthropic.Anthropic(base_url=local_stack.url, api_key=_key(local_stack, user), max_retries=0)
    request = {"model": "claude-haiku-4-5", "max_tokens": 100,
               "system": [{"type": "text", "text": "r" * 5012, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
               "messages": [{"role": "user", "content": "hi [[fake:cache_write_tokens=1000]]"}]}
    assert prompt_tokens(request) == 1265  # what the fake counts: 1,000 of them written to the cache
    message = client.messages.create(**request)
    assert (message.usage.input_tokens, message.usage.cache_creation.ephemeral_1h_input_tokens,
            message.usage.output_tokens) == (265, 1000, 16)

    record = _only_record(local_stack, user)
    assert (record["cache_write_tokens"], record["cache_write_1h_tokens"]) == (1000, 1000)
    assert Decimal(record["cost_usd"]) == Decimal("0.002345") == catalogue.cost(
        catalogue.price("claude-haiku-4-5"), _usage(record, cache_write_1h_tokens=1000))
