"""OpenAI adapter: chat completions (plain and streamed) and embeddings, in OpenAI's wire format.

The `openai` SDK is imported on first use, never at module import (it costs 0.5-1.5 s of cold start).
"""
from __future__ import annotations

import logging
from typing import Any

from tollgate import errors
from tollgate.providers import _common
from tollgate.providers.base import CHAT, EMBEDDINGS, ProviderResult, Usage
from tollgate.settings import Settings

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


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings):
        self._settings = settings
        self._clients = _common.ClientCache(self._new_client)

    @staticmethod
    def _sdk():
        import openai

        return openai

    def _new_client(self, api_key: str, base_url: str | None, *, timeout_s: float | None = None,
                    max_retries: int | None = None):
        return self._sdk().OpenAI(
            api_key=api_key, base_url=base_url,
            timeout=self._settings.provider_timeout_s if timeout_s is None else timeout_s,
            max_retries=self._settings.provider_max_retries if max_retries is None else max_retries)

    def _client(self, api_key: str):
        return self._clients.get(api_key, self._settings.openai_base_url)

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

    def list_models(self, *, api_key: str) -> list[dict[str, Any]]:
        sdk = self._sdk()
        try:
            with self._client(api_key).models.with_streaming_response.list() as resp:
                return list(_common.json_document(resp.read()).get("data") or [])
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None

    def validate_key(self, api_key: str, *, timeout_s: float) -> bool:
        """True if the key authenticates, False if the provider refuses it. Raises ProviderFailed when the
        provider cannot tell (5xx, timeout, unreachable), so an outage is not mistaken for a bad key."""
        sdk = self._sdk()
        client = self._new_client(api_key, self._settings.openai_base_url, timeout_s=timeout_s, max_retries=0)
        try:
            with client.models.with_streaming_response.list() as resp:
                resp.read()
            return True
        except _common.sdk_errors(sdk) as exc:
            return _common.key_verdict(exc, sdk, api_key)
        finally:
            client.close()
