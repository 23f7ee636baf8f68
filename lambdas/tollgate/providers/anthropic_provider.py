"""Anthropic adapter: messages (plain: `call`; streamed: `open_stream`), in Anthropic's wire format.

The `anthropic` SDK is imported on first use, never at module import (it costs 0.5-1.5 s of cold start).
"""
from __future__ import annotations

from typing import Any

from tollgate import errors
from tollgate.providers import _common
from tollgate.providers.base import MESSAGES, ProviderResult, Usage

_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def usage_from(raw: dict[str, Any]) -> Usage:
    uncached = _common.int_or_zero(raw.get("input_tokens"))
    writes = _common.int_or_zero(raw.get("cache_creation_input_tokens"))
    reads = _common.int_or_zero(raw.get("cache_read_input_tokens"))
    return Usage(input_tokens=uncached + writes + reads, output_tokens=_common.int_or_zero(raw.get("output_tokens")),
                 cached_input_tokens=reads, cache_write_tokens=writes)


class MessagesStreamMeter(_common.StreamMeter):
    """Meters a Messages stream. message_start carries the input side (`reported`); message_delta carries the
    final, cumulative output_tokens (and, in newer API versions, may restate the input counts)."""

    def __init__(self, api_key: str):
        super().__init__(api_key)
        self._counts: dict[str, int] = {}

    def feed(self, name: str | None, data: str) -> bool:
        event = _common.json_or_none(data)
        if not isinstance(event, dict):
            return True
        kind = event.get("type")
        if name == "error" or kind == "error":
            self.failed(event)
        elif kind == "message_start":
            message = event.get("message") or {}
            self.model = message.get("model")
            self._counts.update(_present(message.get("usage") or {}))
            self.reported = usage_from(self._counts)
        elif kind == "content_block_start":
            self.generated(event.get("content_block"))
        elif kind == "content_block_delta":
            self.generated(event.get("delta"))
        elif kind == "message_delta":
            self._counts.update(_present(event.get("usage") or {}))
            self.final = usage_from(self._counts)
        elif kind == "message_stop":
            self.complete = True
        return True


def _present(usage: dict[str, Any]) -> dict[str, int]:
    return {k: usage[k] for k in _USAGE_FIELDS if isinstance(usage.get(k), int)}


class AnthropicProvider(_common.SdkAdapter):
    name = "anthropic"
    sdk_module = "anthropic"
    client_class = "Anthropic"
    models_page = {"limit": 1000}

    def _base_url(self) -> str | None:
        return self._settings.anthropic_base_url

    def _client_options(self) -> dict[str, Any]:
        # Explicit, so no environment variable can switch spans to recording prompt content.
        return {"open_telemetry": {"traces": {"content_mode": "metadata_only"}}}

    def open_stream(self, operation: str, body: dict[str, Any], *, api_key: str) -> _common.ProviderStream:
        """A streamed Messages call, open: its events arrive as the provider sends them."""
        _check(operation, body)
        create = self._client(api_key).messages.with_streaming_response.create
        return _common.open_stream(self._sdk(), create, MessagesStreamMeter(api_key), api_key, **_arguments(body))

    def call(self, operation: str, body: dict[str, Any], *, api_key: str) -> ProviderResult:
        _check(operation, body)
        sdk = self._sdk()
        try:
            create = self._client(api_key).messages.with_streaming_response.create
            with create(**_arguments(body)) as resp:
                raw, status = resp.read(), resp.status_code
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None
        doc = _common.json_document(raw)
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}),
                              doc.get("model") or body.get("model", ""))


def _check(operation: str, body: dict[str, Any]) -> None:
    if operation != MESSAGES:
        raise errors.InvalidRequest(f"operation {operation!r} is not served by the Anthropic adapter")
    if not isinstance(body.get("max_tokens"), int):
        raise errors.InvalidRequest("max_tokens is required", param="max_tokens")


def _arguments(body: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in body.items() if k not in ("model", "messages", "max_tokens")}
    return {"model": body.get("model"), "messages": body.get("messages"), "max_tokens": body["max_tokens"],
            "extra_body": rest}
