"""Usage records: one per request, the article's fields, written by the ledger's settle transaction."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tollgate.clock import iso
from tollgate.providers.base import Usage
from tollgate.money import text as usd
from tollgate.schema import USAGE, USAGE_RETENTION_DAYS

OK = "ok"
ERROR = "error"


# Left out of a stored record when zero or false (most requests): every reader takes their absence as
# 0 / false (public() below, tollgate.invoice, tollgate.reconcile). ~80 of a record's ~480 bytes, kept
# for the retention (storage and its continuous backups: `make cost`).
OMITTED_WHEN_ZERO = ("cachedTokens", "cacheWriteTokens", "cacheWrite1hTokens", "reasoningTokens", "byok", "stream")


def usage_sk(started_at: datetime, request_id: str) -> str:
    return f"{iso(started_at)}#{request_id}"


@dataclass(frozen=True)
class UsageRecord:
    user: str
    request_id: str
    started_at: datetime
    principal: str
    key_id: str | None
    provider: str
    model: str
    usage: Usage
    cost: Decimal  # USD charged to the budgets
    request_type: str  # completion | embedding | agent
    endpoint: str
    user_agent: str
    duration_ms: int
    byok: bool
    status: str  # OK or ERROR
    stream: bool = False
    error_code: str | None = None
    run_id: str | None = None
    # Set when the provider reported more usage than the request allowed: the cost its figures come to
    # (USD), while `cost` is what was charged (at most the reserved worst case). The usage is as reported.
    reported_cost: Decimal | None = None
    deployment: str | None = None  # which deployment answered (tollgate.deployments.Deployment.label)
    cached: bool = False  # answered from the response cache (tollgate.response_cache): no provider call, $0

    def item(self) -> dict[str, Any]:
        """The stored record (attributes in OMITTED_WHEN_ZERO only when set)."""
        item = {
            "pk": self.user, "sk": usage_sk(self.started_at, self.request_id), "requestId": self.request_id,
            "principal": self.principal, "keyId": self.key_id,  # the time: the sort key's first part
            "provider": self.provider, "model": self.model,
            "promptTokens": self.usage.input_tokens, "completionTokens": self.usage.output_tokens,
            "totalTokens": self.usage.total_tokens, "cachedTokens": self.usage.cached_input_tokens,
            "cacheWriteTokens": self.usage.cache_write_tokens, "costUsd": self.cost,
            "requestType": self.request_type, "endpoint": self.endpoint, "userAgent": self.user_agent[:256],
            "durationMs": self.duration_ms, "byok": self.byok, "status": self.status, "stream": self.stream,
            "errorCode": self.error_code, "runId": self.run_id,
            # billed outside plain token counts (tollgate.pricing): 1-hour cache writes (of cacheWriteTokens),
            # reasoning tokens (of completionTokens), server-side tool calls, a non-standard service tier
            "cacheWrite1hTokens": self.usage.cache_write_1h_tokens, "reasoningTokens": self.usage.reasoning_tokens,
            "serverToolCalls": dict(self.usage.server_tool_calls) or None, "serviceTier": self.usage.service_tier,
            USAGE.ttl_attribute: int(self.started_at.timestamp()) + USAGE_RETENTION_DAYS * 86_400,
            **({"usageAnomaly": True, "reportedCostUsd": self.reported_cost} if self.reported_cost is not None else {}),
            **({"deployment": self.deployment} if self.deployment else {}),
            **({"cached": True} if self.cached else {}),
        }
        return {k: v for k, v in item.items() if v or k not in OMITTED_WHEN_ZERO}


def request_time(item: dict[str, Any]) -> str:
    """When a stored record's request started (ISO-8601 UTC): the first part of its sort key (usage_sk)."""
    return str(item["sk"]).split("#", 1)[0]


def public(item: dict[str, Any]) -> dict[str, Any]:
    """A stored usage item as the admin API shows it."""
    return {
        "request_id": item.get("requestId"), "time": request_time(item), "provider": item.get("provider"),
        "model": item.get("model"), "prompt_tokens": int(item.get("promptTokens", 0)),
        "completion_tokens": int(item.get("completionTokens", 0)), "total_tokens": int(item.get("totalTokens", 0)),
        "cached_tokens": int(item.get("cachedTokens", 0)), "cache_write_tokens": int(item.get("cacheWriteTokens", 0)),
        "cost_usd": usd(item.get("costUsd", "0")), "request_type": item.get("requestType"),
        "endpoint": item.get("endpoint"), "user_agent": item.get("userAgent"),
        "duration_ms": int(item.get("durationMs", 0)), "byok": bool(item.get("byok", False)),
        "status": item.get("status"), "key_id": item.get("keyId"), "run_id": item.get("runId"),
        "cache_write_1h_tokens": int(item.get("cacheWrite1hTokens", 0)),
        "reasoning_tokens": int(item.get("reasoningTokens", 0)),
        "server_tool_calls": {k: int(v) for k, v in (item.get("serverToolCalls") or {}).items()},
        "service_tier": item.get("serviceTier"),
        **({"usage_anomaly": True, "reported_cost_usd": usd(item["reportedCostUsd"])} if item.get("usageAnomaly") else {}),
        "deployment": item.get("deployment"),
        "cached": bool(item.get("cached", False)),
    }
