"""Usage parsing: what each provider reports becomes the normalised Usage the price list charges for."""
from __future__ import annotations

import json

from tollgate.providers import anthropic_provider, openai_provider
from tollgate.providers.base import Usage


def _sse(*events: tuple[str | None, dict]) -> bytes:
    out = b""
    for name, data in events:
        out += (f"event: {name}\n" if name else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"
    return out


def test_a_plain_usage_object_keeps_its_meaning():
    assert openai_provider.usage_from({"prompt_tokens": 10, "completion_tokens": 5}) == Usage(10, 5)
    assert anthropic_provider.usage_from({"input_tokens": 10, "output_tokens": 5}) == Usage(10, 5)
    # Anthropic's "standard" and OpenAI's "default" are the standard tier: no tier recorded
    assert anthropic_provider.usage_from({"input_tokens": 1, "service_tier": "standard"}).service_tier is None
    assert openai_provider.usage_from({"prompt_tokens": 1}, {"service_tier": "default"}).service_tier is None


def test_an_anthropic_stream_carries_the_cache_split_and_server_tool_calls():
    raw = _sse(
        ("message_start", {"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage": {
            "input_tokens": 50, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 1, "service_tier": "standard"}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "hi"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {
            "output_tokens": 42, "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0}}}),
        ("message_stop", {"type": "message_stop"}),
    )
    _, usage, model = anthropic_provider.meter_stream(raw, {"model": "claude-sonnet-4-5"}, api_key="sk-x")
    assert model == "claude-sonnet-4-5"
    assert usage == Usage(input_tokens=1350, output_tokens=42, cached_input_tokens=1000, cache_write_tokens=300,
                          cache_write_1h_tokens=200, server_tool_calls={"web_search": 2})


def test_an_openai_stream_reports_the_tier_it_ran_on():
    raw = _sse(
        (None, {"id": "c1", "model": "gpt-5", "service_tier": "priority",
                "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
        (None, {"id": "c1", "model": "gpt-5", "service_tier": "priority", "choices": [], "usage": {
            "prompt_tokens": 20, "completion_tokens": 30, "completion_tokens_details": {"reasoning_tokens": 25}}}),
    ) + b"data: [DONE]\n\n"
    _, usage, _ = openai_provider.meter_stream(raw, {"model": "gpt-5"}, keep_usage_chunk=False, api_key="sk-x")
    assert usage == Usage(input_tokens=20, output_tokens=30, reasoning_tokens=25, service_tier="priority")
