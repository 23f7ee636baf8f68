"""The response cache (issue 17 item 1): a repeated request answered from an earlier answer, at $0.

The TTL also bounds the age of the answer a request accepts (like HTTP's Cache-Control: max-age): an answer
stored for 600 s is not served to a request asking for ttl=1 once it is older than 1 s.

Opt-in: a key's or user's setting (`cache_ttl_s`, through the admin API, `tollgate keys create --cache-ttl`
and `tollgate users set --cache-ttl`; the key's wins), carried in the authorizer's context with the key's and
user's other settings, so a request without caching costs no extra read, or a request's `x-tollgate-cache` header: `ttl=<seconds>` (look up, and store a miss for that
long) or `no-store` (neither look up nor store, whatever the user's setting).

Exact match: the key is a SHA-256 of the route's operation, the whole request body but for how it is
delivered (`stream`, `stream_options`), and the headers forwarded to the provider that change its answer
(anthropic-version, anthropic-beta). Scoped to the user: the stored item's key names the user, so one user's
answer is never served to another (tollgate.store.response_cache).

What is stored: a successful (HTTP 200) answer as the plain answer document of its route, up to
MAX_BODY_BYTES: a plain answer exactly as the provider sent it, a stream that ended normally assembled into
the document its events describe (`from_stream`). Errors, cut streams, and answers whose max_tokens the
budget lowered are never stored. A hit asked for as a stream is replayed in the route's own event format
(`as_stream`): chat completions chunks, Anthropic messages events, Responses API events — each as its
provider documents it
(https://platform.openai.com/docs/api-reference/chat-streaming,
https://docs.anthropic.com/en/docs/build-with-claude/streaming,
https://platform.openai.com/docs/api-reference/responses-streaming).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

from tollgate import idempotency
from tollgate.errors import InvalidRequest
from tollgate.providers._common import json_or_none, sse_events
from tollgate.providers.base import CHAT, MESSAGES, RESPONSES, Usage
from tollgate.store.response_cache import Answer

HEADER = "x-tollgate-cache"  # on a request: the policy; on an answer: "hit", "miss" or "no-store" (answer_header)
NO_STORE = "no-store"
MAX_TTL_S = 7 * 86_400  # the longest an answer is kept (seconds)
# The largest answer stored (UTF-8 bytes of the provider's body): DynamoDB items are at most 400 KB
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html), and the same settle
# transaction may carry the idempotent replay of the same answer.
MAX_BODY_BYTES = 100_000
_DELIVERY_FIELDS = ("stream", "stream_options")  # how the answer travels, not what it says
# A Responses API stream's last event when it ended normally (response.failed is an error: never stored)
_RESPONSE_ENDS = ("response.completed", "response.incomplete")
_CHAT_EXTRAS = ("system_fingerprint", "service_tier")  # top-level fields of a chat answer and of each chunk


@dataclass(frozen=True)
class Policy:
    """What the cache does for one request: look up `key`, and store a miss for `ttl_s` seconds."""

    key: str
    ttl_s: int


def ttl_from_header(value: str | None) -> int | None:
    """The TTL (seconds) a request's `x-tollgate-cache` header asks for: None when absent, 0 for `no-store`.
    Raises InvalidRequest for anything else than `ttl=<1..MAX_TTL_S>` or `no-store`."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == NO_STORE:
        return 0
    asked = re.fullmatch(r"ttl\s*=\s*(\d{1,7})", text, re.ASCII)
    if asked and 1 <= int(asked[1]) <= MAX_TTL_S:
        return int(asked[1])
    raise InvalidRequest(f"The {HEADER} header must be 'ttl=<seconds>' (1 to {MAX_TTL_S}) or '{NO_STORE}'.")


def policy(operation: str, body: dict[str, Any], forwarded_headers: dict[str, str], header: str | None,
           user_ttl_s: int) -> Policy | None:
    """The cache policy of one request, or None when it is not cached (no setting, no header, `no-store`).
    The header wins over the key's or user's setting (`user_ttl_s`, Principal.cache_ttl_s). Raises InvalidRequest for a malformed header."""
    asked = ttl_from_header(header)
    ttl = asked if asked is not None else min(max(user_ttl_s, 0), MAX_TTL_S)
    if not ttl:
        return None
    return Policy(key(operation, body, forwarded_headers), ttl)


def answer_header(policy: Policy | None, header: str | None) -> str | None:
    """The `x-tollgate-cache` value on a provider's answer (a hit says "hit"): "miss" when the request was
    looked up, "no-store" when the request's header skipped the cache, None when caching was never asked for.
    `header`: the request's header, already validated by `policy`."""
    if policy is not None:
        return "miss"
    return NO_STORE if header is not None and ttl_from_header(header) == 0 else None


def key(operation: str, body: dict[str, Any], forwarded_headers: dict[str, str]) -> str:
    """SHA-256 hex of what makes the answer: the operation, the body without its delivery fields, and the
    forwarded provider headers (names lower-cased). Independent of key order and whitespace."""
    content = {k: v for k, v in body.items() if k not in _DELIVERY_FIELDS}
    headers = {k.lower(): v for k, v in forwarded_headers.items()}
    return idempotency.request_hash(operation, {"body": content, "headers": headers})


def storable(status: int, body: bytes) -> bool:
    """Whether an answer may be stored: a success, small enough for one DynamoDB item."""
    return status == 200 and len(body) <= MAX_BODY_BYTES


def as_stream(operation: str, answer: Answer, request: dict[str, Any]) -> list[bytes]:
    """A stored plain answer as the SSE events the route's provider would have streamed for it. Raises
    InvalidRequest for a route that does not stream (embeddings)."""
    doc = json.loads(answer.body)
    if operation == CHAT:
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        return list(_chat_chunks(doc, include_usage)) + [b"data: [DONE]\n\n"]
    if operation == MESSAGES:
        return [_event(e["type"], e) for e in _message_events(doc)]
    if operation == RESPONSES:
        return [_event(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(_response_events(doc))]
    raise InvalidRequest("This route does not stream.", param="stream")


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


def _chat_chunks(doc: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    base = {"id": doc.get("id"), "object": "chat.completion.chunk", "created": doc.get("created"),
            "model": doc.get("model"), **{k: doc[k] for k in _CHAT_EXTRAS if k in doc},
            **({"usage": None} if include_usage else {})}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"

    for choice in doc.get("choices") or []:
        index, message = choice.get("index", 0), choice.get("message") or {}
        yield chunk(index, {"role": message.get("role", "assistant"), "content": ""})
        if message.get("content"):
            yield chunk(index, {"content": message["content"]})
        if message.get("refusal"):
            yield chunk(index, {"refusal": message["refusal"]})
        if message.get("annotations"):
            yield chunk(index, {"annotations": message["annotations"]})
        for i, call in enumerate(message.get("tool_calls") or []):
            yield chunk(index, {"tool_calls": [{"index": i, **call}]})
        yield chunk(index, {}, choice.get("finish_reason"))
    if include_usage:
        yield b"data: " + json.dumps({**base, "choices": [], "usage": doc.get("usage")}).encode() + b"\n\n"


def _message_events(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    usage = doc.get("usage") or {}
    yield {"type": "message_start", "message": {**doc, "content": [], "stop_reason": None, "stop_sequence": None,
                                                "usage": {**usage, "output_tokens": 0}}}
    for index, block in enumerate(doc.get("content") or []):
        kind = block.get("type")
        start, deltas = block, []
        if kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block.get("text", "")}]
            deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or []]
        elif kind in ("tool_use", "server_tool_use"):
            start = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}))}]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": ""}
            deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")},
                      {"type": "signature_delta", "signature": block.get("signature", "")}]
        yield {"type": "content_block_start", "index": index, "content_block": start}
        for delta in deltas:
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        yield {"type": "content_block_stop", "index": index}
    yield {"type": "message_delta", "delta": {"stop_reason": doc.get("stop_reason"),
                                              "stop_sequence": doc.get("stop_sequence")}, "usage": usage}
    yield {"type": "message_stop"}


def _response_events(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pending = {**doc, "status": "in_progress", "output": [], "usage": None}
    yield {"type": "response.created", "response": pending}
    yield {"type": "response.in_progress", "response": pending}
    for out, item in enumerate(doc.get("output") or []):
        ids = {"item_id": item.get("id"), "output_index": out}
        if item.get("type") == "message":
            yield {"type": "response.output_item.added", "output_index": out,
                   "item": {**item, "status": "in_progress", "content": []}}
            for part_index, part in enumerate(item.get("content") or []):
                at = {**ids, "content_index": part_index}
                if part.get("type") == "output_text":
                    yield {"type": "response.content_part.added", **at,
                           "part": {**part, "text": "", "annotations": []}}
                    yield {"type": "response.output_text.delta", **at, "delta": part.get("text", ""), "logprobs": []}
                    yield {"type": "response.output_text.done", **at, "text": part.get("text", ""), "logprobs": []}
                else:
                    yield {"type": "response.content_part.added", **at, "part": part}
                yield {"type": "response.content_part.done", **at, "part": part}
        elif item.get("type") == "function_call":
            yield {"type": "response.output_item.added", "output_index": out,
                   "item": {**item, "status": "in_progress", "arguments": ""}}
            yield {"type": "response.function_call_arguments.delta", **ids, "delta": item.get("arguments", "")}
            yield {"type": "response.function_call_arguments.done", **ids, "arguments": item.get("arguments", "")}
        else:
            yield {"type": "response.output_item.added", "output_index": out, "item": item}
        yield {"type": "response.output_item.done", "output_index": out, "item": item}
    yield {"type": "response.incomplete" if doc.get("status") == "incomplete" else "response.completed",
           "response": doc}


def from_stream(operation: str, events: bytes, usage: Usage) -> bytes | None:
    """The plain answer document a whole stream's SSE events describe (JSON bytes), for storing; None when
    the events do not make one (a route that does not stream, an event this does not know how to fold).
    `usage`: the stream's final usage as metered, for a chat stream whose client did not ask for it."""
    parsed = [(name, json_or_none(data)) for _, name, data in sse_events(events) if data and data != "[DONE]"]
    docs = [d for _, d in parsed if isinstance(d, dict)]
    if len(docs) != len(parsed):
        return None
    try:
        if operation == CHAT:
            doc = _chat_document(docs, usage)
        elif operation == MESSAGES:
            doc = _message_document(docs)
        elif operation == RESPONSES:
            doc = next((d["response"] for d in docs if d.get("type") in _RESPONSE_ENDS), None)
        else:
            doc = None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
    return json.dumps(doc).encode() if isinstance(doc, dict) else None


def _chat_document(chunks: list[dict[str, Any]], usage: Usage) -> dict[str, Any]:
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for part in chunk.get("choices") or []:
            choice = choices.setdefault(part["index"], {
                "index": part["index"], "message": {"role": "assistant", "content": None, "refusal": None,
                                                    "annotations": []}, "logprobs": None, "finish_reason": None})
            message, delta = choice["message"], part.get("delta") or {}
            for name in ("content", "refusal"):
                if delta.get(name) is not None:
                    message[name] = (message.get(name) or "") + delta[name]
            message["annotations"] += delta.get("annotations") or []
            for call in delta.get("tool_calls") or []:
                calls = message.setdefault("tool_calls", [])
                while len(calls) <= call["index"]:
                    calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                into = calls[call["index"]]
                into["id"] = call.get("id") or into["id"]
                for name in ("name", "arguments"):
                    into["function"][name] += (call.get("function") or {}).get(name) or ""
            choice["finish_reason"] = part.get("finish_reason") or choice["finish_reason"]
    from tollgate.translate.openai_anthropic import openai_usage  # only when a chat stream is stored

    last = chunks[-1]
    reported = next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)
    return {"id": last["id"], "object": "chat.completion", "created": last.get("created"), "model": last.get("model"),
            **{k: last[k] for k in _CHAT_EXTRAS if k in last},
            "choices": [choices[i] for i in sorted(choices)], "usage": reported or openai_usage(usage)}


def _message_document(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    message: dict[str, Any] | None = None
    partial: dict[int, str] = {}
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            message = {**event["message"], "content": []}
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "citations_delta":
                block.setdefault("citations", []).append(delta["citation"])
            else:
                return None
        elif kind == "content_block_stop" and event["index"] in partial:
            message["content"][event["index"]]["input"] = json.loads(partial.pop(event["index"]) or "{}")
        elif kind == "message_delta":
            message.update(event.get("delta") or {})
            message["usage"] = {**message.get("usage", {}), **(event.get("usage") or {})}
    return message
