"""The price list: which models Tollgate serves, what they cost, and exact cost arithmetic.

Prices live in `prices.json` next to this module (USD per million tokens, decimal strings; server-side
tools in USD per call) and can be changed at deploy time with TOLLGATE_PRICE_OVERRIDES (same shape:
model -> partial or complete entry). All money is `Decimal`, computed exactly: no float, no rounding.
Standard library only, and the JSON is read lazily, once per process, because this is imported on every
Lambda cold start.

What a call costs (`ModelPrice.cost`), from the provider's reported usage:
  - the band: the service tier the provider says it used (OpenAI `service_tier`: priority / flex rates),
    else the standard rates, or the long-context rates when the input is above the model's threshold;
  - uncached input x input + cache reads x cached_input + 5-minute cache writes x cache_write
    + 1-hour cache writes x cache_write_1h + output (reasoning included) x output;
  - plus each server-side tool call x its per-call price.
What is reserved before the call (`ModelPrice.worst_case_cost`) bounds that for any usage within the
request's bound: every input token at the dearest input rate of every band the request may be billed
in, every output token at the dearest output rate, every allowed tool call at its price.
"""
from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass, field
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded, localcontext
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from tollgate.errors import UnknownModel

if TYPE_CHECKING:  # only for annotations: importing the provider package is not needed to price
    from tollgate.providers.base import Usage

PRICES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.json")
PROVIDERS = ("openai", "anthropic", "bedrock")
KINDS = ("chat", "embedding")
STANDARD = "default"  # the standard service tier: the model's own rates
TIERS = ("priority", "flex")  # the other OpenAI service tiers a price entry may list

_MILLION = Decimal(1_000_000)
# Every computation runs in this context: any result that would need rounding raises instead.
_EXACT = Context(prec=80, traps=[Inexact, Rounded, InvalidOperation, Overflow])
# A trailing snapshot date: -2024-08-06 (OpenAI) or -20240806 (Anthropic).
_DATED = re.compile(r"^(?P<base>.+?)-(?:(?P<y1>\d{4})-(?P<m1>\d{2})-(?P<d1>\d{2})|(?P<y2>\d{4})(?P<m2>\d{2})(?P<d2>\d{2}))$")

_RATE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
_FIELDS = frozenset(("provider", "kind", *_RATE_FIELDS, "max_output_tokens", "context_window", "aliases",
                     "as_of", "source", "long_context", "service_tiers"))
_LONG_FIELDS = frozenset(("above_input_tokens", *_RATE_FIELDS))
_TIER_FIELDS = frozenset(("input", "output", "cached_input", "as_of", "source"))
_TOOL_FIELDS = frozenset(("usd_per_call", "as_of", "source", "note"))


def _per_token(per_mtok: Decimal) -> Decimal:
    with localcontext(_EXACT):
        return per_mtok / _MILLION


@dataclass(frozen=True)
class Rates:
    """One band of prices, USD per million tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # None: cache reads are billed as input
    cache_write: Decimal | None = None  # 5-minute writes. None: the provider has no cache write; billed as input
    cache_write_1h: Decimal | None = None  # 1-hour writes (Anthropic, 2x input). None: billed as cache_write

    @property
    def effective_cached_input(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def effective_cache_write(self) -> Decimal:
        return self.input if self.cache_write is None else self.cache_write

    @property
    def effective_cache_write_1h(self) -> Decimal:
        return self.effective_cache_write if self.cache_write_1h is None else self.cache_write_1h

    @property
    def max_input(self) -> Decimal:
        """The dearest price any input token can be billed at, whatever the caching."""
        return max(self.input, self.effective_cached_input, self.effective_cache_write, self.effective_cache_write_1h)

    # Exact per-token prices (per-million / 1,000,000).
    @property
    def input_per_token(self) -> Decimal:
        return _per_token(self.input)

    @property
    def output_per_token(self) -> Decimal:
        return _per_token(self.output)

    @property
    def cached_input_per_token(self) -> Decimal:
        return _per_token(self.effective_cached_input)

    @property
    def cache_write_per_token(self) -> Decimal:
        return _per_token(self.effective_cache_write)

    @property
    def cache_write_1h_per_token(self) -> Decimal:
        return _per_token(self.effective_cache_write_1h)


@dataclass(frozen=True, kw_only=True)
class LongContextRates(Rates):
    """Rates for a whole request whose input (cached and cache-written included) exceeds a threshold."""

    above_input_tokens: int


@dataclass(frozen=True, kw_only=True)
class TierRates(Rates):
    """Rates of a non-standard OpenAI service tier ("priority", "flex") for one model."""

    as_of: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class ServerToolPrice:
    """A provider-run tool billed per call on top of tokens (e.g. Anthropic and OpenAI web search: $0.01)."""

    name: str  # the tool type without its version date: web_search, web_fetch, file_search, code_interpreter
    usd_per_call: Decimal
    as_of: str | None = None
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelPrice(Rates):
    """A model and its prices (USD per million tokens; `*_per_token` give exact per-token prices)."""

    id: str
    provider: str  # "openai" | "anthropic"
    kind: str = "chat"  # "chat" | "embedding"
    max_output_tokens: int | None = None
    context_window: int | None = None
    aliases: tuple[str, ...] = ()
    as_of: str | None = None
    source: str | None = None
    long_context: LongContextRates | None = None
    service_tiers: Mapping[str, TierRates] = field(default_factory=dict)  # "priority" | "flex" -> rates
    server_tools: Mapping[str, ServerToolPrice] = field(default_factory=dict)  # the provider's, by tool name

    def rates_for(self, input_tokens: int, tier: str | None = None) -> Rates:
        """The band a request with this many input tokens (all of them) is billed in, in `tier` (None or
        "default": standard). A tier this model has no price for is billed in the dearest band it has,
        so an unexpected tier reported after the call is never under-charged."""
        if tier not in (None, STANDARD):
            found = self.service_tiers.get(tier)
            return found if found is not None else _dearest(self._bands(input_tokens))
        lc = self.long_context
        if lc is not None and input_tokens > lc.above_input_tokens:
            return lc
        return self

    def _bands(self, input_tokens_bound: int, tiers: tuple[str, ...] | None = None) -> list[Rates]:
        """Every band a request with at most this many input tokens may be billed in, in these tiers
        (None: any tier this model is priced in)."""
        out: list[Rates] = []
        for tier in (STANDARD, *self.service_tiers) if tiers is None else tiers:
            if tier == STANDARD:
                out.append(self)
                if self.long_context is not None and input_tokens_bound > self.long_context.above_input_tokens:
                    out.append(self.long_context)
            else:
                out.append(self.service_tiers[tier])
        return out

    def tool_price(self, name: str) -> Decimal:
        """USD per call of a server-side tool; a tool without a price costs the dearest priced tool
        of this provider (reported after the call: never under-charged)."""
        found = self.server_tools.get(name)
        if found is not None:
            return found.usd_per_call
        return max((t.usd_per_call for t in self.server_tools.values()), default=Decimal(0))

    def cost(self, usage: "Usage") -> Decimal:
        """Exact USD cost of a finished call, from normalised usage (see the module docstring)."""
        inp = _count(usage.input_tokens, "input_tokens")
        out = _count(usage.output_tokens, "output_tokens")
        cached = _count(usage.cached_input_tokens, "cached_input_tokens")
        written = _count(usage.cache_write_tokens, "cache_write_tokens")
        written_1h = min(_count(usage.cache_write_1h_tokens, "cache_write_1h_tokens"), written)
        uncached = max(0, inp - cached - written)
        r = self.rates_for(inp, usage.service_tier)
        calls = {name: _count(n, f"server_tool_calls[{name}]") for name, n in usage.server_tool_calls.items()}
        with localcontext(_EXACT):
            per_mtok = (uncached * r.input + cached * r.effective_cached_input
                        + (written - written_1h) * r.effective_cache_write
                        + written_1h * r.effective_cache_write_1h + out * r.output)
            tools = sum((n * self.tool_price(name) for name, n in calls.items()), Decimal(0))
            return per_mtok / _MILLION + tools

    def worst_case_cost(self, input_tokens_bound: int, max_output_tokens: int, *,
                        tiers: tuple[str, ...] = (STANDARD,), tool_calls: Mapping[str, int] | None = None) -> Decimal:
        """An upper bound on `cost` for any call with at most this many input and output tokens,
        however its input splits into uncached, cache-read and 5-minute or 1-hour cache-written tokens,
        billed in any of `tiers` (each must be priced: KeyError otherwise), with at most `tool_calls`
        calls of each server-side tool (each must be priced: KeyError otherwise)."""
        bound = _count(input_tokens_bound, "input_tokens_bound")
        max_out = _count(max_output_tokens, "max_output_tokens")
        bands = self._bands(bound, tiers)
        in_rate = max(b.max_input for b in bands)
        out_rate = max(b.output for b in bands)
        calls = tool_calls or {}
        with localcontext(_EXACT):
            tools = sum((_count(n, name) * self.server_tools[name].usd_per_call for name, n in calls.items()),
                        Decimal(0))
            return (bound * in_rate + max_out * out_rate) / _MILLION + tools


def _dearest(bands: list[Rates]) -> Rates:
    """One band charging each kind of token at the dearest rate any of `bands` charges it."""
    return Rates(input=max(b.input for b in bands), output=max(b.output for b in bands),
                 cached_input=max(b.effective_cached_input for b in bands),
                 cache_write=max(b.effective_cache_write for b in bands),
                 cache_write_1h=max(b.effective_cache_write_1h for b in bands))


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int token count, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


class Catalogue:
    """The priced models, resolved by id, alias or dated snapshot. Immutable; build with `load`."""

    __slots__ = ("as_of", "_models", "_aliases")

    def __init__(self, models: Mapping[str, ModelPrice], as_of: str | None = None):
        aliases: dict[str, str] = {}
        for model in models.values():
            for alias in model.aliases:
                aliases[alias] = model.id
        self._models = MappingProxyType(dict(models))
        self._aliases = MappingProxyType(aliases)
        self.as_of = as_of

    @classmethod
    def load(cls, overrides_json: str | None = None) -> "Catalogue":
        """The catalogue from prices.json, with TOLLGATE_PRICE_OVERRIDES applied. Cached per process:
        the file is read once, and each distinct overrides string is parsed once. Invalid overrides
        raise ValueError, so a bad deployment fails at start-up, not on a request."""
        return _load(overrides_json or None)

    # -- lookups -------------------------------------------------------------------------------------

    def resolve(self, model: str) -> str | None:
        """The canonical id for an id, an alias, or a dated snapshot of either; None if unknown."""
        if not isinstance(model, str) or not model:
            return None
        found = self._exact(model)
        if found is None:
            dated = _DATED.match(model)
            if dated and _is_date(dated):
                found = self._exact(dated.group("base"))
        return found

    def _exact(self, model: str) -> str | None:
        if model in self._models:
            return model
        return self._aliases.get(model)

    def price(self, model: str) -> ModelPrice:
        """The price of a model, or UnknownModel (fail closed: what cannot be priced is not served)."""
        found = self.resolve(model)
        if found is None:
            raise UnknownModel(_not_priced_message(model), param="model")
        return self._models[found]

    def provider_for(self, model: str) -> str:
        return self.price(model).provider

    def models(self, provider: str | None = None) -> list[ModelPrice]:
        """Canonical models (aliases are on each entry), sorted by id, optionally of one provider."""
        return [m for _, m in sorted(self._models.items()) if provider is None or m.provider == provider]

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.resolve(model) is not None

    def __len__(self) -> int:
        return len(self._models)

    # -- arithmetic ----------------------------------------------------------------------------------

    @staticmethod
    def cost(price: ModelPrice, usage: "Usage") -> Decimal:
        """Exact USD of a finished call: its tokens in the band it was billed in, plus its server-side
        tool calls (ModelPrice.cost)."""
        return price.cost(usage)

    @staticmethod
    def worst_case_cost(price: ModelPrice, input_tokens_bound: int, max_output_tokens: int, *,
                        tiers: tuple[str, ...] = (STANDARD,), tool_calls: Mapping[str, int] | None = None) -> Decimal:
        """bound x the dearest input price + max_output x the dearest output price (over `tiers`) + the
        allowed tool calls: what to reserve before the call (ModelPrice.worst_case_cost)."""
        return price.worst_case_cost(input_tokens_bound, max_output_tokens, tiers=tiers, tool_calls=tool_calls)


def _not_priced_message(model: Any) -> str:
    """The 400 for an unpriced model: what happened for the client, and exactly how an operator adds it."""
    if not isinstance(model, str) or not model:
        return ("No model was given ('(none given)'), so the request cannot be priced or budgeted and is refused. "
                "GET /v1/models lists the models this gateway serves.")
    provider = "anthropic" if model.startswith("claude") else "openai"
    example = {model: {"provider": provider, "input": "1.25", "output": "10.00", "cached_input": "0.125",
                       **({"cache_write": "1.5625", "cache_write_1h": "2.50"} if provider == "anthropic" else {}),
                       "max_output_tokens": 64000, "context_window": 200000,
                       "as_of": "YYYY-MM-DD", "source": "https://<the provider's pricing page>"}}
    return (f"The model '{model}' is not in this gateway's price list, so it cannot be priced or budgeted and is "
            "refused. GET /v1/models lists the models it serves. To serve it, an operator adds its price (USD per "
            "million tokens, from the provider's pricing page; the numbers below are placeholders) to "
            "lambdas/tollgate/pricing/prices.json, or sets TOLLGATE_PRICE_OVERRIDES to a JSON object like "
            f"{json.dumps(example, separators=(',', ':'))} and redeploys.")


def _is_date(match: re.Match[str]) -> bool:
    y, m, d = (match.group("y1"), match.group("m1"), match.group("d1"))
    if y is None:
        y, m, d = (match.group("y2"), match.group("m2"), match.group("d2"))
    try:
        datetime.date(int(y), int(m), int(d))
    except ValueError:
        return False
    return True


# -- loading and validation ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _base_document() -> tuple[str | None, Mapping[str, Mapping[str, Any]], Mapping[str, Mapping[str, ServerToolPrice]]]:
    with open(PRICES_FILE, "rb") as f:
        doc = json.loads(f.read(), parse_float=Decimal)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ValueError(f"{PRICES_FILE}: expected an object with a 'models' object")
    return doc.get("as_of"), doc["models"], _server_tools(doc.get("server_tools") or {})


def _server_tools(table: Any) -> Mapping[str, Mapping[str, ServerToolPrice]]:
    """provider -> tool name -> price, from the price file's `server_tools` object."""
    def fail(msg: str) -> ValueError:
        return ValueError(f"{PRICES_FILE}: server_tools: {msg}")

    if not isinstance(table, dict):
        raise fail("must be an object: provider -> tool name -> {usd_per_call, as_of, source}")
    out: dict[str, Mapping[str, ServerToolPrice]] = {}
    for provider, tools in table.items():
        if provider.startswith("_"):
            continue  # documentation
        if provider not in PROVIDERS or not isinstance(tools, dict):
            raise fail(f"'{provider}' must be one of {list(PROVIDERS)} and map tool names to prices")
        priced: dict[str, ServerToolPrice] = {}
        for name, e in tools.items():
            if not isinstance(e, dict) or set(e) - _TOOL_FIELDS:
                raise fail(f"{provider}.{name}: expected an object with fields from {sorted(_TOOL_FIELDS)}")
            _date(e.get("as_of"), fail)
            _url(e.get("source"), fail)
            priced[name] = ServerToolPrice(name, _money(e.get("usd_per_call"), f"{provider}.{name}.usd_per_call", fail),
                                           e.get("as_of"), e.get("source"))
        out[provider] = MappingProxyType(priced)
    return MappingProxyType(out)


@lru_cache(maxsize=8)
def _load(overrides_json: str | None) -> Catalogue:
    as_of, base, tools = _base_document()
    # model id -> (entry, where it was last set: for error messages)
    entries: dict[str, tuple[dict[str, Any], str]] = {}
    for model_id, entry in base.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{PRICES_FILE}: model '{model_id}': entry must be an object")
        entries[model_id] = (dict(entry), PRICES_FILE)
    if overrides_json is not None:
        _apply_overrides(entries, overrides_json)
    models = {model_id: _build(model_id, entry, where, tools) for model_id, (entry, where) in entries.items()}
    _check_aliases(models)
    return Catalogue(models, as_of=as_of)


def _apply_overrides(entries: dict[str, tuple[dict[str, Any], str]], overrides_json: str) -> None:
    where = "TOLLGATE_PRICE_OVERRIDES"
    try:
        overrides = json.loads(overrides_json, parse_float=Decimal)
    except ValueError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"{where}: expected a JSON object mapping model id -> price entry")
    alias_owner = {a: mid for mid, (e, _) in entries.items() for a in (e.get("aliases") or []) if isinstance(a, str)}
    for model_id, patch in overrides.items():
        if model_id in alias_owner:
            raise ValueError(f"{where}: '{model_id}' is an alias of '{alias_owner[model_id]}'; "
                             f"override '{alias_owner[model_id]}' instead")
        if not isinstance(patch, dict):
            raise ValueError(f"{where}: model '{model_id}': entry must be an object of fields to set")
        unknown = sorted(set(patch) - _FIELDS)
        if unknown:
            raise ValueError(f"{where}: model '{model_id}': unknown field(s) {unknown}; "
                             f"allowed: {sorted(_FIELDS)}")
        merged = dict(entries[model_id][0]) if model_id in entries else {}
        merged.update(patch)
        entries[model_id] = (merged, where)


def _build(model_id: Any, e: Mapping[str, Any], where: str,
           tools: Mapping[str, Mapping[str, ServerToolPrice]]) -> ModelPrice:
    def fail(msg: str) -> ValueError:
        return ValueError(f"{where}: model '{model_id}': {msg}")

    if not isinstance(model_id, str) or not model_id or model_id != model_id.strip() or " " in model_id:
        raise fail("model id must be a non-empty string without spaces")
    unknown = sorted(set(e) - _FIELDS)
    if unknown:
        raise fail(f"unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}")
    provider = e.get("provider")
    if provider not in PROVIDERS:
        raise fail(f"provider must be one of {list(PROVIDERS)}, got {provider!r}")
    kind = e.get("kind", "chat")
    if kind not in KINDS:
        raise fail(f"kind must be one of {list(KINDS)}, got {kind!r}")
    rates = _rates(e, fail)
    aliases = e.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a and " " not in a for a in aliases):
        raise fail("aliases must be a list of non-empty strings without spaces")
    if len(set(aliases)) != len(aliases) or model_id in aliases:
        raise fail("aliases must be distinct and differ from the model id")
    as_of = _date(e.get("as_of"), fail)
    source = _url(e.get("source"), fail)
    long_context = None
    lc = e.get("long_context")
    if lc is not None:
        if not isinstance(lc, dict):
            raise fail("long_context must be an object")
        unknown = sorted(set(lc) - _LONG_FIELDS)
        if unknown:
            raise fail(f"long_context: unknown field(s) {unknown}; allowed: {sorted(_LONG_FIELDS)}")
        threshold = _tokens(lc.get("above_input_tokens"), "long_context.above_input_tokens", fail, required=True)
        long_context = LongContextRates(**_rates(lc, fail, "long_context."), above_input_tokens=threshold)
    tiers = e.get("service_tiers") or {}
    if not isinstance(tiers, dict) or set(tiers) - set(TIERS):
        raise fail(f"service_tiers must be an object with keys from {list(TIERS)}")
    service_tiers: dict[str, TierRates] = {}
    for tier, t in tiers.items():
        if not isinstance(t, dict) or set(t) - _TIER_FIELDS:
            raise fail(f"service_tiers.{tier}: expected an object with fields from {sorted(_TIER_FIELDS)}")
        service_tiers[tier] = TierRates(**_rates(t, fail, f"service_tiers.{tier}.", ("input", "output", "cached_input")),
                                        as_of=_date(t.get("as_of"), fail), source=_url(t.get("source"), fail))
    return ModelPrice(
        **rates,
        id=model_id,
        provider=provider,
        kind=kind,
        max_output_tokens=_tokens(e.get("max_output_tokens"), "max_output_tokens", fail),
        context_window=_tokens(e.get("context_window"), "context_window", fail),
        aliases=tuple(aliases),
        as_of=as_of,
        source=source,
        long_context=long_context,
        service_tiers=MappingProxyType(service_tiers),
        server_tools=tools.get(provider, MappingProxyType({})),
    )


def _date(value: Any, fail: Any) -> str | None:
    if value is not None:
        try:
            datetime.date.fromisoformat(value)
        except (TypeError, ValueError):
            raise fail(f"as_of must be an ISO date (YYYY-MM-DD), got {value!r}") from None
    return value


def _url(value: Any, fail: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and value.startswith("https://")):
        raise fail(f"source must be an https:// URL, got {value!r}")
    return value


def _rates(e: Mapping[str, Any], fail: Any, prefix: str = "",
           names: tuple[str, ...] = _RATE_FIELDS) -> dict[str, Decimal | None]:
    out: dict[str, Decimal | None] = {}
    for name in names:
        value = e.get(name)
        if value is None:
            if name in ("input", "output"):
                raise fail(f"{prefix}{name} is required (USD per million tokens, e.g. \"2.50\")")
            out[name] = None
            continue
        out[name] = _money(value, prefix + name, fail)
    return out


def _money(value: Any, name: str, fail: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise fail(f"{name} must be a decimal string such as \"2.50\", got {value!r}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise fail(f"{name} is not a decimal number: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise fail(f"{name} must be a finite, non-negative number, got {value!r}")
    return d


def _tokens(value: Any, name: str, fail: Any, required: bool = False) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _check_aliases(models: Mapping[str, ModelPrice]) -> None:
    owner: dict[str, str] = {}
    for m in models.values():
        for alias in m.aliases:
            if alias in models:
                raise ValueError(f"alias '{alias}' of model '{m.id}' is itself a model id")
            if alias in owner:
                raise ValueError(f"alias '{alias}' is claimed by both '{owner[alias]}' and '{m.id}'")
            owner[alias] = m.id
