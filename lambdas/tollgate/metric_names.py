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
RESERVATIONS_RELEASED = "ReservationsReleased"

# Low cardinality only: never user, key or request ids.
DIM_SERVICE = "service"
DIM_PROVIDER = "provider"
