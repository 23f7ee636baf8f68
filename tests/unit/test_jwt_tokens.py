"""The service-token battery: every bad token is refused, with a reason that leaks nothing."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tollgate.auth import jwt_tokens
from tollgate.auth.jwt_tokens import AUDIENCE, ISSUER, SigningSecret
from tollgate.errors import AuthenticationFailed

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SECRET = SigningSecret("s" * 48, current=True)


def _claims(**over):
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "billing-svc", "iat": int(NOW.timestamp()),
            "exp": int((NOW + timedelta(hours=1)).timestamp()), "scopes": ["ai:complete"]}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _sign(claims, key=SECRET.value, alg="HS256", headers=None):
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _refused(token, secrets=(SECRET,), now=NOW):
    with pytest.raises(AuthenticationFailed) as err:
        jwt_tokens.verify(token, list(secrets), now)
    assert err.value.message == jwt_tokens.INVALID and err.value.status == 401
    return err.value


def _b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_a_good_token_becomes_a_service_principal():
    token, expires = jwt_tokens.issue(SECRET, service="billing-svc", scopes=["ai:complete"], now=NOW)
    principal = jwt_tokens.verify(token, [SECRET], NOW + timedelta(minutes=5))
    assert principal.kind == "jwt" and principal.id == "svc:billing-svc" and principal.scopes == {"ai:complete"}
    assert expires == NOW + timedelta(hours=1)


def test_alg_none_is_refused():
    _refused(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.")


def test_rs256_hs256_confusion_is_refused():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    _refused(_sign(_claims(), key=private, alg="RS256"))
    # the classic confusion: HMAC "signed" with the public key, presented to a verifier that knows it
    forged = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims())}"
    import hashlib
    import hmac
    sig = base64.urlsafe_b64encode(hmac.new(public_pem.encode(), forged.encode(), hashlib.sha256).digest()).rstrip(b"=")
    _refused(f"{forged}.{sig.decode()}")


@pytest.mark.parametrize("case,claims,now", [
    ("expired", _claims(exp=int((NOW - timedelta(seconds=60)).timestamp())), NOW),
    ("not yet valid (nbf)", _claims(nbf=int((NOW + timedelta(minutes=10)).timestamp())), NOW),
    ("issued in the future", _claims(iat=int((NOW + timedelta(minutes=10)).timestamp())), NOW),
    ("wrong aud", _claims(aud="someone-else"), NOW),
    ("wrong iss", _claims(iss="evil"), NOW),
    ("missing exp", _claims(exp=None), NOW),
    ("missing sub", _claims(sub=None), NOW),
    ("missing iat", _claims(iat=None), NOW),
    ("unknown scope", _claims(scopes=["root"]), NOW),
])
def test_claim_battery(case, claims, now):
    _refused(_sign(claims), now=now)


def test_tampered_payload_is_refused():
    header, _, sig = _sign(_claims()).split(".")
    _refused(f"{header}.{_b64(_claims(scopes=['admin']))}.{sig}")


def test_wrong_secret_is_refused():
    _refused(_sign(_claims(), key="x" * 48))


def test_oversized_token_is_refused_before_decoding():
    _refused(_sign(_claims(pad="p" * 5000)))


def test_rotation_old_and_new_verify_during_the_overlap_then_only_new():
    old = SigningSecret("o" * 48, current=True)
    old_token, _ = jwt_tokens.issue(old, service="svc", scopes=["ai:complete"], now=NOW)
    rotated_at = NOW + timedelta(minutes=1)
    new = SigningSecret("n" * 48, current=True)
    previous = SigningSecret(old.value, current=False, became_previous_at=rotated_at)
    new_token, _ = jwt_tokens.issue(new, service="svc", scopes=["ai:complete"], now=rotated_at)
    during = rotated_at + timedelta(minutes=30)
    assert jwt_tokens.verify(old_token, [new, previous], during).id == "svc:svc"
    assert jwt_tokens.verify(new_token, [new, previous], during).id == "svc:svc"
    after = rotated_at + timedelta(seconds=jwt_tokens.ROTATION_OVERLAP_S + 1)
    late_new, _ = jwt_tokens.issue(new, service="svc", scopes=["ai:complete"], now=after)
    assert jwt_tokens.verify(late_new, [new, previous], after).id == "svc:svc"
    forged_old, _ = jwt_tokens.issue(old, service="svc", scopes=["ai:complete"], now=after)
    _refused(forged_old, secrets=(new, previous), now=after)


def test_issue_refuses_long_lifetimes_and_unknown_scopes():
    from tollgate.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        jwt_tokens.issue(SECRET, service="s", scopes=["ai:complete"], now=NOW, ttl_s=jwt_tokens.MAX_TTL_S + 1)
    with pytest.raises(InvalidRequest):
        jwt_tokens.issue(SECRET, service="s", scopes=["everything"], now=NOW)
