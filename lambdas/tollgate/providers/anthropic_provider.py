"""Anthropic adapter: messages (plain and streamed), in Anthropic's wire format.

The `anthropic` SDK is imported on first use, never at module import (it costs 0.5-1.5 s of cold start).
"""
from __future__ import annotations

import logging
from typing import Any

from tollgate import errors
from tollgate.providers import _common
from tollgate.providers.base import MESSAGES, ProviderResult, Usage

log = logging.getLogger(__name__)

_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_USAGE_OBJECTS = ("cache_creation", "server_tool_use")  # the 5m/1h split of cache writes; server-tool calls
_REQUESTS = "_requests"  # server_tool_use.web_search_requests -> tool "web_search"


def usage_from(raw: dict[str, Any], body: dict[str, Any] | None = None) -> Usage:
    """Usage from a Messages `usage` object (and the request `body` it answers).

    Cache writes: `cache_creation` {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens} splits
    cache_creation_input_tokens into 5-minute and 1-hour writes. Without the split, every write is taken
    as a 1-hour write (the dearer, 2x input) if the request asked for `"ttl": "1h"` anywhere, else as a
    5-minute write. server_tool_use {web_search_requests, web_fetch_requests, ...} gives the calls of each
    server-side tool; service_tier "standard" is the standard tier (None)."""
    uncached = _common.int_or_zero(raw.get("input_tokens"))
    writes = _common.int_or_zero(raw.get("cache_creation_input_tokens"))
    reads = _common.int_or_zero(raw.get("cache_read_input_tokens"))
    split = raw.get("cache_creation")
    if isinstance(split, dict):
        writes_1h = min(writes, _common.int_or_zero(split.get("ephemeral_1h_input_tokens")))
    else:
        writes_1h = writes if _asks_for_1h_cache(body) else 0
    tools = raw.get("server_tool_use") if isinstance(raw.get("server_tool_use"), dict) else {}
    calls = {name[:-len(_REQUESTS)]: n for name, n in tools.items()
             if name.endswith(_REQUESTS) and isinstance(n, int) and n > 0}
    tier = raw.get("service_tier")
    return Usage(input_tokens=uncached + writes + reads, output_tokens=_common.int_or_zero(raw.get("output_tokens")),
                 cached_input_tokens=reads, cache_write_tokens=writes, cache_write_1h_tokens=writes_1h,
                 server_tool_calls=calls, service_tier=tier if isinstance(tier, str) and tier != "standard" else None)


def _asks_for_1h_cache(node: Any) -> bool:
    """Whether a `cache_control` anywhere in the request asks for a 1-hour ttl."""
    if isinstance(node, dict):
        return node.get("ttl") == "1h" or any(_asks_for_1h_cache(v) for v in node.values())
    if isinstance(node, list):
        return any(_asks_for_1h_cache(v) for v in node)
    return False


def meter_stream(raw: bytes, body: dict[str, Any], *, api_key: str) -> tuple[bytes, Usage, str]:
    """(the stream, its usage, the model). message_start carries the input side; message_delta carries the
    final, cumulative output_tokens (and, in newer API versions, may restate the input counts)."""
    counts: dict[str, Any] = {}
    model, seen_delta = None, False
    events = _common.sse_events(raw)
    for _, name, data in events:
        event = _common.json_or_none(data)
        if not isinstance(event, dict):
            continue
        if name == "error" or event.get("type") == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            message = _common.redact(str(error.get("message", "stream error")), api_key)
            raise errors.ProviderFailed(f"the provider failed mid-stream: {message}")
        if event.get("type") == "message_start":
            message = event.get("message") or {}
            model = message.get("model")
            counts.update(_present(message.get("usage") or {}))
        elif event.get("type") == "message_delta":
            seen_delta = True
            counts.update(_present(event.get("usage") or {}))
    usage = usage_from(counts, body)
    if not seen_delta:  # the output is unknown: the gateway charges its reserved worst case (tollgate.service)
        log.warning("anthropic stream ended without message_delta usage")
        usage = Usage()
    return _common.join_events([block for block, _, _ in events]), usage, model or body.get("model", "")


def _present(usage: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: usage[k] for k in _USAGE_FIELDS if isinstance(usage.get(k), int)}
    out.update({k: usage[k] for k in _USAGE_OBJECTS if isinstance(usage.get(k), dict)})
    if isinstance(usage.get("service_tier"), str):
        out["service_tier"] = usage["service_tier"]
    return out


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

    def call(self, operation: str, body: dict[str, Any], *, api_key: str) -> ProviderResult:
        if operation != MESSAGES:
            raise errors.InvalidRequest(f"operation {operation!r} is not served by the Anthropic adapter")
        if not isinstance(body.get("max_tokens"), int):
            raise errors.InvalidRequest("max_tokens is required", param="max_tokens")
        sdk = self._sdk()
        rest = {k: v for k, v in body.items() if k not in ("model", "messages", "max_tokens")}
        stream = bool(body.get("stream"))
        try:
            create = self._client(api_key).messages.with_streaming_response.create
            with create(model=body.get("model"), messages=body.get("messages"), max_tokens=body["max_tokens"],
                        extra_body=rest) as resp:
                raw, status = resp.read(), resp.status_code
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None
        if stream:
            sse, usage, model = meter_stream(raw, body, api_key=api_key)
            return ProviderResult(status, sse, "text/event-stream", usage, model)
        doc = _common.json_document(raw)
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}, body),
                              doc.get("model") or body.get("model", ""))
