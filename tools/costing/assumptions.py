"""The assumptions the figures rest on. Everything here is stated in `make cost`'s output.

Change one here (or with `python -m tools.costing --set name=value`) to see how the figures move.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal


@dataclass(frozen=True)
class Assumptions:
    region: str = "us-east-1"
    hours_per_month: Decimal = Decimal(730)
    # Traffic: the per-million figure is what a month with this many metered chat requests adds to idle,
    # spread evenly over the month and over `active_keys` API keys, one provider.
    requests_per_month: Decimal = Decimal(1_000_000)
    active_keys: Decimal = Decimal(20)
    providers_used: Decimal = Decimal(1)
    # Request shape: an OpenAI chat completion (gpt-4o-mini) with a prompt of this many characters and
    # max_tokens 256; the measured request (writes.py) is sent with exactly this shape.
    prompt_chars: int = 1000
    max_tokens: int = 256
    # Time: the gateway waits on the provider (the figure); its own work per warm request at 1024 MB
    # (Lambda's CPU share is proportional to memory, so it takes 1024/M times as long at M MB); a warm
    # authorizer call (the bcrypt check is cached per key in the process).
    provider_wait_s: Decimal = Decimal("0.6")
    gateway_own_s_at_1024mb: Decimal = Decimal("0.05")
    authorizer_s: Decimal = Decimal("0.02")
    cold_start_share: Decimal = Decimal("0.001")  # of invocations; each cold gateway reads the platform-keys secret once
    # Log bytes per invocation that Lambda writes itself (START, END, REPORT lines) and per WAF log record.
    lambda_platform_log_bytes: int = 350
    authorizer_own_log_bytes: int = 250
    waf_log_bytes: int = 1500
    # Share of requests a WAF rule blocks or counts: all that WAF logs when its logging filter drops the rest.
    waf_logged_share: Decimal = Decimal("0.02")
    # The sweeper (scheduled): its run time, and the custom metrics it emits every run.
    sweeper_s: Decimal = Decimal("0.2")
    sweeper_log_bytes: int = 900
    idle_custom_metrics: Decimal = Decimal(1)  # ReservationsReleased
    # Usage records are kept this long when the usage table has no TTL (then they are kept forever).
    usage_months_kept_without_ttl: Decimal = Decimal(13)

    def with_overrides(self, pairs: list[str]) -> "Assumptions":
        """`["provider_wait_s=1.2", ...]` applied; raises ValueError for an unknown name."""
        types = {f.name: f.type for f in fields(self)}
        changes = {}
        for pair in pairs:
            name, _, value = pair.partition("=")
            if name not in types:
                raise ValueError(f"unknown assumption {name!r}; known: {', '.join(types)}")
            current = getattr(self, name)
            changes[name] = type(current)(value)
        return replace(self, **changes)

    @property
    def seconds_per_month(self) -> Decimal:
        return self.hours_per_month * 3600
