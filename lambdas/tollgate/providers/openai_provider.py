"""OpenAI adapter: chat completions (plain and streamed) and embeddings, in OpenAI's wire format.

The `openai` SDK is imported on first use, never at module import (it costs 0.5-1.5 s of cold start).
"""
from __future__ import annotations

import logging
from typing import Any

from tollgate import errors
from tollgate.providers import _common
from tollgate.providers.base import CHAT, EMBEDDINGS, ProviderResult, Usage

log = logging.getLogger(__name__)


# Responses API output items of provider-run tools, and the priced tool each call is.
_TOOL_CALL_ITEMS = {"web_search_call": "web_search", "file_search_call": "file_search",
                    "code_interpreter_call": "code_interpreter"}


def usage_from(raw: dict[str, Any], response: dict[str, Any] | None = None) -> Usage:
    """Usage from a `usage` object: chat completions (prompt_tokens, completion_tokens,
    *_details.cached_tokens / reasoning_tokens), embeddings, or the Responses API (input_tokens,
    output_tokens, input_tokens_details.cached_tokens, output_tokens_details.reasoning_tokens).
    Reasoning tokens are already inside completion_tokens / output_tokens: they are recorded, not added.

    `response` is the document (or stream chunk, or Responses object) the usage came in: its
    `service_tier` is the tier OpenAI says it used ("default" is the standard tier: None), and its
    Responses `output` items web_search_call / file_search_call / code_interpreter_call are the
    server-side tool calls."""
    in_details = _object(raw.get("prompt_tokens_details") or raw.get("input_tokens_details"))
    out_details = _object(raw.get("completion_tokens_details") or raw.get("output_tokens_details"))
    response = _object(response)
    tier = response.get("service_tier")
    calls: dict[str, int] = {}
    output = response.get("output")
    for item in output if isinstance(output, list) else []:
        tool = _TOOL_CALL_ITEMS.get(item.get("type")) if isinstance(item, dict) else None
        if tool:
            calls[tool] = calls.get(tool, 0) + 1
    return Usage(
        input_tokens=_common.int_or_zero(raw["prompt_tokens"] if "prompt_tokens" in raw else raw.get("input_tokens")),
        output_tokens=_common.int_or_zero(
            raw["completion_tokens"] if "completion_tokens" in raw else raw.get("output_tokens")),
        cached_input_tokens=_common.int_or_zero(in_details.get("cached_tokens")),
        cache_write_tokens=_common.int_or_zero(in_details.get("cache_write_tokens")),
        reasoning_tokens=_common.int_or_zero(out_details.get("reasoning_tokens")),
        server_tool_calls=calls,
        service_tier=tier if isinstance(tier, str) and tier not in ("default", "auto") else None,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def meter_stream(raw: bytes, body: dict[str, Any], *, keep_usage_chunk: bool, api_key: str) -> tuple[bytes, Usage, str]:
    """(the stream to give the client, its usage, the model) from a stream requested with include_usage."""
    blocks, usage, model = [], None, None
    for block, _, data in _common.sse_events(raw):
        chunk = _common.json_or_none(data) if data != "[DONE]" else None
        if isinstance(chunk, dict):
            if "error" in chunk:
                error = chunk["error"] if isinstance(chunk["error"], dict) else {}
                message = _common.redact(str(error.get("message", "stream error")), api_key)
                raise errors.ProviderFailed(f"the provider failed mid-stream: {message}")
            model = model or chunk.get("model")
            if chunk.get("usage"):
                usage = usage_from(chunk["usage"], chunk)
                if not chunk.get("choices") and not keep_usage_chunk:
                    continue
        blocks.append(block)
    if usage is None:  # unknown: the gateway charges its reserved worst case (tollgate.service)
        log.warning("openai stream ended without a usage chunk")
        usage = Usage()
    return _common.join_events(blocks), usage, model or body.get("model", "")


class OpenAIProvider(_common.SdkAdapter):
    name = "openai"
    sdk_module = "openai"
    client_class = "OpenAI"

    def _base_url(self) -> str | None:
        return self._settings.openai_base_url

    def call(self, operation: str, body: dict[str, Any], *, api_key: str) -> ProviderResult:
        if operation not in (CHAT, EMBEDDINGS):
            raise errors.InvalidRequest(f"operation {operation!r} is not served by the OpenAI adapter")
        sdk = self._sdk()
        try:
            if operation == EMBEDDINGS:
                return self._embeddings(body, api_key)
            return self._chat(body, api_key)
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None

    def _chat(self, body: dict[str, Any], api_key: str) -> ProviderResult:
        rest = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        stream = bool(body.get("stream"))
        if stream:
            # Always ask for the final usage chunk: it is what a stream is metered by.
            rest["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        if "stream" in body:  # sent only if the client sent it, so the provider sees the client's body
            rest["stream"] = body["stream"]
        create = self._client(api_key).chat.completions.with_streaming_response.create
        with create(model=body.get("model"), messages=body.get("messages"), extra_body=rest) as resp:
            raw, status = resp.read(), resp.status_code
        if stream:
            client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            sse, usage, model = meter_stream(raw, body, keep_usage_chunk=client_wants_usage, api_key=api_key)
            return ProviderResult(status, sse, "text/event-stream", usage, model)
        doc = _common.json_document(raw)
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}, doc),
                              doc.get("model") or body.get("model", ""))

    def _embeddings(self, body: dict[str, Any], api_key: str) -> ProviderResult:
        rest = {k: v for k, v in body.items() if k not in ("model", "input")}
        # The SDK asks for base64 unless told otherwise; a client that did not choose gets the API default.
        rest.setdefault("encoding_format", "float")
        create = self._client(api_key).embeddings.with_streaming_response.create
        with create(model=body.get("model"), input=body.get("input"), extra_body=rest) as resp:
            raw, status = resp.read(), resp.status_code
        doc = _common.json_document(raw)
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}),
                              doc.get("model") or body.get("model", ""))
