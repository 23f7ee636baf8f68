"""Reconciliation: Tollgate's estimates against what each provider billed, per provider, model and day.

The invariant first: a provider figure that is absent (not configured, not yet published, the call to
its API failed) is reported as `missing` with no drift, never as zero drift; drift is computed only
where both sides exist. A provider's figure counts the platform's own account only, so BYOK calls
(billed to the user's own provider account) are left out of the estimate.

Mechanism. One day's usage records (one Scan of the day, a daily job) are summed per (provider, model):
Tollgate's estimate (Σ costUsd) and tokens. Each provider's billing source says what it billed per model
that day. Per (provider, model) and per provider:
  drift_usd = actual − estimated;  drift_pct = drift_usd / estimated × 100
and status `ok` (|drift_pct| <= threshold, compared exactly in Decimal), `drift` (above), `missing` (no
provider figure) or `unmetered` (billed, but Tollgate saw no platform-key call for it). The provider's
figure per model is apportioned to users by their tokens weighted by price — each user's share of the
model's estimate, so input and output tokens weigh what they cost; by plain tokens when the estimate is
$0 — in Decimal to 12 places, the remainder to the largest share so the shares add up exactly, and written
to each user's daily total (store.daily_totals).

drift_pct is reported (and published as the alarm's metric) quantized to 2 decimals, ROUND_HALF_EVEN
(DRIFT_PCT_PLACES): a division carries 28 significant digits no one reads.

Sources (stored docs of the providers, shapes trimmed to what is read):
- OpenAI: GET /v1/organization/costs (admin key; start_time/end_time Unix seconds, bucket_width=1d,
  group_by=line_item; amount.value in USD, line_item "<model>, input|output") — platform.openai.com/docs/
  api-reference/usage/costs.
- Anthropic: GET /v1/organizations/cost_report (admin key in x-api-key; starting_at/ending_at RFC 3339,
  group_by[]=description; `amount` is a decimal string in cents, with `model`) —
  platform.claude.com/docs/en/api/admin/cost_report.
- Bedrock: Cost Explorer GetCostAndUsage (DAILY, UnblendedCost, SERVICE = Amazon Bedrock): provider level
  only, as Cost Explorer has no model dimension for on-demand calls.
"""
from __future__ import annotations

import json
import logging
import os
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from tollgate import metric_names
from tollgate.errors import InvalidRequest
from tollgate.money import texts_in

log = logging.getLogger(__name__)

OK, DRIFT, MISSING, UNMETERED = "ok", "drift", "missing", "unmetered"
DRIFT_PCT_PLACES = Decimal("0.01")  # drift_pct as reported: percent to 2 decimals, ROUND_HALF_EVEN
DEFAULT_THRESHOLD_PCT = Decimal(metric_names.RECONCILIATION_DRIFT_ALARM_PCT)  # one threshold: job and alarm
SHARE_QUANTUM = Decimal("1e-12")  # USD: apportioned shares (tollgate.requests.types.USD_PLACES)
ZERO = Decimal(0)
ALL_MODELS = "*"  # a source that bills per provider only (Cost Explorer)
FIRST_DAY = date(2020, 1, 1)  # before any provider's cost API existed


@dataclass(frozen=True)
class Billed:
    """What a provider billed for one UTC day: USD per model (the provider's own names, or ALL_MODELS).
    `usd` None: the provider has no data for that day (not yet published, or its API failed: `reason`)."""

    usd: dict[str, Decimal] | None
    reason: str | None = None


class BillingSource(Protocol):
    provider: str

    def billed(self, day: date) -> Billed: ...


def _get_json(url: str, headers: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """GET a JSON document, numbers as Decimal (amounts are money). Raises urllib.error.URLError (HTTPError
    for a non-2xx answer); the caller reports any failure as a missing bill."""
    request = urllib.request.Request(url, headers={"accept": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - https URLs from settings
        return json.loads(response.read(), parse_float=Decimal)


def _pages(url: str, params: list[tuple[str, str]], headers: dict[str, str], timeout_s: float):
    """Every page of a paginated report (has_more / next_page, as both providers page)."""
    page: str | None = None
    while True:
        query = params + ([("page", page)] if page else [])
        doc = _get_json(f"{url}?{urllib.parse.urlencode(query)}", headers, timeout_s)
        yield doc
        page = doc.get("next_page")
        if not doc.get("has_more") or not page:
            return


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class OpenAICosts:
    """OpenAI's organization Costs API. `base_url` ends in /v1 (as the SDK's)."""

    admin_key: str
    base_url: str = "https://api.openai.com/v1"
    timeout_s: float = 30.0
    provider: str = "openai"

    def billed(self, day: date) -> Billed:
        start, end = _day_bounds(day)
        params = [("start_time", str(int(start.timestamp()))), ("end_time", str(int(end.timestamp()))),
                  ("bucket_width", "1d"), ("group_by", "line_item"), ("limit", "1")]
        buckets = [b for doc in _pages(f"{self.base_url.rstrip('/')}/organization/costs", params,
                                       {"authorization": f"Bearer {self.admin_key}"}, self.timeout_s)
                   for b in doc.get("data") or [] if int(b.get("start_time", -1)) == int(start.timestamp())]
        if not buckets:
            return Billed(None, "no bucket for the day")
        out: dict[str, Decimal] = defaultdict(Decimal)
        for result in (r for b in buckets for r in b.get("results") or []):
            model = str(result.get("line_item") or ALL_MODELS).split(", ")[0]
            out[model] += Decimal(str((result.get("amount") or {}).get("value", 0)))
        return Billed(dict(out))


@dataclass(frozen=True)
class AnthropicCostReport:
    """Anthropic's Admin API cost report. `base_url` without /v1 (as the SDK's)."""

    admin_key: str
    base_url: str = "https://api.anthropic.com"
    timeout_s: float = 30.0
    provider: str = "anthropic"

    def billed(self, day: date) -> Billed:
        start, end = _day_bounds(day)
        params = [("starting_at", start.strftime("%Y-%m-%dT%H:%M:%SZ")),
                  ("ending_at", end.strftime("%Y-%m-%dT%H:%M:%SZ")), ("bucket_width", "1d"),
                  ("group_by[]", "description"), ("limit", "1")]
        headers = {"x-api-key": self.admin_key, "anthropic-version": "2023-06-01"}
        buckets = [b for doc in _pages(f"{self.base_url.rstrip('/')}/v1/organizations/cost_report", params, headers,
                                       self.timeout_s)
                   for b in doc.get("data") or [] if str(b.get("starting_at", ""))[:10] == day.isoformat()]
        if not buckets:
            return Billed(None, "no bucket for the day")
        out: dict[str, Decimal] = defaultdict(Decimal)
        for result in (r for b in buckets for r in b.get("results") or []):
            if str(result.get("currency", "USD")).upper() != "USD":
                return Billed(None, f"currency {result.get('currency')} is not USD")
            out[str(result.get("model") or ALL_MODELS)] += Decimal(str(result.get("amount", "0"))) / 100  # cents
        return Billed(dict(out))


@dataclass(frozen=True)
class BedrockCostExplorer:
    """Cost Explorer's daily unblended cost of the Amazon Bedrock service (provider level only).
    `client`: a boto3 "ce" client."""

    client: Any
    provider: str = "bedrock"

    def billed(self, day: date) -> Billed:
        answer = self.client.get_cost_and_usage(
            TimePeriod={"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()},
            Granularity="DAILY", Metrics=["UnblendedCost"],
            Filter={"Dimensions": {"Key": "SERVICE", "Values": ["Amazon Bedrock"]}})
        periods = answer.get("ResultsByTime") or []
        if not periods or periods[0].get("Estimated") is None:
            return Billed(None, "no Cost Explorer data for the day")
        return Billed({ALL_MODELS: Decimal(periods[0]["Total"]["UnblendedCost"]["Amount"])})


@dataclass
class _Estimate:
    usd: Decimal = ZERO
    tokens: int = 0
    users: dict[str, list] = field(default_factory=lambda: defaultdict(lambda: [ZERO, 0]))  # user -> [usd, tokens]


def day_of(value: str | None, today: date) -> date:
    """A day as YYYY-MM-DD from FIRST_DAY to `today` (default: yesterday, UTC, the last complete day).
    InvalidRequest (param `day`) otherwise."""
    if not value:
        return today - timedelta(days=1)
    try:
        if len(value) != 10:
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest("'day' must be a date as YYYY-MM-DD.", param="day") from None
    if not FIRST_DAY <= day <= today:
        raise InvalidRequest(f"'day' must be from {FIRST_DAY.isoformat()} to today (UTC).", param="day")
    return day


def _drift(estimated: Decimal, actual: Decimal | None, threshold: Decimal) -> dict[str, Any]:
    if actual is None:
        return {"actual_usd": None, "drift_usd": None, "drift_pct": None, "status": MISSING}
    if estimated == 0:
        return {"actual_usd": actual, "drift_usd": actual, "drift_pct": None, "status": UNMETERED if actual else OK}
    pct = (actual - estimated) / estimated * 100
    return {"actual_usd": actual, "drift_usd": actual - estimated,
            "drift_pct": pct.quantize(DRIFT_PCT_PLACES, rounding=ROUND_HALF_EVEN),
            "status": DRIFT if abs(pct) > threshold else OK}


def apportion(total: Decimal, weights: dict[str, Decimal]) -> dict[str, Decimal]:
    """`total` (USD) split by `weights` (USD estimates or tokens), each share to SHARE_QUANTUM, the rounding
    remainder to the largest weight so the shares add up to `total` exactly. Equal shares when all are 0."""
    if not weights:
        return {}
    whole = sum(weights.values())
    if whole == 0:
        weights, whole = {k: 1 for k in weights}, len(weights)
    shares = {k: (total * w / whole).quantize(SHARE_QUANTUM, rounding=ROUND_HALF_EVEN) for k, w in weights.items()}
    largest = max(weights, key=lambda k: (weights[k], k))
    shares[largest] += total - sum(shares.values())
    return shares


class Reconciler:
    """Runs a day's reconciliation. Collaborators: `usage` (store.usage.UsageStore), `daily`
    (store.daily_totals.DailyTotals), `sources` {provider: BillingSource}, `resolve` (model name ->
    canonical catalogue id or None: tollgate.pricing.Catalogue.resolve), and optional `emit(name, unit,
    value, provider)` that publishes one metric with the provider dimension."""

    def __init__(self, usage: Any, daily: Any, sources: dict[str, BillingSource], resolve: Any,
                 threshold_pct: Decimal = DEFAULT_THRESHOLD_PCT, emit: Any = None):
        self.usage, self.daily, self.sources, self.resolve = usage, daily, sources, resolve
        self.threshold = threshold_pct
        self.emit = emit

    def run(self, day: date) -> dict[str, Any]:
        """Reconcile `day` (UTC). Returns {day, threshold_pct, providers: [{provider, estimated_usd,
        actual_usd, drift_usd, drift_pct, status, reason, models: [{model, ... same}]}]}, money as text.
        Writes actual_usd to users' daily totals and, with `emit`, publishes the drift per provider."""
        estimates: dict[str, dict[str, _Estimate]] = defaultdict(lambda: defaultdict(_Estimate))
        for record in self.usage.for_period(day.isoformat()):
            if record.get("byok"):
                continue
            est = estimates[str(record.get("provider"))][self._model(str(record.get("model")))]
            cost, tokens = Decimal(record.get("costUsd", 0)), int(record.get("totalTokens", 0))
            est.usd += cost
            est.tokens += tokens
            est.users[str(record["pk"])][0] += cost
            est.users[str(record["pk"])][1] += tokens
        providers = []
        for provider in sorted(set(estimates) | set(self.sources)):
            providers.append(self._provider(day, provider, estimates.get(provider, {})))
        report = {"day": day.isoformat(), "threshold_pct": self.threshold, "providers": providers}
        self._publish(providers)
        return texts_in(report)

    def _model(self, name: str) -> str:
        return self.resolve(name) or name

    def _provider(self, day: date, provider: str, models: dict[str, _Estimate]) -> dict[str, Any]:
        source = self.sources.get(provider)
        if source is None:
            billed = Billed(None, "not configured")
        else:
            try:
                billed = source.billed(day)
            except Exception as exc:  # noqa: BLE001 - any failure to read a bill is missing data, never zero
                log.warning("provider billing unavailable", extra={"provider": provider, "error": type(exc).__name__})
                billed = Billed(None, f"billing API failed: {type(exc).__name__}")
        actual_by_model: dict[str, Decimal] | None = None
        if billed.usd is not None:
            actual_by_model = defaultdict(Decimal)
            for name, amount in billed.usd.items():
                actual_by_model[name if name == ALL_MODELS else self._model(name)] += amount
        rows = []
        per_model = actual_by_model is not None and set(actual_by_model) != {ALL_MODELS}
        for model in sorted(set(models) | (set(actual_by_model or {}) if per_model else set())):
            est = models.get(model, _Estimate())
            actual = actual_by_model.get(model) if per_model else None
            if per_model and actual is None and est.usd == 0:
                actual = ZERO
            row = {"model": model, "estimated_usd": est.usd, "tokens": est.tokens,
                   **_drift(est.usd, actual, self.threshold)}
            rows.append(row)
            self.daily.write(day.isoformat(), provider, model, {u: (v[0], v[1]) for u, v in est.users.items()},
                             apportion(actual, _weights(est)) if actual is not None else None)
        estimated = sum((e.usd for e in models.values()), ZERO)
        total = None if actual_by_model is None else sum(actual_by_model.values(), ZERO)
        reason = billed.reason
        missing = [r["model"] for r in rows if r["status"] == MISSING]
        if per_model and missing:  # a bill without some metered model is incomplete (late), not a drift
            total, reason = None, f"no figure for {', '.join(missing)}"
        summary = {"provider": provider, "estimated_usd": estimated, **_drift(estimated, total, self.threshold),
                   "reason": reason, "models": rows}
        self.daily.write_summary(day.isoformat(), provider, summary)
        return summary

    def _publish(self, providers: list[dict[str, Any]]) -> None:
        """Per provider: |drift_pct| (metric_names.RECONCILIATION_DRIFT_PCT, percent) where both figures
        exist, else a count of missing bills (RECONCILIATION_MISSING): missing data never reads as 0 drift."""
        if not self.emit:
            return
        for p in providers:
            if p["status"] == MISSING:
                self.emit(metric_names.RECONCILIATION_MISSING, "Count", 1.0, p["provider"])
            elif p["drift_pct"] is not None:
                self.emit(metric_names.RECONCILIATION_DRIFT_PCT, "Percent", float(abs(p["drift_pct"])), p["provider"])


def _weights(est: _Estimate) -> dict[str, Decimal]:
    """Each user's estimate (price-weighted tokens), or plain tokens when the model's estimate is $0."""
    return {u: (v[0] if est.usd else Decimal(v[1])) for u, v in est.users.items()}


@dataclass(frozen=True)
class ReconcileSettings:
    """Where the providers' admin keys come from: the environment (local), else a Secrets Manager secret
    {"openai": "sk-admin-...", "anthropic": "sk-ant-admin..."} (deployed), and the drift threshold."""

    openai_admin_key: str | None
    anthropic_admin_key: str | None
    admin_keys_secret_arn: str | None
    threshold_pct: Decimal
    cost_explorer: bool

    @classmethod
    def from_env(cls, env: Any = None) -> "ReconcileSettings":
        from tollgate.schema import Env

        e = os.environ if env is None else env
        return cls(e.get(Env.OPENAI_ADMIN_KEY) or None, e.get(Env.ANTHROPIC_ADMIN_KEY) or None,
                   e.get(Env.PROVIDER_ADMIN_KEYS_SECRET_ARN) or None,
                   Decimal(e.get(Env.RECONCILE_DRIFT_THRESHOLD_PCT) or DEFAULT_THRESHOLD_PCT),
                   (e.get(Env.RECONCILE_COST_EXPLORER) or "").lower() in ("1", "true"))

    def admin_keys(self) -> dict[str, str]:
        keys = {"openai": self.openai_admin_key, "anthropic": self.anthropic_admin_key}
        if self.admin_keys_secret_arn and not all(keys.values()):
            from aws_lambda_powertools.utilities import parameters

            stored = json.loads(parameters.get_secret(self.admin_keys_secret_arn, max_age=300) or "{}")
            keys = {p: keys[p] or stored.get(p) for p in keys}
        return {p: k for p, k in keys.items() if k}
