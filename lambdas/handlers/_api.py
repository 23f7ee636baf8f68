"""What the HTTP handlers share: a Powertools resolver wired to the route table, the principal of the
current request, the one place request input is checked (body, path ids, query values), and the one
mapping of domain errors to provider-shaped responses.

Powertools' event handler is imported where a resolver is built (admin, runs), not at import: the gateway
(an ASGI app) uses only the request helpers here, and its cold start does not pay for a resolver it never
builds (`make bench`).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Mapping

from tollgate import errors, requests, routes, wiring
from tollgate.auth import iam
from tollgate.auth.principal import Principal
from tollgate.observability import logger
from tollgate.requests import json_body as json_text

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response


def resolver(function: str, implementations: dict[tuple[str, str], Callable[..., Any]]) -> APIGatewayRestResolver:
    """A resolver serving every route of the table assigned to `function`, each checked for its scope."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    app = APIGatewayRestResolver()
    served = [r for r in routes.ROUTES if r.function == function]
    missing = {(r.method, r.path) for r in served} - set(implementations)
    if missing:
        raise RuntimeError(f"routes without an implementation: {sorted(missing)}")

    for route in served:
        rule = route.path.replace("{", "<").replace("}", ">")
        app.route(rule, method=route.method)(_guarded(app, route, implementations[(route.method, route.path)]))

    @app.not_found
    def _no_such_id(exc: Exception) -> Response:
        # API Gateway matched the resource (the route exists), but a path parameter holds characters the
        # resolver's pattern refuses (%00, undecodable bytes, quotes): no id with them can exist.
        return to_response(*errors.render(errors.NotFound("No such resource: the id in the path cannot exist."),
                                          _wire(app)))

    @app.exception_handler(errors.TollgateError)
    def _domain_error(exc: errors.TollgateError) -> Response:
        return to_response(*errors.render(exc, _wire(app)))

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return to_response(*errors.render(errors.TollgateError("Internal error."), _wire(app)))

    return app


def _guarded(app: APIGatewayRestResolver, route: routes.Route, fn: Callable[..., Any]) -> Callable[..., Any]:
    from tollgate.requests.types import is_id

    def call(**params: str) -> Any:
        for name, value in params.items():
            _not_a_secret(value, name)
            if not is_id(value):  # e.g. %00 or undecodable bytes: no such id can exist
                raise errors.NotFound(f"No such {name}: the id in the path cannot exist.")
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
        lowered = {k.lower(): v for k, v in headers.items()}
        usable_id(lowered.get(iam.ON_BEHALF_OF) or None, iam.ON_BEHALF_OF)  # the user named becomes part of DynamoDB keys
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


def validated_body(route: routes.Route, raw: str | None, *, required: bool = True) -> dict[str, Any]:
    """The JSON body of a request on `route`, parsed (tollgate.requests.json_body) and checked against
    the route's schema (tollgate.requests). Any transport calls this. Raises InvalidRequest (400); an
    absent optional body is {}. RuntimeError if the route has no schema (a route table mistake)."""
    if route.body is None:
        raise RuntimeError(f"{route.method} {route.path} names no body schema in tollgate.routes")
    if not raw and not required:
        return {}
    return requests.validated(route.body, json_text.parse(raw))


def json_body(app: APIGatewayRestResolver, *, required: bool = True) -> dict[str, Any]:
    """The current request's validated body (see validated_body)."""
    event = app.current_event
    return validated_body(routes.by_resource(event.http_method, event.resource), event.body, required=required)


def query(app: APIGatewayRestResolver, name: str) -> str | None:
    """A query-string value, refused (400, param = its name) unless it is a usable id or value: every
    one ends up in a DynamoDB key or condition, which has length limits of its own."""
    return usable_id((app.current_event.query_string_parameters or {}).get(name), name)


def id_header(app: APIGatewayRestResolver, name: str) -> str | None:
    """A header that carries an id (e.g. a run id), checked as `query` checks a query value."""
    return usable_id(app.current_event.headers.get(name) or None, name)


def usable_id(value: str | None, name: str) -> str | None:
    """`value` if absent or a usable id (1 to MAX_ID_CHARS printable characters), else InvalidRequest (400,
    param = `name`): ids end up in DynamoDB keys, which have length limits of their own."""
    from tollgate.requests.types import MAX_ID_CHARS, is_id  # pydantic: imported with the first id checked

    if value is not None:
        _not_a_secret(value, name)
    if value is not None and not is_id(value):
        raise errors.InvalidRequest(f"'{name}' must be 1 to {MAX_ID_CHARS} printable characters.", param=name)
    return value


def _not_a_secret(value: str, name: str) -> None:
    """InvalidRequest (400, param = `name`) when an id from a path, query or header is a whole secret API
    key (tollgate.auth.api_keys.is_whole_secret): no id is one, and the key is never repeated back."""
    from tollgate.auth import api_keys

    if api_keys.is_whole_secret(value):
        raise errors.InvalidRequest(api_keys.WHOLE_KEY_MESSAGE, code="whole_secret_key", param=name)


def to_response(status: int, headers: dict[str, str], body: str | bytes) -> Response:
    from aws_lambda_powertools.event_handler import Response

    content_type = headers.pop("content-type", "application/json")
    text = body.decode() if isinstance(body, bytes) else body
    return Response(status_code=status, content_type=content_type, body=text, headers=headers)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return to_response(status, dict(headers or {}), json.dumps(payload, default=str))
