"""JWT service tokens: HS256 only, short-lived, every registered claim required.

The algorithm is never taken from the token: PyJWT is given an allow-list of one, so `alg: none` and
RS256/HS256 confusion are refused before any signature work. During a secret rotation the previous
secret still verifies for ROTATION_OVERLAP_S after the new one became current (the longest a token may
live), then only the new one does.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Sequence

from tollgate import scopes as scope_names
from tollgate.auth.principal import JWT, Principal
from tollgate.errors import AuthenticationFailed, InvalidRequest

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "tollgate"
AUDIENCE = "tollgate-api"
DEFAULT_TTL_S = 3600
MAX_TTL_S = 12 * 3600
ROTATION_OVERLAP_S = MAX_TTL_S
MAX_TOKEN_BYTES = 4096
MIN_SECRET_BYTES = 32
LEEWAY_S = 5
INVALID = "Invalid service token."


@dataclass(frozen=True)
class SigningSecret:
    value: str
    current: bool
    became_previous_at: datetime | None = None  # for the previous secret: when the current one replaced it


def issue(secret: SigningSecret, *, service: str, scopes: Sequence[str], now: datetime,
          ttl_s: int = DEFAULT_TTL_S, user: str | None = None) -> tuple[str, datetime]:
    import jwt

    if not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidRequest(f"A token lives between 1 s and {MAX_TTL_S} s.", param="ttl_s")
    if scope_names.unknown(list(scopes)):
        raise InvalidRequest(f"Unknown scopes: {scope_names.unknown(list(scopes))}.", param="scopes")
    if not service:
        raise InvalidRequest("'service' is required.", param="service")
    expires = now + timedelta(seconds=ttl_s)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": service, "iat": int(now.timestamp()),
              "nbf": int(now.timestamp()), "exp": int(expires.timestamp()), "scopes": list(scopes), "type": "service"}
    if user:
        claims["user"] = user
    return jwt.encode(claims, secret.value, algorithm=ALGORITHM), expires


def verify(token: str, secrets: Sequence[SigningSecret], now: datetime) -> Principal:
    import jwt

    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise _fail("oversized token")
    usable = [s for s in secrets if s.current or (
        s.became_previous_at is not None and now - s.became_previous_at < timedelta(seconds=ROTATION_OVERLAP_S))]
    for secret in usable:
        try:
            # Times are checked below against our clock (PyJWT only knows the wall clock).
            claims = jwt.decode(
                token, secret.value, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise _fail(type(exc).__name__) from None
        _check_times(claims, int(now.timestamp()))
        granted = claims.get("scopes")
        if not isinstance(granted, list) or scope_names.unknown(granted):
            raise _fail("bad scopes claim")
        subject = str(claims["sub"])
        return Principal(kind=JWT, id=f"svc:{subject}", user=str(claims.get("user") or f"svc:{subject}"),
                         scopes=frozenset(granted))
    raise _fail("signature matches no current secret")


def _check_times(claims: dict, now: int) -> None:
    try:
        exp, iat, nbf = int(claims["exp"]), int(claims["iat"]), int(claims.get("nbf", claims["iat"]))
    except (TypeError, ValueError):
        raise _fail("non-numeric time claim") from None
    if exp <= now - LEEWAY_S:
        raise _fail("expired")
    if iat > now + LEEWAY_S or nbf > now + LEEWAY_S:
        raise _fail("not yet valid")
    if exp - iat > MAX_TTL_S:
        raise _fail("lifetime longer than allowed")


def _fail(reason: str) -> AuthenticationFailed:
    log.info("service token refused", extra={"reason": reason})
    return AuthenticationFailed(INVALID, code="invalid_token")


def verifier(secrets: Callable[[], Sequence[SigningSecret]], clock: Callable[[], datetime]) -> Callable[[str], Principal]:
    return lambda token: verify(token, secrets(), clock())
