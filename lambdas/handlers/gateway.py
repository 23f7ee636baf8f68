"""Gateway function: the OpenAI- and Anthropic-compatible routes, as an ASGI app. Parse, call the domain, respond.

Deployed behind the AWS Lambda Web Adapter (stacks/api_stack.py): `gateway.sh` runs this app under uvicorn
on 127.0.0.1:$AWS_LWA_PORT, the adapter turns each API Gateway event into an HTTP request with API Gateway's
request context (authorizer context included) in the `x-amzn-request-context` header, and streams the answer
back through API Gateway's response streaming (docs/design-decisions.md, issue 11). Locally,
local/web_adapter.py does what the adapter does, so both run this same code.

Written against the ASGI interface directly (no web framework): a handful of routes, and cold start counts.
The domain is synchronous (boto3, the provider SDKs): each request runs in a worker thread, and a streamed
answer is iterated in one while the event loop forwards its chunks and watches for the client leaving.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, unquote

from handlers._api import principal_for, usable_id, validated_body
from tollgate import anthropic_api, errors, metric_names, model_list, response_cache, routes, scopes, snapshot, wiring
from tollgate.auth.principal import IAM, Principal
from tollgate.deployments import Deployments
from tollgate.observability import logger, metrics
from tollgate.service import MeteredRequest, Reply
from tollgate.streaming import StreamingReply

RUN_ID_HEADER = "x-tollgate-run-id"
PROMPT_FIELDS = ("model", "system", "messages", "input")
REQUEST_CONTEXT_HEADER = "x-amzn-request-context"  # set by the Lambda Web Adapter (and local/web_adapter.py)
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"

# Lambda runs one request per environment at a time; the local stack runs many, and each open stream holds
# a thread while it waits on its provider.
_threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="gateway")

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    context: dict[str, Any]  # API Gateway's requestContext
    route: routes.Route | None = None  # once matched
    query: dict[str, str] = field(default_factory=dict)  # the query string's parameters (last value wins)

    @property
    def request_id(self) -> str:
        return self.context.get("requestId") or ""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: StreamingReply | None = None
    on_streamed: Callable[[], None] | None = None  # once a streamed answer is settled


# --- routes: parse, call the domain, respond ----------------------------------------------------------------

def _metered(request: Request, principal: Principal) -> Answer:
    body = validated_body(request.route, request.body)
    if principal.log_prompts:  # an operator's explicit, per-user choice; never the default
        logger.info("prompt logged for this user by operator setting", extra={
            "prompt": {k: body[k] for k in PROMPT_FIELDS if k in body}})
    reply = wiring.gateway().handle(MeteredRequest(
        request_id=request.request_id, path=request.path, principal=principal, body=body,
        user_agent=request.headers.get("user-agent") or "",
        idempotency_key=request.headers.get("idempotency-key"), run_id=_run_id(request, principal),
        provider_headers=_anthropic_headers(request), cache=request.headers.get(response_cache.HEADER)))
    headers = {"content-type": reply.content_type, **reply.headers}
    if isinstance(reply, StreamingReply):
        return Answer(reply.status, {**headers, "cache-control": "no-cache"}, stream=reply,
                      on_streamed=lambda: _log_metered(principal, body, reply))
    _log_metered(principal, body, reply)
    return Answer(reply.status, headers, reply.body)


def _log_metered(principal: Principal, body: dict, reply: Reply | StreamingReply) -> None:
    """One structured line per metered answer, read by the dashboard's top-spenders Logs Insights query. Who,
    which model, what it cost: never the prompt or the completion. The cost is a JSON number here (the
    query sums it); the usage table keeps the exact Decimal."""
    logger.info(metric_names.METERED_LOG_MESSAGE, extra={
        metric_names.LOG_USER: principal.user, metric_names.LOG_COST_USD: float(reply.cost or 0),
        "model": body.get("model"), "status": reply.status, "replayed": reply.replayed})


def _run_id(request: Request, principal: Principal) -> str | None:
    """An agent run's id, honoured only from a trusted IAM principal acting for a user (the agent tasks)."""
    if principal.kind == IAM and scopes.ACT_AS in principal.scopes:
        return usable_id(request.headers.get(RUN_ID_HEADER) or None, RUN_ID_HEADER)
    return None


def _anthropic_headers(request: Request) -> dict[str, str]:
    """An Anthropic-format route's anthropic-version / anthropic-beta, checked (tollgate.anthropic_api)."""
    if request.route is None or request.route.wire != routes.ANTHROPIC:
        return {}
    return anthropic_api.provider_headers(request.headers, wiring.settings().anthropic_betas)


def _count_tokens(request: Request, principal: Principal) -> Answer:
    body = validated_body(request.route, request.body)
    status, answer = wiring.count_tokens().count(principal, body, _anthropic_headers(request))
    return Answer(status, {"content-type": "application/json"}, answer)


def _models(request: Request, principal: Principal) -> Answer:
    """GET /v1/models and /v1/models/{id}: the models with their provider and deployments (tollgate.model_list),
    in Anthropic's shape when the request carries anthropic-version, in OpenAI's otherwise. Unpriced: 404."""
    assert request.route is not None
    anthropic = _wire(request, request.route) == routes.ANTHROPIC
    catalogue = wiring.catalogue()
    routing = Deployments.load(catalogue, wiring.settings().deployments)
    one = usable_id(request.route.pattern.match(request.path).groupdict().get("modelId"), "model")
    listed = model_list.models(catalogue, routing) if one is None else model_list.model(catalogue, routing, one)
    return _json(200, model_list.document(listed, anthropic=anthropic,
                                          bedrock_region=wiring.providers()["bedrock"].region))


def _wire(request: Request, route: routes.Route | None) -> str:
    """The provider shape of a request's answers, errors included: the route's, but the models routes under /v1
    (shared by both SDKs) answer in Anthropic's when the request carries anthropic-version, as the anthropic
    SDK's models.list()/retrieve() send it."""
    if route is None:
        return routes.OPENAI
    if route.path.endswith(("/models", "/models/{modelId}")) and request.headers.get(anthropic_api.VERSION_HEADER):
        return routes.ANTHROPIC
    return route.wire


def _stored_response(request: Request, principal: Principal) -> Answer:
    """GET/DELETE /v1/responses/{id}, POST .../cancel, GET .../input_items: the owner's only (tollgate.responses)."""
    assert request.route is not None
    response_id = usable_id(request.route.pattern.match(request.path)["responseId"], "response_id")
    last = request.route.path.rsplit("/", 1)[1]
    action = None if last.startswith("{") else last
    status, body = wiring.stored_responses().forward(principal, request.method, response_id, action, request.query)
    return Answer(status, {"content-type": "application/json"}, body)


def _health(request: Request) -> Answer:
    return _json(200, {"status": "ok"})


_IMPLEMENTATIONS: dict[tuple[str, str], Callable[..., Answer]] = {
    (r.method, r.path): _metered for r in routes.ROUTES if r.function == routes.GATEWAY_FUNCTION and r.metered}
_IMPLEMENTATIONS.update({("GET", "/v1/models"): _models, ("GET", "/health"): _health})
_IMPLEMENTATIONS.update({(r.method, r.path): _models for r in routes.ROUTES if r.path.endswith(("/models",
                                                                                              "/models/{modelId}"))})
_IMPLEMENTATIONS.update({(r.method, r.path): _count_tokens for r in routes.ROUTES
                         if r.path.endswith("/messages/count_tokens")})
_IMPLEMENTATIONS.update({(r.method, r.path): _stored_response for r in routes.ROUTES
                         if r.function == routes.GATEWAY_FUNCTION and "/responses/{responseId}" in r.path})
_missing = {(r.method, r.path) for r in routes.ROUTES if r.function == routes.GATEWAY_FUNCTION} - set(_IMPLEMENTATIONS)
if _missing:
    raise RuntimeError(f"routes without an implementation: {sorted(_missing)}")


def answer(request: Request) -> Answer:
    """One request, synchronously: route, authenticate, call the domain. Domain errors are rendered in the
    route's wire format; anything else is logged and rendered as an internal error."""
    matched = routes.match(request.method, request.path)
    route = matched[0] if matched and matched[0].function == routes.GATEWAY_FUNCTION else None
    try:
        if route is None:
            from tollgate.auth.api_keys import masked  # an error path: not at import

            raise errors.NotFound(f"Unknown request URL: {request.method} {errors.shown(masked(request.path))}")
        implementation = _IMPLEMENTATIONS[(route.method, route.path)]
        request = replace(request, route=route)
        if route.auth == routes.NONE:
            return implementation(request)
        principal = principal_for(route, request.context, request.headers)
        principal.require(route.scope)
        logger.append_keys(principal=principal.id, user=principal.user)
        return implementation(request, principal)
    except errors.TollgateError as exc:
        return _error(exc, _wire(request, route))
    except Exception:
        logger.exception("unhandled error")
        return _error(errors.TollgateError("Internal error."), _wire(request, route))


def _error(exc: errors.TollgateError, wire: str) -> Answer:
    status, headers, body = errors.render(exc, wire)
    return Answer(status, headers, body.encode())


def _json(status: int, payload: Any) -> Answer:
    return Answer(status, {"content-type": "application/json"}, json.dumps(payload, default=str).encode())


# --- ASGI ---------------------------------------------------------------------------------------------------

async def app(scope: dict, receive: Receive, send: Send) -> None:
    """The ASGI application uvicorn serves (`handlers.gateway:app`)."""
    import asyncio  # loaded by the server before it imports this module: not part of this module's import

    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    request = await _read(scope, receive)
    hook = _SNAPSHOT_HOOKS.get(request.path) if request.method == "POST" else None
    if hook is not None:  # the Web Adapter's SnapStart lifecycle calls (tollgate.snapshot); it refuses outside ones
        await asyncio.get_running_loop().run_in_executor(_threads, hook)
        await _send_whole(Answer(204, {}), send)
        return
    if _is_keep_active(request):
        await _send_whole(Answer(200, {"content-type": "application/json"}, b'{"active":true}'), send)
        return
    _start_log_context(request)
    try:
        result = await asyncio.get_running_loop().run_in_executor(_threads, answer, request)
    except BaseException:
        _flush_metrics()
        raise
    if result.stream is None:
        _flush_metrics()
        await _send_whole(result, send)
    else:
        await _send_stream(result, send, receive)


_SNAPSHOT_HOOKS = {snapshot.BEFORE_SNAPSHOT_PATH: snapshot.before_snapshot,
                   snapshot.AFTER_RESTORE_PATH: snapshot.after_restore}


def _is_keep_active(request: Request) -> bool:
    """The scheduled keep-active event (tollgate.snapshot.KEEP_ACTIVE_PATH), answered at once: no ledger, no
    provider. The Web Adapter POSTs a non-HTTP event there with no API Gateway request context (it sends the
    context `null`); a request that came through API Gateway always carries one (and API Gateway has no route to
    the path: its catch-all answers 404 without a function), so it is routed like any other request: 404."""
    return request.method == "POST" and request.path == snapshot.KEEP_ACTIVE_PATH and not request.context


def _flush_metrics() -> None:
    """Once per request, before its last byte: Lambda may start the next invocation as soon as it has gone."""
    metrics.flush_metrics(raise_on_empty_metrics=False)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read(scope: dict, receive: Receive) -> Request:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    try:
        context = json.loads(headers.pop(REQUEST_CONTEXT_HEADER, "") or "{}")
    except ValueError:
        context = {}
    return Request(scope["method"], unquote(scope["path"]), headers, b"".join(chunks),
                   context if isinstance(context, dict) else {},
                   query=dict(parse_qsl((scope.get("query_string") or b"").decode("latin-1"))))


def _start_log_context(request: Request) -> None:
    """Per request: the API Gateway request id as correlation id, and the Lambda request id."""
    logger.clear_state()
    logger.set_correlation_id(request.request_id or None)
    try:
        lambda_context = json.loads(request.headers.get(LAMBDA_CONTEXT_HEADER) or "{}")
    except ValueError:
        lambda_context = {}
    if isinstance(lambda_context, dict) and lambda_context.get("request_id"):
        logger.append_keys(function_request_id=lambda_context["request_id"])


def _start(result: Answer, extra: dict[str, str] | None = None) -> dict:
    headers = {**result.headers, **(extra or {})}
    return {"type": "http.response.start", "status": result.status,
            "headers": [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]}


async def _send_whole(result: Answer, send: Send) -> None:
    await send(_start(result, {"content-length": str(len(result.body))}))
    await send({"type": "http.response.body", "body": result.body})


async def _send_stream(result: Answer, send: Send, receive: Receive) -> None:
    """Forward each event as the provider sends it. The events are iterated to their end in one worker thread
    (that is where the stream is settled); when the client goes away, the reply is cancelled, which closes
    the provider stream, and the answer ends only once the stream is settled: the function must not be
    frozen with a reservation held."""
    import asyncio

    reply = result.stream
    assert reply is not None
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    def produce() -> None:
        try:
            for chunk in reply.events:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
        except Exception:
            logger.exception("streamed answer failed")
        finally:
            loop.call_soon_threadsafe(chunks.put_nowait, None)

    producer = loop.run_in_executor(_threads, produce)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await send(_start(result))
        while True:
            getter = asyncio.ensure_future(chunks.get())
            await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                reply.cancel()
                break
            chunk = getter.result()
            if chunk is None:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except OSError:  # the client went away while we were writing
        reply.cancel()
    finally:
        await producer  # settled
        if result.on_streamed:
            result.on_streamed()
        _flush_metrics()
    if not gone.done():
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    gone.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
