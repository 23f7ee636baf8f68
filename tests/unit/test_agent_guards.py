"""The agent's own guards, its ReAct parsing and its client of the gateway, with a scripted model.

The integration tests (tests/integration/test_agents.py) run the same agents through the real gateway
handler and the fake provider; here the model's replies are scripted, so every guard can be tripped.
"""
from __future__ import annotations

import functools
import json
import re
from decimal import Decimal
from typing import Any, Callable

import pytest

from agents import contract, feedback
from agents.base import Interrupted, RunContext
from agents.feedback import CLASSIFY_PROMPT, EMPTY_REASON, REPORT_PROMPT, SENTIMENT_PROMPT, FeedbackAnalysisAgent
from agents.gateway import BudgetExhausted, Completion, GatewayClient, LoopRefused, SigV4Transport, StepFailed
from agents.guards import Guards, GuardTripped, Limits
from agents.react import parse_decision

REVIEWS = [{"id": "1", "text": "The app crashes when I upload a photo."},
           {"id": "2", "text": "I was charged twice this month."},
           {"id": "3", "text": "La aplicación se cierra al subir una foto."}]


# --- a scripted model -----------------------------------------------------------------------------------

def kind_of(messages: list[dict[str, str]]) -> str:
    system = messages[0]["content"]
    return {SENTIMENT_PROMPT: "sentiment", CLASSIFY_PROMPT: "classify", REPORT_PROMPT: "report"}.get(system, "controller")


def review_of(messages: list[dict[str, str]]) -> str:
    return messages[-1]["content"].removeprefix("Review:\n")


def suggested(messages: list[dict[str, str]]) -> str:
    """The controller prompt's suggested step, echoed back in ReAct format (a model that agrees)."""
    tail = messages[-1]["content"].split("Suggested next step:\n", 1)[1]
    return "Thought: following the plan.\n" + tail


def sensible(kind: str, messages: list[dict[str, str]]) -> str | Exception:
    text = review_of(messages)
    if kind == "controller":
        return suggested(messages)
    if "aplicación" in text:  # the article's incident: nothing for a non-English review
        return ""
    if kind == "sentiment":
        return "negative"
    if kind == "classify":
        return "billing" if "charged" in text else "bug"
    return "Two reviews report a crash and a double charge; one could not be classified."


class ScriptedLLM:
    def __init__(self, answer: Callable[[str, list[dict[str, str]]], str | Exception] = sensible):
        self.answer = answer
        self.calls = 0
        self.log: list[tuple[str, str]] = []

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float | None = 0) -> Completion:
        self.calls += 1
        kind = kind_of(messages)
        self.log.append((kind, review_of(messages) if kind in ("sentiment", "classify") else ""))
        out = self.answer(kind, messages)
        if isinstance(out, Exception):
            raise out
        return Completion(out, Decimal("0.001"))

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.log if k == kind)


def run(llm: ScriptedLLM, limits: Limits = Limits(), reviews=REVIEWS, **kwargs: Any):
    ctx = RunContext(run_id="run_" + "0" * 32, user="alice", input={"reviews": reviews}, llm=llm,  # type: ignore[arg-type]
                     limits=limits, **kwargs)
    return FeedbackAnalysisAgent().run(ctx)


# --- parsing ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Thought: next.\nAction: classify_issue\nAction Input: 3", ("classify_issue", "3")),
    ("Action: classify_issue[3]", ("classify_issue", "3")),
    ("Action: extract_sentiment(\"r-2\")", ("extract_sentiment", "r-2")),
    ("**Action:** write_report\n**Action Input:** -", ("write_report", None)),
    ("Action: classify_issue\nAction Input: {\"review_id\": \"7\"}", ("classify_issue", "7")),
    ("Action: write_report", ("write_report", None)),
    ("lorem ipsum dolor sit amet", None),
    ("", None),
])
def test_parse_decision(text, expected):
    assert parse_decision(text) == expected


# --- the guards on their own -----------------------------------------------------------------------------

def test_max_iterations():
    guards = Guards(Limits(max_iterations=3))
    guards.start()
    for _ in range(3):
        guards.before_step()
    with pytest.raises(GuardTripped) as stop:
        guards.before_step()
    assert stop.value.stop_reason == contract.MAX_ITERATIONS


def test_identical_consecutive_calls_trip_on_the_one_past_the_limit():
    guards = Guards(Limits(max_identical_calls=3))
    for _ in range(3):
        guards.on_tool_call("classify_issue", "1")
    guards.on_tool_call("classify_issue", "2")  # another call resets the count
    for _ in range(2):
        guards.on_tool_call("classify_issue", "2")
    with pytest.raises(GuardTripped) as stop:
        guards.on_tool_call("classify_issue", "2")  # the fourth in a row
    assert stop.value.stop_reason == contract.REPEATED_TOOL_CALL


def test_consecutive_failures_reset_by_a_success():
    guards = Guards(Limits(max_consecutive_failures=3))
    guards.on_result(False)
    guards.on_result(False)
    guards.on_result(True)
    guards.on_result(False)
    guards.on_result(False)
    with pytest.raises(GuardTripped) as stop:
        guards.on_result(False)
    assert stop.value.stop_reason == contract.CONSECUTIVE_FAILURES


def test_wall_clock_counts_time_from_earlier_attempts():
    now = [100.0]
    guards = Guards(Limits(wall_clock_s=60), monotonic=lambda: now[0])
    guards.state.elapsed_s = 50  # from the checkpoint of an interrupted attempt
    guards.start()
    guards.before_step()
    now[0] += 11
    with pytest.raises(GuardTripped) as stop:
        guards.before_step()
    assert stop.value.stop_reason == contract.WALL_CLOCK


# --- the feedback agent ----------------------------------------------------------------------------------

def test_empty_classification_is_an_answer_and_is_never_retried():
    llm = ScriptedLLM()
    outcome = run(llm)
    assert (outcome.status, outcome.stop_reason) == (contract.SUCCEEDED, contract.COMPLETED)
    by_id = {r["id"]: r for r in outcome.result["reviews"]}
    assert by_id["1"]["category"] == "bug" and by_id["2"]["category"] == "billing"
    assert by_id["3"] == {"id": "3", "sentiment": "unknown", "category": "unclassified", "reason": EMPTY_REASON}
    assert outcome.result["summary"]["unclassified"] == [{"id": "3", "reason": EMPTY_REASON}]
    # one classification per review, the empty one included; then one report
    assert [r for k, r in llm.log if k == "classify"] == [r["text"] for r in REVIEWS]
    assert llm.count("report") == 1
    assert outcome.result["complete"] and outcome.result["report"]
    # every step was the model's decision (it answered in the ReAct format)
    assert outcome.result["decisions"] == {"model": 7, "plan": 0}
    assert outcome.iterations == 7 and llm.calls == 14


def test_an_off_protocol_model_is_not_asked_twice_the_plan_takes_the_step():
    llm = ScriptedLLM(lambda kind, m: "lorem ipsum" if kind == "controller" else sensible(kind, m))
    outcome = run(llm)
    assert outcome.status == contract.SUCCEEDED
    assert outcome.result["decisions"] == {"model": 0, "plan": 7}
    assert llm.count("controller") == 7


def test_a_model_choosing_the_same_call_again_and_again_is_stopped():
    stuck = "Thought: try again.\nAction: classify_issue\nAction Input: 3"
    llm = ScriptedLLM(lambda kind, m: stuck if kind == "controller" else sensible(kind, m))
    outcome = run(llm, Limits(max_identical_calls=3))
    assert (outcome.status, outcome.stop_reason) == (contract.FAILED, contract.REPEATED_TOOL_CALL)
    assert llm.count("classify") == 3  # the fourth identical call was never made
    assert outcome.result["complete"] is False and outcome.result["report"] is None


def test_consecutive_tool_failures_stop_the_run():
    def failing(kind, m):
        return StepFailed("provider down") if kind in ("sentiment", "classify") else sensible(kind, m)

    llm = ScriptedLLM(failing)
    outcome = run(llm, Limits(max_consecutive_failures=3))
    assert (outcome.status, outcome.stop_reason) == (contract.FAILED, contract.CONSECUTIVE_FAILURES)
    assert llm.count("sentiment") == 3


def test_max_iterations_stop_with_partial_results():
    llm = ScriptedLLM()
    outcome = run(llm, Limits(max_iterations=4))
    assert (outcome.status, outcome.stop_reason) == (contract.FAILED, contract.MAX_ITERATIONS)
    assert outcome.iterations == 4
    assert outcome.result["summary"]["analysed"] == 2


def test_wall_clock_stops_the_run():
    outcome = run(ScriptedLLM(), Limits(wall_clock_s=0))
    assert (outcome.status, outcome.stop_reason) == (contract.FAILED, contract.WALL_CLOCK)


def test_a_gateway_refusal_ends_the_run_with_what_was_done():
    llm = ScriptedLLM()
    real = llm.answer
    llm.answer = lambda kind, m: BudgetExhausted("no money", status=429) if llm.calls > 5 else real(kind, m)
    outcome = run(llm)
    assert (outcome.status, outcome.stop_reason) == (contract.FAILED, contract.BUDGET_EXHAUSTED)
    assert "no money" in outcome.reason
    assert llm.calls == 6


def test_interrupted_run_resumes_from_its_checkpoint_without_repeating_a_step(monkeypatch):
    # A still clock: the checkpoint at the interruption equals the last one saved, elapsed_s included,
    # however long a loaded machine takes between the two.
    monkeypatch.setattr(feedback, "Guards", functools.partial(Guards, monotonic=lambda: 0.0))
    saved: list[dict[str, Any]] = []
    llm = ScriptedLLM()
    with pytest.raises(Interrupted) as stop:
        run(llm, save=lambda cp, it: saved.append(json.loads(json.dumps(cp))), should_stop=lambda: len(saved) >= 3)
    assert stop.value.iterations == 3 and stop.value.checkpoint == saved[-1]
    first = list(llm.log)

    resumed = ScriptedLLM()
    resumed.calls = stop.value.checkpoint["calls"]
    outcome = run(resumed, checkpoint=stop.value.checkpoint)
    assert outcome.status == contract.SUCCEEDED and outcome.iterations == 7
    tool_calls = [c for c in first + resumed.log if c[0] != "controller"]
    assert len(tool_calls) == len(set(tool_calls)) == 7  # each tool call made once, across both attempts
    baseline = ScriptedLLM()
    run(baseline)
    assert resumed.calls == baseline.calls  # the call counter continues: idempotency keys never repeat


# --- the gateway client ----------------------------------------------------------------------------------

class FakeTransport:
    def __init__(self, replies: list[tuple[int, dict[str, str], dict]]):
        self.replies = list(replies)
        self.requests: list[tuple[str, str, dict[str, str], dict]] = []

    def __call__(self, method, path, headers, body):
        self.requests.append((method, path, headers, json.loads(body)))
        status, rheaders, rbody = self.replies.pop(0)
        return status, rheaders, json.dumps(rbody).encode()


OK = (200, {"x-tollgate-cost-usd": "0.0012"}, {"choices": [{"message": {"content": "bug"}}]})


def _error(status: int, code: str, **headers: str):
    return status, headers, {"error": {"message": f"refused: {code}", "type": "x", "code": code}}


def test_client_sends_who_which_run_and_an_idempotency_key_per_call():
    transport = FakeTransport([OK, OK])
    client = GatewayClient(transport, user="alice", run_id="run_1", model="gpt-4o-mini", first_call=4)
    assert client.chat([{"role": "user", "content": "x"}], max_tokens=5).text == "bug"
    client.chat([{"role": "user", "content": "x"}], max_tokens=5)
    (m, path, h1, body), (_, _, h2, _) = transport.requests
    assert (m, path) == ("POST", "/internal/v1/chat/completions")
    assert h1["x-tollgate-on-behalf-of"] == "alice" and h1["x-tollgate-run-id"] == "run_1"
    assert (h1["idempotency-key"], h2["idempotency-key"]) == ("run_1/5", "run_1/6")
    assert body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
                    "temperature": 0}
    assert client.spent == Decimal("0.0024") and client.calls == 6


@pytest.mark.parametrize("reply, error", [
    (_error(429, "insufficient_quota", **{"x-should-retry": "false", "x-tollgate-budget-level": "run"}), BudgetExhausted),
    (_error(429, "loop_detected", **{"x-should-retry": "false"}), LoopRefused),
])
def test_budget_and_loop_refusals_are_fatal_and_not_retried(reply, error):
    transport = FakeTransport([reply, OK])
    client = GatewayClient(transport, user="alice", run_id="run_1", model="m", sleep=lambda s: None)
    with pytest.raises(error) as raised:
        client.chat([{"role": "user", "content": "x"}], max_tokens=5)
    assert raised.value.fatal and len(transport.requests) == 1


def test_provider_failures_are_retried_with_the_same_key_then_the_step_fails():
    transport = FakeTransport([_error(502, "provider_error")] * 4)
    client = GatewayClient(transport, user="alice", run_id="run_1", model="m", sleep=lambda s: None, max_attempts=4)
    with pytest.raises(StepFailed) as raised:
        client.chat([{"role": "user", "content": "x"}], max_tokens=5)
    assert not raised.value.fatal
    assert {r[2]["idempotency-key"] for r in transport.requests} == {"run_1/1"}
    assert len(transport.requests) == 4


def test_a_retry_that_succeeds_returns_the_completion():
    transport = FakeTransport([_error(503, "unavailable"), OK])
    client = GatewayClient(transport, user="a", run_id="r", model="m", sleep=lambda s: None)
    assert client.chat([{"role": "user", "content": "x"}], max_tokens=5).text == "bug"


def test_sigv4_transport_signs_what_the_api_gateway_emulator_accepts():
    """The signature is checked by the local emulator's verifier, as API Gateway's AWS_IAM auth would."""
    from botocore.credentials import Credentials

    from local.emulator import HttpRequest, IamCredential, verify_sigv4

    sent: dict[str, Any] = {}

    class Response:
        status, headers, data = 200, {"content-type": "application/json"}, b"{}"

    class Http:
        def request(self, method, url, body, headers, timeout):
            sent.update(method=method, url=url, body=body, headers=headers)
            return Response()

    transport = SigV4Transport("http://127.0.0.1:8123/prod", Credentials("AKIDEXAMPLE", "secret"), "eu-west-1")
    transport.http = Http()
    body = json.dumps({"model": "m"}).encode()
    transport("POST", "/internal/v1/chat/completions", {"content-type": "application/json",
                                                        "x-tollgate-run-id": "run_1"}, body)
    assert sent["url"] == "http://127.0.0.1:8123/prod/internal/v1/chat/completions"
    assert re.match(r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request",
                    sent["headers"]["Authorization"])
    request = HttpRequest("POST", "/prod/internal/v1/chat/completions", list(sent["headers"].items()), body)
    role = IamCredential("secret", "arn:aws:sts::123456789012:assumed-role/agent-task/x", "AROA:x")
    assert verify_sigv4(request, {"AKIDEXAMPLE": role}, "eu-west-1")[0] == "AKIDEXAMPLE"
    tampered = HttpRequest("POST", "/prod/internal/v1/chat/completions", list(sent["headers"].items()), body + b" ")
    with pytest.raises(Exception):
        verify_sigv4(tampered, {"AKIDEXAMPLE": role}, "eu-west-1")


# --- the contract with the gateway and the runs API ------------------------------------------------------

def test_the_worker_contract_matches_the_gateway_and_the_runs_api():
    from handlers import gateway
    from tollgate import budgets, runs, schema
    from tollgate.auth import iam

    from agents import registry

    assert contract.RUNS_TABLE_ENV == schema.RUNS.env_var and contract.RUNS_KEY == schema.RUNS.partition_key
    assert contract.BUDGETS_TABLE_ENV == schema.BUDGETS.env_var
    assert contract.RUNS_QUEUE_URL_ENV == schema.Env.RUNS_QUEUE_URL
    assert contract.run_budget_pk("run_x") == budgets.run_pk("run_x") and contract.RUN_BUDGET_SK == budgets.RUN_SK
    assert (contract.QUEUED, contract.RUNNING, contract.INTERRUPTED, contract.SUCCEEDED, contract.FAILED) == runs.STATUSES
    assert set(contract.TERMINAL) == set(runs.TERMINAL)
    for name in ("COMPLETED", "BUDGET_EXHAUSTED", "LOOP_DETECTED", "MAX_ITERATIONS", "REPEATED_TOOL_CALL",
                 "CONSECUTIVE_FAILURES", "WALL_CLOCK", "GATEWAY_ERROR", "AGENT_ERROR"):
        assert getattr(contract, name) == getattr(runs, name) and getattr(runs, name) in runs.STOP_REASONS
    assert set(registry.AGENTS) == set(runs.AGENTS)
    assert contract.ON_BEHALF_OF_HEADER == iam.ON_BEHALF_OF and contract.RUN_ID_HEADER == gateway.RUN_ID_HEADER
    from tollgate import routes

    assert routes.match("POST", contract.CHAT_PATH)[0].auth == routes.IAM
