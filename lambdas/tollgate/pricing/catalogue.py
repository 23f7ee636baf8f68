"""The price list: which models Tollgate serves, what they cost, and exact cost arithmetic.

Prices live in `prices.json` next to this module (USD per million tokens, decimal strings) and can be
changed at deploy time with TOLLGATE_PRICE_OVERRIDES (same shape: model -> partial or complete entry).
All money is `Decimal`, computed exactly: no float, no rounding. Standard library only, and the JSON is
read lazily, once per process, because this is imported on every Lambda cold start.
"""
from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded, localcontext
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from tollgate.errors import UnknownModel

if TYPE_CHECKING:  # only for annotations: importing the provider package is not needed to price
    from tollgate.providers.base import Usage

PRICES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.json")
PROVIDERS = ("openai", "anthropic")
KINDS = ("chat", "embedding")

_MILLION = Decimal(1_000_000)
# Every computation runs in this context: any result that would need rounding raises instead.
_EXACT = Context(prec=80, traps=[Inexact, Rounded, InvalidOperation, Overflow])
# A trailing snapshot date: -2024-08-06 (OpenAI) or -20240806 (Anthropic).
_DATED = re.compile(r"^(?P<base>.+?)-(?:(?P<y1>\d{4})-(?P<m1>\d{2})-(?P<d1>\d{2})|(?P<y2>\d{4})(?P<m2>\d{2})(?P<d2>\d{2}))$")

_RATE_FIELDS = ("input", "output", "cached_input", "cache_write")
_FIELDS = frozenset(("provider", "kind", *_RATE_FIELDS, "max_output_tokens", "context_window", "aliases",
                     "as_of", "source", "long_context"))
_LONG_FIELDS = frozenset(("above_input_tokens", *_RATE_FIELDS))


def _per_token(per_mtok: Decimal) -> Decimal:
    with localcontext(_EXACT):
        return per_mtok / _MILLION


@dataclass(frozen=True)
class Rates:
    """One band of prices, USD per million tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # None: cache reads are billed as input
    cache_write: Decimal | None = None  # None: the provider has no cache write; billed as input

    @property
    def effective_cached_input(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def effective_cache_write(self) -> Decimal:
        return self.input if self.cache_write is None else self.cache_write

    @property
    def max_input(self) -> Decimal:
        """The dearest price any input token can be billed at, whatever the caching."""
        return max(self.input, self.effective_cached_input, self.effective_cache_write)

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


@dataclass(frozen=True, kw_only=True)
class LongContextRates(Rates):
    """Rates for a whole request whose input (cached and cache-written included) exceeds a threshold."""

    above_input_tokens: int


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

    def rates_for(self, input_tokens: int) -> Rates:
        """The band a request with this many input tokens (all of them) is billed in."""
        lc = self.long_context
        if lc is not None and input_tokens > lc.above_input_tokens:
            return lc
        return self

    def cost(self, usage: "Usage") -> Decimal:
        """Exact USD cost of a finished call, from normalised usage."""
        inp = _count(usage.input_tokens, "input_tokens")
        out = _count(usage.output_tokens, "output_tokens")
        cached = _count(usage.cached_input_tokens, "cached_input_tokens")
        written = _count(usage.cache_write_tokens, "cache_write_tokens")
        uncached = max(0, inp - cached - written)
        r = self.rates_for(inp)
        with localcontext(_EXACT):
            per_mtok = (uncached * r.input + cached * r.effective_cached_input
                        + written * r.effective_cache_write + out * r.output)
            return per_mtok / _MILLION

    def worst_case_cost(self, input_tokens_bound: int, max_output_tokens: int) -> Decimal:
        """An upper bound on `cost` for any call with at most this many input and output tokens,
        however its input splits into uncached, cache-read and cache-written tokens."""
        bound = _count(input_tokens_bound, "input_tokens_bound")
        max_out = _count(max_output_tokens, "max_output_tokens")
        bands: list[Rates] = [self]
        if self.long_context is not None and bound > self.long_context.above_input_tokens:
            bands.append(self.long_context)
        in_rate = max(b.max_input for b in bands)
        out_rate = max(b.output for b in bands)
        with localcontext(_EXACT):
            return (bound * in_rate + max_out * out_rate) / _MILLION


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
            shown = model if isinstance(model, str) and model else "(none given)"
            raise UnknownModel(
                f"The model '{shown}' is not in this gateway's price list, so it cannot be priced or "
                f"budgeted and is refused. GET /v1/models lists the models it serves.", param="model")
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
        """Exact USD: uncached input x input + cached x cached_input + cache writes x cache_write
        + output x output (a missing cache price falls back to the input price)."""
        return price.cost(usage)

    @staticmethod
    def worst_case_cost(price: ModelPrice, input_tokens_bound: int, max_output_tokens: int) -> Decimal:
        """bound x the dearest input price + max_output x output: what to reserve before the call."""
        return price.worst_case_cost(input_tokens_bound, max_output_tokens)


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
def _base_document() -> tuple[str | None, Mapping[str, Mapping[str, Any]]]:
    with open(PRICES_FILE, "rb") as f:
        doc = json.loads(f.read(), parse_float=Decimal)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ValueError(f"{PRICES_FILE}: expected an object with a 'models' object")
    return doc.get("as_of"), doc["models"]


@lru_cache(maxsize=8)
def _load(overrides_json: str | None) -> Catalogue:
    as_of, base = _base_document()
    # model id -> (entry, where it was last set: for error messages)
    entries: dict[str, tuple[dict[str, Any], str]] = {}
    for model_id, entry in base.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{PRICES_FILE}: model '{model_id}': entry must be an object")
        entries[model_id] = (dict(entry), PRICES_FILE)
    if overrides_json is not None:
        _apply_overrides(entries, overrides_json)
    models = {model_id: _build(model_id, entry, where) for model_id, (entry, where) in entries.items()}
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


def _build(model_id: Any, e: Mapping[str, Any], where: str) -> ModelPrice:
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
    as_of = e.get("as_of")
    if as_of is not None:
        try:
            datetime.date.fromisoformat(as_of)
        except (TypeError, ValueError):
            raise fail(f"as_of must be an ISO date (YYYY-MM-DD), got {as_of!r}") from None
    source = e.get("source")
    if source is not None and not (isinstance(source, str) and source.startswith("https://")):
        raise fail(f"source must be an https:// URL, got {source!r}")
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
    )


def _rates(e: Mapping[str, Any], fail: Any, prefix: str = "") -> dict[str, Decimal | None]:
    out: dict[str, Decimal | None] = {}
    for name in _RATE_FIELDS:
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
