"""Runs Lambda: start an agent run (scope `agents:run`) and read one (its owner or an admin)."""
from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths

from handlers._api import json_body, json_response, resolver
from tollgate import routes, wiring
from tollgate.auth.principal import Principal
from tollgate.observability import logger, tracer


def _start(principal: Principal):
    created, run = wiring.runs().create(principal, json_body(app), app.current_event.headers.get("idempotency-key"))
    logger.info("agent run queued" if created else "agent run replayed", extra={"run_id": run["id"]})
    return json_response(202 if created else 200, run, {"location": f"/v1/agents/runs/{run['id']}"})


app = resolver(routes.RUNS_FUNCTION, {
    ("POST", "/v1/agents/runs"): _start,
    ("GET", "/v1/agents/runs/{runId}"): lambda p, runId: json_response(200, wiring.runs().get(p, runId)),
})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
