"""What the HTTP handlers share: a Powertools resolver wired to the route table, the principal of the
current request, and the one mapping of domain errors to provider-shaped responses."""
from __future__ import annotations

import json
from typing import Any, Callable

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
    if route.auth == routes.IAM:
        # No authorizer ran: add what it adds about the user (their limit, own provider keys), briefly cached.
        return wiring.with_user_context(iam.principal_for(event.request_context.identity.raw_event, event.headers or {}))
    context = (event.request_context.authorizer.raw_event if event.request_context.authorizer else None) or {}
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


def json_body(app: APIGatewayRestResolver) -> dict[str, Any]:
    raw = app.current_event.body
    if not raw:
        raise errors.InvalidRequest("A JSON request body is required.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    return body


def to_response(status: int, headers: dict[str, str], body: str | bytes) -> Response:
    content_type = headers.pop("content-type", "application/json")
    text = body.decode() if isinstance(body, bytes) else body
    return Response(status_code=status, content_type=content_type, body=text, headers=headers)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return to_response(status, dict(headers or {}), json.dumps(payload, default=str))
