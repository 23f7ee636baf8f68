"""Who is calling, with what scopes and limits: built by the authorizer, read by the handlers.

API Gateway passes an authorizer's context to the integration as flat string values, so the principal
travels as strings and is rebuilt here; nothing else knows the context's layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def key_id(self) -> str | None:
        return self.id if self.kind == API_KEY else None

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
        )
