"""API Gateway (REST API) emulator: HTTP in, the same Lambda events API Gateway builds, HTTP out.

Routes, authorizers (one identity-source header each), cache TTL and gateway responses all come from
tollgate.routes, the module the CDK stacks read. Behaviour copied from API Gateway, because the local
stack must fail where the deployed one fails:
- a REQUEST authorizer runs only when its identity source is present; otherwise 401 UNAUTHORIZED;
- its result (allow or deny policy) is cached per identity-source value for the TTL; an exception is not;
- `raise Exception("Unauthorized")` -> 401; any other error -> 500 AUTHORIZER_FAILURE;
- the (possibly cached) policy is evaluated against the method ARN of the route being called:
  an explicit Deny wins, then any Allow, else 403 ACCESS_DENIED;
- context values must be strings, numbers or booleans and reach the integration as strings;
- AWS_IAM routes verify the SigV4 signature and fill requestContext.identity with the caller;
- the integration's result must be a proxy response with a string body, else 502;
- an unknown path or method is answered by the API's catch-all MOCK integration (tollgate.routes.not_found:
  404 in the path's error shape), so MISSING_AUTHENTICATION_TOKEN only means an unsigned AWS_IAM call (403);
- a body over Lambda's payload limit (routes.PAYLOAD_LIMIT_BYTES) is REQUEST_TOO_LARGE (413), refused from
  its Content-Length before it is read.

Functions run as Lambda runs them: one request at a time per execution environment, each environment a
separate copy of the handler module (local.environments), so no per-request state is shared between
concurrent requests.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from tollgate import routes
from tollgate.auth import api_keys
from tollgate.routes import Route

from local.environments import EnvironmentPool, LambdaFunction
from local.lambda_context import LambdaContext
from local.serving import ServerThread

LOOPBACK = "127.0.0.1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
SIGV4_MAX_SKEW_S = 15 * 60

_HANDLER_MODULES = {
    routes.ADMIN_FUNCTION: "handlers.admin",
    routes.RUNS_FUNCTION: "handlers.runs",
}
_AUTHORIZER_MODULE = "handlers.authorizer"

# Gateway response types API Gateway uses that tollgate.routes.GATEWAY_RESPONSES may not define.
_5XX_BODY = {"type": "error", "error": {"type": "api_error", "code": "internal_error", "param": None,
                                        "message": "Internal server error"}}
_FALLBACK_RESPONSES: dict[str, tuple[int, dict]] = {
    "INVALID_SIGNATURE": (403, routes.GATEWAY_RESPONSES["ACCESS_DENIED"][1]),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, _5XX_BODY),
    "AUTHORIZER_FAILURE": (500, _5XX_BODY),
    "DEFAULT_5XX": (502, _5XX_BODY),
}
_ERROR_TYPES = {
    "REQUEST_TOO_LARGE": "RequestTooLargeException",
    "UNAUTHORIZED": "UnauthorizedException",
    "ACCESS_DENIED": "AccessDeniedException",
    "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
    "INVALID_SIGNATURE": "InvalidSignatureException",
    "AUTHORIZER_CONFIGURATION_ERROR": "AuthorizerConfigurationException",
    "AUTHORIZER_FAILURE": "AuthorizerFailureException",
    "DEFAULT_5XX": "InternalServerErrorException",
}
# Hop-by-hop or recomputed headers: API Gateway sets these itself.
_DROPPED_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class IamCredential:
    """What API Gateway knows about an access key: its secret and the identity it belongs to."""

    secret_access_key: str
    user_arn: str  # e.g. arn:aws:sts::123456789012:assumed-role/tollgate-agent/run-1
    caller: str  # e.g. AROA...:run-1 for an assumed role
    account_id: str = DEFAULT_ACCOUNT_ID


@dataclass
class HttpRequest:
    method: str
    target: str  # path and query as sent, still percent-encoded
    headers: list[tuple[str, str]]
    body: bytes = b""
    source_ip: str = LOOPBACK

    def header(self, name: str) -> str | None:
        """Last value of a header, case-insensitively (as API Gateway's `headers` map)."""
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        return found[-1] if found else None


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # A streamed answer (local/web_adapter.py): the body as it arrives, and how to hang up on it.
    chunks: Iterator[bytes] | None = None
    close: Callable[[], None] | None = None


class _Rejected(Exception):
    """Stop processing a request with an API Gateway gateway response."""

    def __init__(self, kind: str, reason: str = ""):
        super().__init__(reason or kind)
        self.kind = kind


# --- policies ----------------------------------------------------------------------------------

def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", re.IGNORECASE if ignore_case else 0)


def policy_allows(document: Mapping[str, Any], method_arn: str) -> bool:
    """IAM evaluation of an authorizer's policy for one method ARN: explicit Deny wins over Allow,
    and no matching Allow is a deny. Action names are case-insensitive, resource ARNs are not."""
    allowed = False
    for statement in _as_list(document.get("Statement")):
        actions = _as_list(statement.get("Action"))
        if not any(_wildcard(a, ignore_case=True).match("execute-api:Invoke") for a in actions):
            continue
        if not any(_wildcard(r).match(method_arn) for r in _as_list(statement.get("Resource"))):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _check_authorizer_output(output: Any) -> None:
    """What API Gateway rejects with AUTHORIZER_CONFIGURATION_ERROR."""
    if not isinstance(output, dict) or not output.get("principalId"):
        raise _Rejected("AUTHORIZER_CONFIGURATION_ERROR", "authorizer output lacks principalId")
    document = output.get("policyDocument")
    if not isinstance(document, dict) or not _as_list(document.get("Statement")):
        raise _Rejected("AUTHORIZER_CONFIGURATION_ERROR", "authorizer output lacks policyDocument.Statement")
    context = output.get("context") or {}
    if not isinstance(context, dict):
        raise _Rejected("AUTHORIZER_CONFIGURATION_ERROR", "authorizer context is not an object")
    for key, value in context.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise _Rejected("AUTHORIZER_CONFIGURATION_ERROR",
                            f"authorizer context value {key!r} is {type(value).__name__}: "
                            "only strings, numbers and booleans are allowed")


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- SigV4 (AWS_IAM routes) --------------------------------------------------------------------

def _parse_sigv4_authorization(value: str) -> dict[str, str] | None:
    scheme, _, rest = value.partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        return None
    fields = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            fields[name] = val
    return fields if {"Credential", "SignedHeaders", "Signature"} <= fields.keys() else None


def verify_sigv4(request: HttpRequest, credentials: Mapping[str, IamCredential], region: str,
                 now: float | None = None) -> tuple[str, IamCredential]:
    """Recompute the request's SigV4 signature with botocore; returns (access key id, credential)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials

    authorization = request.header("Authorization")
    if not authorization:
        raise _Rejected("MISSING_AUTHENTICATION_TOKEN", "no Authorization header on an AWS_IAM route")
    fields = _parse_sigv4_authorization(authorization)
    if fields is None:
        raise _Rejected("INVALID_SIGNATURE", "Authorization is not AWS4-HMAC-SHA256")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[2:] != [region, "execute-api", "aws4_request"]:
        raise _Rejected("INVALID_SIGNATURE", "credential scope is not <date>/<region>/execute-api/aws4_request")
    access_key, scope_date = scope[0], scope[1]
    credential = credentials.get(access_key)
    if credential is None:
        raise _Rejected("INVALID_SIGNATURE", "unknown access key")
    timestamp = request.header("X-Amz-Date") or ""
    try:
        signed_at = datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise _Rejected("INVALID_SIGNATURE", "missing or malformed X-Amz-Date") from None
    if timestamp[:8] != scope_date or abs((now or time.time()) - signed_at) > SIGV4_MAX_SKEW_S:
        raise _Rejected("INVALID_SIGNATURE", "signature date outside the allowed window")

    signed_names = fields["SignedHeaders"].split(";")
    if "host" not in signed_names:
        raise _Rejected("INVALID_SIGNATURE", "host is not signed")
    headers = HTTPHeaders()
    for name in signed_names:
        values = [v for k, v in request.headers if k.lower() == name]
        if not values:
            raise _Rejected("INVALID_SIGNATURE", f"signed header {name} is missing")
        for v in values:
            headers[name] = v

    class Verifier(SigV4Auth):
        def headers_to_sign(self, _request: Any) -> Any:
            return headers  # exactly what the client signed, no more, no less

    rebuilt = AWSRequest(method=request.method, url=f"http://{request.header('Host')}{request.target}",
                         data=request.body)
    rebuilt.headers = headers
    rebuilt.context["timestamp"] = timestamp
    signer = Verifier(Credentials(access_key, credential.secret_access_key), "execute-api", region)
    expected = signer.signature(signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise _Rejected("INVALID_SIGNATURE", "signature mismatch")
    declared = request.header("X-Amz-Content-SHA256")
    if declared and declared != "UNSIGNED-PAYLOAD" and declared != hashlib.sha256(request.body).hexdigest():
        raise _Rejected("INVALID_SIGNATURE", "X-Amz-Content-SHA256 does not match the body")
    return access_key, credential


# --- the emulator ------------------------------------------------------------------------------

class ApiGatewayEmulator:
    """One REST API stage. Functions and the authorizer are called in-process: the callables given
    (`functions` maps tollgate.routes function names to handlers; tests stub them), else the real
    handlers, imported when first needed."""

    def __init__(self, functions: Mapping[str, LambdaFunction] | None = None,
                 authorizer: LambdaFunction | None = None,
                 iam_credentials: Mapping[str, IamCredential] | None = None, *,
                 region: str = "us-east-1", account_id: str = DEFAULT_ACCOUNT_ID, api_id: str = "tollgatelocal",
                 stage: str = "local", cache_ttl_s: float = routes.AUTHORIZER_CACHE_TTL_S,
                 clock: Callable[[], float] = time.monotonic, quiet: bool = False):
        self.functions = dict(functions or {})
        self._authorizer = authorizer
        self.iam_credentials = dict(iam_credentials or {})
        self.region, self.account_id, self.api_id, self.stage = region, account_id, api_id, stage
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        self.quiet = quiet
        self._cache: dict[tuple[str, str], tuple[float, dict]] = {}
        self._lock = threading.Lock()
        self._authorizer_calls = 0
        self._serving: ServerThread | None = None
        self._pools = {name: EnvironmentPool(module) for name, module in
                       {**_HANDLER_MODULES, _AUTHORIZER_MODULE: _AUTHORIZER_MODULE}.items()}

    # -- lifecycle --

    @property
    def url(self) -> str:
        assert self._serving is not None, "start() first"
        return f"http://{LOOPBACK}:{self._serving.port}"

    def start(self, port: int = 0) -> str:
        self._serving = ServerThread(_Server((LOOPBACK, port), _RequestHandler, self), "apigw-emulator")
        return self.url

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None

    @property
    def authorizer_calls(self) -> int:
        return self._authorizer_calls

    def clear_authorizer_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- one request --

    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        try:
            return self._handle(request, request_id)
        except _Rejected as rejection:
            if rejection.kind not in ("UNAUTHORIZED", "ACCESS_DENIED", "MISSING_AUTHENTICATION_TOKEN"):
                self._log(f"{request.method} {request.target}: {rejection.kind}: {rejection}")
            return self._gateway_response(rejection.kind, request_id)
        except Exception:  # noqa: BLE001 - what API Gateway does with a failing integration
            traceback.print_exc(file=sys.stderr)
            return self._gateway_response("DEFAULT_5XX", request_id)

    def _handle(self, request: HttpRequest, request_id: str) -> HttpResponse:
        split = urlsplit(request.target)
        path = unquote(split.path)
        matched = routes.match(request.method, path)
        if matched is None:  # the API's catch-all MOCK integration (stacks/rest_api.py)
            status, body = routes.not_found(path)
            return _json_response(status, body, request_id)
        route, path_params = matched
        query = parse_qsl(split.query, keep_blank_values=True)
        method_arn = (f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/{self.stage}/"
                      f"{request.method}/{path.lstrip('/')}")
        context = self._request_context(request, route, path, request_id)
        base = {
            "resource": route.path, "path": path, "httpMethod": request.method,
            **_header_maps(request.headers, request.source_ip),
            "queryStringParameters": {k: v for k, v in query} or None,
            "multiValueQueryStringParameters": _multi(query) or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
        }

        if route.auth == routes.IAM:
            access_key, credential = verify_sigv4(request, self.iam_credentials, self.region)
            context["identity"].update(accountId=credential.account_id, caller=credential.caller,
                                       user=credential.caller, userArn=credential.user_arn,
                                       accessKey=access_key)
        elif route.auth != routes.NONE:
            output = self._authorize(route, request, {
                "type": "REQUEST", "methodArn": method_arn, **base,
                "requestContext": copy.deepcopy(context)})
            if not policy_allows(output["policyDocument"], method_arn):
                raise _Rejected("ACCESS_DENIED")
            context["authorizer"] = {**{k: _stringify(v) for k, v in (output.get("context") or {}).items()
                                        if v is not None},
                                     "principalId": output["principalId"], "integrationLatency": 0}

        body, is_base64 = _event_body(request.body)
        event = {**base, "requestContext": context, "body": body, "isBase64Encoded": is_base64}
        function = self._function(route.function)
        if function is None:
            if route.path == "/health":  # only while the handlers are not written yet
                return _json_response(200, {"status": "ok"}, request_id)
            raise _Rejected("DEFAULT_5XX", f"no handler module for function {route.function!r}")
        result = function(event, LambdaContext(f"tollgate-{route.function}", self.region, self.account_id))
        if isinstance(result, HttpResponse):  # streamed through the web adapter (response streaming)
            result.headers.append(("x-amzn-RequestId", request_id))
            return result
        return _proxy_response(result, request_id)

    def _authorize(self, route: Route, request: HttpRequest, event: dict) -> dict:
        authorizer = routes.authorizer(route.auth)
        if authorizer is None:
            raise _Rejected("AUTHORIZER_CONFIGURATION_ERROR", f"route names unknown authorizer {route.auth!r}")
        key = None  # without an identity source API Gateway cannot cache: it invokes every time
        if authorizer.header:
            identity = request.header(authorizer.header)
            if not identity:
                raise _Rejected("UNAUTHORIZED")  # API Gateway does not invoke the authorizer
            key = (authorizer.name, identity)
        now = self._clock()
        if key is not None:
            with self._lock:
                cached = self._cache.get(key)
            if cached and cached[0] > now:
                return cached[1]

        function = self._authorizer or self._pooled(_AUTHORIZER_MODULE)
        if function is None:
            raise _Rejected("AUTHORIZER_FAILURE", f"no module {_AUTHORIZER_MODULE}")
        with self._lock:
            self._authorizer_calls += 1
        try:
            output = function(event, LambdaContext("tollgate-authorizer", self.region, self.account_id))
        except Exception as error:  # noqa: BLE001
            if str(error) == "Unauthorized":
                raise _Rejected("UNAUTHORIZED") from None
            traceback.print_exc(file=sys.stderr)
            raise _Rejected("AUTHORIZER_FAILURE", f"authorizer raised {type(error).__name__}") from None
        _check_authorizer_output(output)
        if key is not None and self.cache_ttl_s > 0:
            with self._lock:
                self._cache[key] = (now + self.cache_ttl_s, output)
        return output

    def _function(self, name: str) -> LambdaFunction | None:
        if name in self.functions:
            return self.functions[name]
        if name == routes.GATEWAY_FUNCTION:  # an ASGI app behind the Lambda Web Adapter, as deployed
            from local import web_adapter

            return web_adapter.invoke
        return self._pooled(name)

    def _pooled(self, name: str) -> LambdaFunction | None:
        """The real handler of a function (or the authorizer), run in its pool of execution
        environments; None if its module does not exist (yet)."""
        pool = self._pools.get(name)
        return pool.invoke if pool is not None and pool.exists() else None

    def _request_context(self, request: HttpRequest, route: Route, path: str, request_id: str) -> dict:
        now = datetime.now(timezone.utc)
        return {
            "resourceId": hashlib.sha1(f"{route.method} {route.path}".encode()).hexdigest()[:6],
            "resourcePath": route.path, "httpMethod": request.method, "path": f"/{self.stage}{path}",
            "extendedRequestId": base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("="),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "accountId": self.account_id, "apiId": self.api_id, "stage": self.stage,
            "protocol": "HTTP/1.1", "requestId": request_id,
            "domainName": request.header("Host") or LOOPBACK, "domainPrefix": self.api_id,
            "identity": {
                "sourceIp": request.source_ip, "userAgent": request.header("User-Agent"),
                "accountId": None, "caller": None, "user": None, "userArn": None, "accessKey": None,
                "apiKey": None, "apiKeyId": None, "principalOrgId": None, "clientCert": None,
                "cognitoIdentityPoolId": None, "cognitoIdentityId": None,
                "cognitoAuthenticationType": None, "cognitoAuthenticationProvider": None,
            },
        }

    def too_large(self) -> HttpResponse:
        """The answer to a body over routes.PAYLOAD_LIMIT_BYTES: API Gateway's REQUEST_TOO_LARGE."""
        self._log("request body over the Lambda payload limit: REQUEST_TOO_LARGE")
        return self._gateway_response("REQUEST_TOO_LARGE", str(uuid.uuid4()))

    def _gateway_response(self, kind: str, request_id: str) -> HttpResponse:
        status, body = routes.GATEWAY_RESPONSES.get(kind) or _FALLBACK_RESPONSES[kind]
        response = _json_response(status, body, request_id)
        response.headers.append(("x-amzn-ErrorType", _ERROR_TYPES.get(kind, kind)))
        return response

    def _log(self, message: str) -> None:
        if not self.quiet:
            print(f"[apigw] {message}", file=sys.stderr, flush=True)


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def _header_maps(headers: list[tuple[str, str]], source_ip: str) -> dict[str, Any]:
    pairs = [(k, v) for k, v in headers if k.lower() not in ("x-forwarded-for", "x-forwarded-proto")]
    pairs += [("X-Forwarded-For", source_ip), ("X-Forwarded-Proto", "http")]
    return {"headers": {k: v for k, v in pairs}, "multiValueHeaders": _multi(pairs)}


def _event_body(raw: bytes) -> tuple[str | None, bool]:
    """API Gateway passes text bodies as they are; bytes that are not UTF-8 arrive base64-encoded."""
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def _json_response(status: int, body: Any, request_id: str) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)],
                        json.dumps(body).encode())


def _proxy_response(result: Any, request_id: str) -> HttpResponse:
    """A Lambda proxy result as HTTP. Malformed results are a 502, as in API Gateway."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        raise _Rejected("DEFAULT_5XX", "malformed Lambda proxy response: statusCode must be an integer")
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise _Rejected("DEFAULT_5XX", "malformed Lambda proxy response: body must be a string")
    raw = (base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()) if body else b""

    headers: list[tuple[str, str]] = []
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(name, _stringify(v)) for v in _as_list(values)]
    for name, value in (result.get("headers") or {}).items():
        if (name.lower(), _stringify(value)) not in {(k.lower(), v) for k, v in headers}:
            headers.append((name, _stringify(value)))
    headers = [(k, v) for k, v in headers if k.lower() not in _DROPPED_RESPONSE_HEADERS]
    headers.append(("x-amzn-RequestId", request_id))
    return HttpResponse(result["statusCode"], headers, raw)


# --- HTTP transport ----------------------------------------------------------------------------

def _hang_up_when_gone(client: Any, done: threading.Event, response: HttpResponse) -> None:
    """While a streamed answer is written: a client that closes its end makes its socket readable with
    nothing to read (it sends nothing else mid-answer), then close the upstream at once."""
    import select
    import socket

    while not done.is_set():
        try:
            readable, _, _ = select.select([client], [], [], 0.05)
            if readable and not client.recv(1, socket.MSG_PEEK):
                break
        except (OSError, ValueError):
            break
    else:
        return
    if response.close:
        response.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: bursts of concurrent clients must not be refused (was 5)

    def __init__(self, address: tuple[str, int], handler: type, emulator: ApiGatewayEmulator):
        self.emulator = emulator
        super().__init__(address, handler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # small header and body writes must not wait for delayed ACKs
    server: _Server

    def _dispatch(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:  # over the payload limit: refused, its bytes read and dropped
            response = self.server.emulator.too_large()
        else:
            request = HttpRequest(self.command, self.path, list(self.headers.items()), body,
                                  self.client_address[0])
            response = self.server.emulator.handle(request)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.chunks is not None:
            self._stream(response)
        else:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        if not self.server.emulator.quiet:
            elapsed = (time.monotonic() - started) * 1000
            print(f"[apigw] {self.command} {api_keys.masked(urlsplit(self.path).path)} -> {response.status} "
                  f"({elapsed:.0f} ms)",
                  file=sys.stderr, flush=True)

    def _stream(self, response: HttpResponse) -> None:
        """Chunked transfer, one chunk per piece as it arrives, flushed. When the client hangs up (it closes
        its end, or a write fails), hang up on the function too, as API Gateway does."""
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        done = threading.Event()
        watcher = threading.Thread(target=_hang_up_when_gone, args=(self.connection, done, response),
                                   name="apigw-stream-watch", daemon=True)
        watcher.start()
        try:
            for chunk in response.chunks or ():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ValueError):  # the client went away (ValueError: the upstream was closed under us)
            self.close_connection = True
            if response.close:
                response.close()
        finally:
            done.set()

    def _read_body(self) -> bytes | None:
        """The request body, or None if it is over routes.PAYLOAD_LIMIT_BYTES: judged from Content-Length
        before reading (or while reading a chunked body); an oversized body is read and dropped in small
        pieces, never held, so the client, which sends all of it before reading the answer, gets the 413."""
        limit = routes.PAYLOAD_LIMIT_BYTES
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] | None = []
            received = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                received += size
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return None if chunks is None else b"".join(chunks)
                if received > limit:
                    chunks = None
                    self._discard(size)
                else:
                    chunks.append(self.rfile.read(size))  # type: ignore[union-attr]
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self._discard(length)
            return None
        return self.rfile.read(length) if length else b""

    def _discard(self, length: int) -> None:
        while length > 0:
            piece = self.rfile.read(min(length, 1 << 16))
            if not piece:
                return
            length -= len(piece)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - our own access line instead
        pass
