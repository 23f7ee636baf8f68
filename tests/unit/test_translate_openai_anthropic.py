"""OpenAI chat <-> Anthropic Messages, against wire examples of each side (OpenAI's chat completions
reference; Anthropic's Messages reference and streaming guide)."""
from __future__ import annotations

import json

import pytest

from tollgate.errors import InvalidRequest
from tollgate.providers.anthropic_provider import MessagesStreamMeter, usage_from
from tollgate.providers.base import ProviderResult, Usage
from tollgate.translate.openai_anthropic import ChatOverMessages, from_messages, to_messages

OPENAI_REQUEST = {
    "model": "claude-sonnet-4-5", "max_tokens": 200, "temperature": 0.5, "stop": ["###"], "user": "u-1",
    "parallel_tool_calls": False,
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather where this photo was taken?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "tool_choice": "required",
}

MESSAGES_REQUEST = {
    "model": "claude-sonnet-4-5", "max_tokens": 200, "temperature": 0.5, "stop_sequences": ["###"],
    "metadata": {"user_id": "u-1"}, "system": "You are terse.",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather where this photo was taken?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                                  "data": "/9j/4AAQ"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]},
    ],
    "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
               "description": "Weather in a city"}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
}

MESSAGES_RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 50, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 300,
              "output_tokens": 25, "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60}},
}

STREAM = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 50, "cache_read_input_tokens": 300, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": '{"city": "Ro'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": 'me"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
    ("message_stop", {"type": "message_stop"}),
]


def test_an_openai_request_becomes_the_messages_request():
    assert to_messages(OPENAI_REQUEST) == MESSAGES_REQUEST


def test_an_image_by_https_url_is_passed_as_a_url_source():
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}
    assert to_messages(body)["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]


@pytest.mark.parametrize("extra", [{"n": 2}, {"response_format": {"type": "json_object"}}])
def test_what_messages_cannot_do_is_a_400(extra):
    with pytest.raises(InvalidRequest):
        to_messages({**OPENAI_REQUEST, **extra})


def test_a_messages_answer_becomes_a_chat_completion_with_the_same_usage():
    usage = usage_from(MESSAGES_RESPONSE["usage"])
    doc = from_messages(MESSAGES_RESPONSE, usage)
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me look."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                              "arguments": json.dumps({"city": "Rome"})}
    assert doc["usage"] == {"prompt_tokens": 450, "completion_tokens": 25, "total_tokens": 475,
                            "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 100}}


class _FakeStream:
    """A ProviderStream stand-in: yields SSE blocks of STREAM and meters them like the real one."""

    def __init__(self):
        self.status, self.content_type, self.dropped, self.aborted = 200, "text/event-stream", False, False
        self.meter = MessagesStreamMeter("")

    def __iter__(self):
        for name, data in STREAM:
            self.meter.feed(name, json.dumps(data))
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    def close(self):
        pass


class _Messages:
    name = "anthropic"

    def __init__(self):
        self.seen = []

    def call(self, operation, body, *, api_key):
        self.seen.append((operation, body))
        return ProviderResult(200, json.dumps(MESSAGES_RESPONSE).encode(), "application/json",
                              usage_from(MESSAGES_RESPONSE["usage"], body), MESSAGES_RESPONSE["model"])

    def open_stream(self, operation, body, *, api_key):
        self.seen.append((operation, body))
        return _FakeStream()


def test_chat_over_messages_keeps_the_messages_usage_exactly():
    inner = _Messages()
    result = ChatOverMessages(inner).call("chat.completions", OPENAI_REQUEST, api_key="k")
    assert inner.seen == [("messages", MESSAGES_REQUEST)]
    assert result.usage == usage_from(MESSAGES_RESPONSE["usage"])  # the 1-hour cache writes included
    assert result.usage.cache_write_1h_tokens == 60
    assert json.loads(result.body)["object"] == "chat.completion"


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_messages_stream_becomes_chat_chunks_metered_by_the_messages_meter(include_usage):
    body = {**OPENAI_REQUEST, "stream": True, "stream_options": {"include_usage": include_usage}}
    stream = ChatOverMessages(_Messages()).open_stream("chat.completions", body, api_key="k")
    blocks = list(stream)
    assert blocks[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(b[6:]) for b in blocks[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""} and "".join(d.get("content", "") for d in deltas) == "Hi"
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["id"] == "toolu_2" and {tc["index"] for tc in calls} == {0}
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Rome"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert stream.meter.final == Usage(input_tokens=350, output_tokens=30, cached_input_tokens=300)
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 350
    else:
        assert all("usage" not in c for c in chunks)
