"""OpenAI chat <-> Bedrock Converse, against wire examples of each side (OpenAI's chat completions
reference; Bedrock's Converse / ConverseStream API reference and what boto3 returns for them)."""
from __future__ import annotations

import base64
import json

import pytest

from tollgate.errors import InvalidRequest
from tollgate.providers.openai_provider import usage_from
from tollgate.translate.openai_converse import StreamTranslator, from_converse, to_converse

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()

# An OpenAI request with every part the translation carries: system, an image, a tool call and its result.
OPENAI_REQUEST = {
    "model": "us.amazon.nova-pro-v1:0", "max_completion_tokens": 300, "temperature": 0.2, "top_p": 0.9,
    "stop": "###",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "What is in this picture, and the weather?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Rain"}]},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
}

# What boto3's converse() takes for it (Converse API reference: Message, ContentBlock, ToolConfiguration).
CONVERSE_REQUEST = {
    "modelId": "us.amazon.nova-pro-v1:0",
    "system": [{"text": "You are terse."}],
    "messages": [
        {"role": "user", "content": [{"text": "What is in this picture, and the weather?"},
                                     {"image": {"format": "png", "source": {"bytes": base64.b64decode(PNG)}}}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Rome"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "Sunny"}]}},
                                     {"toolResult": {"toolUseId": "call_2", "content": [{"text": "Rain"}]}}]},
    ],
    "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["###"]},
    "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather in a city",
                                           "inputSchema": {"json": {"type": "object",
                                                                    "properties": {"city": {"type": "string"}}}}}}],
                   "toolChoice": {"tool": {"name": "get_weather"}}},
}

# A Converse response as boto3 returns it (ConverseResponse: output.message, stopReason, usage, metrics).
CONVERSE_RESPONSE = {
    "ResponseMetadata": {"HTTPStatusCode": 200},
    "output": {"message": {"role": "assistant", "content": [
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}}]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 100, "outputTokens": 20, "totalTokens": 420, "cacheReadInputTokens": 200,
              "cacheWriteInputTokens": 100},
    "metrics": {"latencyMs": 812},
}

# ConverseStream events as boto3 yields them (ConverseStreamOutput members).
CONVERSE_STREAM = [
    {"messageStart": {"role": "assistant"}},
    {"contentBlockDelta": {"delta": {"text": "Let me"}, "contentBlockIndex": 0}},
    {"contentBlockDelta": {"delta": {"text": " check."}, "contentBlockIndex": 0}},
    {"contentBlockStop": {"contentBlockIndex": 0}},
    {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather"}},
                           "contentBlockIndex": 1}},
    {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city": '}}, "contentBlockIndex": 1}},
    {"contentBlockDelta": {"delta": {"toolUse": {"input": '"Paris"}'}}, "contentBlockIndex": 1}},
    {"contentBlockStop": {"contentBlockIndex": 1}},
    {"messageStop": {"stopReason": "tool_use"}},
    {"metadata": {"usage": {"inputTokens": 100, "outputTokens": 20, "totalTokens": 120}, "metrics": {"latencyMs": 5}}},
]


def test_an_openai_request_becomes_the_converse_request():
    assert to_converse(OPENAI_REQUEST) == CONVERSE_REQUEST


@pytest.mark.parametrize("choice, expected", [("auto", {"auto": {}}), ("required", {"any": {}}), ("none", None)])
def test_tool_choice(choice, expected):
    config = to_converse({**OPENAI_REQUEST, "tool_choice": choice})["toolConfig"]
    assert config.get("toolChoice") == expected


def test_an_image_by_url_is_refused_with_a_4xx_since_bedrock_fetches_no_url():
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}
    with pytest.raises(InvalidRequest) as caught:
        to_converse(body)
    assert caught.value.status == 400 and "data:" in caught.value.message


def test_a_converse_response_becomes_an_openai_completion_with_usage_and_tool_calls():
    doc = from_converse(CONVERSE_RESPONSE, "us.amazon.nova-pro-v1:0")
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [{"id": "tooluse_abc", "type": "function", "function": {
        "name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]
    usage = usage_from(doc["usage"], doc)
    # inputTokens excludes cache reads and writes: all input = 100 + 200 + 100
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == \
        (400, 20, 200, 100)


def test_converse_stream_events_become_openai_chunks_with_tool_call_deltas_and_the_usage_chunk():
    translator = StreamTranslator("us.amazon.nova-pro-v1:0")
    chunks = [c for event in CONVERSE_STREAM for c in translator.feed(event)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "tooluse_abc", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert all(tc["index"] == 0 for tc in calls)
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 100
    assert len({c["id"] for c in chunks}) == 1
