"""The worst case of a request: an upper bound on input tokens, the output cap, and what is refused."""
from __future__ import annotations

import pytest

from local.fake_provider import prompt_tokens
from tollgate import estimate
from tollgate.errors import InvalidRequest


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
def test_what_is_billed_outside_token_prices_is_refused(tools, tier):
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
