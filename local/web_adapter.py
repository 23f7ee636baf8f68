"""What the AWS Lambda Web Adapter does for the gateway function, done locally (development and tests only).

Deployed, the gateway function is an ASGI app (handlers.gateway:app) under uvicorn, behind the Lambda Web
Adapter (LWA, awslabs/aws-lambda-web-adapter, in response_stream mode). For each API Gateway event the
adapter sends the app an HTTP request — the event's method, path, query, headers and body, plus API Gateway's
request context as JSON in `x-amzn-request-context` and the Lambda context in `x-amzn-lambda-context` — and
streams the app's answer back as it is written. This module does the same against the same app, served by
uvicorn on a free loopback port in a daemon thread of this process (the handlers read this process's
environment, as the other in-process handlers do), so local and deployed run the same code.

`invoke(event, context)` answers a streamed local.emulator.HttpResponse: iterate `chunks` to forward the
body as it arrives; `close()` (the client went away) closes the connection to the app, which is what the
app sees when API Gateway's client disconnects. `invoke_buffered` answers a Lambda proxy result (a dict),
for tests that call the function as a Lambda function.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from typing import Any, Iterator
from urllib.parse import quote, urlencode

from local.emulator import HttpResponse

APP = "handlers.gateway:app"
LOOPBACK = "127.0.0.1"
_READ_SIZE = 64 * 1024
# LWA drops transfer-encoding; the streamed answer is re-framed (chunked) on the way out, so no length either.
_HOP_BY_HOP = {"transfer-encoding", "content-length", "connection", "keep-alive"}

# The fields lambda_http (aws-lambda-rust-runtime, lambda-events ApiGatewayProxyRequestContext, without its
# catch-all feature, as LWA builds it) keeps when it re-serialises a REST API request context: anything else
# API Gateway sends (extendedRequestId, identity.clientCert, ...) does not reach the app.
_CONTEXT_FIELDS = ("accountId", "resourceId", "operationName", "stage", "domainName", "domainPrefix", "requestId",
                   "protocol", "identity", "resourcePath", "path", "authorizer", "httpMethod", "requestTime",
                   "requestTimeEpoch", "apiId")
_IDENTITY_FIELDS = ("cognitoIdentityPoolId", "accountId", "cognitoIdentityId", "caller", "apiKey", "apiKeyId",
                    "accessKey", "sourceIp", "cognitoAuthenticationType", "cognitoAuthenticationProvider",
                    "userArn", "userAgent", "user")


def request_context_header(context: dict[str, Any]) -> str:
    """`x-amzn-request-context` as LWA writes it for a REST API event: the requestContext's known fields,
    `authorizer` (the authorizer's context map, as API Gateway passed it) only when not empty."""
    out: dict[str, Any] = {}
    for name in _CONTEXT_FIELDS:
        value = context.get(name)
        if name == "identity":
            value = {k: (value or {}).get(k) for k in _IDENTITY_FIELDS}
        elif name == "authorizer" and not value:
            continue
        elif name == "operationName" and value is None:
            continue
        elif name == "requestTimeEpoch":
            value = value or 0
        out[name] = value
    return json.dumps(out, separators=(",", ":"))


def lambda_context_header(context: Any) -> str:
    """`x-amzn-lambda-context`: the invocation's context (lambda_runtime's Context, serialised)."""
    deadline = int(time.time() * 1000) + context.get_remaining_time_in_millis()
    return json.dumps({
        "request_id": context.aws_request_id, "deadline": deadline,
        "invoked_function_arn": context.invoked_function_arn, "xray_trace_id": None,
        "client_context": None, "identity": None,
        "env_config": {"function_name": context.function_name, "memory": context.memory_limit_in_mb,
                       "version": context.function_version, "log_stream": context.log_stream_name,
                       "log_group": context.log_group_name}})


class AppServer:
    """uvicorn serving the gateway's ASGI app on a free loopback port, in a daemon thread."""

    def __init__(self, app: str = APP):
        import uvicorn

        self._config = uvicorn.Config(app, host=LOOPBACK, port=0, lifespan="on", log_level="warning",
                                      access_log=False, loop="asyncio", http="h11", timeout_keep_alive=5,
                                      server_header=False, date_header=False)
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self, timeout_s: float = 30) -> int:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((LOOPBACK, 0))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="gateway-app", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:  # the readiness check LWA makes before the first event
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway app server did not start")
            time.sleep(0.01)
        return self.port

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=10)
        if self._socket:
            self._socket.close()


_server: AppServer | None = None
_lock = threading.Lock()


def start() -> int:
    """Start the process-wide app server if it is not running; its port."""
    global _server
    with _lock:
        if _server is None:
            server = AppServer()
            server.start()
            _server = server
        return _server.port


def stop() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


def invoke(event: dict[str, Any], context: Any) -> HttpResponse:
    """Send one API Gateway REST proxy event to the app the way LWA does; the answer streams."""
    port = start()
    headers: dict[str, str] = {}
    for name, values in (event.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(values)
    for name, value in (event.get("headers") or {}).items():
        headers.setdefault(name, value)
    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding", "host")}
    headers["x-amzn-request-context"] = request_context_header(event.get("requestContext") or {})
    headers["x-amzn-lambda-context"] = lambda_context_header(context)
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    query = urlencode([(k, v) for k, vs in (event.get("multiValueQueryStringParameters") or {}).items() for v in vs])
    target = quote(event["path"]) + (f"?{query}" if query else "")

    connection = http.client.HTTPConnection(LOOPBACK, port)
    connection.request(event["httpMethod"], target, body=body, headers=headers)
    response = connection.getresponse()
    status = response.status
    out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
    return HttpResponse(status, out, chunks=_chunks(response, connection), close=lambda: _hang_up(connection))


def _hang_up(connection: http.client.HTTPConnection) -> None:
    """Close the connection to the app from any thread: shutdown first, which wakes a read blocked on it in
    another thread and sends the FIN at once (a bare close does neither while a read is pending)."""
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _chunks(response: http.client.HTTPResponse, connection: http.client.HTTPConnection) -> Iterator[bytes]:
    """The app's body, piece by piece as it is written (read1 returns what has arrived)."""
    try:
        while True:
            try:
                chunk = response.read1(_READ_SIZE)
            except (http.client.HTTPException, OSError):  # hung up on (close) mid-answer
                return
            if not chunk:
                return
            yield chunk
    finally:
        connection.close()


def invoke_buffered(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The answer as a Lambda proxy result (statusCode, headers, multiValueHeaders, body)."""
    response = invoke(event, context)
    body = b"".join(response.chunks or ())
    multi: dict[str, list[str]] = {}
    for name, value in response.headers:
        multi.setdefault(name, []).append(value)
    return {"statusCode": response.status, "headers": {k: v[-1] for k, v in multi.items()},
            "multiValueHeaders": multi, "body": body.decode(), "isBase64Encoded": False}
