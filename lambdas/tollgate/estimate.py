"""The worst case of a request, before it is sent: an input-token upper bound and the output cap.

No tokenizer is downloaded. Every BPE token is at least one byte of UTF-8, so the byte length of the
request body as JSON bounds its text tokens from above; the JSON punctuation and keys more than pay
for the few tokens of per-message framing. Images are not text: each image part adds a fixed bound.
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

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _images(node: Any) -> int:
    if isinstance(node, dict):
        own = 1 if node.get("type") in ("image_url", "image", "input_image") else 0
        return own + sum(_images(v) for v in node.values())
    if isinstance(node, list):
        return sum(_images(v) for v in node)
    return 0


def input_bound(body: dict[str, Any]) -> int:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return len(text) + IMAGE_TOKEN_BOUND * _images(body)


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return value


def chat_bound(body: dict[str, Any], model: str, model_max_output: int, default_max_tokens: int,
               *, anthropic: bool) -> Bound:
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
    return Bound(input_bound(body), cap * n, requested, field, defaulted)


def embedding_bound(body: dict[str, Any]) -> Bound:
    if "input" not in body or body["input"] in ("", []):
        raise InvalidRequest("'input' is required.", param="input")
    return Bound(input_bound(body), 0, 0, None, False)


def with_max_tokens(body: dict[str, Any], bound: Bound, max_tokens: int) -> dict[str, Any]:
    if bound.max_tokens_field is None:
        return body
    out = dict(body)
    out[bound.max_tokens_field] = max_tokens
    return out
