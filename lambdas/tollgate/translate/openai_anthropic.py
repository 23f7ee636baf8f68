"""OpenAI chat completions <-> Anthropic Messages, both directions, plain and streamed, so an OpenAI-format
client can call a Claude model of the Anthropic API through /v1/chat/completions.

Sources: OpenAI's chat completions reference (https://platform.openai.com/docs/api-reference/chat) and
Anthropic's Messages reference and streaming guide (https://docs.anthropic.com/en/api/messages,
https://docs.anthropic.com/en/docs/build-with-claude/streaming).

- `to_messages(body)`: an OpenAI chat body as a Messages body (system, images, tools and tool results,
  stop -> stop_sequences, tool_choice, max_tokens). InvalidRequest (400) for what Messages cannot do (n > 1,
  response_format other than text).
- `from_messages(doc)`: a Messages answer as a `chat.completion` document.
- `openai_usage(usage)`: normalised Usage as an OpenAI `usage` object (prompt_tokens counts all input,
  cache reads in prompt_tokens_details.cached_tokens and writes in .cache_write_tokens).
- `ChatOverMessages(provider)`: a Provider serving chat completions through a Messages provider. The usage
  (and so the cost) is the Messages answer's own, metered exactly as the same request through /v1/messages
  would be: the plain answer keeps the provider's Usage, the stream keeps its MessagesStreamMeter.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

from tollgate.errors import InvalidRequest
from tollgate.providers import _common
from tollgate.providers.base import CHAT, MESSAGES, ProviderResult, Usage
from tollgate.translate.openai_chat import append_turn, client_shaped, data_url, parse_arguments, texts

FINISH_REASON = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                 "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}


@client_shaped
def to_messages(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages request body from an OpenAI chat body (see the module docstring)."""
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise InvalidRequest("n > 1 is not supported for Claude models.", param="n")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise InvalidRequest("response_format is not supported for Claude models; describe the format in the "
                             "prompt or use a tool.", param="response_format")
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system += texts(message.get("content"))
        elif role == "user":
            append_turn(messages, "user", _user_content(message.get("content")))
        elif role == "assistant":
            append_turn(messages, "assistant", _assistant_content(message))
        elif role in ("tool", "function"):
            append_turn(messages, "user", [{"type": "tool_result",
                                        "tool_use_id": message.get("tool_call_id") or message.get("name") or "",
                                        "content": "".join(texts(message.get("content")))}])
        else:
            raise InvalidRequest(f"message role {role!r} cannot be sent to a Claude model.", param="messages")
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(max_tokens, int):
        out["max_tokens"] = max_tokens
    if system:
        out["system"] = "\n\n".join(system)
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("stream", "stream")):
        if body.get(ours) is not None:
            out[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    tools = [{"name": (t.get("function") or {}).get("name", ""),
              "input_schema": (t.get("function") or {}).get("parameters") or {"type": "object"},
              **({"description": t["function"]["description"]} if (t.get("function") or {}).get("description") else {})}
             for t in body.get("tools") or []]
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice:
            out["tool_choice"] = choice
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name", "")}
    return None


def _user_content(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                out.append({"type": "image", "source": {"type": "url", "url": url}})
            else:
                media, data = data_url(url)
                out.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
        else:
            raise InvalidRequest(f"content part type {kind!r} cannot be sent to a Claude model.", param="messages")
    return out


def _assistant_content(message: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts(message.get("content"))]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        out.append({"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""),
                    "input": parse_arguments(function.get("arguments"))})
    return out


def openai_usage(usage: Usage) -> dict[str, Any]:
    """Normalised usage as an OpenAI `usage` object."""
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                      "cache_write_tokens": usage.cache_write_tokens}}


def from_messages(doc: dict[str, Any], usage: Usage) -> dict[str, Any]:
    """A `chat.completion` document from a Messages answer and its normalised usage."""
    content = doc.get("content") or []
    text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
    calls = [{"id": b.get("id", ""), "type": "function",
              "function": {"name": b.get("name", ""), "arguments": json.dumps(b.get("input") or {})}}
             for b in content if b.get("type") == "tool_use"]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {"id": _chat_id(doc.get("id")), "object": "chat.completion", "created": int(time.time()),
            "model": doc.get("model", ""),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": FINISH_REASON.get(doc.get("stop_reason"), "stop")}],
            "usage": openai_usage(usage)}


def _chat_id(message_id: Any) -> str:
    return f"chatcmpl-{message_id}" if isinstance(message_id, str) and message_id else "chatcmpl-unknown"


class StreamTranslator:
    """Messages stream events (parsed JSON) -> chat.completion.chunk documents. `feed(event)` returns the
    chunks an event becomes; tool_use blocks become `tool_calls` deltas numbered 0, 1, ... as they start,
    their input_json_delta fragments `function.arguments` fragments."""

    def __init__(self, model: str):
        self._base = {"id": "chatcmpl-unknown", "object": "chat.completion.chunk", "created": int(time.time()),
                      "model": model}
        self._tool_index: dict[int, int] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**self._base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": openai_usage(usage)}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._base.update(id=_chat_id(message.get("id")), model=message.get("model") or self._base["model"])
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index.setdefault(event.get("index", 0), len(self._tool_index))
                return [self._chunk({"tool_calls": [{"index": index, "id": block.get("id", ""), "type": "function",
                                                     "function": {"name": block.get("name", ""), "arguments": ""}}]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self._tool_index.setdefault(event.get("index", 0), len(self._tool_index))
                return [self._chunk({"tool_calls": [{"index": index,
                                                     "function": {"arguments": delta.get("partial_json", "")}}]})]
            return []
        if kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, FINISH_REASON.get(reason, "stop"))] if reason else []
        if kind == "error":
            return [{"error": event.get("error") or {"message": "stream error"}}]
        return []


class ChatOverMessages:
    """A Provider serving chat completions (OpenAI wire format) through a Messages provider (`inner`).
    Other operations go to `inner` unchanged."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name

    def call(self, operation: str, body: dict[str, Any], *, api_key: str) -> ProviderResult:
        if operation != CHAT:
            return self.inner.call(operation, body, api_key=api_key)
        result = self.inner.call(MESSAGES, to_messages(body), api_key=api_key)
        doc = from_messages(_common.json_document(result.body), result.usage)
        return ProviderResult(result.status, json.dumps(doc).encode(), "application/json", result.usage,
                              result.model)

    def open_stream(self, operation: str, body: dict[str, Any], *, api_key: str) -> Any:
        if operation != CHAT:
            return self.inner.open_stream(operation, body, api_key=api_key)
        upstream = self.inner.open_stream(MESSAGES, to_messages(body), api_key=api_key)
        keep = bool((body.get("stream_options") or {}).get("include_usage"))
        return ChatStream(upstream, StreamTranslator(body.get("model", "")), keep)


class ChatStream:
    """An open Messages stream (tollgate.providers._common.ProviderStream) seen as a chat-completions
    stream: iterating yields OpenAI SSE blocks; metering stays the Messages stream's (`meter`)."""

    def __init__(self, upstream: Any, translator: StreamTranslator, include_usage: bool):
        self._upstream = upstream
        self._translator = translator
        self._include_usage = include_usage
        self.status = upstream.status
        self.content_type = upstream.content_type
        self.meter = upstream.meter

    @property
    def dropped(self) -> bool:
        return self._upstream.dropped

    @property
    def aborted(self) -> bool:
        return self._upstream.aborted

    def abort(self) -> None:
        self._upstream.abort()

    def close(self) -> None:
        self._upstream.close()

    def __iter__(self) -> Iterator[bytes]:
        for block in self._upstream:
            for _, _, data in _common.sse_events(block):
                event = _common.json_or_none(data)
                for chunk in self._translator.feed(event) if isinstance(event, dict) else []:
                    yield _sse(chunk)
        if self.meter.complete:
            if self._include_usage and self.meter.final is not None:
                yield _sse(self._translator.usage_chunk(self.meter.final))
            yield b"data: [DONE]\n\n"


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"
