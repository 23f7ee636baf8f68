"""A fake LLM provider on loopback that speaks the OpenAI and Anthropic wire formats (development only).

Point the OpenAI SDK at `{url}/v1` and the Anthropic SDK at `{url}` (it adds `/v1` itself).

Usage is deterministic and never exceeds what a gateway can bound from the request: prompt tokens are
ceil(utf-8 bytes / 4) of each text plus 3 per message, always <= the byte length of the JSON of the
prompt-bearing fields (`messages`, Anthropic's `system`, the embeddings `input`). Completion tokens
default to min(max_tokens, 16) and never exceed max_tokens / max_completion_tokens.

In-band controls, written anywhere in the prompt text:
  [[fake:status=500]]           answer that status with the provider's error JSON (404: its "model not found")
  [[fake:delay_ms=N]]           wait N ms before answering
  [[fake:completion_tokens=N]]  produce N completion tokens (still capped by max_tokens)
  [[fake:empty]]                empty content (0 completion tokens unless completion_tokens is given)
  [[fake:cached_tokens=N]]      report N cached prompt tokens (cache reads)
  [[fake:cache_write_tokens=N]] report N cache-write tokens (Anthropic)
  [[fake:retry_after_ms=N]]     add `retry-after-ms: N` to an error reply (keeps SDK retries fast in tests)
  [[fake:stream_interval_ms=N]] stream one event every N ms, each written and flushed as it is "generated"
  [[fake:drop_after=K]]         drop the connection after K streamed events (no final usage, no end)
  [[fake:hold_after=K]]         after K streamed events, wait until POST /_fake/release (at most 30 s) before
                                the rest: a test sees what reached its client while the provider was mid-answer
  [[fake:tool_call]]            when function tools are offered and no tool result is in the request yet,
                                call the first one (OpenAI chat tool_calls, Responses function_call,
                                Anthropic tool_use), with arguments valid for its JSON schema
  [[fake:server_tool_calls=N]]  call each offered server-side tool N times (default once; see local.fake_extras)
  [[fake:reasoning_tokens=N]]   report N reasoning tokens (OpenAI; default 8 when reasoning is asked for)

Billed extras are reported as the providers report them (local.fake_extras): server-side tool calls
(Anthropic usage.server_tool_use, Responses web_search_call / file_search_call / code_interpreter_call
items), the OpenAI service tier asked for ("priority", "flex"), reasoning tokens.

A client that hangs up mid-stream is noticed at once (the fake waits between events on its socket) and
recorded in `FakeProvider.disconnects` ({"path", "events_sent", "at": time.monotonic()}).

Keys: OpenAI `Authorization: Bearer`; Anthropic `x-api-key` or `Authorization: Bearer` (what anthropic 2.x
sends). A missing key gets 401; "sk-fake-invalid" or a key starting with "bad-" gets the provider's 401.
Every call is recorded in `FakeProvider.calls` (with its request headers, credentials left out) and served
at GET /_fake/calls; POST /_fake/reset clears.

Also served: the Responses API (POST /v1/responses, plain and streamed, stored responses with GET/DELETE
/v1/responses/{id}, POST .../cancel, GET .../input_items, previous_response_id chaining) and Anthropic's
POST /v1/messages/count_tokens. Chat `n` gives n choices; a `response_format` json_schema is answered with
JSON valid for the schema.

Billing (admin APIs, below "the providers' bills"): every successful call the fake serves is billed at the
gateway's price catalogue and reported by OpenAI's organization Costs/Usage API and Anthropic's Admin API
cost and usage reports, so the reconciliation job runs locally. POST /_fake/billing {"scale": "1.05",
"withhold_days": ["2026-11-30"], "org_keys": ["sk-..."]} bills 5% more, reports nothing for a day (late
data), or bills only the calls made with the platform's keys (not users' own keys).

Run: python -m local.fake_provider --port 8081
"""
from __future__ import annotations

import argparse
import base64
import calendar
import hashlib
import json
import math
import re
import select
import socket
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local import fake_extras
from local.serving import ServerThread

DEFAULT_COMPLETION_TOKENS = 16
_CONTROL = re.compile(r"\[\[fake:([a-z_]+)(?:=(\d+))?\]\]")
_WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                          529: "overloaded_error"}
_CREDENTIAL_HEADERS = ("authorization", "x-api-key")  # left out of the recorded request headers
_MODELS = {
    "openai": ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"],
    "anthropic": ["claude-sonnet-4-5", "claude-haiku-4-5"],
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --- reading the request ---------------------------------------------------------------------------

@dataclass
class Controls:
    status: int | None = None
    delay_ms: int = 0
    completion_tokens: int | None = None
    empty: bool = False
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    retry_after_ms: int | None = None
    stream_interval_ms: int = 0
    drop_after: int | None = None
    hold_after: int | None = None
    tool_call: bool = False
    server_tool_calls: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def parse(cls, texts: list[str]) -> "Controls":
        c = cls()
        for text in texts:
            for name, value in _CONTROL.findall(text):
                if name == "empty":
                    c.empty = True
                elif name == "tool_call":
                    c.tool_call = True
                elif hasattr(c, name) and value:
                    setattr(c, name, int(value))
        return c


def _texts(value: Any) -> list[str]:
    """The text in a message's content: a string, or a list of parts with `text` (images etc. count 0)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for part in value for t in _texts(part)]
    if isinstance(value, dict):
        return [t for key in ("text", "content") if key in value for t in _texts(value[key])]
    return []


def _tokens(text: str) -> int:
    return math.ceil(len(text.encode()) / 4)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def prompt_tokens(body: dict[str, Any]) -> int:
    count = sum(_tokens(t) for t in _texts(body.get("system")))
    for message in _messages(body):
        count += sum(_tokens(t) for t in _texts(message.get("content"))) + 3
    return count


def embedding_inputs(body: dict[str, Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
        return [value]
    return value if isinstance(value, list) else []


def _prompt_texts(body: dict[str, Any]) -> list[str]:
    texts = _texts(body.get("system"))
    for message in _messages(body):
        texts += _texts(message.get("content"))
    if isinstance(body.get("input"), list) and all(isinstance(i, dict) for i in body["input"]):
        texts += _texts(body["input"])  # Responses API input items
    return texts + _texts(body.get("instructions")) + [i for i in embedding_inputs(body) if isinstance(i, str)]


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        if isinstance(body.get(name), int):
            return body[name]
    return None


def _completion(body: dict[str, Any], controls: Controls) -> tuple[list[str], int, bool]:
    """(text pieces, one per token; completion tokens; whether max_tokens cut it short)."""
    wanted = controls.completion_tokens
    if wanted is None:
        wanted = 0 if controls.empty else DEFAULT_COMPLETION_TOKENS
    limit = _max_tokens(body)
    n = wanted if limit is None else min(wanted, limit)
    pieces = [] if controls.empty else [(" " if i else "") + _WORDS[i % len(_WORDS)] for i in range(n)]
    return pieces, n, n < wanted


# --- replies ---------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    body: bytes = b""
    events: list[bytes] | None = None  # SSE, sent chunked
    headers: dict[str, str] = field(default_factory=dict)
    interval_s: float = 0.0  # between streamed events
    drop_after: int | None = None  # streamed events sent before the connection is dropped
    hold_after: int | None = None  # streamed events sent before the stream waits for POST /_fake/release


def _json(status: int, obj: Any, **headers: str) -> Reply:
    return Reply(status, _dumps(obj), headers=headers)


def _sse(events: list[bytes]) -> Reply:
    return Reply(200, events=events)


def error_reply(wire: str, status: int, message: str, *, code: str | None = None, param: str | None = None,
                retry_after_ms: int | None = None) -> Reply:
    if wire == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        reply = _json(status, {"type": "error", "error": {"type": kind, "message": message},
                               "request_id": f"req_{uuid.uuid4().hex[:24]}"})
    else:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        reply = _json(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})
    if retry_after_ms is not None:
        reply.headers["retry-after-ms"] = str(retry_after_ms)
    return reply


def _openai_usage(prompt: int, completion: int, cached: int, reasoning: int = 0) -> dict[str, Any]:
    """Chat completions usage; `completion` counts the `reasoning` tokens too, as OpenAI's does."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def openai_chat(body: dict[str, Any], controls: Controls) -> Reply:
    model = body["model"]
    pieces, n, truncated = _completion(body, controls)
    pieces = _structured_text(body, pieces)
    call = tool_to_call(body, controls)
    choices = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 0 else 1
    if call:
        n, truncated = max(1, _tokens(call[1])), False
    prompt = prompt_tokens(body)
    reasoning = fake_extras.reasoning_tokens(body, controls.reasoning_tokens, n, _max_tokens(body))
    usage = _openai_usage(prompt, (n + reasoning) * choices, min(controls.cached_tokens, prompt), reasoning * choices)
    finish = "tool_calls" if call else ("length" if truncated else "stop")
    tool_calls = [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                   "function": {"name": call[0], "arguments": call[1]}}] if call else None
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model,
            "service_tier": fake_extras.openai_service_tier(body), "system_fingerprint": "fp_fake"}
    if not body.get("stream"):
        message = {"role": "assistant", "content": None if call else "".join(pieces), "refusal": None,
                   "annotations": [], **({"tool_calls": tool_calls} if call else {})}
        return _json(200, {**base, "object": "chat.completion", "usage": usage,
                           "choices": [{"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                                       for i in range(choices)]})

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + _dumps({**base, "object": "chat.completion.chunk", "choices": [choice], **extra}) + b"\n\n"

    events = []
    for i in range(choices):
        events.append(chunk({"role": "assistant", "content": "" if not call else None, "refusal": None}, index=i))
        if call:
            events.append(chunk({"tool_calls": [{"index": 0, **tool_calls[0]}]}, index=i))
        else:
            events += [chunk({"content": piece}, index=i) for piece in pieces]
        events.append(chunk({}, finish, index=i))
    if include_usage:
        events.append(b"data: " + _dumps({**base, "object": "chat.completion.chunk", "choices": [],
                                           "usage": usage}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return _sse(events)


def openai_embeddings(body: dict[str, Any]) -> Reply:
    inputs = embedding_inputs(body)
    dims = body.get("dimensions") or 8
    as_base64 = body.get("encoding_format") == "base64"
    data, tokens = [], 0
    for i, item in enumerate(inputs):
        tokens += max(1, _tokens(item)) if isinstance(item, str) else len(item)
        seed = hashlib.sha256(json.dumps(item).encode()).digest()
        vector = [(seed[k % len(seed)] - 127.5) / 127.5 for k in range(dims)]
        embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return _json(200, {"object": "list", "data": data, "model": body["model"],
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def anthropic_messages(body: dict[str, Any], controls: Controls) -> Reply:
    pieces, n, truncated = _completion(body, controls)
    call = tool_to_call(body, controls)
    if call:
        n, truncated = max(1, _tokens(call[1])), False
    total = prompt_tokens(body)
    cache_read = min(controls.cached_tokens, total)
    cache_write = min(controls.cache_write_tokens, total - cache_read)
    uses = fake_extras.server_tool_uses(body, fake_extras.ANTHROPIC_TOOLS, controls.server_tool_calls)
    server_blocks = [block for name in uses for block in fake_extras.anthropic_blocks(name)]
    usage = {"input_tokens": total - cache_read - cache_write, "cache_creation_input_tokens": cache_write,
             "cache_read_input_tokens": cache_read, "output_tokens": n, "service_tier": "standard",
             **fake_extras.anthropic_cache_creation(body, cache_write), **fake_extras.anthropic_usage(uses)}
    stop_reason = "tool_use" if call else ("max_tokens" if truncated else "end_turn")
    tool_use = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": call[0],
                "input": json.loads(call[1])} if call else None
    message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
               "model": body["model"], "content": [], "stop_reason": None, "stop_sequence": None}
    if not body.get("stream"):
        content = [tool_use] if call else ([{"type": "text", "text": "".join(pieces)}] if pieces else [])
        return _json(200, {**message, "content": server_blocks + content, "stop_reason": stop_reason,
                           "usage": usage})

    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + _dumps({"type": name, **data}) + b"\n\n"

    # Like the real API, message_start reports the input side and a placeholder output count;
    # the final output_tokens arrive in message_delta.
    # The server-side tool calls (their counts arrive in message_delta's usage, with the final output_tokens).
    start_usage = {k: v for k, v in usage.items() if k != "server_tool_use"}
    events = [event("message_start", {"message": {**message, "usage": {**start_usage, "output_tokens": min(n, 1)}}})]
    for index, block in enumerate(server_blocks):
        events += _block_events(event, index, block)
    at = len(server_blocks)  # the index of the answer's own block
    if call:
        events += _block_events(event, at, tool_use)
    if pieces and not call:
        events.append(event("content_block_start", {"index": at, "content_block": {"type": "text", "text": ""}}))
    events.append(event("ping", {}))
    if pieces and not call:
        events += [event("content_block_delta", {"index": at, "delta": {"type": "text_delta", "text": p}})
                   for p in pieces]
        events.append(event("content_block_stop", {"index": at}))
    final_usage = {"output_tokens": n, **fake_extras.anthropic_usage(uses)}
    events.append(event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                          "usage": final_usage}))
    events.append(event("message_stop", {}))
    return _sse(events)


def _block_events(event: Any, index: int, block: dict[str, Any]) -> list[bytes]:
    """A streamed content block other than text: a tool use (its input sent as one input_json_delta) or a
    server tool's result (sent whole in content_block_start)."""
    if block["type"] in ("tool_use", "server_tool_use"):
        return [event("content_block_start", {"index": index, "content_block": {**block, "input": {}}}),
                event("content_block_delta", {"index": index, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}),
                event("content_block_stop", {"index": index})]
    return [event("content_block_start", {"index": index, "content_block": block}),
            event("content_block_stop", {"index": index})]


def models_reply(wire: str) -> Reply:
    if wire == "anthropic":
        data = [{"type": "model", "id": m, "display_name": m.replace("-", " ").title(),
                 "created_at": "2025-01-01T00:00:00Z", "lifecycle": "active"} for m in _MODELS["anthropic"]]
        return _json(200, {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
    data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "fake"} for m in _MODELS["openai"]]
    return _json(200, {"object": "list", "data": data})


# --- tool calls, structured output, the Responses API, count_tokens --------------------------------

def example_json(schema: Any) -> Any:
    """A value valid for a JSON schema (the subset tool parameters and response formats use): objects get
    every declared property, enums their first value, strings "lorem", numbers 1, arrays one item."""
    if not isinstance(schema, dict):
        return "lorem"
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_json(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {name: example_json(sub) for name, sub in props.items()}
    if kind == "array":
        return [example_json(schema.get("items"))]
    return {"string": "lorem", "integer": 1, "number": 1, "boolean": True, "null": None}.get(kind, "lorem")


def _function_tools(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, JSON schema of the arguments) of each function tool offered: OpenAI chat
    {type: function, function: {name, parameters}}, Responses {type: function, name, parameters},
    Anthropic {name, input_schema} (client tools)."""
    out = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if isinstance(tool.get("function"), dict) and tool["function"].get("name"):
            out.append((tool["function"]["name"], tool["function"].get("parameters")))
        elif tool.get("type") == "function" and tool.get("name"):
            out.append((tool["name"], tool.get("parameters")))
        elif "input_schema" in tool and tool.get("name"):
            out.append((tool["name"], tool["input_schema"]))
    return out


def _has_tool_result(body: dict[str, Any]) -> bool:
    """Whether the request already carries a tool's result (then the fake answers in text)."""
    for message in _messages(body):
        content = message.get("content")
        if message.get("role") == "tool" or (isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") == "tool_result" for p in content)):
            return True
    items = body.get("input")
    return isinstance(items, list) and any(isinstance(i, dict) and i.get("type") == "function_call_output"
                                           for i in items)


def tool_to_call(body: dict[str, Any], controls: Controls) -> tuple[str, str] | None:
    """(tool name, JSON arguments) when the request asks for a tool call ([[fake:tool_call]]), else None."""
    tools = _function_tools(body)
    if not controls.tool_call or not tools or _has_tool_result(body):
        return None
    name, schema = tools[0]
    return name, json.dumps(example_json(schema or {"type": "object"}))


def _structured_text(body: dict[str, Any], pieces: list[str]) -> list[str]:
    """The answer's text pieces; a json_schema `response_format` (chat) or `text.format` (Responses) gets
    one piece, a JSON document valid for the schema."""
    fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else None
    if fmt is None and isinstance(body.get("text"), dict) and isinstance(body["text"].get("format"), dict):
        fmt = body["text"]["format"]
    if not fmt or fmt.get("type") not in ("json_schema", "json_object"):
        return pieces
    spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
    return [json.dumps(example_json(spec.get("schema") or {"type": "object"}))]


def responses_prompt_tokens(body: dict[str, Any], previous: dict[str, Any] | None) -> int:
    """Input tokens of a Responses request: its instructions and input items (ceil(bytes / 4) of each text,
    plus 3 per item), plus the whole stored conversation it chains to."""
    items = body.get("input")
    items = [{"content": items}] if isinstance(items, str) else (items if isinstance(items, list) else [])
    count = sum(_tokens(t) for t in _texts(body.get("instructions")))
    for item in items:
        count += sum(_tokens(t) for t in _texts(item) + _texts((item or {}).get("output"))) + 3
    if previous:
        count += previous["usage"]["input_tokens"] + previous["usage"]["output_tokens"]
    return count


def _responses_usage(prompt: int, completion: int, cached: int, reasoning: int = 0) -> dict[str, Any]:
    """Responses API usage; `completion` counts the `reasoning` tokens too, as OpenAI's does."""
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion}


def openai_responses(body: dict[str, Any], controls: Controls, stored: dict[str, dict[str, Any]]) -> Reply:
    """POST /v1/responses (https://platform.openai.com/docs/api-reference/responses/create), plain or streamed
    (https://platform.openai.com/docs/api-reference/responses-streaming). Stored unless `store: false`."""
    previous_id = body.get("previous_response_id")
    previous = stored.get(previous_id) if isinstance(previous_id, str) else None
    if previous_id is not None and previous is None:
        return error_reply("openai", 404, f"Previous response with id '{previous_id}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
    limit = body.get("max_output_tokens")
    pieces, n, truncated = _completion({"max_tokens": limit} if isinstance(limit, int) else {}, controls)
    pieces = _structured_text(body, pieces)
    call = tool_to_call(body, controls)
    prompt = responses_prompt_tokens(body, previous)
    response_id = f"resp_{uuid.uuid4().hex}"
    if call:
        item = {"id": f"fc_{uuid.uuid4().hex[:24]}", "type": "function_call", "status": "completed",
                "call_id": f"call_{uuid.uuid4().hex[:24]}", "name": call[0], "arguments": call[1]}
        n = max(1, _tokens(call[1]))
    else:
        item = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "".join(pieces), "annotations": [], "logprobs": []}]}
    reasoning = fake_extras.reasoning_tokens(body, controls.reasoning_tokens, n,
                                             limit if isinstance(limit, int) else None)
    usage = _responses_usage(prompt, n + reasoning, min(controls.cached_tokens, prompt), reasoning)
    # before the answer: a reasoning item when the model reasoned, then one item per server-side tool call
    before = [{"id": f"rs_{uuid.uuid4().hex[:24]}", "type": "reasoning", "summary": []}] if reasoning else []
    before += [fake_extras.responses_item(name) for name in
               fake_extras.server_tool_uses(body, fake_extras.RESPONSES_TOOLS, controls.server_tool_calls)]
    base = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": body["model"],
            "instructions": body.get("instructions"), "max_output_tokens": limit,
            "previous_response_id": previous_id, "store": body.get("store", True), "tools": body.get("tools") or [],
            "tool_choice": body.get("tool_choice", "auto"), "parallel_tool_calls": True, "temperature": 1.0,
            "top_p": 1.0, "text": body.get("text") or {"format": {"type": "text"}}, "truncation": "disabled",
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None}, "metadata": {},
            "service_tier": fake_extras.openai_service_tier(body), "error": None, "background": False}
    status = "incomplete" if truncated and not call else "completed"
    final = {**base, "status": status, "output": [*before, item], "usage": usage,
             "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None}
    if final["store"] is not False:
        items = body.get("input")
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}] \
            if isinstance(items, str) else list(items or [])
        stored[response_id] = {**final, "_input_items": [{"id": f"item_{i}", **x} for i, x in enumerate(items)]}
    if not body.get("stream"):
        return _json(200, final)

    seq = iter(range(1_000_000))

    def event(kind: str, **data: Any) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + _dumps({"type": kind, "sequence_number": next(seq),
                                                                   **data}) + b"\n\n"

    started = {**base, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    events = [event("response.created", response=started), event("response.in_progress", response=started)]
    for index, done in enumerate(before):
        events.append(event("response.output_item.added", output_index=index, item={**done, "status": "in_progress"}))
        events.append(event("response.output_item.done", output_index=index, item=done))
    at = len(before)  # the output index of the answer's own item
    opened = {**item, "status": "in_progress"}
    if call:
        events.append(event("response.output_item.added", output_index=at, item={**opened, "arguments": ""}))
        events.append(event("response.function_call_arguments.delta", item_id=item["id"], output_index=at,
                            delta=call[1]))
        events.append(event("response.function_call_arguments.done", item_id=item["id"], output_index=at,
                            arguments=call[1], name=call[0]))
    else:
        text = item["content"][0]["text"]
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append(event("response.output_item.added", output_index=at, item={**opened, "content": []}))
        events.append(event("response.content_part.added", item_id=item["id"], output_index=at, content_index=0,
                            part=part))
        events += [event("response.output_text.delta", item_id=item["id"], output_index=at, content_index=0,
                         delta=p, logprobs=[]) for p in pieces]
        events.append(event("response.output_text.done", item_id=item["id"], output_index=at, content_index=0,
                            text=text, logprobs=[]))
        events.append(event("response.content_part.done", item_id=item["id"], output_index=at, content_index=0,
                            part={**part, "text": text}))
    events.append(event("response.output_item.done", output_index=at, item=item))
    events.append(event("response.completed" if status == "completed" else "response.incomplete", response=final))
    return _sse(events)


_STORED = re.compile(r"^/v1/responses/([^/]+)(?:/(cancel|input_items))?$")


def stored_response(method: str, path: str, stored: dict[str, dict[str, Any]]) -> Reply | None:
    """GET/DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel, GET /v1/responses/{id}/input_items;
    None if `path` is none of them."""
    match = _STORED.match(path)
    allowed = {None: ("GET", "DELETE"), "cancel": ("POST",), "input_items": ("GET",)}
    if not match or method not in allowed[match.group(2)]:
        return None
    response_id, action = match.groups()
    found = stored.get(response_id)
    if found is None:
        return error_reply("openai", 404, f"Response with id '{response_id}' not found.")
    public = {k: v for k, v in found.items() if not k.startswith("_")}
    if method == "DELETE":
        del stored[response_id]
        return _json(200, {"id": response_id, "object": "response", "deleted": True})
    if action == "cancel":  # only a background response can be cancelled; the fake has none in progress
        return error_reply("openai", 400, "Only background responses can be cancelled.")
    if action == "input_items":
        data = found["_input_items"]
        return _json(200, {"object": "list", "data": data, "has_more": False,
                           "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})
    return _json(200, public)


def anthropic_count_tokens(body: dict[str, Any]) -> Reply:
    """POST /v1/messages/count_tokens (https://docs.anthropic.com/en/api/messages-count-tokens)."""
    return _json(200, {"input_tokens": prompt_tokens(body)})


# --- the server ------------------------------------------------------------------------------------

def _api_key(wire: str, headers: Any) -> str:
    auth = headers.get("authorization") or ""
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if wire == "anthropic":  # x-api-key; anthropic SDK 2.x sends its api_key as a bearer token instead
        return headers.get("x-api-key") or bearer
    return bearer


def _masked(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)


def _check(wire: str, path: str, body: dict[str, Any]) -> Reply | None:
    """The provider's own validation of the few fields the fake relies on."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error_reply(wire, 400, "model: Field required" if wire == "anthropic" else
                           "you must provide a model parameter", param="model")
    if path == "/v1/embeddings":
        return None if embedding_inputs(body) else error_reply(wire, 400, "'input' is required", param="input")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return error_reply(wire, 400, "messages: Field required" if wire == "anthropic" else
                           "'messages' is a required property", param="messages")
    limit = _max_tokens(body)
    if wire == "anthropic" and limit is None and path != "/v1/messages/count_tokens":
        return error_reply(wire, 400, "max_tokens: Field required")
    if limit is not None and limit < 1:
        return error_reply(wire, 400, "max_tokens must be at least 1", param="max_tokens")
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients dropping keep-alive connections
            super().handle_error(request, client_address)


HOLD_TIMEOUT_S = 30.0  # [[fake:hold_after=K]]: a held stream goes on by itself after this many seconds


class FakeProvider:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.calls: list[dict[str, Any]] = []
        self.disconnects: list[dict[str, Any]] = []
        self.responses: dict[str, dict[str, Any]] = {}  # stored Responses API objects by id
        self._lock = threading.Lock()
        self._released = threading.Condition()
        self._holding = 0  # streams waiting in hold() now
        self.billing = Billing()
        self._serving: ServerThread | None = None
        self.url = ""

    def start(self, port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._serving = ServerThread(_Server((self.host, port), handler), "fake-provider")
        self.url = f"http://{self.host}:{self._serving.port}"
        return self.url

    def stop(self) -> None:
        if self._serving:
            self._serving.stop()
            self._serving = None

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.disconnects.clear()
            self.responses.clear()
        # Not the bill: like a real provider's account, it keeps what was served (Billing.reset clears it).

    def hold(self, timeout_s: float = HOLD_TIMEOUT_S) -> None:
        """Pause a stream mid-answer until release() (or `timeout_s` seconds, so nothing hangs forever)."""
        with self._released:
            self._holding += 1
            try:
                self._released.wait(timeout_s)
            finally:
                self._holding -= 1

    def release(self) -> int:
        """Let every held stream go on; returns how many were held (0 when a hold had already timed out)."""
        with self._released:
            held = self._holding
            self._released.notify_all()
        return held

    def client_disconnected(self, path: str, events_sent: int) -> None:
        with self._lock:
            self.disconnects.append({"path": path, "events_sent": events_sent, "at": time.monotonic()})

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["path"] == path]

    def handle(self, method: str, path: str, headers: Any, raw: bytes, query: str = "") -> Reply:
        if path.startswith(BEDROCK_PATH_PREFIX):  # Amazon Bedrock runtime: the section below
            return bedrock_reply(self, method, path, headers, raw)
        if path == "/_fake/calls" and method == "GET":
            with self._lock:
                return _json(200, list(self.calls))
        if path == "/_fake/release" and method == "POST":
            return _json(200, {"held": self.release()})
        if path == "/_fake/reset" and method == "POST":
            self.reset()
            return _json(200, {"ok": True})
        if path in _ADMIN_PATHS or path == "/_fake/billing":
            return self.billing.handle(method, path, headers, raw, query)

        anthropic_headers = "x-api-key" in headers or "anthropic-version" in headers
        wire = "anthropic" if path in ("/v1/messages", "/v1/messages/count_tokens") or (
            path.startswith("/v1/models") and anthropic_headers) else "openai"
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        body_dict = body if isinstance(body, dict) else {}
        key = _api_key(wire, headers)
        call = {"method": method, "path": path, "wire": wire, "model": body_dict.get("model"), "api_key": key,
                "stream": bool(body_dict.get("stream")), "max_tokens": _max_tokens(body_dict), "body": body_dict,
                "headers": {k.lower(): v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}}
        controls = Controls.parse(_prompt_texts(body_dict))
        reply = self._reply(method, path, wire, key, body, controls)
        call["status"] = reply.status
        self.billing.served(wire, key, call["model"], body_dict, reply, path)
        with self._lock:
            self.calls.append(call)
        if controls.delay_ms:
            time.sleep(controls.delay_ms / 1000)
        if reply.events is not None:
            reply.interval_s, reply.drop_after = controls.stream_interval_ms / 1000, controls.drop_after
            reply.hold_after = controls.hold_after
        return reply

    def _reply(self, method: str, path: str, wire: str, key: str, body: Any, controls: Controls) -> Reply:
        routes = {("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("POST", "/v1/messages"),
                  ("GET", "/v1/models"), ("POST", "/v1/responses"), ("POST", "/v1/messages/count_tokens")}
        if (method, path) not in routes and not _STORED.match(path):
            return error_reply(wire, 404, f"Unknown request URL: {method} {path}", code="unknown_url")
        if not key:
            return error_reply(wire, 401, "x-api-key header is required" if wire == "anthropic" else
                               "You didn't provide an API key.", code="missing_api_key")
        if key == "sk-fake-invalid" or key.startswith("bad-"):
            message = "invalid x-api-key" if wire == "anthropic" else f"Incorrect API key provided: {_masked(key)}."
            return error_reply(wire, 401, message, code="invalid_api_key")
        stored = stored_response(method, path, self.responses) if _STORED.match(path) else None
        if _STORED.match(path):
            return stored or error_reply(wire, 404, f"Unknown request URL: {method} {path}", code="unknown_url")
        if method == "GET":
            return models_reply(wire)
        if not isinstance(body, dict):
            return error_reply(wire, 400, "The request body must be a JSON object.")
        if controls.status == 404:  # as each provider answers a model it does not serve (unknown or retired)
            model = str(body.get("model"))
            if wire == "anthropic":
                return error_reply(wire, 404, f"model: {model}")
            return error_reply(wire, 404, f"The model `{model}` does not exist or you do not have access to it.",
                               code="model_not_found")
        if controls.status and controls.status >= 400:
            return error_reply(wire, controls.status, f"fake provider: forced HTTP {controls.status}",
                               retry_after_ms=controls.retry_after_ms)
        if path == "/v1/responses":
            if not isinstance(body.get("model"), str) or not body["model"]:
                return error_reply(wire, 400, "Missing required parameter: 'model'.", param="model")
            with self._lock:
                return openai_responses(body, controls, self.responses)
        invalid = _check(wire, path, body)
        if invalid:
            return invalid
        if path == "/v1/messages/count_tokens":
            return anthropic_count_tokens(body)
        if path == "/v1/embeddings":
            return openai_embeddings(body)
        if path == "/v1/messages":
            return anthropic_messages(body, controls)
        return openai_chat(body, controls)


# --- the providers' bills (admin APIs) -------------------------------------------------------------
# OpenAI: GET /v1/organization/costs (amount.value in USD per line_item "<model>, input|output") and
# /v1/organization/usage/completions (tokens per model), both with start_time/end_time in Unix seconds and
# 1-day buckets. Anthropic: GET /v1/organizations/cost_report (amount as a decimal string in cents, per
# model and token_type) and /v1/organizations/usage_report/messages (tokens per model), with RFC 3339
# starting_at/ending_at. Sources: platform.openai.com/docs/api-reference/usage and
# platform.claude.com/docs/en/api/admin/cost_report (shapes trimmed to the fields a reconciliation reads).

_ADMIN_PATHS = {"/v1/organization/costs", "/v1/organization/usage/completions",
                "/v1/organizations/cost_report", "/v1/organizations/usage_report/messages"}
_EXACT = re.compile(r'"\\u0000dec:(-?[0-9.]+)"')


def _dumps_exact(obj: Any) -> bytes:
    """JSON with Decimals written as exact number literals (json.dumps would need a float)."""
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return "\u0000dec:" + format(value, "f")
        raise TypeError(type(value).__name__)

    return _EXACT.sub(r"\1", json.dumps(obj, default=default)).encode()


def _epoch(rfc3339: str) -> int:
    """Unix seconds of the UTC day an RFC 3339 time falls on."""
    return calendar.timegm(time.strptime(rfc3339[:10], "%Y-%m-%d"))


class Billing:
    """What the fake served, billed per (day, provider, model): usage and USD at the gateway's catalogue,
    reported times `scale` (1.05 emulates a provider that bills 5% more). Days in `withheld` have no data yet.
    `org_keys`: the API keys of the organization whose bill is reported (None: every key). A user's own
    key (BYOK) belongs to the user's organization, so its calls are not on the platform's bill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[dict[str, Any]] = []  # {"day", "provider", "model", "usage": Usage, "input_usd", "usd"}
        self.scale = Decimal(1)
        self.withheld: set[str] = set()
        self.org_keys: set[str] | None = None

    def reset(self) -> None:
        with self._lock:
            self.lines.clear()
            self.scale, self.withheld, self.org_keys = Decimal(1), set(), None

    def served(self, wire: str, api_key: str, model: Any, request: dict[str, Any], reply: Reply,
               path: str = "") -> None:
        """Bill one answer (to `path`): its usage as the gateway's own parsers read it, priced by its catalogue."""
        if reply.status != 200 or not isinstance(model, str) or (reply.events is None and b'"usage"' not in reply.body):
            return
        from dataclasses import replace as copy

        from tollgate.pricing import Catalogue
        from tollgate.providers import anthropic_provider, openai_provider
        from tollgate.providers._common import sse_events

        if reply.events is None:
            usage_of = anthropic_provider.usage_from if wire == "anthropic" else openai_provider.usage_from
            document = json.loads(reply.body)
            usage = usage_of(document["usage"], request if wire == "anthropic" else document)
        else:
            meter = (anthropic_provider.MessagesStreamMeter("", request) if wire == "anthropic"
                     else openai_provider.ResponsesStreamMeter("") if path == "/v1/responses"
                     else openai_provider.ChatStreamMeter("", keep_usage_chunk=True))
            for name, _, data in sse_events(b"".join(reply.events)):
                meter.feed(name, data)
            usage = meter.final or meter.reported
        catalogue = Catalogue.load(None)
        if model not in catalogue:
            return
        price = catalogue.price(model)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        input_only = copy(usage, output_tokens=0, reasoning_tokens=0)
        with self._lock:
            self.lines.append({"day": day, "provider": wire, "api_key": api_key, "model": model, "usage": usage,
                               "input_usd": price.cost(input_only), "usd": price.cost(usage)})

    def handle(self, method: str, path: str, headers: Any, raw: bytes, query: str) -> Reply:
        if path == "/_fake/billing":
            controls = json.loads(raw or b"{}")
            with self._lock:
                self.scale = Decimal(str(controls.get("scale", self.scale)))
                self.withheld = set(controls.get("withhold_days", self.withheld))
                if "org_keys" in controls:
                    self.org_keys = set(controls["org_keys"]) if controls["org_keys"] is not None else None
            return _json(200, {"scale": str(self.scale), "withhold_days": sorted(self.withheld)})
        wire = "openai" if path.startswith("/v1/organization/") else "anthropic"
        if not _api_key(wire, headers):
            return error_reply(wire, 401, "An admin API key is required.", code="missing_api_key")
        return self._report(wire, path, dict(parse_qsl(query)))

    def _report(self, wire: str, path: str, query: dict[str, str]) -> Reply:
        if wire == "openai":
            start = int(query.get("start_time", "0"))
            end = int(query.get("end_time", start + 86400))
        else:
            start = _epoch(query.get("starting_at", "1970-01-01"))
            end = _epoch(query["ending_at"]) if query.get("ending_at") else start + 86400
        days = [time.strftime("%Y-%m-%d", time.gmtime(start + 86400 * i))
                for i in range(max(1, (end - start) // 86400))]
        buckets = []
        for i, day in enumerate(days):
            if day in self.withheld:
                continue
            with self._lock:
                mine = [ln for ln in self.lines if ln["day"] == day and ln["provider"] == wire
                        and (self.org_keys is None or ln["api_key"] in self.org_keys)]
            models = sorted({ln["model"] for ln in mine})
            results = [r for m in models
                       for r in self._results(path, m, [ln for ln in mine if ln["model"] == m], self.scale)]
            t0 = start + 86400 * i
            if wire == "openai":
                buckets.append({"object": "bucket", "start_time": t0, "end_time": t0 + 86400, "results": results})
            else:
                buckets.append({"starting_at": f"{day}T00:00:00Z",
                                "ending_at": time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(t0 + 86400)),
                                "results": results})
        page = {"data": buckets, "has_more": False, "next_page": None}
        return Reply(200, _dumps_exact({"object": "page", **page} if wire == "openai" else page))

    @staticmethod
    def _results(path: str, model: str, lines: list[dict[str, Any]], scale: Decimal) -> list[dict[str, Any]]:
        usd = sum((ln["usd"] for ln in lines), Decimal(0)) * scale
        input_usd = sum((ln["input_usd"] for ln in lines), Decimal(0)) * scale
        tokens_in = sum(ln["usage"].input_tokens for ln in lines)
        tokens_out = sum(ln["usage"].output_tokens for ln in lines)
        if path == "/v1/organization/costs":
            return [{"object": "organization.costs.result", "amount": {"value": part, "currency": "usd"},
                     "line_item": f"{model}, {kind}", "project_id": None}
                    for kind, part in (("input", input_usd), ("output", usd - input_usd))]
        if path == "/v1/organization/usage/completions":
            return [{"object": "organization.usage.completions.result", "input_tokens": tokens_in,
                     "output_tokens": tokens_out, "num_model_requests": len(lines), "model": model}]
        if path == "/v1/organizations/cost_report":
            return [{"currency": "USD", "amount": format(part * 100, "f"), "cost_type": "tokens", "model": model,
                     "token_type": kind, "description": f"{model}, {kind}", "workspace_id": None,
                     "service_tier": "standard", "context_window": "0-200k"}
                    for kind, part in (("uncached_input_tokens", input_usd), ("output_tokens", usd - input_usd))]
        return [{"uncached_input_tokens": tokens_in, "output_tokens": tokens_out, "model": model,
                 "cache_read_input_tokens": 0, "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                                                  "ephemeral_1h_input_tokens": 0}}]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small header and body writes must not wait for delayed ACKs
    fake: FakeProvider

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        url = urlsplit(self.path)
        reply = self.fake.handle(method, url.path, self.headers, raw, url.query)
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        self.send_response(reply.status)
        self.send_header("x-request-id", request_id)
        self.send_header("request-id", request_id)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        try:
            if reply.events is None:
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self._stream(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _stream(self, reply: Reply) -> None:
        path = urlsplit(self.path).path
        for sent, event in enumerate(reply.events or []):
            if reply.drop_after is not None and sent >= reply.drop_after:
                self._drop()
                return
            if sent and sent == reply.hold_after:
                self.fake.hold()
            if sent and reply.interval_s and self._hung_up(reply.interval_s):
                self.fake.client_disconnected(path, sent)
                self.close_connection = True
                return
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.fake.client_disconnected(path, sent)
                raise
        self.wfile.write(b"0\r\n\r\n")

    def _hung_up(self, wait_s: float) -> bool:
        """Wait between events on the socket itself: a client that closes its end wakes us at once."""
        readable, _, _ = select.select([self.connection], [], [], wait_s)
        try:
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True

    def _drop(self) -> None:
        """End the connection mid-answer, without the terminating chunk (what a provider crash looks like)."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --- Amazon Bedrock runtime ------------------------------------------------------------------------
# Bedrock's runtime HTTP API as boto3's `bedrock-runtime` client calls it (point its endpoint_url here):
#   POST /model/{modelId}/converse                      Converse: JSON
#   POST /model/{modelId}/converse-stream               ConverseStream: AWS event-stream frames
#   POST /model/{modelId}/invoke                        InvokeModel: the model's own body (Claude: Anthropic's)
#   POST /model/{modelId}/invoke-with-response-stream   InvokeModelWithResponseStream: `chunk` event frames
# Any SigV4 signature is accepted (an `Authorization: AWS4-HMAC-SHA256 ...` header is required). The same
# in-band controls as the other providers; [[fake:status=N]] answers Bedrock's exception for N (429:
# ThrottlingException, 503: ServiceUnavailableException, 403: AccessDeniedException, ...), and
# [[fake:tool_call]] makes a Converse answer call the request's first tool (unless the last message
# already carries a tool result); [[fake:bedrock_status=N]] replaces `status` for Bedrock only (200: answer),
# so one prompt can fail on one provider and succeed on Bedrock, or the other way round (fallback tests).
# Usage: Converse's inputTokens excludes cache reads and writes.

BEDROCK_PATH_PREFIX = "/model/"
_BEDROCK_STATUS = re.compile(r"\[\[fake:bedrock_status=(\d+)\]\]")
_BEDROCK_EXCEPTIONS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                       408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
                       500: "InternalServerException", 503: "ServiceUnavailableException"}
_BEDROCK_STOP = {"length": "max_tokens", "tool_calls": "tool_use"}


def event_stream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of the AWS event-stream encoding (what botocore.eventstream decodes): a prelude (total
    length, headers length: big-endian uint32) and its CRC32, the headers (name length u8, name, type 7 =
    string, value length u16, value), the payload, and the CRC32 of everything before it."""
    import zlib

    encoded = b"".join(struct.pack(">B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode()))
                       + v.encode() for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _bedrock_event(kind: str, payload: dict[str, Any]) -> bytes:
    return event_stream_frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                              _dumps(payload))


def bedrock_error(status: int, message: str) -> Reply:
    code = _BEDROCK_EXCEPTIONS.get(status, "InternalServerException" if status >= 500 else "ValidationException")
    return _json(status, {"message": message}, **{"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/"})


def _bedrock_tool_use(body: dict[str, Any], controls_text: list[str]) -> dict[str, Any] | None:
    tools = (body.get("toolConfig") or {}).get("tools") or []
    if not tools or not any("[[fake:tool_call]]" in t for t in controls_text):
        return None
    last = (_messages(body) or [{}])[-1]
    if any(isinstance(b, dict) and "toolResult" in b for b in last.get("content") or []):
        return None
    spec = tools[0].get("toolSpec") or {}
    props = list(((spec.get("inputSchema") or {}).get("json") or {}).get("properties") or {})
    return {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": spec.get("name", ""),
            "input": {props[0]: "lorem"} if props else {}}


def bedrock_converse(body: dict[str, Any], controls: Controls, stream: bool, texts: list[str]) -> Reply:
    limit = (body.get("inferenceConfig") or {}).get("maxTokens")
    pieces, n, truncated = _completion({"max_tokens": limit} if isinstance(limit, int) else {}, controls)
    total = prompt_tokens(body)
    reads = min(controls.cached_tokens, total)
    writes = min(controls.cache_write_tokens, total - reads)
    use = _bedrock_tool_use(body, texts)
    usage = {"inputTokens": total - reads - writes, "outputTokens": n, "totalTokens": total + n,
             "cacheReadInputTokens": reads, "cacheWriteInputTokens": writes}
    stop = "tool_use" if use else ("max_tokens" if truncated else "end_turn")
    if not stream:
        content: list[dict[str, Any]] = [{"text": "".join(pieces)}] if pieces else []
        if use:
            content.append({"toolUse": use})
        return _json(200, {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                           "usage": usage, "metrics": {"latencyMs": 1}})
    events = [_bedrock_event("messageStart", {"role": "assistant"})]
    events += [_bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces]
    if pieces:
        events.append(_bedrock_event("contentBlockStop", {"contentBlockIndex": 0}))
    if use:
        index = 1 if pieces else 0
        arguments = json.dumps(use["input"])
        events.append(_bedrock_event("contentBlockStart", {"contentBlockIndex": index, "start": {
            "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
        half = len(arguments) // 2  # two fragments, as a model streams them
        events += [_bedrock_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": a}}})
                   for a in (arguments[:half], arguments[half:])]
        events.append(_bedrock_event("contentBlockStop", {"contentBlockIndex": index}))
    events.append(_bedrock_event("messageStop", {"stopReason": stop}))
    events.append(_bedrock_event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    return _sse(events)


def bedrock_invoke(model: str, body: dict[str, Any], controls: Controls, stream: bool) -> Reply:
    """InvokeModel with the Anthropic body: the Messages API's answer; streamed as `chunk` events each
    carrying one Messages event's JSON (base64 in the frame's JSON payload, as Bedrock sends it)."""
    if body.get("anthropic_version") != "bedrock-2023-05-31" or "model" in body:
        return bedrock_error(400, "anthropic_version must be bedrock-2023-05-31 and the body has no model")
    if not isinstance(body.get("max_tokens"), int) or not _messages(body):
        return bedrock_error(400, "max_tokens and messages are required")
    reply = anthropic_messages({**body, "model": model, "stream": stream}, controls)
    if not stream:
        return reply
    frames = []
    for event in reply.events or []:
        data = event.split(b"\ndata: ", 1)[1].strip()
        frames.append(event_stream_frame({":event-type": "chunk", ":content-type": "application/json",
                                          ":message-type": "event"},
                                         _dumps({"bytes": base64.b64encode(data).decode()})))
    return _sse(frames)


def bedrock_reply(fake: "FakeProvider", method: str, path: str, headers: Any, raw: bytes) -> Reply:
    """Bedrock's runtime API (see this section's comment); records the call in `fake.calls` (wire "bedrock")."""
    from urllib.parse import unquote

    model, _, action = unquote(path[len(BEDROCK_PATH_PREFIX):]).rpartition("/")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = None
    body_dict = body if isinstance(body, dict) else {}
    texts = _prompt_texts(body_dict)
    controls = Controls.parse(texts)
    forced = [int(m) for t in texts for m in _BEDROCK_STATUS.findall(t)]
    if forced:
        controls.status = forced[-1]
    stream = action in ("converse-stream", "invoke-with-response-stream")
    if not (headers.get("authorization") or "").startswith("AWS4-HMAC-SHA256"):
        reply = _json(403, {"message": "Missing Authentication Token"})
    elif method != "POST" or action not in ("converse", "converse-stream", "invoke", "invoke-with-response-stream"):
        reply = bedrock_error(404, f"Unknown operation: {method} {path}")
    elif not isinstance(body, dict):
        reply = bedrock_error(400, "The request body must be a JSON object.")
    elif controls.status and controls.status >= 400:
        reply = bedrock_error(controls.status, f"fake provider: forced HTTP {controls.status}")
    elif action.startswith("converse"):
        reply = bedrock_converse(body, controls, stream, texts)
    else:
        reply = bedrock_invoke(model, body, controls, stream)
    with fake._lock:
        fake.calls.append({"method": method, "path": path, "wire": "bedrock", "model": model, "api_key": "",
                           "stream": stream, "operation": action, "status": reply.status, "body": body_dict})
    if controls.delay_ms:
        time.sleep(controls.delay_ms / 1000)
    if reply.events is not None:
        reply.interval_s, reply.drop_after = controls.stream_interval_ms / 1000, controls.drop_after
    return reply


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    fake = FakeProvider(args.host)
    url = fake.start(args.port)
    print(f"fake provider on {url}  (OpenAI base URL {url}/v1, Anthropic base URL {url})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
