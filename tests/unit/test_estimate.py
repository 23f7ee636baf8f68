"""The worst case of a request: an upper bound on input tokens, the output cap, and what is refused."""
from __future__ import annotations

import json

import pytest

from local.fake_provider import prompt_tokens
from tollgate import estimate
from tollgate.errors import InvalidRequest
from tollgate.pricing import STANDARD, Catalogue
from tollgate.settings import DEFAULT_TPM

CAT = Catalogue.load()


def _chat(content, **extra):
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


@pytest.mark.parametrize("text", ["hello", "é" * 500, "日本語のテキスト" * 100, "x " * 2000, ""])
def test_the_byte_bound_is_never_below_a_token_count(text):
    body = _chat(text)
    assert estimate.input_bound(body) >= prompt_tokens(body)
    assert estimate.input_bound(body) >= len(text.encode())  # one token is at least one byte


def test_each_image_adds_a_fixed_bound():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    one = estimate.input_bound(_chat([image]))
    two = estimate.input_bound(_chat([image, image]))
    assert two - one >= estimate.IMAGE_TOKEN_BOUND


def test_a_document_by_reference_is_bounded_by_the_context_window():
    doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/big.pdf"}}
    assert estimate.input_bound(_chat([doc]), context_window=200_000) == 200_000
    with pytest.raises(InvalidRequest):
        estimate.input_bound(_chat([doc]), context_window=None)


def test_no_input_bound_exceeds_the_context_window():
    assert estimate.input_bound(_chat("x" * 50_000), context_window=8_192) == 8_192


@pytest.mark.parametrize("tools,tier", [
    ([{"type": "web_search_20250305", "name": "web_search"}], None),
    ([{"type": "code_interpreter"}], None),
    (None, "priority"),
])
def test_without_a_price_entry_what_is_billed_outside_token_prices_is_refused(tools, tier):
    body = _chat("hi", **({"tools": tools} if tools else {}), **({"service_tier": tier} if tier else {}))
    with pytest.raises(InvalidRequest):
        estimate.chat_bound(body, "m", 4096, 1024, anthropic=False)


def test_client_side_tools_and_n_choices():
    body = _chat("hi", tools=[{"type": "function", "function": {"name": "f"}}], n=3, max_tokens=100)
    bound = estimate.chat_bound(body, "gpt-4o", 16_384, 1024, anthropic=False)
    assert (bound.output_tokens, bound.max_tokens, bound.defaulted) == (300, 100, False)


def test_a_missing_cap_is_set_by_the_gateway_in_the_field_the_model_takes():
    reasoning = estimate.chat_bound(_chat("hi"), "o3", 100_000, 4096, anthropic=False)
    assert (reasoning.max_tokens_field, reasoning.max_tokens, reasoning.defaulted) == ("max_completion_tokens", 4096, True)
    older = estimate.chat_bound(_chat("hi"), "gpt-4o", 16_384, 4096, anthropic=False)
    assert older.max_tokens_field == "max_tokens"


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True])
def test_a_bad_cap_is_a_400(value):
    with pytest.raises(InvalidRequest):
        estimate.chat_bound(_chat("hi", max_tokens=value), "gpt-4o", 16_384, 4096, anthropic=False)


def test_the_bound_remembers_how_many_choices_share_the_cap():
    bound = estimate.chat_bound(_chat("hi", n=4, max_tokens=50), "gpt-4o", 16_384, 1024, anthropic=False)
    assert (bound.choices, bound.output_tokens) == (4, 200)


# -- service tiers and server-side tools, priced --------------------------------------------------------


def _bound(body, model, *, anthropic=False, **kw):
    price = CAT.price(model)
    return estimate.chat_bound(body, price.id, price.max_output_tokens, 4096, anthropic=anthropic,
                               context_window=price.context_window, price=price, **kw)


@pytest.mark.parametrize("model,tier,expected", [
    ("gpt-5", None, (STANDARD,)), ("gpt-5", "auto", (STANDARD,)), ("gpt-5", "default", (STANDARD,)),
    ("gpt-5", "priority", ("priority",)), ("gpt-5", "flex", ("flex",)), ("o3", "flex", ("flex",)),
    ("gpt-4o-mini", "priority", ("priority",)),
])
def test_a_priced_service_tier_is_reserved_at_its_rates(model, tier, expected):
    body = _chat("hi", **({"service_tier": tier} if tier else {}))
    assert _bound(body, model).service_tiers == expected


@pytest.mark.parametrize("model,tier,anthropic", [
    ("gpt-5-nano", "priority", False),  # OpenAI publishes no priority price for it
    ("gpt-4o", "flex", False), ("gpt-5", "scale", False), ("gpt-5", ["priority"], False),
    ("claude-opus-4-8", "priority", True),
])
def test_an_unpriced_service_tier_is_a_400(model, tier, anthropic):
    with pytest.raises(InvalidRequest) as exc:
        _bound({**_chat("hi"), "service_tier": tier, "max_tokens": 10}, model, anthropic=anthropic)
    assert exc.value.param == "service_tier" and "price" in exc.value.message


def test_anthropic_tiers_are_the_standard_rates():
    for tier in (None, "auto", "standard_only"):
        body = {**_chat("hi"), "max_tokens": 10, **({"service_tier": tier} if tier else {})}
        assert _bound(body, "claude-sonnet-4-5", anthropic=True).service_tiers == (STANDARD,)


def test_server_tools_are_reserved_from_max_uses_or_the_operator_bound():
    web = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    fetch = {"type": "web_fetch_20250910", "name": "web_fetch"}
    client = {"name": "get_weather", "input_schema": {"type": "object"}}
    bash = {"type": "bash_20250124", "name": "bash"}  # Anthropic-defined, but run by the client
    body = {**_chat("hi"), "max_tokens": 100, "tools": [web, fetch, client, bash]}
    bound = _bound(body, "claude-sonnet-4-5", anthropic=True, tool_call_bound=7, tool_input_tokens=1000)
    assert dict(bound.tool_calls) == {"web_search": 3, "web_fetch": 7}
    # each allowed call may read results as input: 10 calls x 1,000 tokens on top of the byte bound
    no_results = _bound(body, "claude-sonnet-4-5", anthropic=True, tool_call_bound=7, tool_input_tokens=0)
    assert bound.input_tokens == no_results.input_tokens + 10 * 1000
    assert bound.input_estimate == no_results.input_estimate  # the rate estimate is settled to actual instead
    # OpenAI Responses: max_tool_calls bounds the calls
    resp = {"model": "gpt-5", "input": "news?", "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}],
            "max_tool_calls": 4}
    assert dict(_bound(resp, "gpt-5").tool_calls) == {"web_search": 4}


@pytest.mark.parametrize("tool", [
    {"type": "code_execution_20250825", "name": "code_execution"},  # billed per container hour: not priced
    {"type": "web_search_preview"},  # priced differently from web_search for non-reasoning models
    {"type": "mcp", "server_label": "x", "server_url": "https://example.com"},
    {"type": "image_generation"},
])
def test_an_unpriced_server_tool_is_a_400(tool):
    with pytest.raises(InvalidRequest) as exc:
        _bound({**_chat("hi"), "max_tokens": 10, "tools": [tool]}, "gpt-5")
    assert exc.value.param == "tools"


@pytest.mark.parametrize("max_uses", [0, -1, "3", 1.5, True])
def test_a_bad_max_uses_is_a_400(max_uses):
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": max_uses}
    with pytest.raises(InvalidRequest):
        _bound({**_chat("hi"), "max_tokens": 10, "tools": [tool]}, "claude-sonnet-4-5", anthropic=True)


# -- tokens per minute: an estimate, not the bound -----------------------------------------------------


def _claude_code_turn(size=118_000):
    """A Claude Code-shaped request: a long system prompt and tool list, max_tokens 32,000."""
    tools = [{"name": f"tool_{i}", "description": "d" * 2000, "input_schema": {"type": "object"}} for i in range(20)]
    body = {"model": "claude-opus-4-8", "max_tokens": 32_000, "stream": True, "tools": tools,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "x"}]}
    filler = size - len(str(body).encode())
    body["messages"][0]["content"] = "please fix the failing test. " * (filler // 29)
    return body


def test_rate_tokens_estimate_input_at_four_bytes_a_token_plus_the_output_cap():
    body = _chat("x" * 4000, max_tokens=100)
    bound = estimate.chat_bound(body, "gpt-4o", 16_384, 4096, anthropic=False)
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    assert bound.input_estimate == -(-size // 4) and bound.rate_tokens == bound.input_estimate + 100
    assert bound.input_tokens >= size  # budgets keep the byte bound


def test_a_claude_code_turn_fits_the_default_tokens_per_minute_several_times():
    body = _claude_code_turn()
    bound = _bound(body, "claude-opus-4-8", anthropic=True)
    assert 110_000 <= bound.input_tokens  # the strict bound: one token per byte
    assert bound.rate_tokens <= 32_000 + 31_000  # the estimate: ~29,500 + max_tokens
    assert DEFAULT_TPM // bound.rate_tokens >= 10  # ten such turns admitted in one minute, before settling


def test_an_image_adds_its_estimate_not_its_bound_to_rate_tokens():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    one = estimate.chat_bound(_chat([image]), "gpt-4o", 16_384, 10, anthropic=False)
    two = estimate.chat_bound(_chat([image, image]), "gpt-4o", 16_384, 10, anthropic=False)
    assert two.input_estimate - one.input_estimate < estimate.IMAGE_TOKEN_ESTIMATE + 100
    assert two.input_tokens - one.input_tokens >= estimate.IMAGE_TOKEN_BOUND


@pytest.mark.parametrize("option", [{"speed": "fast"}, {"inference_geo": "us"}, {"inference_geo": ["us"]}])
def test_anthropic_premium_options_are_refused(option):
    body = {**_chat("hi"), "max_tokens": 10, **option}
    with pytest.raises(InvalidRequest) as exc:
        _bound(body, "claude-opus-4-8", anthropic=True)
    assert exc.value.param == next(iter(option))
    standard = {**body, **{k: {"speed": "standard", "inference_geo": "global"}[k] for k in option}}
    assert _bound(standard, "claude-opus-4-8", anthropic=True).service_tiers == (STANDARD,)


def test_a_longer_cache_retention_is_refused_where_cache_writes_are_priced():
    body = {"model": "gpt-6.2-sol", "input": "hi", "prompt_cache_retention": "12h"}
    with pytest.raises(InvalidRequest) as exc:
        _bound(body, "gpt-6.2-sol")
    assert exc.value.param == "prompt_cache_retention"
    assert _bound({**body, "prompt_cache_retention": "in_memory"}, "gpt-6.2-sol").service_tiers == (STANDARD,)
    assert _bound({**body, "model": "gpt-5"}, "gpt-5").service_tiers == (STANDARD,)  # retention is free there
