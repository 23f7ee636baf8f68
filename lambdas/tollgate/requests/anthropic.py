"""Anthropic request bodies: POST /v1/messages.

Source: the Anthropic API reference (https://docs.anthropic.com/en/api/messages). Typed: what the gateway
reads to price and guard a call (model, max_tokens, tools[].type, service_tier, stream) and what the
provider call hands to the SDK (messages, system). A custom tool's `type` may be omitted; when given it
is a string.
"""
from __future__ import annotations

from tollgate.requests.base import ProviderObject, ProviderRequest
from tollgate.requests.types import Count, JsonObject, Name, Number, StrictBool, Text


class Message(ProviderObject):
    role: Text
    content: Text | list[JsonObject]


class Tool(ProviderObject):
    type: Text = "custom"


class MessagesRequest(ProviderRequest):
    model: Name
    messages: list[Message]
    max_tokens: Count | None = None  # the gateway sets it when absent (its default cap)
    system: Text | list[JsonObject] | None = None
    stream: StrictBool | None = None
    tools: list[Tool] | None = None
    tool_choice: JsonObject | None = None
    service_tier: Text | None = None
    stop_sequences: list[Text] | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    top_k: Count | None = None
    metadata: JsonObject | None = None
    thinking: JsonObject | None = None


class CountTokensRequest(ProviderRequest):
    """POST /v1/messages/count_tokens (https://docs.anthropic.com/en/api/messages-count-tokens)."""

    model: Name
    messages: list[Message]
    system: Text | list[JsonObject] | None = None
    tools: list[Tool] | None = None
    tool_choice: JsonObject | None = None
    thinking: JsonObject | None = None
