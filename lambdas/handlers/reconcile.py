"""Reconcile Lambda: daily (EventBridge schedule) compares yesterday's estimates with the providers' bills.

The event may name a day: {"day": "YYYY-MM-DD"}. The admin route POST /admin/reconcile runs the same
reconciler (built here, once per container) for `tollgate reconcile --day D`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import single_metric

from tollgate import metric_names, reconcile, wiring
from tollgate.observability import logger
from tollgate.settings import settings


def _emit(name: str, unit: str, value: float, provider: str) -> None:
    """One EMF metric with the provider dimension (a run covers several providers)."""
    with single_metric(name=name, unit=unit, value=value, namespace=metric_names.NAMESPACE,
                       default_dimensions={metric_names.DIM_SERVICE: metric_names.SERVICE}) as metric:
        metric.add_dimension(name=metric_names.DIM_PROVIDER, value=provider)


@lru_cache(maxsize=1)
def reconciler() -> reconcile.Reconciler:
    from tollgate.store.daily_totals import DailyTotals

    s, r = settings(), reconcile.ReconcileSettings.from_env()
    keys = r.admin_keys()
    sources: dict[str, Any] = {}
    if "openai" in keys:
        sources["openai"] = reconcile.OpenAICosts(keys["openai"], s.openai_base_url or "https://api.openai.com/v1",
                                                  timeout_s=s.provider_timeout_s)
    if "anthropic" in keys:
        sources["anthropic"] = reconcile.AnthropicCostReport(
            keys["anthropic"], s.anthropic_base_url or "https://api.anthropic.com", timeout_s=s.provider_timeout_s)
    if r.cost_explorer:
        import boto3

        sources["bedrock"] = reconcile.BedrockCostExplorer(boto3.client("ce", region_name="us-east-1"))
    return reconcile.Reconciler(wiring.usage_store(), DailyTotals(s.budgets_table, wiring.dynamodb()), sources,
                                wiring.catalogue().resolve, r.threshold_pct, emit=_emit)


def run(day: str | None) -> dict[str, Any]:
    """Reconcile `day` (YYYY-MM-DD; default yesterday, UTC). InvalidRequest for a malformed day."""
    report = reconciler().run(reconcile.day_of(day, datetime.now(timezone.utc).date()))
    logger.info("reconciled", extra={"day": report["day"],
                                     "providers": {p["provider"]: p["status"] for p in report["providers"]}})
    return report


@logger.inject_lambda_context(clear_state=True, log_event=False)
def lambda_handler(event: dict, context: object) -> dict:
    return run((event or {}).get("day"))
