"""An emulated Tollgate for handler tests: moto (every call serialised), the tables from the schema,
the fake provider, and helpers that build API Gateway events the way API Gateway does."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3

from local.fake_provider import FakeProvider
from local.lambda_context import LambdaContext
from tollgate import wiring
from tollgate.auth import api_keys
from tollgate.auth.principal import Principal
from tollgate.clock import utc_now
from tollgate.store.api_keys import ApiKeyStore


@dataclass
class World:
    env: dict[str, str]
    fake: FakeProvider
    dynamodb: Any = field(default_factory=lambda: boto3.client("dynamodb"))

    def table(self, env_var: str) -> str:
        return self.env[env_var]

    def create_key(self, user: str = "alice", scopes: tuple[str, ...] = ("ai:complete", "ai:embed"),
                   **limits: Any) -> tuple[str, Any]:
        raw, record = api_keys.issue(user, name="test", scopes=scopes, now=utc_now(), rounds=4, **limits)
        ApiKeyStore(self.env["TOLLGATE_API_KEYS_TABLE"], self.dynamodb).put(record)
        return raw, record

    def principal(self, raw: str) -> Principal:
        return wiring.authenticator().authenticate(raw)

    def call(self, method: str, path: str, body: Any = None, *, principal: Principal | None = None,
             headers: dict[str, str] | None = None, resource: str | None = None,
             query: dict[str, str] | None = None, request_id: str | None = None,
             identity: dict[str, str] | None = None) -> dict[str, Any]:
        from tollgate import routes

        match = routes.match(method, path)
        assert match, f"no route {method} {path}"
        route, params = match
        if identity and not any(k.lower() == "authorization" for k in headers or {}):
            # API Gateway fills `identity` only after verifying a SigV4 signature, and passes it on.
            headers = sigv4_signed(method, path, headers or {}, body)
        event = proxy_event(method, path, route.path if resource is None else resource, body, principal,
                            headers or {}, query, params, request_id)
        event["requestContext"]["identity"].update(identity or {})
        if route.function == routes.GATEWAY_FUNCTION:  # an ASGI app behind the Lambda Web Adapter
            from local import web_adapter

            return web_adapter.invoke_buffered(event, LambdaContext(function_name=route.function))
        module = __import__(f"handlers.{route.function}", fromlist=["lambda_handler"])
        return module.lambda_handler(event, LambdaContext(function_name=route.function))


def proxy_event(method: str, path: str, resource: str, body: Any, principal: Principal | None,
                headers: dict[str, str], query: dict[str, str] | None, params: dict[str, str],
                request_id: str | None) -> dict[str, Any]:
    authorizer = {**principal.to_context(), "principalId": principal.id} if principal else None
    all_headers = {"content-type": "application/json", "user-agent": "pytest", **headers}
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": query, "multiValueQueryStringParameters": None,
        "pathParameters": params or None, "stageVariables": None,
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": request_id or str(uuid.uuid4()), "stage": "test", "resourcePath": resource,
            "httpMethod": method, "path": f"/test{path}", "accountId": "123456789012", "apiId": "local",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
            **({"authorizer": authorizer} if authorizer else {}),
        },
    }


def sigv4_signed(method: str, path: str, headers: dict[str, str], body: Any) -> dict[str, str]:
    """`headers` with the Authorization and X-Amz-Date a SigV4 client (botocore, as the agent worker)
    adds for execute-api, every given header signed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = body if isinstance(body, str) or body is None else json.dumps(body)
    request = AWSRequest(method=method, url=f"https://api.example.test{path}", data=data,
                         headers={**headers, "host": "api.example.test"})
    SigV4Auth(Credentials("ASIATESTING", "secret"), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def money(value: Any) -> Decimal:
    return Decimal(str(value))


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    """Response headers, lower-cased, whether the handler answered with headers or multiValueHeaders."""
    out = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    out.update({k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()})
    return out
