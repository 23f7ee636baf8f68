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


def usage_from(raw: dict[str, Any]) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=_common.int_or_zero(raw.get("prompt_tokens")),
        output_tokens=_common.int_or_zero(raw.get("completion_tokens")),
        cached_input_tokens=_common.int_or_zero(details.get("cached_tokens")),
        cache_write_tokens=_common.int_or_zero(details.get("cache_write_tokens")),
    )


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
                usage = usage_from(chunk["usage"])
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
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}),
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
