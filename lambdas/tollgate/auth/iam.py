"""IAM callers (SigV4, verified by API Gateway's AWS_IAM authorization) mapped to principals.

The mapping is configuration: TOLLGATE_IAM_PRINCIPALS is a JSON object role name -> {"scopes": [...],
"user": "...", "limits": {"rpm", "tpm", "monthly_usd", "hourly_usd"}} (limits optional; the defaults
otherwise, shared by every call the role makes). Only a principal holding the `act-as` scope may name, in the X-Tollgate-On-Behalf-Of
header, the user it acts for (the agent tasks do, for the user who started a run).

API Gateway verifies the signature over the headers the caller listed in SignedHeaders, and passes any
other header through unverified. So the headers that say whom a call is for and which run pays
(X-Tollgate-On-Behalf-Of, X-Tollgate-Run-Id) are honoured only if they were signed; otherwise a captured
request could be replayed, within SigV4's 15-minute window, for another user or run.
"""
from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from tollgate import scopes
from tollgate.auth.principal import IAM, Limits, Principal
from tollgate.errors import AuthenticationFailed, PermissionDenied
from tollgate.schema import Env

ENV = Env.IAM_PRINCIPALS
ON_BEHALF_OF = "x-tollgate-on-behalf-of"
RUN_ID = "x-tollgate-run-id"  # the run that pays (handlers.gateway.RUN_ID_HEADER, agents.contract)
MUST_BE_SIGNED = (ON_BEHALF_OF, RUN_ID)
_ROLE = re.compile(r"^arn:aws[\w-]*:(?:sts::\d+:assumed-role|iam::\d+:role)/(?:[\w+=,.@-]+/)*([\w+=,.@-]+?)(?:/[^/]+)?$")


@lru_cache(maxsize=1)
def _mapping() -> dict[str, Any]:
    return json.loads(os.environ.get(ENV) or "{}")


def role_name(arn: str) -> str | None:
    """The role name of an IAM role ARN or an STS assumed-role session ARN."""
    if ":assumed-role/" in arn:
        parts = arn.split(":assumed-role/", 1)[1].split("/")
        return parts[0] if parts else None
    m = _ROLE.match(arn)
    return m.group(1) if m else None


def signed_headers(authorization: str | None) -> frozenset[str]:
    """The lower-cased header names an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=a;b,
    Signature=...` header says were signed (AWS SigV4); empty if it is absent or not SigV4."""
    scheme, _, rest = (authorization or "").strip().partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        return frozenset()
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep and name == "SignedHeaders":
            return frozenset(h.strip().lower() for h in value.split(";") if h.strip())
    return frozenset()


def _require_signed(lowered: dict[str, str]) -> None:
    present = [name for name in MUST_BE_SIGNED if lowered.get(name)]
    unsigned = sorted(set(present) - signed_headers(lowered.get("authorization")))
    if unsigned:
        raise PermissionDenied(f"The header(s) {', '.join(unsigned)} must be signed: list them in the SigV4 "
                               "SignedHeaders (botocore's SigV4Auth signs every header it is given).",
                               code="unsigned_header")


def principal_for(identity: dict[str, Any], headers: dict[str, str], mapping: dict[str, Any] | None = None) -> Principal:
    """The principal of a SigV4-verified caller. Raises AuthenticationFailed (role not configured) or
    PermissionDenied (acting for a user without `act-as`; an on-behalf-of or run-id header not signed)."""
    arn = identity.get("userArn") or identity.get("caller") or ""
    config = (mapping if mapping is not None else _mapping()).get(role_name(arn) or "")
    if not config:
        raise AuthenticationFailed("This IAM principal is not allowed to call Tollgate.")
    granted = frozenset(config.get("scopes", ()))
    user = config.get("user") or role_name(arn)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    _require_signed(lowered)
    acting_for = lowered.get(ON_BEHALF_OF)
    if acting_for:
        if scopes.ACT_AS not in granted:
            raise PermissionDenied("This principal may not act for another user (needs the 'act-as' scope).")
        user = acting_for
    limits = config.get("limits") or {}
    role = f"iam:{role_name(arn)}"
    # Acting for a user, the service's per-key limits and budgets apply per user it acts for: one
    # user's runs never exhaust another's.
    return Principal(kind=IAM, id=role, user=user, scopes=granted, lineage=f"{role}#{user}" if acting_for else None,
                     limits=Limits(
        rpm=limits.get("rpm"), tpm=limits.get("tpm"),
        key_monthly_usd=Decimal(str(limits["monthly_usd"])) if "monthly_usd" in limits else None,
        key_hourly_usd=Decimal(str(limits["hourly_usd"])) if "hourly_usd" in limits else None))
