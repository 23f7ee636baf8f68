"""Gateway Lambda: the OpenAI- and Anthropic-compatible routes. Parse, call the domain, respond."""
from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths

from handlers._api import id_header, json_body, json_response, resolver, to_response
from tollgate import metric_names, routes, scopes, wiring
from tollgate.auth.principal import IAM, Principal
from tollgate.observability import logger, metrics, tracer
from tollgate.service import MeteredRequest, Reply

RUN_ID_HEADER = "x-tollgate-run-id"
PROMPT_FIELDS = ("model", "system", "messages", "input")


def _metered(principal: Principal):
    event = app.current_event
    body = json_body(app)
    if principal.log_prompts:  # an operator's explicit, per-user choice; never the default
        logger.info("prompt logged for this user by operator setting", extra={
            "prompt": {k: body[k] for k in PROMPT_FIELDS if k in body}})
    reply = wiring.gateway().handle(MeteredRequest(
        request_id=event.request_context.request_id, path=event.path, principal=principal,
        body=body, user_agent=event.headers.get("user-agent") or "",
        idempotency_key=event.headers.get("idempotency-key"), run_id=_run_id(principal)))
    _log_metered(principal, body, reply)
    return to_response(reply.status, {"content-type": reply.content_type, **reply.headers}, reply.body)


def _log_metered(principal: Principal, body: dict, reply: Reply) -> None:
    """One structured line per metered answer, read by the top-spenders Contributor Insights rule. Who,
    which model, what it cost: never the prompt or the completion. The cost is a JSON number here (the
    rule sums it); the usage table keeps the exact Decimal."""
    logger.info(metric_names.METERED_LOG_MESSAGE, extra={
        metric_names.LOG_USER: principal.user, metric_names.LOG_COST_USD: float(reply.cost),
        "model": body.get("model"), "status": reply.status, "replayed": reply.replayed})


def _run_id(principal: Principal) -> str | None:
    """An agent run's id, honoured only from a trusted IAM principal acting for a user (the agent tasks)."""
    if principal.kind == IAM and scopes.ACT_AS in principal.scopes:
        return id_header(app, RUN_ID_HEADER)
    return None


def _models(principal: Principal):
    data = [{"id": m.id, "object": "model", "created": 0, "owned_by": m.provider}
            for m in wiring.catalogue().models()]
    return json_response(200, {"object": "list", "data": data})


def _health():
    return json_response(200, {"status": "ok"})


_IMPLEMENTATIONS = {(r.method, r.path): _metered for r in routes.ROUTES
                    if r.function == routes.GATEWAY_FUNCTION and r.metered}
_IMPLEMENTATIONS.update({("GET", "/v1/models"): _models, ("GET", "/health"): _health})
app = resolver(routes.GATEWAY_FUNCTION, _IMPLEMENTATIONS)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True,
                              log_event=False)  # never: request bodies carry prompts
@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
