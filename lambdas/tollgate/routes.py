"""The route table: every HTTP route, who may call it, how it authenticates, and which function serves it.

One source of truth for the CDK API stack, the local API Gateway emulator and the handlers' scope
checks. Standard library only: CDK code imports this module.

Authentication. API Gateway invokes a REQUEST authorizer only when *all* of its identity sources are
present, and caches its answer per identity-source values, so a route can key its cache on one header
only. The openai SDK and current anthropic SDKs send `Authorization: Bearer`: every /v1 route uses that.
Clients that send `x-api-key` (older anthropic SDKs, Anthropic's curl examples) use the same routes
under `/anthropic` (base URL `https://<api>/anthropic`), whose authorizer keys on `x-api-key`. Both
authorizers are the same Lambda. `/internal/v1/*` uses AWS_IAM (SigV4) instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tollgate import scopes

# Authorizer result cache lifetime. Also the longest a revoked or suspended key keeps working.
AUTHORIZER_CACHE_TTL_S = 30


@dataclass(frozen=True)
class Authorizer:
    name: str
    header: str  # the single identity source: method.request.header.<header>

    @property
    def identity_source(self) -> str:
        return f"method.request.header.{self.header}"


BEARER = Authorizer("bearer", "Authorization")
X_API_KEY = Authorizer("x-api-key", "x-api-key")
AUTHORIZERS = (BEARER, X_API_KEY)

IAM = "iam"  # auth value for AWS_IAM routes
NONE = "none"

# Wire formats: decides the error shape of a route.
OPENAI = "openai"
ANTHROPIC = "anthropic"
TOLLGATE = "tollgate"

GATEWAY_FUNCTION = "gateway"
ADMIN_FUNCTION = "admin"
RUNS_FUNCTION = "runs"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway resource path, e.g. /admin/keys/{keyId}
    scope: str | None  # required scope; None = any authenticated principal
    auth: str  # an Authorizer name, IAM or NONE
    wire: str  # OPENAI, ANTHROPIC or TOLLGATE
    function: str  # GATEWAY_FUNCTION, ADMIN_FUNCTION or RUNS_FUNCTION
    metered: bool = False  # goes through reserve -> provider -> settle
    # The schema of the JSON body, "<module>.<class>" in tollgate.requests (resolved by the handlers,
    # not here: this module stays standard library only). None: the route reads no body.
    body: str | None = None

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


def _v1(method: str, path: str, scope: str | None, wire: str, metered: bool, body: str | None = None) -> list[Route]:
    """A public /v1 route (API key or JWT), its x-api-key twin for Anthropic-format routes, and for
    metered ones its SigV4 twin under /internal/v1."""
    routes = [Route(method, f"/v1{path}", scope, BEARER.name, wire, GATEWAY_FUNCTION, metered, body)]
    if wire == ANTHROPIC:
        routes.append(Route(method, f"/anthropic/v1{path}", scope, X_API_KEY.name, wire, GATEWAY_FUNCTION, metered,
                            body))
    if metered:
        routes.append(Route(method, f"/internal/v1{path}", scope, IAM, wire, GATEWAY_FUNCTION, metered, body))
    return routes


ROUTES: tuple[Route, ...] = tuple(
    _v1("POST", "/chat/completions", scopes.COMPLETE, OPENAI, metered=True, body="openai.ChatCompletionRequest")
    + _v1("POST", "/embeddings", scopes.EMBED, OPENAI, metered=True, body="openai.EmbeddingRequest")
    + _v1("GET", "/models", None, OPENAI, metered=False)
    + _v1("POST", "/messages", scopes.COMPLETE, ANTHROPIC, metered=True, body="anthropic.MessagesRequest")
    # The Responses API (issue 12). A stored response lives in the platform's provider account: only the
    # user who created it may read, delete, cancel or chain it (tollgate.responses).
    + _v1("POST", "/responses", scopes.COMPLETE, OPENAI, metered=True, body="openai.ResponsesRequest")
    + _v1("GET", "/responses/{responseId}", scopes.COMPLETE, OPENAI, metered=False)
    + _v1("DELETE", "/responses/{responseId}", scopes.COMPLETE, OPENAI, metered=False)
    + _v1("POST", "/responses/{responseId}/cancel", scopes.COMPLETE, OPENAI, metered=False)
    + _v1("GET", "/responses/{responseId}/input_items", scopes.COMPLETE, OPENAI, metered=False)
    # Anthropic's token counting: forwarded, not charged, one request of the requests-per-minute limit.
    + _v1("POST", "/messages/count_tokens", scopes.COMPLETE, ANTHROPIC, metered=False,
          body="anthropic.CountTokensRequest")
    # One model (any wire: Anthropic's shape when the request carries anthropic-version, OpenAI's otherwise).
    + _v1("GET", "/models/{modelId}", None, OPENAI, metered=False)
    + [Route("GET", "/anthropic/v1/models", None, X_API_KEY.name, ANTHROPIC, GATEWAY_FUNCTION),
       Route("GET", "/anthropic/v1/models/{modelId}", None, X_API_KEY.name, ANTHROPIC, GATEWAY_FUNCTION)]
    + [
        Route("GET", "/health", None, NONE, TOLLGATE, GATEWAY_FUNCTION),
        Route("GET", "/v1/usage", None, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("POST", "/admin/keys", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION, body="admin.CreateKey"),
        Route("GET", "/admin/keys", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("POST", "/admin/keys/{keyId}/revoke", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("POST", "/admin/keys/{keyId}/suspend", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("POST", "/admin/keys/{keyId}/resume", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("GET", "/admin/usage", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("GET", "/admin/budgets", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("PUT", "/admin/budgets", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION, body="admin.SetBudget"),
        Route("POST", "/admin/tokens", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION, body="admin.IssueToken"),
        Route("GET", "/admin/users/{user}", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("PUT", "/admin/users/{user}", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION,
              body="admin.UserSettings"),
        Route("POST", "/admin/keys/{keyId}/rotate", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION,
              body="admin.RotateKey"),
        Route("PUT", "/v1/provider-keys/{provider}", scopes.BYOK_MANAGE, BEARER.name, OPENAI, ADMIN_FUNCTION,
              body="byok.PutProviderKey"),
        Route("GET", "/v1/provider-keys/{provider}", scopes.BYOK_MANAGE, BEARER.name, OPENAI, ADMIN_FUNCTION),
        Route("DELETE", "/v1/provider-keys/{provider}", scopes.BYOK_MANAGE, BEARER.name, OPENAI, ADMIN_FUNCTION),
        # Agent runs. Reading one needs no scope: only its owner or an admin sees it (tollgate.runs).
        Route("POST", "/v1/agents/runs", scopes.AGENTS_RUN, BEARER.name, TOLLGATE, RUNS_FUNCTION,
              body="runs.StartRun"),
        Route("GET", "/v1/agents/runs/{runId}", None, BEARER.name, TOLLGATE, RUNS_FUNCTION),
        # The loop guard's counters of one user (tollgate.loopguard).
        Route("GET", "/admin/loops", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        Route("DELETE", "/admin/loops", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        # Chargeback: a month's invoice per user and key (tollgate.invoice).
        Route("GET", "/admin/invoice", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION),
        # Reconciliation with the providers' bills of one day (tollgate.reconcile); also run daily on a schedule.
        Route("POST", "/admin/reconcile", scopes.ADMIN, BEARER.name, TOLLGATE, ADMIN_FUNCTION,
              body="admin.Reconcile"),
    ]
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a request path (not a resource path), with its path parameters."""
    for route in ROUTES:
        if route.method != method:
            continue
        m = route.pattern.match(path)
        if m:
            return route, m.groupdict()
    return None


def by_resource(method: str, resource: str) -> Route | None:
    for route in ROUTES:
        if route.method == method and route.path == resource:
            return route
    return None


def authorizer(name: str) -> Authorizer | None:
    return next((a for a in AUTHORIZERS if a.name == name), None)


# API Gateway's own answers (no Lambda involved), shaped so both SDKs raise the right exception: one body
# for every route, since a gateway response is per API and its template is not VTL (no per-route logic:
# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-swagger-extensions-gateway-responses.responseTemplates.html).
# So each body is Anthropic's shape (`type: "error"`, `error.type`/`error.message`) that also carries every
# field of OpenAI's error object (`error.message`, `type`, `param`, `code`); `error.type` takes Anthropic's
# names. The local API Gateway emulator answers with these same bodies.
GATEWAY_RESPONSES: dict[str, tuple[int, dict]] = {
    # One answer for the whole API (a gateway response template allows no per-route logic), so it says
    # which header each route takes.
    "UNAUTHORIZED": (401, {"type": "error", "error": {
        "type": "authentication_error", "code": "invalid_api_key", "param": None,
        "message": "Missing or invalid API key. Routes under /v1 take it as Authorization: Bearer sk-...; "
                   "routes under /anthropic/v1 as x-api-key: sk-... Clients that send x-api-key (Claude Code "
                   "with ANTHROPIC_API_KEY, litellm's anthropic provider) use the base URL .../anthropic."}}),
    "ACCESS_DENIED": (403, {"type": "error", "error": {
        "type": "permission_error", "code": "access_denied", "param": None, "message": "Access denied."}}),
    # Every unknown path or method is answered by the API's catch-all (`not_found`), so this one means
    # what its name says: an AWS_IAM route called without a SigV4 signature. 403, as API Gateway's default.
    "MISSING_AUTHENTICATION_TOKEN": (403, {"type": "error", "error": {
        "type": "permission_error", "code": "missing_authentication_token", "param": None,
        "message": "This route takes AWS SigV4-signed requests (IAM auth); the request was not signed."}}),
    # A body over the Lambda invocation payload limit (PAYLOAD_LIMIT_BYTES).
    "REQUEST_TOO_LARGE": (413, {"type": "error", "error": {
        "type": "request_too_large", "code": "request_too_large", "param": None,
        "message": "The request body is larger than the gateway accepts (6 MB)."}}),
    # The request validator of the metered routes (stacks/rest_api.py): the body is not a JSON object
    # with a "model" string.
    "BAD_REQUEST_BODY": (400, {"type": "error", "error": {
        "type": "invalid_request_error", "code": "invalid_request_body", "param": "model",
        "message": "The request body must be a JSON object with a 'model' string."}}),
    "INTEGRATION_TIMEOUT": (504, {"type": "error", "error": {
        "type": "timeout_error", "code": "gateway_timeout", "param": None,
        "message": "The provider took longer than the gateway's timeout. The call may still complete and be "
                   "metered: check `tollgate usage` before retrying, or retry with the same Idempotency-Key."}}),
}

# Headers on those answers. A timed-out call may still be running and metered, so the SDKs must not
# retry it blindly (each retry would be a new, paid call).
GATEWAY_RESPONSE_HEADERS: dict[str, dict[str, str]] = {"INTEGRATION_TIMEOUT": {"x-should-retry": "false"}}

# Lambda's synchronous invocation payload limit: 6 MB each way (AWS Lambda quotas, "Invocation payload").
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024

NOT_FOUND_MESSAGE = ("No such route. OpenAI- and Anthropic-compatible routes are under /v1 (Authorization: "
                     "Bearer), Anthropic routes for x-api-key clients under /anthropic/v1.")


def not_found_wire(path: str) -> str:
    """The error shape of the API's answer to an unknown path (a resource path or a request path):
    Anthropic's under /anthropic, OpenAI's everywhere else."""
    return ANTHROPIC if path == "/anthropic" or path.startswith("/anthropic/") else OPENAI


def not_found(path: str) -> tuple[int, dict]:
    """(404, body) the API's catch-all answers for an unknown path or method, in the path's error shape."""
    from tollgate import errors  # standard library only, like this module

    error = errors.NotFound(NOT_FOUND_MESSAGE)
    return error.status, errors.body(error, not_found_wire(path))
