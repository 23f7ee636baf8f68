"""OpenAI chat completions <-> Amazon Bedrock Converse / ConverseStream.

Sources: OpenAI's chat completions reference (https://platform.openai.com/docs/api-reference/chat) and the
Bedrock runtime API reference for Converse (https://docs.aws.amazon.com/bedrock/latest/APIReference/
API_runtime_Converse.html) and ConverseStream (API_runtime_ConverseStream.html).

- `to_converse(body)`: an OpenAI chat body as boto3 `converse` / `converse_stream` keyword arguments
  (modelId, messages, system, inferenceConfig, toolConfig). Raises errors.InvalidRequest for what Converse
  cannot carry (an image by URL rather than a data: URL, a message role it has no place for).
- `from_converse(response, model)`: a Converse response as an OpenAI `chat.completion` document.
- `StreamTranslator`: ConverseStream events (boto3's dicts) -> OpenAI `chat.completion.chunk` documents,
  the last one the usage chunk (choices: []), as a stream with `stream_options.include_usage` ends.
- `openai_usage(usage)`: Bedrock TokenUsage (inputTokens excludes cache reads and writes) as OpenAI usage:
  prompt_tokens counts every input token; prompt_tokens_details.cached_tokens the cache reads and
  .cache_write_tokens the cache writes (what tollgate.providers.openai_provider.usage_from reads).
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from tollgate.errors import InvalidRequest
from tollgate.translate.openai_chat import append_turn, client_shaped, data_url, parse_arguments, texts

FINISH_REASON = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                 "content_filtered": "content_filter", "guardrail_intervened": "content_filter",
                 "model_context_window_exceeded": "length"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}


@client_shaped
def to_converse(body: dict[str, Any]) -> dict[str, Any]:
    """boto3 keyword arguments for `converse` / `converse_stream` from an OpenAI chat body."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in texts(message.get("content"))]
        elif role == "user":
            append_turn(messages, "user", _user_content(message.get("content")))
        elif role == "assistant":
            append_turn(messages, "assistant", _assistant_content(message))
        elif role in ("tool", "function"):
            result = {"toolUseId": message.get("tool_call_id") or message.get("name") or "",
                      "content": [{"text": t} for t in texts(message.get("content"))] or [{"text": ""}]}
            append_turn(messages, "user", [{"toolResult": result}])
        else:
            raise InvalidRequest(f"message role {role!r} cannot be sent to a Bedrock model.", param="messages")
    out: dict[str, Any] = {"modelId": body["model"], "messages": messages}
    if system:
        out["system"] = system
    inference = _inference_config(body)
    if inference:
        out["inferenceConfig"] = inference
    tools = _tool_config(body)
    if tools:
        out["toolConfig"] = tools
    return out


def _user_content(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    out: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append({"text": part.get("text", "")})
        elif kind == "image_url":
            out.append({"image": image_from_url((part.get("image_url") or {}).get("url", ""))})
        else:
            raise InvalidRequest(f"content part type {kind!r} cannot be sent to a Bedrock model.", param="messages")
    return out


def image_from_url(url: str) -> dict[str, Any]:
    """A Converse ImageBlock from an OpenAI `image_url.url`: only data: URLs (Bedrock fetches no URL)."""
    media, image = data_url(url)
    fmt = _IMAGE_FORMATS.get(media)
    if fmt is None:
        raise InvalidRequest(f"image type {media!r} is not supported; use png, jpeg, gif or webp.", param="messages")
    return {"format": fmt, "source": {"bytes": base64.b64decode(image)}}


def _assistant_content(message: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"text": t} for t in texts(message.get("content"))]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        out.append({"toolUse": {"toolUseId": call.get("id", ""), "name": function.get("name", ""),
                                "input": parse_arguments(function.get("arguments"))}})
    return out or [{"text": ""}]


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(max_tokens, int):
        out["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        out["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        out["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return out


def _tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = []
    for tool in body.get("tools") or []:
        function = tool.get("function") or {}
        spec: dict[str, Any] = {"name": function.get("name", ""),
                                "inputSchema": {"json": function.get("parameters") or {"type": "object"}}}
        if function.get("description"):
            spec["description"] = function["description"]
        tools.append({"toolSpec": spec})
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    choice = body.get("tool_choice")
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        config["toolChoice"] = {"tool": {"name": choice["function"].get("name", "")}}
    return config  # "none": Converse has no such choice; the tools stay declared (past tool calls need them)


def openai_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Bedrock TokenUsage as an OpenAI `usage` object (see the module docstring)."""
    usage = usage or {}
    uncached, output = _int(usage.get("inputTokens")), _int(usage.get("outputTokens"))
    reads, writes = _int(usage.get("cacheReadInputTokens")), _int(usage.get("cacheWriteInputTokens"))
    prompt = uncached + reads + writes
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": reads, "cache_write_tokens": writes}}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def from_converse(response: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI `chat.completion` document from a Converse response (boto3's dict)."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    text = "".join(block["text"] for block in content if isinstance(block.get("text"), str))
    calls = [_tool_call(block["toolUse"]) for block in content if isinstance(block.get("toolUse"), dict)]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {"id": _completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": FINISH_REASON.get(response.get("stopReason"), "stop")}],
            "usage": openai_usage(response.get("usage"))}


def _tool_call(use: dict[str, Any]) -> dict[str, Any]:
    return {"id": use.get("toolUseId", ""), "type": "function",
            "function": {"name": use.get("name", ""), "arguments": json.dumps(use.get("input") or {})}}


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


class StreamTranslator:
    """ConverseStream events -> OpenAI chat.completion.chunk documents. Feed each boto3 event dict
    ({"messageStart": {...}}, {"contentBlockDelta": {...}}, {"metadata": {...}}, ...) to `feed`; it returns
    the chunks it becomes (often none). Tool-use blocks become `tool_calls` deltas numbered 0, 1, ... in
    the order they start; their input arrives as `function.arguments` fragments."""

    def __init__(self, model: str):
        self._base = {"id": _completion_id(), "object": "chat.completion.chunk", "created": int(time.time()),
                      "model": model}
        self._tool_index: dict[int, int] = {}  # Converse contentBlockIndex -> OpenAI tool_calls index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**self._base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if "messageStart" in event:
            return [self._chunk({"role": "assistant", "content": ""})]
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = (start.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return []
            index = self._tool_index.setdefault(start.get("contentBlockIndex", 0), len(self._tool_index))
            return [self._chunk({"tool_calls": [{"index": index, "id": use.get("toolUseId", ""), "type": "function",
                                                 "function": {"name": use.get("name", ""), "arguments": ""}}]})]
        if "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if isinstance(delta.get("text"), str):
                return [self._chunk({"content": delta["text"]})]
            if isinstance(delta.get("toolUse"), dict):
                index = self._tool_index.setdefault(block.get("contentBlockIndex", 0), len(self._tool_index))
                return [self._chunk({"tool_calls": [{"index": index,
                                                     "function": {"arguments": delta["toolUse"].get("input", "")}}]})]
            return []
        if "messageStop" in event:
            return [self._chunk({}, FINISH_REASON.get(event["messageStop"].get("stopReason"), "stop"))]
        if "metadata" in event:
            return [{**self._base, "choices": [], "usage": openai_usage(event["metadata"].get("usage"))}]
        return []
