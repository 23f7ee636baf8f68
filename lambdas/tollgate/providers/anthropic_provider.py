"""Anthropic adapter: messages (plain: `call`; streamed: `open_stream`) and count_tokens, in Anthropic's wire
format. `headers`: the client's anthropic-version / anthropic-beta (tollgate.anthropic_api), sent as they are.

The `anthropic` SDK is imported on first use, never at module import (it costs 0.5-1.5 s of cold start).
"""
from __future__ import annotations

from typing import Any, Mapping

from tollgate import errors
from tollgate.providers import _common
from tollgate.providers.base import MESSAGES, ProviderResult, Usage

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


class MessagesStreamMeter(_common.StreamMeter):
    """Meters a Messages stream. message_start carries the input side (`reported`); message_delta carries the
    final, cumulative output_tokens (and, in newer API versions, may restate the input counts)."""

    def __init__(self, api_key: str, body: dict[str, Any] | None = None):
        super().__init__(api_key)
        self._body = body  # the request: usage_from reads its cache_control ttl
        self._counts: dict[str, Any] = {}

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
            self.reported = usage_from(self._counts, self._body)
        elif kind == "content_block_start":
            self.generated(event.get("content_block"))
        elif kind == "content_block_delta":
            self.generated(event.get("delta"))
        elif kind == "message_delta":
            self._counts.update(_present(event.get("usage") or {}))
            self.final = usage_from(self._counts, self._body)
        elif kind == "message_stop":
            self.complete = True
        return True


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
    client_paths = ("messages.with_streaming_response.create", "messages.with_streaming_response.count_tokens",
                    "models.with_streaming_response.list")
    models_page = {"limit": 1000}

    def _base_url(self) -> str | None:
        return self._settings.anthropic_base_url

    def _client_options(self) -> dict[str, Any]:
        # Explicit, so no environment variable can switch spans to recording prompt content.
        return {"open_telemetry": {"traces": {"content_mode": "metadata_only"}}}

    def open_stream(self, operation: str, body: dict[str, Any], *, api_key: str,
                    headers: Mapping[str, str] | None = None) -> _common.ProviderStream:
        """A streamed Messages call, open: its events arrive as the provider sends them."""
        _check(operation, body)
        create = self._client(api_key).messages.with_streaming_response.create
        return _common.open_stream(self._sdk(), create, MessagesStreamMeter(api_key, body), api_key,
                                   **_arguments(body, headers))

    def call(self, operation: str, body: dict[str, Any], *, api_key: str,
             headers: Mapping[str, str] | None = None) -> ProviderResult:
        _check(operation, body)
        sdk = self._sdk()
        try:
            create = self._client(api_key).messages.with_streaming_response.create
            with create(**_arguments(body, headers)) as resp:
                raw, status = resp.read(), resp.status_code
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None
        doc = _common.json_document(raw)
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}, body),
                              doc.get("model") or body.get("model", ""))

    def count_tokens(self, body: dict[str, Any], *, api_key: str,
                     headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """POST /v1/messages/count_tokens, forwarded: (HTTP status, the provider's JSON {input_tokens}).
        Raises like `call`."""
        sdk = self._sdk()
        rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
        try:
            count = self._client(api_key).messages.with_streaming_response.count_tokens
            with count(model=body.get("model"), messages=body.get("messages"), extra_body=rest,
                       **({"extra_headers": dict(headers)} if headers else {})) as resp:
                return resp.status_code, resp.read()
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None


def _check(operation: str, body: dict[str, Any]) -> None:
    if operation != MESSAGES:
        raise errors.InvalidRequest(f"operation {operation!r} is not served by the Anthropic adapter")
    if not isinstance(body.get("max_tokens"), int):
        raise errors.InvalidRequest("max_tokens is required", param="max_tokens")


def _arguments(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    rest = {k: v for k, v in body.items() if k not in ("model", "messages", "max_tokens")}
    return {"model": body.get("model"), "messages": body.get("messages"), "max_tokens": body["max_tokens"],
            "extra_body": rest, **({"extra_headers": dict(headers)} if headers else {})}
