"""Agent runs end to end, in process: the runs API, the SQS queue, the worker, the agents, and every LLM
call through the real gateway handler on its /internal/v1 route as the agent task's IAM role, over
emulated AWS (every call serialised) and the fake provider.

The worker's loop is driven directly (Worker.poll_once). Its gateway transport builds the event API
Gateway builds for an AWS_IAM route once SigV4 is verified (requestContext.identity.userArn = the task
role's session); tests/integration/test_agents_local_worker.py runs the worker as a process signing
real SigV4 against the local API Gateway emulator.

The incident (seed/000_…txt): an agent retried an empty classification 891 times, $3.20 a call,
$2,847 overnight. Replayed here with the article's agent (`naive-feedback`, no guards of its own) and
the article's model (gpt-4, ~4,000 tokens a call): the gateway stops it.
"""
from __future__ import annotations

import json
import os
import signal
from decimal import Decimal
from typing import Any

import boto3
import pytest

from agents import contract
from agents.config import WorkerConfig
from agents.guards import Limits
from agents.naive import classification_prompt
from agents.worker import Worker
from local.lambda_context import LambdaContext
from tests.integration.world import body_of, headers_of, proxy_event, sigv4_signed
from tollgate import budgets, estimate, routes, wiring
from tollgate.auth import iam
from tollgate.pricing import Catalogue
from tollgate.schema import BUDGETS, RUNS, USAGE, Env
from tollgate.store.dynamo import from_item

AGENT_ROLE = "tollgate-agent-task"
AGENT_ROLE_SESSION_ARN = f"arn:aws:sts::123456789012:assumed-role/{AGENT_ROLE}/worker-1"
AGENT_PRINCIPALS = {AGENT_ROLE: {"scopes": ["ai:complete", "act-as"], "user": "agent-service"}}

ENGLISH = [
    "The app crashes every time I upload a photo.",
    "I was charged twice for my subscription this month.",
    "Search has been painfully slow since the last update.",
    "Please add an export to CSV, I need it for my reports.",
]
# Under the fake provider the marker makes every call whose prompt holds the review answer empty: what
# the article's classifier did with reviews that were not in English.
NON_ENGLISH = [
    "La aplicación se cierra cada vez que subo una foto. [[fake:empty]]",
    "Die Suche ist seit dem letzten Update furchtbar langsam. [[fake:empty]]",
]
MIXED = [{"id": f"r{i + 1}", "text": t} for i, t in enumerate(ENGLISH[:2] + NON_ENGLISH[:1] + ENGLISH[2:] + NON_ENGLISH[1:])]
NON_ENGLISH_IDS = {"r3", "r6"}
CHAT = "/v1/chat/completions"


# --- the emulated agent service ------------------------------------------------------------------------

class InProcessGateway:
    """The worker's transport: the real gateway handler, called as API Gateway calls it on an AWS_IAM
    route (after verifying SigV4, it sets requestContext.identity to the caller)."""

    def __init__(self) -> None:
        self.requests = 0
        self.on_request = None  # hook: called before each request

    def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes):
        from local import web_adapter

        self.requests += 1
        if self.on_request:
            self.on_request(self.requests)
        route, params = routes.match(method, path)
        assert route.auth == routes.IAM, f"{path} is not an IAM route"
        event = proxy_event(method, path, route.path, body.decode(), None, sigv4_signed(method, path, headers, body.decode()),
                            None, params, None)
        event["requestContext"]["identity"].update(userArn=AGENT_ROLE_SESSION_ARN, caller="AROAAGENT:worker-1",
                                                   accountId="123456789012", accessKey="ASIAAGENT")
        response = web_adapter.invoke_buffered(event, LambdaContext(function_name="gateway"))
        return response["statusCode"], headers_of(response), response["body"].encode()


class AgentService:
    def __init__(self, world: Any, queue_url: str, dlq_url: str):
        self.world = world
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.sqs = boto3.client("sqs")
        self.gateway = InProcessGateway()

    def key(self, user: str = "alice", scopes: tuple[str, ...] = ("ai:complete", "agents:run")):
        raw, _ = self.world.create_key(user=user, scopes=scopes)
        return self.world.principal(raw)

    def start(self, principal, agent: str, reviews: list[Any], budget: str, model: str = "gpt-4o-mini",
              headers: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"agent": agent, "input": {"reviews": reviews}, "budget_usd": budget, "model": model}
        return self.world.call("POST", "/v1/agents/runs", body, principal=principal, headers=headers)

    def show(self, principal, run_id: str) -> dict[str, Any]:
        return self.world.call("GET", f"/v1/agents/runs/{run_id}", principal=principal)

    def worker(self, **limits: Any) -> Worker:
        config = WorkerConfig(queue_url=self.queue_url, runs_table=self.world.env[RUNS.env_var],
                              budgets_table=self.world.env[BUDGETS.env_var], gateway_url="in-process",
                              region="us-east-1", worker_id="worker-test", wait_s=0, heartbeat_s=3600,
                              limits=Limits(**limits))
        return Worker(config, sqs=self.sqs, dynamodb=self.world.dynamodb, transport=self.gateway,
                      sleep=lambda s: None)

    def budget_item(self, run_id: str) -> dict[str, Any]:
        item = self.world.dynamodb.get_item(TableName=self.world.env[BUDGETS.env_var], ConsistentRead=True,
                                            Key={"pk": {"S": budgets.run_pk(run_id)}, "sk": {"S": budgets.RUN_SK}})
        return from_item(item["Item"])

    def run_item(self, run_id: str) -> dict[str, Any]:
        item = self.world.dynamodb.get_item(TableName=self.world.env[RUNS.env_var], ConsistentRead=True,
                                            Key={"runId": {"S": run_id}})
        return from_item(item["Item"])

    def usage(self, user: str = "alice") -> list[dict[str, Any]]:
        items = self.world.dynamodb.query(TableName=self.world.env[USAGE.env_var], KeyConditionExpression="pk = :u",
                                          ExpressionAttributeValues={":u": {"S": user}})["Items"]
        return [from_item(i) for i in items]

    def queued(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url or self.queue_url,
                                              AttributeNames=["ApproximateNumberOfMessages",
                                                              "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def provider_calls(self, text: str | None = None) -> list[dict[str, Any]]:
        calls = self.world.fake.calls_to("/v1/chat/completions")
        if text is None:
            return calls
        return [c for c in calls if text in str(c["body"]["messages"][-1].get("content"))]  # the user turn


@pytest.fixture
def service(world, monkeypatch) -> AgentService:
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="runs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="runs", Attributes={
        "VisibilityTimeout": "300",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
    monkeypatch.setenv(Env.RUNS_QUEUE_URL, queue)
    monkeypatch.setenv(iam.ENV, json.dumps(AGENT_PRINCIPALS))
    iam._mapping.cache_clear()
    wiring.reset()
    yield AgentService(world, queue, dlq)
    iam._mapping.cache_clear()


def _configure(monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wiring.reset()


# --- the runs API ----------------------------------------------------------------------------------------

def test_starting_a_run_writes_the_run_and_its_budget_together_and_queues_it(service):
    alice = service.key()
    resp = service.start(alice, "feedback-analysis", ENGLISH, "2.50")
    assert resp["statusCode"] == 202, resp["body"]
    run = body_of(resp)
    assert run["id"].startswith("run_") and run["status"] == "queued"
    assert headers_of(resp)["location"] == f"/v1/agents/runs/{run['id']}"
    assert (run["budget_usd"], run["cost_usd"], run["remaining_usd"]) == ("2.50", "0", "2.50")

    item = service.run_item(run["id"])
    assert (item["user"], item["agent"], item["status"], item["model"]) == ("alice", "feedback-analysis", "queued",
                                                                           "gpt-4o-mini")
    assert json.loads(item["inputJson"]) == {"reviews": ENGLISH}
    budget = service.budget_item(run["id"])
    assert (budget["limitUsd"], budget["remainingUsd"], budget["reservedUsd"], budget["spentUsd"]) == (
        Decimal("2.50"), Decimal("2.50"), 0, 0)
    [message] = service.sqs.receive_message(QueueUrl=service.queue_url, WaitTimeSeconds=0)["Messages"]
    assert json.loads(message["Body"]) == {"run_id": run["id"]}


@pytest.mark.parametrize("change, code", [
    ({"budget_usd": None}, "budget_usd"),
    ({"budget_usd": "0"}, "budget_usd"),
    ({"budget_usd": "50.01"}, "budget_usd"),  # above the configured cap
    ({"budget_usd": "lots"}, "budget_usd"),
    ({"agent": "shell"}, "agent"),
    ({"input": {"reviews": []}}, "input"),
    ({"input": "reviews"}, "input"),
    ({"model": "claude-sonnet-4-5-20250929"}, "model"),
    ({"model": "no-such-model"}, "model"),
])
def test_a_run_is_refused_without_a_valid_budget_agent_input_or_model(service, change, code):
    body = {"agent": "feedback-analysis", "input": {"reviews": ENGLISH}, "budget_usd": "1", **change}
    body = {k: v for k, v in body.items() if v is not None}
    resp = service.world.call("POST", "/v1/agents/runs", body, principal=service.key())
    assert resp["statusCode"] == 400, resp["body"]
    assert body_of(resp)["error"]["param"] == code
    assert service.queued() == 0


def test_the_budget_cap_is_configuration(service, monkeypatch):
    _configure(monkeypatch, **{Env.RUNS_MAX_BUDGET_USD: "5"})
    assert service.start(service.key(), "feedback-analysis", ENGLISH, "5.01")["statusCode"] == 400
    assert service.start(service.key(), "feedback-analysis", ENGLISH, "5")["statusCode"] == 202


def test_starting_a_run_needs_the_agents_run_scope(service):
    resp = service.start(service.key(scopes=("ai:complete",)), "feedback-analysis", ENGLISH, "1")
    assert resp["statusCode"] == 403
    assert service.queued() == 0


def test_only_the_owner_or_an_admin_may_read_a_run(service):
    alice = service.key()
    run_id = body_of(service.start(alice, "feedback-analysis", ENGLISH, "1"))["id"]
    assert body_of(service.show(alice, run_id))["id"] == run_id
    bob = service.key("bob")
    assert service.show(bob, run_id)["statusCode"] == 404
    admin = service.key("ops", scopes=("admin",))
    assert service.show(admin, run_id)["statusCode"] == 200
    assert service.show(alice, "run_" + "f" * 32)["statusCode"] == 404
    assert service.show(alice, "not-a-run-id")["statusCode"] == 404


def test_a_retried_start_with_the_same_idempotency_key_is_one_run(service):
    alice = service.key()
    first = service.start(alice, "feedback-analysis", ENGLISH, "1", headers={"idempotency-key": "batch-7"})
    again = service.start(alice, "feedback-analysis", ENGLISH, "1", headers={"idempotency-key": "batch-7"})
    assert (first["statusCode"], again["statusCode"]) == (202, 200)
    assert body_of(first)["id"] == body_of(again)["id"]
    assert service.queued() == 1


def test_a_run_that_cannot_be_queued_is_failed_and_costs_nothing(service, monkeypatch):
    _configure(monkeypatch, **{Env.RUNS_QUEUE_URL: service.queue_url + "-missing"})
    alice = service.key()
    resp = service.start(alice, "feedback-analysis", ENGLISH, "1")
    assert resp["statusCode"] == 503
    [item] = [from_item(i) for i in service.world.dynamodb.scan(TableName=service.world.env[RUNS.env_var])["Items"]]
    assert (item["status"], item["stopReason"]) == ("failed", "enqueue_failed")


# --- the incident, replayed ------------------------------------------------------------------------------

def _worst_case_of_one_naive_call(review: str) -> Decimal:
    """What the gateway reserves for one of the naive agent's calls: every byte of the request as an
    input token, plus max_tokens of output, at gpt-4's price."""
    body = {"model": "gpt-4", "messages": [{"role": "system", "content": classification_prompt()},
                                           {"role": "user", "content": f"Review:\n{review}"}],
            "max_tokens": 256, "temperature": 0}
    catalogue = Catalogue.load(None)
    price = catalogue.price("gpt-4")
    bound = estimate.chat_bound(body, price.id, price.max_output_tokens, 4096, anthropic=False)
    return catalogue.worst_case_cost(price, bound.input_tokens, bound.output_tokens)


def test_incident_replay_the_naive_agent_is_stopped_by_the_gateway_loop_guard(service):
    """The article's agent, on the article's model, with a run budget of $10: it classifies an English
    review, then gets an empty classification for a non-English one and retries it forever.

    Bound: the gateway's loop guard weighs a repeated pattern by money. This one sends ~$0.49 of input
    at worst case a call (gpt-4's $30/M), past TOLLGATE_LOOP_MAX_USD ($0.50) at once, so it is served
    TOLLGATE_LOOP_MIN_REPEATS (5) times in the window, then refused (429 loop_detected, x-should-retry:
    false, no provider call). So the provider sees at most 1 + 5 calls, and the run spends at most 6 ×
    the worst case the gateway reserves for one call (~$0.51: ~$3.06), in fact 6 × ~$0.12 = ~$0.73,
    against the article's 891 calls and $2,847. The run ends `failed`, stop reason `loop_detected`.
    """
    alice = service.key()
    english, spanish = ENGLISH[0], NON_ENGLISH[0]
    run_id = body_of(service.start(alice, "naive-feedback", [english, spanish], "10", model="gpt-4"))["id"]

    assert service.worker().poll_once() == run_id

    loop_max = 5  # the default loop_min_repeats: a pattern this dear is stopped there
    worst_case = _worst_case_of_one_naive_call(spanish)
    assert Decimal("0.40") < worst_case < Decimal("0.60")
    run = body_of(service.show(alice, run_id))
    assert (run["status"], run["stop_reason"]) == ("failed", "loop_detected")
    assert "Loop detected" in run["reason"]
    # calls: the English review once, the empty one 5 times, then one more the gateway refused
    assert len(service.provider_calls(english)) == 1
    assert len(service.provider_calls(spanish)) == loop_max
    assert len(service.provider_calls()) == 1 + loop_max
    assert run["calls"] == 1 + loop_max + 1 and service.gateway.requests == 1 + loop_max + 1
    # dollars: every call metered to the run and to alice, and bounded
    cost = Decimal(run["cost_usd"])
    records = service.usage()
    assert len(records) == 1 + loop_max and {r["runId"] for r in records} == {run_id}
    assert {r["requestType"] for r in records} == {"agent"}
    assert cost == sum(Decimal(r["costUsd"]) for r in records) > 0
    assert cost <= (1 + loop_max) * worst_case < Decimal(10)
    assert cost < Decimal("0.80")
    budget = service.budget_item(run_id)
    assert budget["reservedUsd"] == 0 and budget["spentUsd"] == cost
    # one alert for the operators, and the message is done with
    alerts = service.world.dynamodb.scan(TableName=service.world.env[BUDGETS.env_var],
                                         FilterExpression="begins_with(pk, :p)",
                                         ExpressionAttributeValues={":p": {"S": "ALERT#LOOP#"}})["Items"]
    assert len(alerts) == 1
    assert service.queued() == 0 and service.queued(service.dlq_url) == 0


def test_incident_replay_with_the_loop_guard_out_of_reach_the_run_budget_stops_it(service, monkeypatch):
    """Same agent, but the retries slip past the loop guard (configured out of reach here): the run's
    budget is the backstop. Bound: spent <= budget_usd ($2), so at most budget / cost of one call calls
    (16 at ~$0.12), whatever the agent does; in fact the gateway refuses the call whose worst case
    (~$0.51) no longer fits in what remains: 13 calls, ~$1.57."""
    _configure(monkeypatch, **{Env.LOOP_MAX_REPEATS: "100000", Env.LOOP_MAX_USD: "100000"})
    alice = service.key()
    run_id = body_of(service.start(alice, "naive-feedback", [NON_ENGLISH[0]], "2", model="gpt-4"))["id"]

    service.worker().poll_once()

    run = body_of(service.show(alice, run_id))
    assert (run["status"], run["stop_reason"]) == ("failed", "budget_exhausted")
    assert "budget of this agent run" in run["reason"]
    cost = Decimal(run["cost_usd"])
    assert Decimal(2) - _worst_case_of_one_naive_call(NON_ENGLISH[0]) < cost <= Decimal(2)
    records = service.usage()
    per_call = min(Decimal(r["costUsd"]) for r in records)
    assert len(service.provider_calls()) == len(records) <= int(Decimal(2) / per_call)
    assert service.budget_item(run_id)["reservedUsd"] == 0


# --- the guarded agent -----------------------------------------------------------------------------------

def test_guarded_agent_on_mixed_reviews_reports_with_non_english_unclassified_within_budget(service):
    alice = service.key()
    run_id = body_of(service.start(alice, "feedback-analysis", MIXED, "1"))["id"]

    assert service.worker().poll_once() == run_id

    run = body_of(service.show(alice, run_id))
    assert (run["status"], run["stop_reason"]) == ("succeeded", "completed"), run["reason"]
    result = run["result"]
    assert result["complete"] is True and result["report"]
    by_id = {r["id"]: r for r in result["reviews"]}
    assert {i for i, r in by_id.items() if r["category"] == "unclassified"} == NON_ENGLISH_IDS
    for rid in NON_ENGLISH_IDS:
        assert "no result" in by_id[rid]["reason"]
    assert result["summary"]["unclassified"] == [{"id": i, "reason": by_id[i]["reason"]} for i in ("r3", "r6")]
    # one classification per review, the empty ones included: never retried
    for review in MIXED:
        classify = [c for c in service.provider_calls(review["text"]) if "Classify" in c["body"]["messages"][0]["content"]]
        assert len(classify) == 1, review["id"]
    # steps: sentiment + classification per review, then the report; each a decision call and a tool call
    n = len(MIXED)
    assert run["iterations"] == 2 * n + 1 and run["calls"] == 2 * (2 * n + 1)
    assert len(service.provider_calls()) == run["calls"]
    cost = Decimal(run["cost_usd"])
    assert 0 < cost <= Decimal(1)
    assert cost == sum(Decimal(r["costUsd"]) for r in service.usage())
    assert service.queued() == 0


def test_a_run_whose_budget_is_too_small_stops_with_budget_exhausted_within_its_budget(service):
    alice = service.key()
    budget = Decimal("0.0006")  # a few gpt-4o-mini calls of the ~26 this batch needs
    run_id = body_of(service.start(alice, "feedback-analysis", MIXED, str(budget)))["id"]

    service.worker().poll_once()

    run = body_of(service.show(alice, run_id))
    assert (run["status"], run["stop_reason"]) == ("failed", "budget_exhausted")
    assert "budget of this agent run" in run["reason"]
    assert run["result"]["complete"] is False  # what was done is kept
    assert 0 < run["calls"] < 2 * (2 * len(MIXED) + 1)
    cost = Decimal(run["cost_usd"])
    assert 0 < cost <= budget
    item = service.budget_item(run_id)
    assert item["reservedUsd"] == 0 and item["remainingUsd"] >= 0 and item["spentUsd"] == cost
    # the refused call never reached the provider
    assert len(service.provider_calls()) == run["calls"] - 1


# --- SIGTERM ---------------------------------------------------------------------------------------------

@pytest.fixture
def sigterm_handler():
    """Installs the worker's SIGTERM handler (as agents/__main__.py does), restores the old one after."""
    previous = signal.getsignal(signal.SIGTERM)
    yield lambda worker: signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_mid_run_hands_the_run_back_and_it_resumes_without_paying_twice(service, sigterm_handler):
    alice = service.key()
    budget = Decimal("1")
    run_id = body_of(service.start(alice, "feedback-analysis", MIXED, str(budget)))["id"]
    worker = service.worker()
    sigterm_handler(worker)
    # ECS stops the task while the worker waits on its 5th gateway call (the decision of step 3)
    service.gateway.on_request = lambda n: os.kill(os.getpid(), signal.SIGTERM) if n == 5 else None

    assert worker.poll_once() == run_id
    assert worker.stopping.is_set()

    # the step in progress was finished (its tool call made), then the run was handed back
    interrupted = body_of(service.show(alice, run_id))
    assert interrupted["status"] == "interrupted" and "SIGTERM" in interrupted["reason"]
    assert (interrupted["iterations"], interrupted["calls"]) == (3, 6)
    checkpoint = json.loads(service.run_item(run_id)["checkpointJson"])
    assert checkpoint["calls"] == 6 and len([r for r in checkpoint["results"].values() if r]) == 2
    spent_before = Decimal(interrupted["cost_usd"])
    assert spent_before > 0
    # a stopping worker takes nothing more
    assert worker.poll_once() is not None and service.queued() == 1
    assert body_of(service.show(alice, run_id))["status"] == "interrupted"

    # the message is visible again: another worker takes it and resumes from the checkpoint
    service.gateway.on_request = None
    assert service.worker().poll_once() == run_id
    run = body_of(service.show(alice, run_id))
    assert (run["status"], run["stop_reason"]) == ("succeeded", "completed")
    assert run["attempts"] == 2
    n = len(MIXED)
    assert run["iterations"] == 2 * n + 1
    # nothing repeated: the same calls as an uninterrupted run, each step paid for once
    assert run["calls"] == len(service.provider_calls()) == len(service.usage()) == 2 * (2 * n + 1)
    for review in MIXED:
        tools = [c for c in service.provider_calls(review["text"]) if "Review:" in c["body"]["messages"][-1]["content"]]
        assert len(tools) == 2, review["id"]  # its sentiment and its classification, once each
    cost = Decimal(run["cost_usd"])
    assert spent_before < cost <= budget
    assert cost == sum(Decimal(r["costUsd"]) for r in service.usage())
    assert service.queued() == 0


def test_a_duplicate_message_for_a_finished_run_is_dropped_without_a_call(service):
    alice = service.key()
    run_id = body_of(service.start(alice, "feedback-analysis", ENGLISH[:1], "1"))["id"]
    service.worker().poll_once()
    calls = len(service.provider_calls())
    service.sqs.send_message(QueueUrl=service.queue_url, MessageBody=json.dumps({"run_id": run_id}))
    assert service.worker().poll_once() == run_id
    assert len(service.provider_calls()) == calls and service.queued() == 0
    assert body_of(service.show(alice, run_id))["status"] == "succeeded"


def test_a_run_held_by_a_live_worker_is_not_taken_twice(service):
    alice = service.key()
    run_id = body_of(service.start(alice, "feedback-analysis", ENGLISH[:1], "1"))["id"]
    first = service.worker()
    first.store.worker_id = "other-worker"
    assert first.store.claim(run_id, "2000-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z") is not None
    service.worker().poll_once()
    assert service.provider_calls() == [] and service.run_item(run_id)["workerId"] == "other-worker"
    assert contract.RUNNING == service.run_item(run_id)["status"]
