"""Bodies of the admin routes (scope `admin`). Ids are bounded printable strings (types.Id), money is an
exact Decimal in a sane range (types.Usd), counts are integers and never booleans. Ranges that depend
on settings (a token's longest life, a rotation's grace) stay checked in tollgate.admin."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tollgate.requests.base import TollgateRequest
from tollgate.response_cache import MAX_TTL_S as MAX_CACHE_TTL_S
from tollgate.requests.types import Count, Day, Id, KeyId, Name, Percent, StrictBool, Text, Usd

Scopes = Annotated[list[Annotated[Text, Field(max_length=64)]], Field(max_length=32)]
Seconds = Annotated[int, Field(strict=True, ge=0, le=10**9)]


# A response cache setting (tollgate.response_cache), seconds: 0 turns caching off.
CacheTtl = Annotated[int, Field(strict=True, ge=0, le=MAX_CACHE_TTL_S)]

class CreateKey(TollgateRequest):
    """POST /admin/keys"""

    user: Id
    name: Name | None = None
    scopes: Scopes | None = None
    expires_at: Annotated[Text, Field(max_length=64)] | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    monthly_budget_usd: Usd | None = None
    hourly_budget_usd: Usd | None = None
    cache_ttl_s: CacheTtl | None = None  # None: the user's


class RotateKey(TollgateRequest):
    """POST /admin/keys/{keyId}/rotate (the body is optional)"""

    grace_s: Seconds | None = None


class SetBudget(TollgateRequest):
    """PUT /admin/budgets: one of `user` or `key`."""

    user: Id | None = None
    key: KeyId | None = None
    monthly_usd: Usd | None = None
    hourly_usd: Usd | None = None
    byok_budget_exempt: StrictBool | None = None


class IssueToken(TollgateRequest):
    """POST /admin/tokens"""

    service: Id
    scopes: Scopes | None = None
    ttl_s: Seconds | None = None
    user: Id | None = None


class UserSettings(TollgateRequest):
    """PUT /admin/users/{user}"""

    log_prompts: StrictBool | None = None
    byok_budget_exempt: StrictBool | None = None
    cache_ttl_s: CacheTtl | None = None


class InvoiceQuery(TollgateRequest):
    """GET /admin/invoice?month=YYYY-MM[&user=U][&markup_pct=2] (query-string values, checked here)."""

    month: Annotated[Text, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]  # [0-9]: \d matches any Unicode digit
    user: Id | None = None
    markup_pct: Percent | None = None


class Reconcile(TollgateRequest):
    """POST /admin/reconcile: the UTC day to reconcile (default: yesterday)."""

    day: Day | None = None
