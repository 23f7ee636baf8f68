"""The worst case of a request, before it is sent; and its rate-limit estimate.

Two figures, for two jobs:
- Budgets reserve the strict worst case (`Bound.input_tokens`, `Bound.output_tokens`): no tokenizer
  is downloaded. Every BPE token is at least one byte of UTF-8, so the byte length of the request body
  as JSON bounds its text tokens from above; the JSON punctuation and keys more than pay for the few
  tokens of per-message framing. Images are not text: each image part adds a fixed bound. Content the
  gateway cannot see into (a PDF or file by reference) may fill the model's whole context window, so it
  is bounded by that. And no input can exceed the context window, whatever its bytes. Each allowed call
  of a server-side tool (web search, ...) may add the results it reads to the input: `tool_input_tokens`
  per call, on top.
- Tokens-per-minute admission counts the way providers count it (`Bound.rate_tokens`): an *estimate*
  of the input, UTF-8 bytes / 4 rounded up (OpenAI's and Anthropic's rule of thumb of ~4 characters
  per token) plus IMAGE_TOKEN_ESTIMATE per image, plus the output cap. It is settled to the provider's
  reported count after the call (tollgate.store.ledger settle), so it needs to be fair, not an upper bound.

Service tiers and server-side tools are priced (tollgate.pricing): a request may use them when the
model's price entry prices them, and is refused (400) when it does not.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from tollgate.errors import InvalidRequest
from tollgate.pricing.catalogue import STANDARD

if TYPE_CHECKING:
    from tollgate.pricing import ModelPrice

# Upper bound for one image input. The largest per-image count among the priced models is gpt-4o-mini's
# high-detail rate (2,833 + 5,667 per 512 px tile); this covers its maximum tile count.
IMAGE_TOKEN_BOUND = 40_000
# Rate-limit estimate for one image: Anthropic's vision docs put an image at (width x height) / 750
# tokens, about 1,600 for the largest image sent unresized (1.15 megapixels).
IMAGE_TOKEN_ESTIMATE = 1_600
BYTES_PER_TOKEN_ESTIMATE = 4
# Operator bounds for server-side tools when the request sets none (settings override both).
DEFAULT_TOOL_CALL_BOUND = 10
DEFAULT_TOOL_INPUT_TOKENS = 20_000
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


@dataclass(frozen=True)
class Bound:
    input_tokens: int  # upper bound on billed input tokens (budgets)
    output_tokens: int  # max output tokens, times `n` choices
    max_tokens: int  # the cap sent to the provider
    max_tokens_field: str | None  # where the cap lives in the body; None for embeddings
    defaulted: bool  # the client did not set it; the gateway did
    choices: int = 1  # OpenAI's `n`: the output cap applies to each
    input_estimate: int = 0  # estimated input tokens, the way providers count for rate limits
    service_tiers: tuple[str, ...] = (STANDARD,)  # the tiers the call may be billed in
    tool_calls: Mapping[str, int] = field(default_factory=dict)  # server-side tool -> most calls reserved

    @property
    def rate_tokens(self) -> int:
        """What tokens-per-minute admission counts: estimated input + the output cap."""
        return self.input_estimate + self.output_tokens


_IMAGE_PARTS = frozenset(("image_url", "image", "input_image"))
_OPAQUE_PARTS = frozenset(("document", "file", "input_file", "input_audio", "container_upload"))
# Tool types the provider runs itself (billed per call or per container, outside token prices). A tool
# of one of these kinds needs a price in prices.json `server_tools`; any other tool type runs on the client.
_SERVER_TOOLS = frozenset(("web_search", "web_search_preview", "web_fetch", "code_execution", "code_interpreter",
                           "file_search", "computer_use_preview", "mcp", "mcp_toolset", "image_generation", "tool_search_tool_regex",
                           "tool_search_tool_bm25"))
_TOOL_VERSION = re.compile(r"_(?:\d{8}|\d{4}_\d{2}_\d{2})$")  # web_search_20250305, web_search_2025_08_26
_ANTHROPIC_TIERS = ("auto", "standard_only")


def _parts(node: Any) -> list[str]:
    """The `type` of every content part, at any depth."""
    if isinstance(node, dict):
        own = [node["type"]] if isinstance(node.get("type"), str) else []
        return own + [t for v in node.values() for t in _parts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _parts(v)]
    return []


def service_tiers(body: dict[str, Any], price: "ModelPrice | None", *, anthropic: bool) -> tuple[str, ...]:
    """The tiers a request may be billed in, from its `service_tier`. OpenAI: "flex" and "priority" need
    the model's price for that tier; "auto" (or none) and "default" are the standard rates (a project the
    operator set to priority by default is charged the tier OpenAI reports, after the call). Anthropic:
    "auto" and "standard_only" are the standard rates. Raises InvalidRequest (400) for a tier that is not
    priced for the model."""
    tier = body.get("service_tier")
    priced = dict(price.service_tiers) if price is not None else {}
    if tier is None or tier in (_ANTHROPIC_TIERS if anthropic else ("auto", "default")):
        return (STANDARD,)
    if not anthropic and isinstance(tier, str) and tier in priced:
        return (tier,)
    model = price.id if price is not None else "this model"
    allowed = list(_ANTHROPIC_TIERS) if anthropic else ["auto", "default", *sorted(priced)]
    raise InvalidRequest(f"service_tier {json.dumps(tier)} has no price for {model} in this gateway's price list, "
                         f"so it is refused. Send one of {allowed}, or ask the operator to add its prices "
                         "(service_tiers in prices.json).", param="service_tier")


# Anthropic request options billed at a multiple of the token prices, with the value billed at 1x:
# fast mode (`speed`, platform.claude.com/docs/en/build-with-claude/fast-mode) and US-only inference
# (`inference_geo`, 1.1x, platform.claude.com/docs/en/build-with-claude/data-residency).
_ANTHROPIC_PREMIUMS = {"speed": "standard", "inference_geo": "global"}


def check_premium_options(body: dict[str, Any], price: "ModelPrice | None", *, anthropic: bool) -> None:
    """Refuse (400) request options priced above the catalogue's rates: Anthropic fast mode and US-only
    inference; and on OpenAI models whose cache writes are priced (GPT-6.x, 30-minute retention), a longer
    `prompt_cache_retention` (billed at a higher write rate that usage does not report apart)."""
    if not anthropic:
        retention = body.get("prompt_cache_retention")
        if retention not in (None, "in_memory") and price is not None and price.cache_write is not None:
            raise InvalidRequest(f"prompt_cache_retention {json.dumps(retention)} is billed at a cache-write rate this "
                                 f"gateway does not price for {price.id}, so it is refused. Leave it out.",
                                 param="prompt_cache_retention")
        return
    for name, standard in _ANTHROPIC_PREMIUMS.items():
        value = body.get(name)
        if value is not None and value != standard:
            raise InvalidRequest(f"{name} {json.dumps(value)} is billed at a premium this gateway does not price, so "
                                 f"it is refused. Leave it out (or send {json.dumps(standard)}).", param=name)


def tool_calls(body: dict[str, Any], price: "ModelPrice | None", *,
               call_bound: int = DEFAULT_TOOL_CALL_BOUND) -> dict[str, int]:
    """The server-side tools a request offers, each with the most calls to reserve for: the tool's
    `max_uses` (Anthropic), else the request's `max_tool_calls` (OpenAI Responses), else `call_bound`.
    Client-side tools (functions, custom tools, Anthropic's bash/text editor/memory) are not counted.
    Raises InvalidRequest (400) for a server-side tool without a per-call price."""
    out: dict[str, int] = {}
    overall = _positive_int(body, "max_tool_calls")
    priced = price.server_tools if price is not None else {}
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        kind = tool.get("type", "") if isinstance(tool, dict) else ""
        name = _TOOL_VERSION.sub("", kind) if isinstance(kind, str) else ""
        if name not in priced:
            if name in _SERVER_TOOLS:
                raise InvalidRequest(f"The server-side tool '{kind}' has no per-call price in this gateway's price "
                                     "list, so it is refused. Run the tool on the client side, or ask the operator "
                                     "to add its price (server_tools in prices.json).", param="tools")
            continue
        max_uses = tool.get("max_uses")
        if max_uses is not None and (isinstance(max_uses, bool) or not isinstance(max_uses, int) or max_uses < 1):
            raise InvalidRequest("'max_uses' must be a positive integer.", param="tools")
        out[name] = out.get(name, 0) + (max_uses or overall or call_bound)
    return out


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


def input_estimate(body: dict[str, Any], context_window: int | None = None) -> int:
    """Estimated input tokens for rate limits: ceil(UTF-8 bytes of the body as JSON / 4), plus
    IMAGE_TOKEN_ESTIMATE per image part, at most the context window."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    estimate = math.ceil(len(text) / BYTES_PER_TOKEN_ESTIMATE) + IMAGE_TOKEN_ESTIMATE * sum(
        p in _IMAGE_PARTS for p in _parts(body))
    return min(estimate, context_window) if context_window else estimate


def chat_bound(body: dict[str, Any], model: str, model_max_output: int, default_max_tokens: int,
               *, anthropic: bool, context_window: int | None = None, price: "ModelPrice | None" = None,
               tool_call_bound: int = DEFAULT_TOOL_CALL_BOUND,
               tool_input_tokens: int = DEFAULT_TOOL_INPUT_TOKENS, responses: bool = False) -> Bound:
    """The bound of a chat/messages request (`responses`: an OpenAI Responses API request, whose cap is
    `max_output_tokens` and which has no `n`). `price` is the model's catalogue entry: the service tiers and
    server-side tools it prices may be used (without it, neither may). Raises InvalidRequest (400) for a
    bad max_tokens / n / max_uses, an unpriced tier or server-side tool, or an unboundable document."""
    if anthropic:
        fields = ("max_tokens",)
    elif responses:
        fields = ("max_output_tokens",)
    else:
        fields = ("max_completion_tokens", "max_tokens")
    requested = None
    field_name = None
    for name in fields:
        requested = _positive_int(body, name)
        if requested is not None:
            field_name = name
            break
    defaulted = requested is None
    if defaulted:
        requested = min(default_max_tokens, model_max_output)
        field_name = "max_tokens" if anthropic or not model.startswith(_REASONING_PREFIXES) else "max_completion_tokens"
        field_name = "max_output_tokens" if responses else field_name
    n = 1 if anthropic or responses else (_positive_int(body, "n") or 1)
    cap = min(requested, model_max_output)
    check_premium_options(body, price, anthropic=anthropic)
    tiers = service_tiers(body, price, anthropic=anthropic)
    calls = tool_calls(body, price, call_bound=tool_call_bound)
    tool_input = sum(calls.values()) * tool_input_tokens
    inputs = input_bound(body, context_window)
    if responses and body.get("previous_response_id") is not None:
        # The provider prepends the stored conversation, which the gateway cannot see: up to the whole window.
        if not context_window:
            raise InvalidRequest("This model's context window is not configured, so a chained response "
                                 "(previous_response_id) cannot be bounded.", param="previous_response_id")
        inputs = context_window
    return Bound(inputs + tool_input, cap * n, requested, field_name, defaulted, n,
                 input_estimate=input_estimate(body, context_window), service_tiers=tiers, tool_calls=calls)


def embedding_bound(body: dict[str, Any]) -> Bound:
    if "input" not in body or body["input"] in ("", []):
        raise InvalidRequest("'input' is required.", param="input")
    # a batch of inputs: no single window caps it
    return Bound(input_bound(body), 0, 0, None, False, input_estimate=input_estimate(body))


def with_max_tokens(body: dict[str, Any], bound: Bound, max_tokens: int) -> dict[str, Any]:
    if bound.max_tokens_field is None:
        return body
    out = dict(body)
    out[bound.max_tokens_field] = max_tokens
    return out
