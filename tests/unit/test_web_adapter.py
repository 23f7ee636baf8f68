"""local/web_adapter.py does what the Lambda Web Adapter does: the request context header as LWA writes it,
the event turned into the HTTP request the app receives, and the answer streamed back piece by piece."""
from __future__ import annotations

import json
import threading

import pytest

from local import web_adapter
from local.lambda_context import LambdaContext

CONTEXT = {
    "resourceId": "abc123", "resourcePath": "/v1/chat/completions", "httpMethod": "POST",
    "extendedRequestId": "XyZ=", "requestTime": "01/Dec/2026:00:00:00 +0000", "path": "/prod/v1/chat/completions",
    "accountId": "123456789012", "protocol": "HTTP/1.1", "stage": "prod", "domainPrefix": "api",
    "requestTimeEpoch": 1796083200000, "requestId": "req-1", "domainName": "api.example.com", "apiId": "api",
    "identity": {"sourceIp": "203.0.113.9", "userAgent": "pytest", "clientCert": None, "principalOrgId": None,
                 "userArn": None, "caller": None},
    "authorizer": {"kind": "key", "user": "alice", "principalId": "sk-abc", "integrationLatency": 0},
}


def test_the_request_context_header_keeps_what_lwa_keeps():
    header = json.loads(web_adapter.request_context_header(CONTEXT))
    assert "extendedRequestId" not in header  # not a field of lambda_http's REST context
    assert set(header["identity"]) == set(web_adapter._IDENTITY_FIELDS)  # clientCert, principalOrgId dropped
    assert header["identity"]["sourceIp"] == "203.0.113.9"
    assert header["authorizer"] == CONTEXT["authorizer"]  # the authorizer's context map, as API Gateway gave it
    assert header["requestId"] == "req-1" and header["httpMethod"] == "POST"


def test_an_empty_authorizer_is_left_out():
    assert "authorizer" not in json.loads(web_adapter.request_context_header({**CONTEXT, "authorizer": {}}))


@pytest.fixture
def echo_app():
    """An ASGI app that echoes what it received, then streams three pieces, one at a time."""
    release = [threading.Event() for _ in range(3)]

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]}, "body": body.decode()}
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": json.dumps(seen).encode() + b"\n", "more_body": True})
        import asyncio

        for event in release:
            await asyncio.get_running_loop().run_in_executor(None, event.wait, 5)
            await send({"type": "http.response.body", "body": b"piece\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    server = web_adapter.AppServer(app)
    server.start()
    yield server, release
    server.stop()


def test_an_event_becomes_the_request_lwa_sends_and_the_answer_streams(echo_app, monkeypatch):
    server, release = echo_app
    monkeypatch.setattr(web_adapter, "start", lambda: server.port)
    event = {"httpMethod": "POST", "path": "/v1/chat/completions", "requestContext": CONTEXT,
             "headers": {"Content-Type": "application/json", "Authorization": "Bearer sk-x"},
             "multiValueHeaders": {"Content-Type": ["application/json"], "Authorization": ["Bearer sk-x"]},
             "multiValueQueryStringParameters": {"a": ["1", "2"]}, "body": '{"model":"m"}', "isBase64Encoded": False}
    response = web_adapter.invoke(event, LambdaContext("tollgate-gateway"))
    assert response.status == 201
    chunks = iter(response.chunks)
    seen = json.loads(next(chunks))  # before the app has written the rest: streamed, not buffered
    assert seen["method"] == "POST" and seen["path"] == "/v1/chat/completions" and seen["query"] == "a=1&a=2"
    assert seen["body"] == '{"model":"m"}' and seen["headers"]["authorization"] == "Bearer sk-x"
    assert json.loads(seen["headers"]["x-amzn-request-context"])["authorizer"]["user"] == "alice"
    assert json.loads(seen["headers"]["x-amzn-lambda-context"])["env_config"]["function_name"] == "tollgate-gateway"
    for event_ in release:
        event_.set()
    assert b"".join(chunks) == b"piece\n" * 3
    assert not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in response.headers)
