"""Powertools Logger, Metrics and Tracer: created once, shared by every handler.

Logs are structured JSON with the request id as correlation id. Prompt text, completions and key
material are never passed to the logger.
"""
from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

from tollgate import metric_names

logger = Logger(service=metric_names.SERVICE)
metrics = Metrics(namespace=metric_names.NAMESPACE, service=metric_names.SERVICE)
tracer = Tracer(service=metric_names.SERVICE)

# Health checks and refusals legitimately emit no metric; Powertools would warn on every one of them.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
