"""OpenAI request bodies: POST /v1/chat/completions and POST /v1/embeddings.

Source: the OpenAI API reference (https://platform.openai.com/docs/api-reference/chat/create,
https://platform.openai.com/docs/api-reference/embeddings/create). Typed: what the gateway reads to
price and guard a call (model, max_tokens, max_completion_tokens, n, tools[].type, service_tier,
stream, stream_options, input) and what the provider call hands to the SDK (messages).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from tollgate.requests.base import ProviderObject, ProviderRequest
from tollgate.requests.types import (MAX_CHOICES, MAX_EMBEDDING_DIMENSIONS, Count, JsonObject, Name, Number,
                                     StrictBool, Text)


class Message(ProviderObject):
    role: Text
    content: Text | list[JsonObject] | None = None


class Tool(ProviderObject):
    type: Text


class StreamOptions(ProviderObject):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(ProviderRequest):
    model: Name
    messages: list[Message]
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    n: Annotated[Count, Field(le=MAX_CHOICES)] | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    service_tier: Text | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    user: Text | None = None
    metadata: JsonObject | None = None

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: Any, info: ValidationInfo) -> Any:
        # OpenAI answers 400 for stream_options without stream: true.
        if value is not None and info.data.get("stream") is not True:
            raise PydanticCustomError("stream_options", "is only allowed when 'stream' is true")
        return value


def _embedding_input(value: Any) -> Any:
    """A string, an array of strings, an array of token ids, or an array of arrays of token ids."""
    def ints(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)

    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and (all(isinstance(s, str) and s for s in value) or ints(value)
                                              or all(ints(v) for v in value)):
        return value
    raise PydanticCustomError("embedding_input", "must be a non-empty string, array of strings, array of token "
                              "ids, or array of arrays of token ids")


class EmbeddingRequest(ProviderRequest):
    model: Name
    input: Annotated[Any, AfterValidator(_embedding_input)]
    dimensions: Annotated[Count, Field(le=MAX_EMBEDDING_DIMENSIONS)] | None = None
    encoding_format: Text | None = None
    user: Text | None = None


def _responses_input(value: Any) -> Any:
    """A string, or a list of input items (messages, function_call_output, reasoning items...)."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(i, dict) for i in value)):
        return value
    raise PydanticCustomError("responses_input", "must be a string or an array of input items")


class ResponsesRequest(ProviderRequest):
    """POST /v1/responses (https://platform.openai.com/docs/api-reference/responses/create). `background`
    is typed so it can be refused (tollgate.responses): a background response finishes after the request
    that started it, outside any reservation."""

    model: Name
    input: Annotated[Any, AfterValidator(_responses_input)] | None = None
    instructions: Text | None = None
    max_output_tokens: Count | None = None
    tools: list[Tool] | None = None
    previous_response_id: Name | None = None
    store: StrictBool | None = None
    reasoning: JsonObject | None = None
    background: StrictBool | None = None
    stream: StrictBool | None = None
    service_tier: Text | None = None
    max_tool_calls: Count | None = None
