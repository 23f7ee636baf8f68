"""What the HTTP handlers share: a Powertools resolver wired to the route table, the principal of the
current request, and the one mapping of domain errors to provider-shaped responses."""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from tollgate import errors, routes, wiring
from tollgate.auth import iam
from tollgate.auth.principal import Principal
from tollgate.observability import logger


def resolver(function: str, implementations: dict[tuple[str, str], Callable[..., Any]]) -> APIGatewayRestResolver:
    """A resolver serving every route of the table assigned to `function`, each checked for its scope."""
    app = APIGatewayRestResolver()
    served = [r for r in routes.ROUTES if r.function == function]
    missing = {(r.method, r.path) for r in served} - set(implementations)
    if missing:
        raise RuntimeError(f"routes without an implementation: {sorted(missing)}")

    for route in served:
        rule = route.path.replace("{", "<").replace("}", ">")
        app.route(rule, method=route.method)(_guarded(app, route, implementations[(route.method, route.path)]))

    @app.exception_handler(errors.TollgateError)
    def _domain_error(exc: errors.TollgateError) -> Response:
        return to_response(*errors.render(exc, _wire(app)))

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return to_response(*errors.render(errors.TollgateError("Internal error."), _wire(app)))

    return app


def _guarded(app: APIGatewayRestResolver, route: routes.Route, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(**params: str) -> Any:
        if route.auth == routes.NONE:
            return fn(**params)
        principal = current_principal(app, route)
        principal.require(route.scope)
        logger.append_keys(principal=principal.id, user=principal.user)
        return fn(principal, **params)

    return call


def current_principal(app: APIGatewayRestResolver, route: routes.Route) -> Principal:
    event = app.current_event
    return principal_for(route, event.raw_event.get("requestContext") or {}, event.headers or {})


def principal_for(route: routes.Route, request_context: dict[str, Any], headers: Mapping[str, str]) -> Principal:
    """The caller of an authenticated route, from API Gateway's request context (as in the proxy event, or
    as the Lambda Web Adapter forwards it in `x-amzn-request-context`): the authorizer's context for
    Bearer / x-api-key routes, the SigV4 identity for IAM routes. Raises AuthenticationFailed without one."""
    if route.auth == routes.IAM:
        # No authorizer ran: add what it adds about the user (their limit, own provider keys), briefly cached.
        return wiring.with_user_context(iam.principal_for(request_context.get("identity") or {}, dict(headers)))
    context = request_context.get("authorizer") or {}
    if "kind" not in context:
        raise errors.AuthenticationFailed("No authorizer context: the route must be called through API Gateway.")
    return Principal.from_context(context)


def _wire(app: APIGatewayRestResolver) -> str:
    try:
        event = app.current_event
        route = routes.by_resource(event.http_method, event.resource)
        return route.wire if route else routes.OPENAI
    except Exception:
        return routes.OPENAI


def validated_body(route: routes.Route, raw: str | bytes | None) -> dict[str, Any]:
    """The JSON body of a request on `route`; any transport (the Powertools resolver, the gateway's ASGI app)
    calls this. Raises InvalidRequest (400) unless it is a JSON object. (Issue 9 checks it against the
    route's schema here.)"""
    if not raw:
        raise errors.InvalidRequest("A JSON request body is required.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    return body


def json_body(app: APIGatewayRestResolver) -> dict[str, Any]:
    """The current request's body (see validated_body)."""
    event = app.current_event
    return validated_body(routes.by_resource(event.http_method, event.resource), event.body)


def to_response(status: int, headers: dict[str, str], body: str | bytes) -> Response:
    content_type = headers.pop("content-type", "application/json")
    text = body.decode() if isinstance(body, bytes) else body
    return Response(status_code=status, content_type=content_type, body=text, headers=headers)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return to_response(status, dict(headers or {}), json.dumps(payload, default=str))
