"""Deployment settings read from CDK context (cdk.json, or `cdk deploy -c key=value`)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from constructs import Construct

# WAF rate-based rules accept 10 .. 2,000,000,000 requests per evaluation window.
_WAF_MIN_RATE = 10
_COST_PER_HOUR_CEILING_USD = 25.0
# API Gateway REST response streaming (the gateway's routes are STREAM integrations): a streamed response
# lasts at most 15 minutes, and a STREAM integration's timeout may be set up to that without a quota
# increase (BUFFERED: 29 s). Lambda's own maximum timeout is the same 15 minutes.
STREAM_LIMIT_S = 900
_SETTLE_MARGIN_S = 30
_MIN_INTEGRATION_TIMEOUT_S = _SETTLE_MARGIN_S + 30


@dataclass(frozen=True)
class Timeouts:
    """One chain, from the stream limit. API Gateway ends a stream at `integration_s` and the gateway Lambda
    may run as long (it cannot outlive the 15-minute maximum); so the gateway itself stops reading from the
    provider a settle margin before (`provider_s`: its stream deadline and its SDK timeout) and settles every
    stream it started. A reservation outlives its Lambda, so the sweeper never releases budget a running
    request is about to settle."""

    integration_s: int = STREAM_LIMIT_S

    @property
    def provider_s(self) -> int:
        return self.integration_s - _SETTLE_MARGIN_S  # one attempt: no retry once the stream has started

    @property
    def gateway_lambda_s(self) -> int:
        return self.integration_s

    @property
    def reservation_ttl_s(self) -> int:
        return 2 * self.gateway_lambda_s


@dataclass(frozen=True)
class DeploySettings:
    alert_email: str | None
    geo_block_countries: tuple[str, ...]
    waf_rate_limit_per_5min: int
    cost_per_hour_ceiling_usd: float = _COST_PER_HOUR_CEILING_USD  # the static cost alarm (all users)
    timeouts: Timeouts = Timeouts()
    # Bedrock's bill read from Cost Explorer by the daily reconciliation (-c reconcile_bedrock=true). Off by
    # default: each GetCostAndUsage call costs $0.01 (aws.amazon.com/aws-cost-management/pricing), and an
    # account not using Bedrock has nothing to reconcile.
    reconcile_bedrock: bool = False

    @classmethod
    def from_context(cls, scope: Construct) -> "DeploySettings":
        node = scope.node
        countries = node.try_get_context("geo_block_countries") or []
        if isinstance(countries, str):  # from the command line: '["RU","KP"]' or 'RU,KP'
            countries = json.loads(countries) if countries.strip().startswith("[") else countries.split(",")
        rate = int(node.try_get_context("waf_rate_limit_per_5min") or 1000)
        if rate < _WAF_MIN_RATE:
            raise ValueError(f"waf_rate_limit_per_5min must be at least {_WAF_MIN_RATE}, got {rate}")
        ceiling = node.try_get_context("cost_per_hour_ceiling_usd")
        ceiling = _COST_PER_HOUR_CEILING_USD if ceiling in (None, "") else float(ceiling)
        if ceiling <= 0:
            raise ValueError(f"cost_per_hour_ceiling_usd must be positive, got {ceiling}")
        integration = int(node.try_get_context("integration_timeout_s") or STREAM_LIMIT_S)
        if not _MIN_INTEGRATION_TIMEOUT_S <= integration <= STREAM_LIMIT_S:
            raise ValueError(f"integration_timeout_s must be {_MIN_INTEGRATION_TIMEOUT_S}..{STREAM_LIMIT_S}, "
                             f"got {integration}")
        return cls(
            timeouts=Timeouts(integration),
            alert_email=(node.try_get_context("alert_email") or "").strip() or None,
            geo_block_countries=tuple(c.strip().upper() for c in countries if c.strip()),
            waf_rate_limit_per_5min=rate,
            cost_per_hour_ceiling_usd=ceiling,
            reconcile_bedrock=str(node.try_get_context("reconcile_bedrock")).lower() in ("true", "1"),
        )
