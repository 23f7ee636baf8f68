"""The API Gateway emulator, with stub functions and a stub authorizer in place of the handlers."""
from __future__ import annotations

import base64
import http.client
import json
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local.emulator import ApiGatewayEmulator, IamCredential, policy_allows
from tollgate import routes

REGION, ACCOUNT, API, STAGE = "us-east-1", "123456789012", "testapi", "test"
ARN_PREFIX = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API}/{STAGE}"
AGENT_KEY, AGENT_SECRET = "AKIAAGENTTEST0000001", "agent-secret"
AGENT = IamCredential(AGENT_SECRET, f"arn:aws:sts::{ACCOUNT}:assumed-role/agent/run-1", "AROAAGENT:run-1", ACCOUNT)


def _first_route(auth: str, method: str) -> routes.Route:
    return next(r for r in routes.ROUTES if r.auth == auth and r.method == method and "{" not in r.path)


X_API_KEY_ROUTE = _first_route(routes.X_API_KEY.name, "POST")  # e.g. the Anthropic messages route
IAM_ROUTE = _first_route(routes.IAM, "POST")


def _policy(effect: str, resource: str | list[str]) -> dict:
    return {"Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}


class StubAuthorizer:
    """Behaves according to the credential it is given."""

    def __init__(self):
        self.events: list[dict] = []

    def __call__(self, event: dict, context: object) -> dict:
        self.events.append(event)
        token = (event["headers"].get("Authorization") or event["headers"].get("x-api-key") or "")
        token = token.removeprefix("Bearer ")
        context_out = {"user": "alice", "scopes": "ai:complete admin", "rpm": 60, "byok": False}
        if token == "sk-raise":
            raise Exception("Unauthorized")
        if token == "sk-boom":
            raise RuntimeError("table missing")
        if token == "sk-nested":
            return {"principalId": "p", "policyDocument": _policy("Allow", "*"), "context": {"scopes": ["a"]}}
        if token == "sk-deny":
            return {"principalId": "k-deny", "policyDocument": _policy("Deny", f"{ARN_PREFIX}/*")}
        if token == "sk-narrow":
            return {"principalId": "k-narrow", "policyDocument": _policy("Allow", f"{ARN_PREFIX}/GET/v1/models")}
        return {"principalId": f"k-{token}", "policyDocument": _policy("Allow", f"{ARN_PREFIX}/*/*"),
                "context": context_out}


class StubFunction:
    """Answers with the event it was given, as JSON."""

    def __init__(self, name: str):
        self.name = name
        self.events: list[dict] = []

    def __call__(self, event: dict, context: object) -> dict:
        self.events.append(event)
        assert context.function_name and context.aws_request_id and context.get_remaining_time_in_millis() > 0
        return {"statusCode": 200, "headers": {"Content-Type": "application/json", "x-function": self.name},
                "body": json.dumps({"function": self.name})}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stubs():
    return {routes.GATEWAY_FUNCTION: StubFunction("gateway"), routes.ADMIN_FUNCTION: StubFunction("admin")}


@pytest.fixture
def authorizer():
    return StubAuthorizer()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emulator(stubs, authorizer, clock):
    emu = ApiGatewayEmulator(stubs, authorizer, {AGENT_KEY: AGENT}, region=REGION, account_id=ACCOUNT,
                             api_id=API, stage=STAGE, clock=clock, quiet=True)
    emu.start()
    yield emu
    emu.stop()


def call(emulator, method: str, target: str, headers: dict | list | None = None, body: bytes = b""):
    host, port = urlsplit(emulator.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for name, value in items:
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- routing and gateway responses -------------------------------------------------------------

@pytest.mark.parametrize("method,path,shape", [
    ("GET", "/v1/nope", "openai"),
    ("GET", "/v1/chat/completions", "openai"),  # a known path, another method
    ("POST", "/admin/keys/abc", "openai"),  # a resource without a method of its own
    ("GET", "/", "openai"),
    ("POST", "/anthropic/v1/nope", "anthropic"),
    ("GET", "/anthropic/v1/messages", "anthropic"),
])
def test_unknown_route_is_the_catch_all_404_in_the_paths_shape(emulator, authorizer, method, path, shape):
    status, headers, body = call(emulator, method, path, bearer("sk-a"))
    assert status == 404 and json.loads(body) == routes.not_found(path)[1]
    if shape == "anthropic":
        assert json.loads(body)["type"] == "error" and json.loads(body)["error"]["type"] == "not_found_error"
    else:
        assert "type" not in json.loads(body) and json.loads(body)["error"]["code"] == "not_found"
    assert "x-amzn-ErrorType" not in dict(headers)  # an integration's answer, not a gateway response
    assert emulator.authorizer_calls == 0


def test_body_over_the_lambda_payload_limit_is_413_without_calling_anything(emulator, stubs, authorizer):
    too_big = b"x" * (routes.PAYLOAD_LIMIT_BYTES + 1)
    status, headers, body = call(emulator, "POST", "/v1/chat/completions", bearer("sk-a"), too_big)
    assert (status, json.loads(body)) == routes.GATEWAY_RESPONSES["REQUEST_TOO_LARGE"]
    assert dict(headers)["x-amzn-ErrorType"] == "RequestTooLargeException"
    assert stubs[routes.GATEWAY_FUNCTION].events == [] and emulator.authorizer_calls == 0
    at_limit = call(emulator, "POST", "/v1/chat/completions", bearer("sk-a"), b"x" * routes.PAYLOAD_LIMIT_BYTES)
    assert at_limit[0] == 200


def test_chunked_body_over_the_payload_limit_is_413(emulator, stubs):
    host, port = urlsplit(emulator.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        piece = b"x" * (1 << 20)
        chunks = (piece for _ in range(routes.PAYLOAD_LIMIT_BYTES // len(piece) + 1))
        conn.request("POST", "/v1/chat/completions", body=chunks, headers=bearer("sk-a"), encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and json.loads(response.read()) == routes.GATEWAY_RESPONSES["REQUEST_TOO_LARGE"][1]
    finally:
        conn.close()
    assert stubs[routes.GATEWAY_FUNCTION].events == []


def test_listen_backlog_takes_a_burst_of_clients(emulator):
    from local.emulator import _Server

    assert _Server.request_queue_size >= 128


def test_routes_go_to_the_function_the_table_names(emulator, stubs):
    assert json.loads(call(emulator, "GET", "/v1/models", bearer("sk-a"))[2]) == {"function": "gateway"}
    assert json.loads(call(emulator, "GET", "/admin/keys", bearer("sk-a"))[2]) == {"function": "admin"}
    assert len(stubs[routes.GATEWAY_FUNCTION].events) == len(stubs[routes.ADMIN_FUNCTION].events) == 1


def test_health_needs_no_credentials(emulator, stubs):
    status, _, _ = call(emulator, "GET", "/health")
    assert status == 200 and emulator.authorizer_calls == 0
    assert "authorizer" not in stubs[routes.GATEWAY_FUNCTION].events[0]["requestContext"]


# --- authorizer: identity source, cache, policy -----------------------------------------------

@pytest.mark.parametrize("method,path,headers", [
    ("GET", "/v1/models", {}),
    ("GET", "/v1/models", {"Authorization": ""}),
    ("GET", "/v1/models", {"x-api-key": "sk-a"}),  # the bearer authorizer's source is Authorization
    ("POST", X_API_KEY_ROUTE.path, {"Authorization": "Bearer sk-a"}),  # that authorizer's source is x-api-key
])
def test_missing_identity_source_is_401_without_calling_the_authorizer(emulator, method, path, headers):
    status, response_headers, body = call(emulator, method, path, headers, b"{}" if method == "POST" else b"")
    assert (status, json.loads(body)) == routes.GATEWAY_RESPONSES["UNAUTHORIZED"]
    assert dict(response_headers)["x-amzn-ErrorType"] == "UnauthorizedException"
    assert emulator.authorizer_calls == 0


def test_result_is_cached_per_identity_value_for_the_ttl(emulator, clock):
    for _ in range(5):
        assert call(emulator, "GET", "/v1/models", bearer("sk-a"))[0] == 200
    assert emulator.authorizer_calls == 1
    assert call(emulator, "GET", "/admin/keys", bearer("sk-a"))[0] == 200  # same authorizer, other route
    assert emulator.authorizer_calls == 1
    assert call(emulator, "GET", "/v1/models", bearer("sk-b"))[0] == 200
    assert emulator.authorizer_calls == 2
    clock.now += routes.AUTHORIZER_CACHE_TTL_S - 1
    call(emulator, "GET", "/v1/models", bearer("sk-a"))
    assert emulator.authorizer_calls == 2
    clock.now += 2
    call(emulator, "GET", "/v1/models", bearer("sk-a"))
    assert emulator.authorizer_calls == 3


def test_each_authorizer_has_its_own_cache(emulator):
    call(emulator, "GET", "/v1/models", {"Authorization": "sk-a"})
    call(emulator, "POST", X_API_KEY_ROUTE.path, {"x-api-key": "sk-a"}, b"{}")
    assert emulator.authorizer_calls == 2


def test_deny_policy_is_403_and_cached(emulator):
    for _ in range(3):
        status, headers, body = call(emulator, "GET", "/v1/models", bearer("sk-deny"))
        assert (status, json.loads(body)) == routes.GATEWAY_RESPONSES["ACCESS_DENIED"]
    assert dict(headers)["x-amzn-ErrorType"] == "AccessDeniedException"
    assert emulator.authorizer_calls == 1


def test_cached_allow_for_one_route_does_not_allow_another(emulator, stubs):
    assert call(emulator, "GET", "/v1/models", bearer("sk-narrow"))[0] == 200
    assert call(emulator, "GET", "/admin/keys", bearer("sk-narrow"))[0] == 403
    assert emulator.authorizer_calls == 1
    assert stubs[routes.ADMIN_FUNCTION].events == []


def test_unauthorized_exception_is_401_and_not_cached(emulator, stubs):
    for _ in range(2):
        status, _, body = call(emulator, "GET", "/v1/models", bearer("sk-raise"))
        assert (status, json.loads(body)) == routes.GATEWAY_RESPONSES["UNAUTHORIZED"]
    assert emulator.authorizer_calls == 2
    assert stubs[routes.GATEWAY_FUNCTION].events == []


@pytest.mark.parametrize("token", ["sk-boom", "sk-nested"])
def test_failing_or_misconfigured_authorizer_is_500(emulator, token):
    status, headers, _ = call(emulator, "GET", "/v1/models", bearer(token))
    assert status == 500
    assert dict(headers)["x-amzn-ErrorType"] in ("AuthorizerFailureException", "AuthorizerConfigurationException")


def test_policy_evaluation():
    arn = f"{ARN_PREFIX}/POST/v1/chat/completions"
    assert policy_allows(_policy("Allow", f"{ARN_PREFIX}/*"), arn)
    assert policy_allows(_policy("Allow", f"{ARN_PREFIX}/*/v1/*"), arn)
    assert policy_allows(_policy("Allow", [f"{ARN_PREFIX}/GET/*", arn]), arn)
    assert not policy_allows(_policy("Allow", f"{ARN_PREFIX}/GET/*"), arn)
    assert not policy_allows(_policy("Allow", f"{ARN_PREFIX.upper()}/*"), arn)
    both = {"Statement": [_policy("Allow", "*")["Statement"][0], _policy("Deny", f"{ARN_PREFIX}/POST/*")["Statement"][0]]}
    assert not policy_allows(both, arn)
    other_action = {"Statement": [{"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}]}
    assert not policy_allows(other_action, arn)
    assert policy_allows({"Statement": {"Action": ["execute-api:*"], "Effect": "Allow", "Resource": "*"}}, arn)


# --- the events -------------------------------------------------------------------------------

def test_authorizer_and_proxy_events_have_api_gateways_shape(emulator, authorizer, stubs):
    headers = [("Authorization", "Bearer sk-a"), ("User-Agent", "tests/1.0"), ("X-Multi", "1"), ("X-Multi", "2"),
               ("Content-Type", "application/json")]
    status, _, _ = call(emulator, "POST", "/admin/keys/sk-abc/revoke?x=1&x=2&y=", headers, b'{"reason": "leak"}')
    assert status == 200

    auth_event = authorizer.events[0]
    assert auth_event["type"] == "REQUEST"
    assert auth_event["methodArn"] == f"{ARN_PREFIX}/POST/admin/keys/sk-abc/revoke"
    assert auth_event["resource"] == "/admin/keys/{keyId}/revoke"
    assert auth_event["path"] == "/admin/keys/sk-abc/revoke"
    assert auth_event["httpMethod"] == "POST"
    assert auth_event["headers"]["Authorization"] == "Bearer sk-a"
    assert auth_event["pathParameters"] == {"keyId": "sk-abc"}
    assert auth_event["requestContext"]["resourcePath"] == "/admin/keys/{keyId}/revoke"
    assert "authorizer" not in auth_event["requestContext"]

    event = stubs[routes.ADMIN_FUNCTION].events[0]
    assert event["resource"] == "/admin/keys/{keyId}/revoke"
    assert event["path"] == "/admin/keys/sk-abc/revoke"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["X-Multi"] == "2" and event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["headers"]["User-Agent"] == "tests/1.0"
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["pathParameters"] == {"keyId": "sk-abc"}
    assert event["stageVariables"] is None
    assert event["body"] == '{"reason": "leak"}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    uuid.UUID(ctx["requestId"])
    assert (ctx["stage"], ctx["resourcePath"], ctx["httpMethod"]) == (STAGE, "/admin/keys/{keyId}/revoke", "POST")
    assert (ctx["accountId"], ctx["apiId"]) == (ACCOUNT, API)
    assert ctx["identity"]["sourceIp"] == "127.0.0.1" and ctx["identity"]["userAgent"] == "tests/1.0"
    # context values reach the integration as strings, with the principal id added
    assert ctx["authorizer"] == {"user": "alice", "scopes": "ai:complete admin", "rpm": "60", "byok": "false",
                                 "principalId": "k-sk-a", "integrationLatency": 0}


def test_request_without_query_or_body_has_nulls(emulator, stubs):
    call(emulator, "GET", "/v1/models", bearer("sk-a"))
    event = stubs[routes.GATEWAY_FUNCTION].events[0]
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None and event["body"] is None


def test_request_ids_are_unique_and_returned(emulator, stubs):
    ids = {dict(call(emulator, "GET", "/v1/models", bearer("sk-a"))[1])["x-amzn-RequestId"] for _ in range(3)}
    assert ids == {e["requestContext"]["requestId"] for e in stubs[routes.GATEWAY_FUNCTION].events}
    assert len(ids) == 3


def test_binary_bodies_travel_base64_encoded(emulator, stubs):
    raw = bytes(range(256))

    def binary(event, context):
        stubs["seen"] = event
        return {"statusCode": 200, "isBase64Encoded": True, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(raw[::-1]).decode()}

    emulator.functions[routes.GATEWAY_FUNCTION] = binary
    status, _, body = call(emulator, "POST", "/v1/chat/completions", bearer("sk-a"), raw)
    assert (status, body) == (200, raw[::-1])
    assert stubs["seen"]["isBase64Encoded"] is True
    assert base64.b64decode(stubs["seen"]["body"]) == raw


def test_response_headers_merge_single_and_multi_value(emulator):
    emulator.functions[routes.GATEWAY_FUNCTION] = lambda e, c: {
        "statusCode": 429, "headers": {"retry-after": "2", "x-one": "a"},
        "multiValueHeaders": {"x-one": ["a", "b"], "Set-Cookie": ["c=1", "d=2"]}, "body": "slow down"}
    status, headers, body = call(emulator, "GET", "/v1/models", bearer("sk-a"))
    assert (status, body) == (429, b"slow down")
    assert [v for k, v in headers if k == "x-one"] == ["a", "b"]
    assert [v for k, v in headers if k == "Set-Cookie"] == ["c=1", "d=2"]
    assert dict(headers)["retry-after"] == "2"


@pytest.mark.parametrize("result", [
    {"statusCode": 200, "body": {"not": "a string"}},
    {"body": "no status"},
    "not a dict",
])
def test_malformed_proxy_response_is_502(emulator, result):
    emulator.functions[routes.GATEWAY_FUNCTION] = lambda e, c: result
    assert call(emulator, "GET", "/v1/models", bearer("sk-a"))[0] == 502


def test_function_exception_is_502(emulator, capsys):
    def broken(event, context):
        raise ValueError("bug")

    emulator.functions[routes.GATEWAY_FUNCTION] = broken
    assert call(emulator, "GET", "/v1/models", bearer("sk-a"))[0] == 502


# --- AWS_IAM (SigV4) --------------------------------------------------------------------------

IAM_PATH = IAM_ROUTE.path
BODY = b'{"model": "gpt-4o-mini", "messages": []}'


def signed_headers(emulator, *, key=AGENT_KEY, secret=AGENT_SECRET, service="execute-api", body=BODY,
                   path=IAM_PATH, token=None, when=None) -> list[tuple[str, str]]:
    request = AWSRequest(method="POST", url=f"{emulator.url}{path}", data=body,
                         headers={"Content-Type": "application/json", "X-Tollgate-On-Behalf-Of": "alice"})
    signer = SigV4Auth(Credentials(key, secret, token), service, REGION)
    if when is None:
        signer.add_auth(request)
    else:  # sign as if at another time
        import botocore.auth

        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    return [(k, v) for k, v in request.headers.items()]


def test_iam_route_accepts_a_valid_signature_and_names_the_caller(emulator, stubs):
    status, _, _ = call(emulator, "POST", IAM_PATH, signed_headers(emulator), BODY)
    assert status == 200 and emulator.authorizer_calls == 0
    event = stubs[routes.GATEWAY_FUNCTION].events[0]
    identity = event["requestContext"]["identity"]
    assert (identity["userArn"], identity["caller"], identity["accessKey"], identity["accountId"]) == (
        AGENT.user_arn, AGENT.caller, AGENT_KEY, ACCOUNT)
    assert "authorizer" not in event["requestContext"]
    assert event["headers"]["X-Tollgate-On-Behalf-Of"] == "alice"


def test_iam_route_accepts_session_credentials_and_query_strings(emulator):
    path = f"{IAM_PATH}?b=2&a=1&a=0"
    headers = signed_headers(emulator, token="session-token", path=path)
    assert ("X-Amz-Security-Token", "session-token") in headers
    assert call(emulator, "POST", path, headers, BODY)[0] == 200


def test_iam_route_without_signature_is_403_missing_authentication_token(emulator, stubs):
    status, headers, body = call(emulator, "POST", IAM_PATH, {"Content-Type": "application/json"}, BODY)
    assert (status, json.loads(body)) == routes.GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"]
    assert status == 403 and json.loads(body)["error"]["type"] == "permission_error"
    assert dict(headers)["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert stubs[routes.GATEWAY_FUNCTION].events == []


def _tampered(headers, name, value):
    return [(k, value if k.lower() == name.lower() else v) for k, v in headers]


@pytest.mark.parametrize("case", [
    "body", "signature", "signed header", "unknown key", "wrong secret", "wrong service", "expired", "bearer",
])
def test_iam_route_rejects_bad_signatures_with_403(emulator, stubs, case):
    headers, body = signed_headers(emulator), BODY
    if case == "body":
        body = BODY.replace(b"mini", b"maxi")
    elif case == "signature":
        auth = dict(headers)["Authorization"]
        headers = _tampered(headers, "Authorization", auth[:-4] + ("0000" if not auth.endswith("0000") else "1111"))
    elif case == "signed header":
        headers = _tampered(headers, "X-Tollgate-On-Behalf-Of", "mallory")
    elif case == "unknown key":
        headers = signed_headers(emulator, key="AKIAUNKNOWN000000001")
    elif case == "wrong secret":
        headers = signed_headers(emulator, secret="guess")
    elif case == "wrong service":
        headers = signed_headers(emulator, service="lambda")
    elif case == "expired":
        headers = signed_headers(emulator, when=datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=20))
    elif case == "bearer":
        headers = bearer("sk-a")
    status, response_headers, response_body = call(emulator, "POST", IAM_PATH, headers, body)
    assert status == 403
    assert json.loads(response_body) == routes.GATEWAY_RESPONSES["ACCESS_DENIED"][1]
    assert dict(response_headers)["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert stubs[routes.GATEWAY_FUNCTION].events == []


def test_iam_route_ignores_headers_added_after_signing(emulator):
    headers = signed_headers(emulator) + [("X-Added-Later", "1")]
    assert call(emulator, "POST", IAM_PATH, headers, BODY)[0] == 200


def test_authorizer_without_identity_source_runs_on_every_request(emulator, monkeypatch):
    monkeypatch.setattr(routes, "authorizer", lambda name: routes.Authorizer(name, ""))
    for _ in range(2):
        assert call(emulator, "POST", X_API_KEY_ROUTE.path, {}, b"{}")[0] == 200
    assert emulator.authorizer_calls == 2


def test_the_401_names_the_header_each_kind_of_route_takes():
    message = routes.GATEWAY_RESPONSES["UNAUTHORIZED"][1]["error"]["message"]
    assert f"/v1 take it as {routes.BEARER.header}: Bearer" in message
    assert f"/anthropic/v1 as {routes.X_API_KEY.header}:" in message
    assert "Claude Code" in message and "base URL .../anthropic" in message
