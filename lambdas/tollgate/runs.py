"""Agent runs: start one (POST /v1/agents/runs) and read it (GET /v1/agents/runs/{runId}).

A run is created in ONE DynamoDB transaction with its budget item (budgets.run_pk / budgets.RUN_SK), so
there is never a run without a budget for the gateway to hold its calls against, nor a budget without
its run; then its id is sent to the runs queue, where an agent worker (agents/) takes it. The worker
calls the LLM only through the gateway's /internal/v1 routes, acting for the run's owner and naming the
run, so every call is reserved against the run's budget before it is sent.

Run statuses: queued -> running -> succeeded | failed, and running -> interrupted -> running when a
worker is stopped (SIGTERM) and the run is taken again from its last checkpoint. The worker (agents/)
writes the same item; agents/contract.py repeats the names it needs and a test pins them to these.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from tollgate import budgets, idempotency, scopes
from tollgate.auth.principal import Principal
from tollgate.clock import Clock, iso, utc_now
from tollgate.errors import InvalidRequest, NotFound, TollgateError, shown
from tollgate.money import text as usd
from tollgate.settings import Settings

# Statuses.
QUEUED = "queued"
RUNNING = "running"
INTERRUPTED = "interrupted"
SUCCEEDED = "succeeded"
FAILED = "failed"
STATUSES = (QUEUED, RUNNING, INTERRUPTED, SUCCEEDED, FAILED)
TERMINAL = (SUCCEEDED, FAILED)

# Why a run stopped (its `stop_reason`). Guards of the agent's own, then the gateway's refusals.
COMPLETED = "completed"
BUDGET_EXHAUSTED = "budget_exhausted"  # the gateway refused a call: the run's budget (or another) is spent
LOOP_DETECTED = "loop_detected"  # the gateway refused the same request sent too often
MAX_ITERATIONS = "max_iterations"
REPEATED_TOOL_CALL = "repeated_tool_call"
CONSECUTIVE_FAILURES = "consecutive_failures"
WALL_CLOCK = "wall_clock"
GATEWAY_ERROR = "gateway_error"
AGENT_ERROR = "agent_error"
ENQUEUE_FAILED = "enqueue_failed"
STOP_REASONS = (COMPLETED, BUDGET_EXHAUSTED, LOOP_DETECTED, MAX_ITERATIONS, REPEATED_TOOL_CALL,
                CONSECUTIVE_FAILURES, WALL_CLOCK, GATEWAY_ERROR, AGENT_ERROR, ENQUEUE_FAILED)

# The agents a run may name (implemented in agents/registry.py). "naive-feedback" is the article's
# broken agent, kept on purpose: it retries an empty classification forever and shows the gateway
# stopping it.
FEEDBACK_ANALYSIS = "feedback-analysis"
NAIVE_FEEDBACK = "naive-feedback"
AGENTS = (FEEDBACK_ANALYSIS, NAIVE_FEEDBACK)

DEFAULT_MODEL = "gpt-4o-mini"
MAX_INPUT_BYTES = 64 * 1024  # the input is stored on the run item (DynamoDB items hold up to 400 KB)
MAX_REVIEWS = 200
MAX_REVIEW_CHARS = 8000
RUN_RETENTION_DAYS = 90
_RUN_ID = re.compile(r"^run_[0-9a-f]{32}$")
_ID_NAMESPACE = uuid.UUID("6f1c2a4e-4d0b-4a53-9c1e-7d2b8f3a5e10")


class QueueUnavailable(TollgateError):
    status = 503
    type = "api_error"
    code = "queue_unavailable"


def new_run_id(user: str, idempotency_key: str | None) -> str:
    """A random id; with an Idempotency-Key, the same id for the same user and key (a retried POST
    finds the run it created instead of starting, and paying for, a second one)."""
    if idempotency_key is None:
        return f"run_{uuid.uuid4().hex}"
    name = user + "\n" + idempotency_key
    return f"run_{uuid.uuid5(_ID_NAMESPACE, name).hex}"


def _budget(value: Any, maximum: Decimal) -> Decimal:
    if value is None:
        raise InvalidRequest("'budget_usd' is required: the most this run may spend, in USD.", param="budget_usd")
    if isinstance(value, bool):
        raise InvalidRequest("'budget_usd' must be a decimal amount in USD.", param="budget_usd")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest("'budget_usd' must be a decimal amount in USD.", param="budget_usd") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidRequest("'budget_usd' must be more than zero.", param="budget_usd")
    if amount > maximum:
        raise InvalidRequest(f"'budget_usd' may be at most {usd(maximum)} (the configured cap per run).",
                             param="budget_usd")
    return amount


def _reviews(payload: dict[str, Any]) -> None:
    reviews = payload.get("reviews")
    if not isinstance(reviews, list) or not reviews:
        raise InvalidRequest("'input.reviews' must be a non-empty list of reviews.", param="input")
    if len(reviews) > MAX_REVIEWS:
        raise InvalidRequest(f"At most {MAX_REVIEWS} reviews per run.", param="input")
    ids = set()
    for i, review in enumerate(reviews):
        text = review if isinstance(review, str) else review.get("text") if isinstance(review, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest(f"Review {i} has no text: give a string or {{\"id\": ..., \"text\": ...}}.",
                                 param="input")
        if len(text) > MAX_REVIEW_CHARS:
            raise InvalidRequest(f"Review {i} is longer than {MAX_REVIEW_CHARS} characters.", param="input")
        rid = str(review.get("id", i + 1)) if isinstance(review, dict) else str(i + 1)
        if rid in ids:
            raise InvalidRequest(f"Review id {rid!r} appears twice.", param="input")
        ids.add(rid)


def _input(agent: Any, payload: Any) -> str:
    if agent not in AGENTS:
        raise InvalidRequest(f"Unknown agent {agent!r}. Known: {', '.join(AGENTS)}.", param="agent")
    if not isinstance(payload, dict):
        raise InvalidRequest("'input' must be a JSON object.", param="input")
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > MAX_INPUT_BYTES:
        raise InvalidRequest(f"'input' is larger than {MAX_INPUT_BYTES} bytes.", param="input")
    _reviews(payload)  # both agents analyse a batch of reviews
    return text


class SqsRunQueue:
    """The runs queue: a message per run, holding only its id (the run item holds the rest)."""

    def __init__(self, queue_url: str | None, client: Any):
        self.queue_url = queue_url
        self.client = client

    def send(self, run_id: str) -> None:
        if not self.queue_url:
            raise QueueUnavailable("Agent runs are not configured (no runs queue).")
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps({"run_id": run_id}))


class Runs:
    def __init__(self, settings: Settings, store: Any, queue: Any, catalogue: Any, clock: Clock = utc_now):
        self.settings = settings
        self.store = store
        self.queue = queue
        self.catalogue = catalogue
        self.clock = clock

    def create(self, principal: Principal, body: dict[str, Any], idempotency_key: str | None = None) -> tuple[bool, dict[str, Any]]:
        """(created?, the run as the API shows it). Not created: an earlier POST with this
        Idempotency-Key made it."""
        agent = body.get("agent")
        input_json = _input(agent, body.get("input"))
        limit = _budget(body.get("budget_usd"), self.settings.runs_max_budget_usd)
        model = body.get("model") or DEFAULT_MODEL
        self._check_model(model)
        idempotency.checked(idempotency_key)
        run_id = new_run_id(principal.user, idempotency_key)
        now = self.clock()
        expires = int((now + timedelta(days=RUN_RETENTION_DAYS)).timestamp())
        run = {
            "runId": run_id, "user": principal.user, "principal": principal.id, "agent": agent, "model": model,
            "inputJson": input_json, "budgetUsd": limit, "status": QUEUED, "iterations": 0, "calls": 0,
            "attempts": 0, "createdAt": iso(now), "updatedAt": iso(now), "ttl": expires,
        }
        budget = {"pk": budgets.run_pk(run_id), "sk": budgets.RUN_SK, "limitUsd": limit, "remainingUsd": limit,
                  "reservedUsd": Decimal(0), "spentUsd": Decimal(0), "runId": run_id, "user": principal.user,
                  "ttl": expires}
        if not self.store.create(run, budget):
            existing = self.store.get(run_id)
            if existing is None or existing.get("user") != principal.user:
                raise InvalidRequest("This Idempotency-Key was used for another run.")
            return False, self._view(existing)
        try:
            self.queue.send(run_id)
        except Exception as exc:
            self.store.fail_unqueued(run_id, iso(self.clock()), f"The run could not be queued: {type(exc).__name__}.",
                                     queued=QUEUED, failed=FAILED, stop_reason=ENQUEUE_FAILED)
            if isinstance(exc, TollgateError):
                raise
            raise QueueUnavailable("The run could not be queued; it was not started and costs nothing. "
                                   "Try again.") from None
        return True, self._view(run)

    def get(self, principal: Principal, run_id: str) -> dict[str, Any]:
        item = self.store.get(run_id) if _RUN_ID.match(run_id or "") else None
        # Someone else's run is "not found", not "forbidden": its existence is not theirs to learn.
        if item is None or (item.get("user") != principal.user and scopes.ADMIN not in principal.scopes):
            raise NotFound(f"No agent run {shown(run_id)}.")
        return self._view(item)

    def _check_model(self, model: Any) -> None:
        if not isinstance(model, str):
            raise InvalidRequest("'model' must be a model name.", param="model")
        price = self.catalogue.price(model)  # UnknownModel (400) if it is not priced
        if price.provider != "openai" or price.kind != "chat":
            raise InvalidRequest("Agents call the chat completions route: give an OpenAI chat model.", param="model")

    def _view(self, item: dict[str, Any]) -> dict[str, Any]:
        run_id = item["runId"]
        budget = self.store.budget(run_id) or {}
        limit = Decimal(budget.get("limitUsd", item.get("budgetUsd", 0)))
        spent = Decimal(budget.get("spentUsd", 0))
        reserved = Decimal(budget.get("reservedUsd", 0))
        result = item.get("resultJson")
        return {
            "id": run_id, "object": "agent.run", "agent": item.get("agent"), "model": item.get("model"),
            "user": item.get("user"), "status": item.get("status"), "stop_reason": item.get("stopReason"),
            "reason": item.get("reason"), "result": json.loads(result) if result else None,
            "iterations": int(item.get("iterations", 0)), "calls": int(item.get("calls", 0)),
            "cost_usd": usd(spent), "reserved_usd": usd(reserved), "budget_usd": usd(limit),
            "remaining_usd": usd(max(Decimal(budget.get("remainingUsd", limit)), Decimal(0))),
            "attempts": int(item.get("attempts", 0)), "created_at": item.get("createdAt"),
            "started_at": item.get("startedAt"), "finished_at": item.get("finishedAt"),
            "updated_at": item.get("updatedAt"),
        }
