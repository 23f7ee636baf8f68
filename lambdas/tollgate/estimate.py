"""The worst case of a request, before it is sent: an input-token upper bound and the output cap.

No tokenizer is downloaded. Every BPE token is at least one byte of UTF-8, so the byte length of the
request body as JSON bounds its text tokens from above; the JSON punctuation and keys more than pay
for the few tokens of per-message framing. Images are not text: each image part adds a fixed bound.
Content the gateway cannot see into (a PDF or file by reference) may fill the model's whole context
window, so it is bounded by that. And no input can exceed the context window, whatever its bytes.

Server-side tools (web search, code execution) and priority processing bill outside token prices, so
requests using them are refused rather than metered wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tollgate.errors import InvalidRequest

# Upper bound for one image input. The largest per-image count among the priced models is gpt-4o-mini's
# high-detail rate (2,833 + 5,667 per 512 px tile); this covers its maximum tile count.
IMAGE_TOKEN_BOUND = 40_000
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


@dataclass(frozen=True)
class Bound:
    input_tokens: int
    output_tokens: int  # max output tokens, times `n` choices
    max_tokens: int  # the cap sent to the provider
    max_tokens_field: str | None  # where the cap lives in the body; None for embeddings
    defaulted: bool  # the client did not set it; the gateway did
    choices: int = 1  # OpenAI's `n`: the output cap applies to each

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


_IMAGE_PARTS = frozenset(("image_url", "image", "input_image"))
_OPAQUE_PARTS = frozenset(("document", "file", "input_file", "input_audio", "container_upload"))
_SERVER_TOOL_PREFIXES = ("web_search", "web_fetch", "code_execution", "code_interpreter", "file_search",
                         "computer_use_preview", "mcp")
_PRICED_TIERS = frozenset(("auto", "default", "flex", "standard_only"))


def _parts(node: Any) -> list[str]:
    """The `type` of every content part, at any depth."""
    if isinstance(node, dict):
        own = [node["type"]] if isinstance(node.get("type"), str) else []
        return own + [t for v in node.values() for t in _parts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _parts(v)]
    return []


def check_billable(body: dict[str, Any]) -> None:
    """Refuse what would be billed outside the token prices the gateway meters."""
    for tool in body.get("tools") or []:
        kind = tool.get("type", "") if isinstance(tool, dict) else ""
        if kind.startswith(_SERVER_TOOL_PREFIXES):
            raise InvalidRequest(f"The server-side tool '{kind}' is billed outside token prices, so this gateway "
                                 "does not pass it on. Run the tool on the client side.", param="tools")
    tier = body.get("service_tier")
    if tier is not None and tier not in _PRICED_TIERS:
        raise InvalidRequest(f"service_tier '{tier}' is priced differently and is not supported here.",
                             param="service_tier")


def input_bound(body: dict[str, Any], context_window: int | None = None) -> int:
    parts = _parts(body)
    if any(p in _OPAQUE_PARTS for p in parts):
        if not context_window:
            raise InvalidRequest("This model's context window is not configured, so file and document inputs "
                                 "cannot be bounded: send their text instead.")
        return context_window
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    bound = len(text) + IMAGE_TOKEN_BOUND * sum(p in _IMAGE_PARTS for p in parts)
    return min(bound, context_window) if context_window else bound


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return value


def chat_bound(body: dict[str, Any], model: str, model_max_output: int, default_max_tokens: int,
               *, anthropic: bool, context_window: int | None = None) -> Bound:
    if anthropic:
        fields = ("max_tokens",)
    else:
        fields = ("max_completion_tokens", "max_tokens")
    requested = None
    field = None
    for name in fields:
        requested = _positive_int(body, name)
        if requested is not None:
            field = name
            break
    defaulted = requested is None
    if defaulted:
        requested = min(default_max_tokens, model_max_output)
        field = "max_tokens" if anthropic or not model.startswith(_REASONING_PREFIXES) else "max_completion_tokens"
    n = 1 if anthropic else (_positive_int(body, "n") or 1)
    cap = min(requested, model_max_output)
    check_billable(body)
    return Bound(input_bound(body, context_window), cap * n, requested, field, defaulted, n)


def embedding_bound(body: dict[str, Any]) -> Bound:
    if "input" not in body or body["input"] in ("", []):
        raise InvalidRequest("'input' is required.", param="input")
    return Bound(input_bound(body), 0, 0, None, False)  # a batch of inputs: no single window caps it


def with_max_tokens(body: dict[str, Any], bound: Bound, max_tokens: int) -> dict[str, Any]:
    if bound.max_tokens_field is None:
        return body
    out = dict(body)
    out[bound.max_tokens_field] = max_tokens
    return out
