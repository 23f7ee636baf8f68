"""Metric names and dimensions: the one definition used by the handlers (EMF) and the CDK dashboards and
alarms. Standard library only."""
from __future__ import annotations

NAMESPACE = "Tollgate"
SERVICE = "tollgate"

REQUESTS = "RequestCount"
TOKENS = "TokensProcessed"
COST_USD = "CostUsd"
ERRORS = "Errors"
BUDGET_REFUSALS = "BudgetRefusals"
RATE_LIMIT_REFUSALS = "RateLimitRefusals"
LOOP_DETECTIONS = "LoopDetections"
PROVIDER_LATENCY_MS = "ProviderLatency"
TIME_TO_FIRST_TOKEN_MS = "TimeToFirstToken"  # streamed answers: from sending the request to the first event
RESERVATIONS_RELEASED = "ReservationsReleased"
SETTLE_FAILURES = "SettleFailures"
CACHE_HITS = "CacheHits"  # response cache (tollgate.response_cache): requests answered from it
CACHE_MISSES = "CacheMisses"  # cacheable requests it could not answer (sent to the provider)

# Low cardinality only: never user, key or request ids.
DIM_SERVICE = "service"
DIM_PROVIDER = "provider"

# The values of DIM_PROVIDER: every provider the gateway can call (tollgate.providers.registry). Dashboards
# and alarms add the per-provider series up, so a provider added there is added here (a test checks).
PROVIDERS = ("openai", "anthropic", "bedrock")

# The one structured log line per metered answer (handlers/gateway.py), read by the dashboard's Logs Insights
# query of the top spenders (stacks/monitoring_stack.py): {"message": METERED_LOG_MESSAGE, LOG_USER: ...,
# LOG_COST_USD: <number>}.
METERED_LOG_MESSAGE = "metered request"
LOG_USER = "user"
LOG_COST_USD = "cost_usd"

# Reconciliation (tollgate.reconcile), per provider (DIM_PROVIDER): |actual - estimate| / estimate in percent
# where the provider's bill for the day exists, else one count of a missing bill. The dashboard alarms when
# the drift exceeds RECONCILIATION_DRIFT_ALARM_PCT.
RECONCILIATION_DRIFT_PCT = "ReconciliationDriftPct"
RECONCILIATION_MISSING = "ReconciliationMissing"
RECONCILIATION_DRIFT_ALARM_PCT = 3
