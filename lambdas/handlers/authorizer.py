"""REQUEST authorizer: API key or JWT in, an Allow policy for the whole API plus the principal out.

The policy covers every route (API Gateway caches it per credential and reuses it on any route); what a
principal may do is decided per route by its scopes, in the gateway and admin handlers.
"""
from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)

from tollgate import routes, wiring
from tollgate.auth.authenticate import credential
from tollgate.errors import AuthenticationFailed
from tollgate.observability import logger, tracer


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: object) -> dict:
    request = APIGatewayAuthorizerRequestEvent(event)
    try:
        principal = wiring.authenticator().authenticate(credential(request.headers, _identity_header(request)))
    except AuthenticationFailed:
        raise Exception("Unauthorized")  # API Gateway's contract for a 401
    arn = request.parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id=principal.id, region=arn.region, aws_account_id=arn.aws_account_id,
        api_id=arn.api_id, stage=arn.stage, context=principal.to_context())
    policy.allow_all_routes()
    return policy.asdict()


def _identity_header(request: APIGatewayAuthorizerRequestEvent) -> str:
    """The header of the authorizer API Gateway invoked us as: the one the route's cache is keyed on."""
    matched = routes.match(request.http_method, request.path)
    named = routes.authorizer(matched[0].auth) if matched else None
    return (named or routes.BEARER).header
