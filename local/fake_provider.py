"""A fake LLM provider on loopback that speaks the OpenAI and Anthropic wire formats (development only).

Point the OpenAI SDK at `{url}/v1` and the Anthropic SDK at `{url}` (it adds `/v1` itself).

Usage is deterministic and never exceeds what a gateway can bound from the request: prompt tokens are
ceil(utf-8 bytes / 4) of each text plus 3 per message, always <= the byte length of the JSON of the
prompt-bearing fields (`messages`, Anthropic's `system`, the embeddings `input`). Completion tokens
default to min(max_tokens, 16) and never exceed max_tokens / max_completion_tokens.

In-band controls, written anywhere in the prompt text:
  [[fake:status=500]]           answer that status with the provider's error JSON
  [[fake:delay_ms=N]]           wait N ms before answering
  [[fake:completion_tokens=N]]  produce N completion tokens (still capped by max_tokens)
  [[fake:empty]]                empty content (0 completion tokens unless completion_tokens is given)
  [[fake:cached_tokens=N]]      report N cached prompt tokens (cache reads)
  [[fake:cache_write_tokens=N]] report N cache-write tokens (Anthropic)
  [[fake:retry_after_ms=N]]     add `retry-after-ms: N` to an error reply (keeps SDK retries fast in tests)
  [[fake:stream_interval_ms=N]] stream one event every N ms, each written and flushed as it is "generated"
  [[fake:drop_after=K]]         drop the connection after K streamed events (no final usage, no end)

A client that hangs up mid-stream is noticed at once (the fake waits between events on its socket) and
recorded in `FakeProvider.disconnects` ({"path", "events_sent", "at": time.monotonic()}).

Keys: OpenAI `Authorization: Bearer`; Anthropic `x-api-key` or `Authorization: Bearer` (what anthropic 2.x
sends). A missing key gets 401; "sk-fake-invalid" or a key starting with "bad-" gets the provider's 401.
Every call is recorded in `FakeProvider.calls` and served at GET /_fake/calls; POST /_fake/reset clears.

Run: python -m local.fake_provider --port 8081
"""
from __future__ import annotations

import argparse
import base64
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from local.serving import ServerThread

DEFAULT_COMPLETION_TOKENS = 16
_CONTROL = re.compile(r"\[\[fake:([a-z_]+)(?:=(\d+))?\]\]")
_WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                          529: "overloaded_error"}
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

    @classmethod
    def parse(cls, texts: list[str]) -> "Controls":
        c = cls()
        for text in texts:
            for name, value in _CONTROL.findall(text):
                if name == "empty":
                    c.empty = True
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
    return texts + [i for i in embedding_inputs(body) if isinstance(i, str)]


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


def _openai_usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def openai_chat(body: dict[str, Any], controls: Controls) -> Reply:
    model = body["model"]
    pieces, n, truncated = _completion(body, controls)
    prompt = prompt_tokens(body)
    usage = _openai_usage(prompt, n, min(controls.cached_tokens, prompt))
    finish = "length" if truncated else "stop"
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fake"}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []}
        return _json(200, {**base, "object": "chat.completion", "usage": usage,
                           "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]})

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + _dumps({**base, "object": "chat.completion.chunk", "choices": [choice], **extra}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, finish))
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
    total = prompt_tokens(body)
    cache_read = min(controls.cached_tokens, total)
    cache_write = min(controls.cache_write_tokens, total - cache_read)
    usage = {"input_tokens": total - cache_read - cache_write, "cache_creation_input_tokens": cache_write,
             "cache_read_input_tokens": cache_read, "output_tokens": n, "service_tier": "standard"}
    stop_reason = "max_tokens" if truncated else "end_turn"
    message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
               "model": body["model"], "content": [], "stop_reason": None, "stop_sequence": None}
    if not body.get("stream"):
        content = [{"type": "text", "text": "".join(pieces)}] if pieces else []
        return _json(200, {**message, "content": content, "stop_reason": stop_reason, "usage": usage})

    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + _dumps({"type": name, **data}) + b"\n\n"

    # Like the real API, message_start reports the input side and a placeholder output count;
    # the final output_tokens arrive in message_delta.
    events = [event("message_start", {"message": {**message, "usage": {**usage, "output_tokens": min(n, 1)}}})]
    if pieces:
        events.append(event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
    events.append(event("ping", {}))
    if pieces:
        events += [event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
                   for p in pieces]
        events.append(event("content_block_stop", {"index": 0}))
    events.append(event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                          "usage": {"output_tokens": n}}))
    events.append(event("message_stop", {}))
    return _sse(events)


def models_reply(wire: str) -> Reply:
    if wire == "anthropic":
        data = [{"type": "model", "id": m, "display_name": m.replace("-", " ").title(),
                 "created_at": "2025-01-01T00:00:00Z", "lifecycle": "active"} for m in _MODELS["anthropic"]]
        return _json(200, {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
    data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "fake"} for m in _MODELS["openai"]]
    return _json(200, {"object": "list", "data": data})


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
    if wire == "anthropic" and limit is None:
        return error_reply(wire, 400, "max_tokens: Field required")
    if limit is not None and limit < 1:
        return error_reply(wire, 400, "max_tokens must be at least 1", param="max_tokens")
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients dropping keep-alive connections
            super().handle_error(request, client_address)


class FakeProvider:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.calls: list[dict[str, Any]] = []
        self.disconnects: list[dict[str, Any]] = []
        self._lock = threading.Lock()
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

    def client_disconnected(self, path: str, events_sent: int) -> None:
        with self._lock:
            self.disconnects.append({"path": path, "events_sent": events_sent, "at": time.monotonic()})

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["path"] == path]

    def handle(self, method: str, path: str, headers: Any, raw: bytes) -> Reply:
        if path.startswith(BEDROCK_PATH_PREFIX):  # Amazon Bedrock runtime: the section below
            return bedrock_reply(self, method, path, headers, raw)
        if path == "/_fake/calls" and method == "GET":
            with self._lock:
                return _json(200, list(self.calls))
        if path == "/_fake/reset" and method == "POST":
            self.reset()
            return _json(200, {"ok": True})

        anthropic_headers = "x-api-key" in headers or "anthropic-version" in headers
        wire = "anthropic" if path == "/v1/messages" or (path == "/v1/models" and anthropic_headers) else "openai"
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        body_dict = body if isinstance(body, dict) else {}
        key = _api_key(wire, headers)
        call = {"method": method, "path": path, "wire": wire, "model": body_dict.get("model"), "api_key": key,
                "stream": bool(body_dict.get("stream")), "max_tokens": _max_tokens(body_dict), "body": body_dict}
        controls = Controls.parse(_prompt_texts(body_dict))
        reply = self._reply(method, path, wire, key, body, controls)
        call["status"] = reply.status
        with self._lock:
            self.calls.append(call)
        if controls.delay_ms:
            time.sleep(controls.delay_ms / 1000)
        if reply.events is not None:
            reply.interval_s, reply.drop_after = controls.stream_interval_ms / 1000, controls.drop_after
        return reply

    def _reply(self, method: str, path: str, wire: str, key: str, body: Any, controls: Controls) -> Reply:
        routes = {("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("POST", "/v1/messages"),
                  ("GET", "/v1/models")}
        if (method, path) not in routes:
            return error_reply(wire, 404, f"Unknown request URL: {method} {path}", code="unknown_url")
        if not key:
            return error_reply(wire, 401, "x-api-key header is required" if wire == "anthropic" else
                               "You didn't provide an API key.", code="missing_api_key")
        if key == "sk-fake-invalid" or key.startswith("bad-"):
            message = "invalid x-api-key" if wire == "anthropic" else f"Incorrect API key provided: {_masked(key)}."
            return error_reply(wire, 401, message, code="invalid_api_key")
        if method == "GET":
            return models_reply(wire)
        if not isinstance(body, dict):
            return error_reply(wire, 400, "The request body must be a JSON object.")
        if controls.status and controls.status >= 400:
            return error_reply(wire, controls.status, f"fake provider: forced HTTP {controls.status}",
                               retry_after_ms=controls.retry_after_ms)
        invalid = _check(wire, path, body)
        if invalid:
            return invalid
        if path == "/v1/embeddings":
            return openai_embeddings(body)
        if path == "/v1/messages":
            return anthropic_messages(body, controls)
        return openai_chat(body, controls)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small header and body writes must not wait for delayed ACKs
    fake: FakeProvider

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        reply = self.fake.handle(method, urlsplit(self.path).path, self.headers, raw)
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
