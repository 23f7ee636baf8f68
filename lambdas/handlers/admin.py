"""Admin Lambda: keys, usage and budgets for operators (scope `admin`), and a user's own usage."""
from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths

from handlers._api import json_body, json_response, query, resolver
from tollgate import requests, routes, wiring
from tollgate.auth import api_keys
from tollgate.auth.principal import Principal
from tollgate.observability import logger, tracer

admin = wiring.admin


def _query(name: str) -> str | None:
    return query(app, name)


def _usage(principal: Principal, user: str | None):
    return json_response(200, admin().usage_for(user, _query("from"), _query("to"), _query("limit")))


def _invoice(principal: Principal):
    given = app.current_event.query_string_parameters or {}
    q = requests.validated("admin.InvoiceQuery", {name: _query(name) for name in given})
    return json_response(200, admin().invoice(q["month"], q.get("user"), q.get("markup_pct")))


def _reconcile(body: dict):
    from handlers import reconcile

    return reconcile.run(body.get("day"))


def _status(status: str):
    return lambda principal, keyId: json_response(200, admin().set_key_status(keyId, status))


app = resolver(routes.ADMIN_FUNCTION, {
    ("POST", "/admin/keys"): lambda p: json_response(201, admin().create_key(json_body(app))),
    ("GET", "/admin/keys"): lambda p: json_response(200, admin().list_keys(_query("user"))),
    ("POST", "/admin/keys/{keyId}/revoke"): _status(api_keys.REVOKED),
    ("POST", "/admin/keys/{keyId}/suspend"): _status(api_keys.SUSPENDED),
    ("POST", "/admin/keys/{keyId}/resume"): _status(api_keys.ACTIVE),
    ("GET", "/admin/usage"): lambda p: _usage(p, _query("user")),
    ("GET", "/v1/usage"): lambda p: _usage(p, p.user),
    ("GET", "/admin/budgets"): lambda p: json_response(200, admin().budget(_query("user"), _query("key"))),
    ("PUT", "/admin/budgets"): lambda p: json_response(200, admin().set_budget(json_body(app))),
    ("GET", "/admin/users/{user}"): lambda p, user: json_response(200, admin().user_settings(user)),
    ("PUT", "/admin/users/{user}"): lambda p, user: json_response(200, admin().set_user_settings(user, json_body(app))),
    ("POST", "/admin/tokens"): lambda p: json_response(201, admin().issue_token(json_body(app), wiring.jwt_secrets())),
    ("POST", "/admin/keys/{keyId}/rotate"): lambda p, keyId: json_response(
        201, admin().rotate_key(keyId, json_body(app, required=False))),
    ("PUT", "/v1/provider-keys/{provider}"): lambda p, provider: json_response(
        200, wiring.byok().put(p.user, provider, json_body(app))),
    ("GET", "/v1/provider-keys/{provider}"): lambda p, provider: json_response(200, wiring.byok().describe(p.user, provider)),
    ("DELETE", "/v1/provider-keys/{provider}"): lambda p, provider: json_response(
        200, wiring.byok().delete(p.user, provider)),
    ("GET", "/admin/loops"): lambda p: json_response(200, admin().list_loops(_query("user"))),
    ("DELETE", "/admin/loops"): lambda p: json_response(200, admin().clear_loops(_query("user"))),
    ("GET", "/admin/invoice"): _invoice,
    ("POST", "/admin/reconcile"): lambda p: json_response(200, _reconcile(json_body(app, required=False))),
})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True,
                              log_event=False)  # never: request bodies carry provider keys
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
