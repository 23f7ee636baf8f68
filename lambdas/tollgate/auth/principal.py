"""Who is calling, with what scopes and limits: built by the authorizer, read by the handlers.

API Gateway passes an authorizer's context to the integration as flat string values, so the principal
travels as strings and is rebuilt here; nothing else knows the context's layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Mapping

from tollgate.errors import PermissionDenied

API_KEY = "api_key"
JWT = "jwt"
IAM = "iam"


@dataclass(frozen=True)
class Limits:
    """Per-principal limits; None means "use the configured default"."""

    rpm: int | None = None
    tpm: int | None = None
    key_monthly_usd: Decimal | None = None
    key_hourly_usd: Decimal | None = None
    user_monthly_usd: Decimal | None = None


@dataclass(frozen=True)
class Principal:
    kind: str  # API_KEY, JWT or IAM
    id: str  # key id, JWT subject or role ARN: what rate limits and burn caps attach to
    user: str  # whose budget pays
    scopes: frozenset[str]
    limits: Limits = field(default_factory=Limits)
    byok_providers: frozenset[str] = frozenset()
    lineage: str | None = None  # a rotated key keeps the first key's id here: budgets and limits follow it
    byok_budget_exempt: bool = False  # an operator let this user's own-key calls bypass the budgets
    log_prompts: bool = False  # an operator turned prompt logging on for this user (off by default)
    cache_ttl_s: int = 0  # seconds this user's answers are kept in the response cache; 0: off (tollgate.response_cache)

    @property
    def key_id(self) -> str | None:
        return self.id if self.kind == API_KEY else None

    @property
    def account(self) -> str:
        """What per-key budgets, rate limits and the loop guard attach to (stable across key rotation)."""
        return self.lineage or self.id

    def with_user_settings(self, user: Mapping[str, Any]) -> "Principal":
        """This principal with its user's settings (tollgate.wiring.user_context): monthly limit, own
        provider keys, BYOK exemption, prompt logging, response cache TTL."""
        return replace(self, limits=replace(self.limits, user_monthly_usd=user.get("user_monthly_usd")),
                       byok_providers=frozenset(user.get("byok", ())),
                       byok_budget_exempt=bool(user.get("byok_budget_exempt")),
                       log_prompts=bool(user.get("log_prompts")), cache_ttl_s=int(user.get("cache_ttl_s") or 0))

    def require(self, scope: str | None) -> None:
        if scope and scope not in self.scopes:
            raise PermissionDenied(f"This credential lacks the '{scope}' scope.")

    def to_context(self) -> dict[str, str]:
        ctx = {
            "kind": self.kind,
            "id": self.id,
            "user": self.user,
            "scopes": " ".join(sorted(self.scopes)),
            "byok": ",".join(sorted(self.byok_providers)),
        }
        if self.lineage:
            ctx["lineage"] = self.lineage
        if self.byok_budget_exempt:
            ctx["byok_budget_exempt"] = "true"
        if self.log_prompts:
            ctx["log_prompts"] = "true"
        if self.cache_ttl_s:
            ctx["cache_ttl_s"] = str(self.cache_ttl_s)
        for name in ("rpm", "tpm", "key_monthly_usd", "key_hourly_usd", "user_monthly_usd"):
            value = getattr(self.limits, name)
            if value is not None:
                ctx[name] = str(value)
        return ctx

    @classmethod
    def from_context(cls, ctx: Mapping[str, Any]) -> "Principal":
        def opt(name: str, kind: type) -> Any:
            value = ctx.get(name)
            return kind(str(value)) if value not in (None, "") else None

        return cls(
            kind=str(ctx["kind"]),
            id=str(ctx["id"]),
            user=str(ctx["user"]),
            scopes=frozenset(str(ctx.get("scopes", "")).split()),
            limits=Limits(
                rpm=opt("rpm", int),
                tpm=opt("tpm", int),
                key_monthly_usd=opt("key_monthly_usd", Decimal),
                key_hourly_usd=opt("key_hourly_usd", Decimal),
                user_monthly_usd=opt("user_monthly_usd", Decimal),
            ),
            byok_providers=frozenset(p for p in str(ctx.get("byok", "")).split(",") if p),
            lineage=str(ctx["lineage"]) if ctx.get("lineage") else None,
            byok_budget_exempt=str(ctx.get("byok_budget_exempt", "")).lower() == "true",
            log_prompts=str(ctx.get("log_prompts", "")).lower() == "true",
            cache_ttl_s=opt("cache_ttl_s", int) or 0,
        )
