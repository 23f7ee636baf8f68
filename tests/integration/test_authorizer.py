"""The authorizer: the API-key battery, bcrypt economy, JWT service tokens and the policy it returns."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from local.lambda_context import LambdaContext
from tests.integration.world import body_of
from tollgate import routes, scopes, wiring
from tollgate.auth import api_keys

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/v1/chat/completions"


def _event(headers, path="/v1/chat/completions"):
    return {"type": "REQUEST", "methodArn": ARN, "resource": path, "path": path,
            "httpMethod": "POST", "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "requestContext": {"requestId": "r", "stage": "prod", "accountId": "123456789012", "apiId": "abc123"}}


def _authorize(headers, path="/v1/chat/completions"):
    from handlers import authorizer

    return authorizer.lambda_handler(_event(headers, path), LambdaContext(function_name="authorizer"))


def _refused(headers):
    with pytest.raises(Exception, match="^Unauthorized$"):
        _authorize(headers)


def test_a_valid_key_gets_a_whole_api_allow_policy_and_its_principal(world):
    raw, record = world.create_key(user="alice", scopes=("ai:complete",), rpm=7)
    result = _authorize({"Authorization": f"Bearer {raw}"})
    [statement] = result["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*"]
    assert result["principalId"] == record.key_id
    assert result["context"]["user"] == "alice" and result["context"]["rpm"] == "7"
    assert all(isinstance(v, str) for v in result["context"].values())
    assert _authorize({"x-api-key": raw}, "/anthropic/v1/messages")["principalId"] == record.key_id


def test_only_the_header_the_route_is_keyed_on_is_read(world):
    """API Gateway caches the answer under the identity-source header's value: authenticating any other
    header would file one credential's answer under another's."""
    raw_a, record_a = world.create_key(user="alice")
    raw_b, _ = world.create_key(user="bob")
    both = {"x-api-key": raw_a, "Authorization": f"Bearer {raw_b}"}
    assert _authorize(both, "/anthropic/v1/messages")["context"]["user"] == "alice"
    assert _authorize(both, "/v1/chat/completions")["context"]["user"] == "bob"
    with pytest.raises(Exception, match="^Unauthorized$"):
        _authorize({"x-api-key": raw_a}, "/v1/chat/completions")


@pytest.mark.parametrize("credential", [
    "", "Bearer", "Bearer ", "sk-", "sk-" + "a" * 47, "sk-" + "a" * 49, "sk-" + "é" * 48,
    "sk-" + "a" * 100,  # over bcrypt's 72 bytes
    "not-a-key", "Basic dXNlcjpwYXNz",
])
def test_malformed_credentials_cost_no_lookup_and_no_bcrypt(world, credential):
    reads = []
    store = wiring.key_store()
    original = store.get
    store.get = lambda key_id: reads.append(key_id) or original(key_id)
    header = credential if credential.startswith(("Bearer", "Basic")) else f"Bearer {credential}"
    _refused({"Authorization": header})
    assert reads == [] and wiring.authenticator().bcrypt_checks == 0


def test_unknown_key_id_is_refused_without_bcrypt(world):
    _refused({"Authorization": f"Bearer {api_keys.generate()}"})
    assert wiring.authenticator().bcrypt_checks == 0


@pytest.mark.parametrize("status", [api_keys.REVOKED, api_keys.SUSPENDED])
def test_revoked_and_suspended_keys_are_refused_without_bcrypt(world, status):
    raw, record = world.create_key()
    wiring.key_store().set_status(record.key_id, status)
    _refused({"Authorization": f"Bearer {raw}"})
    assert wiring.authenticator().bcrypt_checks == 0


def test_an_expired_key_is_refused(world):
    raw, _ = world.create_key(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    _refused({"Authorization": f"Bearer {raw}"})


def test_right_key_id_with_a_wrong_secret_is_refused_after_one_bcrypt(world):
    raw, _ = world.create_key()
    forged = raw[:12] + ("A" if raw[12] != "A" else "B") + raw[13:]
    _refused({"Authorization": f"Bearer {forged}"})
    assert wiring.authenticator().bcrypt_checks == 1


def test_bcrypt_runs_once_per_key_per_container(world):
    raw, _ = world.create_key()
    for _ in range(5):
        _authorize({"Authorization": f"Bearer {raw}"})
    assert wiring.authenticator().bcrypt_checks == 1
    _refused({"Authorization": f"Bearer {raw[:-1]}{'x' if raw[-1] != 'x' else 'y'}"})  # same id, other secret
    assert wiring.authenticator().bcrypt_checks == 2


def test_a_key_revoked_after_caching_stops_at_the_next_authorizer_call(world):
    raw, record = world.create_key()
    _authorize({"Authorization": f"Bearer {raw}"})
    wiring.key_store().set_status(record.key_id, api_keys.REVOKED)
    _refused({"Authorization": f"Bearer {raw}"})  # the container's bcrypt memo does not bypass status


def test_last_used_is_written_at_most_once_a_minute(world):
    raw, record = world.create_key()
    writes = []
    store = wiring.key_store()
    original = store.touch_last_used
    store.touch_last_used = lambda key_id, now: writes.append(key_id) or original(key_id, now)
    for _ in range(4):
        _authorize({"Authorization": f"Bearer {raw}"})
    assert writes == [record.key_id]
    assert wiring.key_store().get(record.key_id).last_used is not None


def test_service_tokens_issued_by_an_admin_authenticate(world):
    admin_raw, _ = world.create_key(user="root", scopes=(scopes.ADMIN,))
    resp = world.call("POST", "/admin/tokens", {"service": "reports", "scopes": ["ai:complete"], "ttl_s": 900},
                      principal=world.principal(admin_raw))
    assert resp["statusCode"] == 201, resp["body"]
    token = body_of(resp)["token"]
    result = _authorize({"Authorization": f"Bearer {token}"})
    assert result["principalId"] == "svc:reports" and result["context"]["scopes"] == "ai:complete"
    _refused({"Authorization": f"Bearer {token[:-2]}xx"})


def test_the_cache_ttl_is_at_most_a_minute():
    assert 0 < routes.AUTHORIZER_CACHE_TTL_S <= 60
