"""OpenAI adapter: chat completions and the Responses API (plain: `call`; streamed: `open_stream`),
embeddings, and the Responses API's stored-response operations (`stored_response`), in OpenAI's wire format.

The `openai` SDK is imported on first use, never at module import (it costs 0.5-1.5 s of cold start).
"""
from __future__ import annotations

from typing import Any

from tollgate import errors
from tollgate.providers import _common
from tollgate.providers.base import CHAT, EMBEDDINGS, RESPONSES, ProviderResult, Usage


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


class ChatStreamMeter(_common.StreamMeter):
    """Meters a chat-completions stream requested with include_usage; drops the usage chunk unless the client
    asked for it itself."""

    def __init__(self, api_key: str, *, keep_usage_chunk: bool):
        super().__init__(api_key)
        self.keep_usage_chunk = keep_usage_chunk

    def feed(self, name: str | None, data: str) -> bool:
        if data == "[DONE]":
            self.complete = True
            return True
        chunk = _common.json_or_none(data)
        if not isinstance(chunk, dict):
            return True
        if "error" in chunk:
            self.failed(chunk)
            return True
        self.model = self.model or chunk.get("model")
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("delta"):
                self.generated(choice["delta"])
        if chunk.get("usage"):
            self.final = usage_from(chunk["usage"], chunk)
            return bool(chunk.get("choices")) or self.keep_usage_chunk
        return True


class ResponsesStreamMeter(_common.StreamMeter):
    """Meters a Responses API stream (https://platform.openai.com/docs/api-reference/responses-streaming):
    response.created names the response (`response_id`, its owner is recorded when settled); deltas
    (output_text, function_call_arguments, reasoning...) are what was generated; the terminal event
    response.completed / response.incomplete / response.failed carries `response.usage`."""

    _TERMINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self, api_key: str):
        super().__init__(api_key)
        self.response_id: str | None = None

    def feed(self, name: str | None, data: str) -> bool:
        event = _common.json_or_none(data)
        if not isinstance(event, dict):
            return True
        kind = event.get("type") or name
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        if kind == "error":
            self.failed({"error": event})
        elif kind == "response.created":
            self.response_id = response.get("id") if isinstance(response.get("id"), str) else None
            self.model = response.get("model")
        elif isinstance(kind, str) and kind.endswith(".delta"):
            self.generated(event.get("delta"))
        elif kind in self._TERMINAL:
            self.model = response.get("model") or self.model
            if isinstance(response.get("usage"), dict):
                self.final = usage_from(response["usage"], response)
            self.complete = kind != "response.failed"
            if kind == "response.failed":
                self.failed({"error": response.get("error") or {}})
        return True


def _client_wants_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _chat_rest(body: dict[str, Any]) -> dict[str, Any]:
    """The body's fields other than model and messages, as sent to the provider."""
    rest = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
    if body.get("stream"):
        # Always ask for the final usage chunk: it is what a stream is metered by.
        rest["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    if "stream" in body:  # sent only if the client sent it, so the provider sees the client's body
        rest["stream"] = body["stream"]
    return rest


def _responses_rest(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses API body's fields other than model, as sent to the provider (the client's own)."""
    return {k: v for k, v in body.items() if k != "model"}


class OpenAIProvider(_common.SdkAdapter):
    name = "openai"
    sdk_module = "openai"
    client_class = "OpenAI"
    client_paths = ("chat.completions.with_streaming_response.create", "embeddings.with_streaming_response.create",
                    "responses.with_streaming_response.create", "models.with_streaming_response.list")

    def _base_url(self) -> str | None:
        return self._settings.openai_base_url

    def call(self, operation: str, body: dict[str, Any], *, api_key: str) -> ProviderResult:
        if operation not in (CHAT, EMBEDDINGS, RESPONSES):
            raise errors.InvalidRequest(f"operation {operation!r} is not served by the OpenAI adapter")
        sdk = self._sdk()
        try:
            if operation == EMBEDDINGS:
                return self._embeddings(body, api_key)
            if operation == RESPONSES:
                return self._responses(body, api_key)
            return self._chat(body, api_key)
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None

    def open_stream(self, operation: str, body: dict[str, Any], *, api_key: str) -> _common.ProviderStream:
        """A streamed chat completion, open: its events arrive as the provider sends them. Always asks for
        the final usage chunk (`stream_options.include_usage`) and hides it from a client that did not."""
        if operation == RESPONSES:
            create = self._client(api_key).responses.with_streaming_response.create
            return _common.open_stream(self._sdk(), create, ResponsesStreamMeter(api_key), api_key,
                                       model=body.get("model"), extra_body=_responses_rest(body))
        if operation != CHAT:
            raise errors.InvalidRequest(f"operation {operation!r} cannot be streamed by the OpenAI adapter")
        meter = ChatStreamMeter(api_key, keep_usage_chunk=_client_wants_usage(body))
        create = self._client(api_key).chat.completions.with_streaming_response.create
        return _common.open_stream(self._sdk(), create, meter, api_key, model=body.get("model"),
                                   messages=body.get("messages"), extra_body=_chat_rest(body))

    def _chat(self, body: dict[str, Any], api_key: str) -> ProviderResult:
        create = self._client(api_key).chat.completions.with_streaming_response.create
        with create(model=body.get("model"), messages=body.get("messages"), extra_body=_chat_rest(body)) as resp:
            raw, status = resp.read(), resp.status_code
        doc = _common.json_document(raw)
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}, doc),
                              doc.get("model") or body.get("model", ""))

    def _responses(self, body: dict[str, Any], api_key: str) -> ProviderResult:
        create = self._client(api_key).responses.with_streaming_response.create
        with create(model=body.get("model"), extra_body=_responses_rest(body)) as resp:
            raw, status = resp.read(), resp.status_code
        doc = _common.json_document(raw)
        response_id = doc.get("id") if isinstance(doc.get("id"), str) else None
        return ProviderResult(status, raw, "application/json", usage_from(doc.get("usage") or {}, doc),
                              doc.get("model") or body.get("model", ""), response_id)

    def stored_response(self, method: str, response_id: str, action: str | None, query: dict[str, str], *,
                        api_key: str) -> tuple[int, bytes]:
        """A stored response's operation, forwarded: GET /responses/{id} (retrieve), DELETE /responses/{id},
        POST /responses/{id}/cancel, GET /responses/{id}/input_items (`action` "cancel" / "input_items").
        Returns (HTTP status, the provider's JSON body). Raises like `call`."""
        sdk = self._sdk()
        path = f"/responses/{response_id}" + (f"/{action}" if action else "")
        client = self._client(api_key)
        send = {"GET": client.get, "DELETE": client.delete, "POST": client.post}[method]
        try:
            resp = send(path, cast_to=_common.http_response_class(), options={"params": query})
            return resp.status_code, resp.read()
        except _common.sdk_errors(sdk) as exc:
            raise _common.translate(exc, sdk, api_key) from None

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
