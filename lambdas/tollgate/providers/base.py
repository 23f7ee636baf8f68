"""What every provider adapter returns, and the interface the gateway calls."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

# Operations a provider may serve. The gateway picks one from the route.
CHAT = "chat.completions"  # OpenAI wire format
EMBEDDINGS = "embeddings"  # OpenAI wire format
MESSAGES = "messages"  # Anthropic wire format
RESPONSES = "responses"  # OpenAI Responses API wire format


@dataclass(frozen=True)
class Usage:
    """Usage normalised across providers: token counts, server-side tool calls, and the service tier.

    input_tokens counts *all* input tokens, cached reads and cache writes included (OpenAI's
    prompt_tokens / Responses input_tokens; Anthropic's input_tokens + cache_creation_input_tokens +
    cache_read_input_tokens). output_tokens counts all output, reasoning included (OpenAI's
    completion_tokens / Responses output_tokens already contain reasoning_tokens: never add them again).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # OpenAI *_tokens_details.cached_tokens / Anthropic cache_read_input_tokens
    cache_write_tokens: int = 0  # Anthropic cache_creation_input_tokens: all cache writes, 5-minute and 1-hour
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those written with a 1-hour ttl (billed at 2x input)
    reasoning_tokens: int = 0  # informational: of output_tokens, the reasoning ones (already counted there)
    server_tool_calls: Mapping[str, int] = field(default_factory=dict)  # tool name (web_search, ...) -> calls
    service_tier: str | None = None  # the non-standard tier the provider reports it used ("priority", "flex")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        return max(0, self.input_tokens - self.cached_input_tokens - self.cache_write_tokens)


@dataclass(frozen=True)
class ProviderResult:
    status: int
    body: bytes  # exactly what the client receives: a JSON document, or the whole SSE stream
    content_type: str  # application/json or text/event-stream
    usage: Usage
    model: str  # the model the provider says it used
    response_id: str | None = None  # a Responses API answer's id (its owner is recorded: tollgate.responses)


class Provider(Protocol):
    name: str  # "openai" | "anthropic"

    def call(self, operation: str, body: dict[str, Any], *, api_key: str) -> ProviderResult:
        """Send one request that is not streamed. `body` is the client's request in this provider's wire
        format, already checked and with max_tokens set. Raises errors.ProviderFailed (5xx, timeout,
        connection) or errors.ProviderRejected (the provider's 4xx, with its status and message)."""
        ...

    def open_stream(self, operation: str, body: dict[str, Any], *, api_key: str) -> Any:
        """Send a streamed request (`stream: true`) and return once the provider has answered its status:
        a tollgate.providers._common.ProviderStream to iterate for its SSE events as they arrive, metered
        as they pass. Raises like `call` when the provider refuses before the first event."""
        ...

    def list_models(self, *, api_key: str) -> list[dict[str, Any]]:
        ...

    def validate_key(self, api_key: str, *, timeout_s: float) -> bool:
        """One cheap authenticated call with a short timeout and no retries (BYOK)."""
        ...
