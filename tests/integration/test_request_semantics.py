"""Issue 9's semantic faults, each with the values a client sees: an Idempotency-Key names one request,
IAM routes honour only signed on-behalf-of and run-id headers, rate-limit and budget headers are exact
(or absent, never wrong), a provider's retry hint reaches the client in both forms, and a provider
over-reporting usage cannot push spend past a limit."""
from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.integration.concurrency import independent_gateway, principal, run_containers
from tests.integration.test_budgets import _alerts_queue, _counter, _usage
from tests.integration.world import body_of, headers_of
from tollgate import budgets, wiring
from tollgate.errors import RateLimited, TollgateError
from tollgate.providers.base import Usage
from tollgate.service import MeteredRequest
from tollgate.settings import Settings
from tollgate.store.counters import minute_attrs

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
FROZEN = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)


def _chat(text="hello", **extra):
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def _distinct(n: int) -> str:
    """A different prompt for each n, in letters: the loop guard counts prompts differing only in numbers
    or ids as the same request."""
    return "say " + " ".join("ghijklmnopqrstuvwxyz"[int(d) + 10 * k % 20] for k, d in enumerate(str(n)))


# --- 1. Idempotency-Key bound to (route, body) -------------------------------------------------------

def test_a_reused_key_with_another_body_is_422_and_the_same_body_is_replayed(world):
    raw, _ = world.create_key()
    who = world.principal(raw)
    first = world.call("POST", CHAT, _chat("first prompt", max_tokens=20), principal=who,
                       headers={"Idempotency-Key": "k-1"})
    other = world.call("POST", CHAT, _chat("another prompt", max_tokens=20), principal=who,
                       headers={"Idempotency-Key": "k-1"})
    # the same request, keys in another order and other whitespace: the same canonical body
    same = world.call("POST", CHAT, '{"max_tokens": 20,  "messages": [{"content": "first prompt", "role": "user"}], '
                      '"model": "gpt-4o-mini"}', principal=who, headers={"Idempotency-Key": "k-1"})
    assert first["statusCode"] == 200
    assert other["statusCode"] == 422
    assert body_of(other)["error"]["code"] == "idempotency_key_reused"
    assert body_of(other)["error"]["type"] == "invalid_request_error"
    assert headers_of(other)["x-should-retry"] == "false"
    assert same["statusCode"] == 200 and headers_of(same)["x-tollgate-idempotent-replay"] == "true"
    assert body_of(same) == body_of(first)
    assert len(world.fake.calls) == 1 and len(_usage(world)) == 1


def test_a_key_reused_on_another_route_is_422_in_that_routes_shape(world):
    raw, _ = world.create_key()
    who = world.principal(raw)
    assert world.call("POST", CHAT, _chat(max_tokens=20), principal=who,
                      headers={"Idempotency-Key": "k-2"})["statusCode"] == 200
    anthropic = world.call("POST", MESSAGES, {"model": "claude-haiku-4-5", "max_tokens": 20,
                                              "messages": [{"role": "user", "content": "hello"}]},
                           principal=who, headers={"Idempotency-Key": "k-2"})
    assert anthropic["statusCode"] == 422
    body = body_of(anthropic)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"].get("code") == "idempotency_key_reused" and "Idempotency-Key" in body["error"]["message"]
    assert len(world.fake.calls) == 1


def test_a_key_in_progress_is_409_for_the_same_body_and_422_for_another(world):
    settings = Settings.from_env()
    gateway, provider = independent_gateway(settings, seed=11)
    who = principal("olga", "sk-inprogress1")
    body = _chat("slow one", max_tokens=50)
    req = MeteredRequest("in-flight-1", CHAT, who, body, idempotency_key="busy")
    price = gateway.catalogue.price("gpt-4o-mini")
    plan = gateway._plan(req, price, gateway._bound("chat.completions", price, body), FROZEN)
    gateway.ledger.reserve(plan)  # the first request is at the provider now
    with pytest.raises(TollgateError) as same:
        gateway.handle(MeteredRequest("retry-1", CHAT, who, dict(body), idempotency_key="busy"))
    with pytest.raises(TollgateError) as other:
        gateway.handle(MeteredRequest("retry-2", CHAT, who, _chat("different", max_tokens=50), idempotency_key="busy"))
    assert (same.value.status, same.value.code) == (409, "idempotency_in_progress")
    assert (other.value.status, other.value.code) == (422, "idempotency_key_reused")
    assert provider.calls == 0


# --- 4. X-Tollgate-On-Behalf-Of and X-Tollgate-Run-Id must be signed -----------------------------------

AGENT_ROLE = "arn:aws:sts::123456789012:assumed-role/tollgate-agent-task/abc123"


@pytest.fixture
def iam_world(world, monkeypatch):
    monkeypatch.setenv("TOLLGATE_IAM_PRINCIPALS", json.dumps({
        "tollgate-agent-task": {"scopes": ["ai:complete", "act-as"], "user": "agent-service"}}))
    wiring.reset()
    return world


def _captured_signature(signed: str) -> str:
    return (f"AWS4-HMAC-SHA256 Credential=ASIATESTING/20261127/us-east-1/execute-api/aws4_request, "
            f"SignedHeaders={signed}, Signature={'0' * 64}")


@pytest.mark.parametrize("header", ["x-tollgate-on-behalf-of", "x-tollgate-run-id"])
def test_an_unsigned_on_behalf_of_or_run_id_header_is_refused(iam_world, header):
    headers = {"x-tollgate-on-behalf-of": "alice", "x-tollgate-run-id": "run-1",
               # API Gateway verified this signature over host and x-amz-date only, and passed the rest on
               "Authorization": _captured_signature(
                   "host;x-amz-date" + ("" if header == "x-tollgate-on-behalf-of" else ";x-tollgate-on-behalf-of")),
               "X-Amz-Date": "20261127T143005Z"}
    resp = iam_world.call("POST", "/internal/v1/chat/completions", _chat(max_tokens=10),
                          identity={"userArn": AGENT_ROLE}, headers=headers)
    assert resp["statusCode"] == 403
    error = body_of(resp)["error"]
    assert error["code"] == "unsigned_header" and header in error["message"]
    assert iam_world.fake.calls == []


def test_signed_on_behalf_of_is_honoured(iam_world):
    resp = iam_world.call("POST", "/internal/v1/chat/completions", _chat(max_tokens=10),
                          identity={"userArn": AGENT_ROLE}, headers={"x-tollgate-on-behalf-of": "alice"})
    assert resp["statusCode"] == 200, resp["body"]
    assert [u["pk"] for u in _usage(iam_world, "alice")] == ["alice"]


# --- 5. exact rate-limit and budget headers -----------------------------------------------------------

def _calls(gateway):
    names: list[str] = []
    gateway.ledger.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: names.append(model.name))
    return names


def test_rpm_5_reports_4_3_2_1_0_then_429_in_two_dynamodb_calls_each(world):
    gateway, _ = independent_gateway(Settings.from_env(), seed=21, clock=lambda: FROZEN)
    who = principal("pia", "sk-rpmfive01", rpm=5, tpm=10_000)
    calls = _calls(gateway)
    replies = [gateway.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat(_distinct(i), max_tokens=20)))
               for i in range(5)]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies] == ["4", "3", "2", "1", "0"]
    assert calls.count("TransactWriteItems") == 10  # reserve + settle, no read, no retry
    with pytest.raises(RateLimited) as refused:
        gateway.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat(_distinct(5), max_tokens=20)))
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    # the window: attributes of this minute on the key's hour item
    window = _counter(world, budgets.principal_pk("sk-rpmfive01"), budgets.hour_sk(FROZEN))
    requests_left, tokens_left = minute_attrs(FROZEN.minute)
    # tokens: limit - used, where used is what each answer reported (the unused reservation given back)
    assert [int(r.headers["x-ratelimit-remaining-tokens"]) for r in replies][-1] == window[tokens_left]
    assert window[requests_left] == 0


def test_a_fresh_key_reports_59_of_60_and_its_exact_budget(world):
    gateway, _ = independent_gateway(Settings.from_env(), seed=22, clock=lambda: FROZEN)
    who = principal("quinn", "sk-fresh6001", rpm=60, key_monthly_usd=Decimal("0.50"))
    reply = gateway.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat(max_tokens=30)))
    assert reply.headers["x-ratelimit-remaining-requests"] == "59"
    key_month = _counter(world, budgets.principal_pk("sk-fresh6001"), budgets.month_sk(FROZEN))
    assert key_month["remainingUsd"] == Decimal("0.50") - reply.cost
    assert Decimal(reply.headers["x-tollgate-budget-remaining-usd"]) == key_month["remainingUsd"]


def test_another_container_learns_the_exact_values_in_one_extra_call(world):
    settings = Settings.from_env()
    first, _ = independent_gateway(settings, seed=23, clock=lambda: FROZEN)
    who = principal("rosa", "sk-twocont01", rpm=10, key_monthly_usd=Decimal("0.50"))
    a = first.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat("a", max_tokens=30)))
    second, _ = independent_gateway(settings, seed=24, clock=lambda: FROZEN)  # a cold container
    calls = _calls(second)
    b = second.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat("b", max_tokens=30)))
    c = second.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat("c", max_tokens=30)))
    assert [r.headers["x-ratelimit-remaining-requests"] for r in (a, b, c)] == ["9", "8", "7"]
    assert Decimal(c.headers["x-tollgate-budget-remaining-usd"]) == Decimal("0.50") - a.cost - b.cost - c.cost
    assert calls.count("TransactWriteItems") == 3 + 2  # b: one wrong guess, then reserve and settle; c: 2


def test_eight_concurrent_containers_report_exact_or_no_remaining_values(world):
    settings = Settings.from_env()
    containers, per_container, rpm = 8, 5, 40
    reported: list[int] = []
    omitted: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(containers)

    def container(n: int) -> None:
        gateway, _ = independent_gateway(settings, seed=100 + n, clock=lambda: FROZEN)
        who = principal("sol", "sk-eightway1", rpm=rpm, tpm=1_000_000)
        start.wait()
        for i in range(per_container):
            reply = gateway.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat(_distinct(100 * n + i), max_tokens=20)))
            with lock:
                if "x-ratelimit-remaining-requests" in reply.headers:
                    reported.append(int(reply.headers["x-ratelimit-remaining-requests"]))
                else:
                    omitted.append(reply.headers["x-request-id"])

    run_containers(container, containers)
    assert len(reported) + len(omitted) == containers * per_container == rpm
    # Each reported value is the exact count left when that request took its place: all distinct, in range.
    assert len(set(reported)) == len(reported) and set(reported) <= set(range(rpm))
    assert reported, "the request that created the window knows its exact value"


def test_a_contended_budget_still_warns_exactly_when_it_enters_its_warning_zone(world, monkeypatch):
    messages = _alerts_queue(world)
    gateway, _ = independent_gateway(Settings.from_env(), seed=31, clock=lambda: FROZEN)
    gateway.alerts = wiring.alerts()
    monkeypatch.setattr(gateway.ledger._seen, "contended", lambda key: True)  # as if other containers kept at it
    limit = Decimal("0.001")
    who = principal("uma", "sk-contend01", key_monthly_usd=limit)
    floor = limit * (1 - Settings.from_env().warning_threshold)
    states, truth = [], []
    for i in range(40):
        try:
            reply = gateway.handle(MeteredRequest(str(uuid.uuid4()), CHAT, who, _chat(_distinct(i), max_tokens=100)))
        except TollgateError as refused:
            assert refused.code == "insufficient_quota"
            break
        assert "x-tollgate-budget-remaining-usd" not in reply.headers  # not proved exact: not reported
        assert "x-ratelimit-remaining-requests" not in reply.headers
        states.append(reply.headers["x-tollgate-budget-state"])
        left = _counter(world, budgets.principal_pk("sk-contend01"), budgets.month_sk(FROZEN))["remainingUsd"]
        truth.append("warning" if left < floor else "ok")
    assert states == truth and "ok" in states and "warning" in states
    assert len([m for m in messages() if m["type"] == "budget_warning"]) == 1


# --- 6. a provider's retry hint, in both forms ----------------------------------------------------------

@pytest.mark.parametrize("path,model", [(CHAT, "gpt-4o-mini"), (MESSAGES, "claude-haiku-4-5")])
def test_a_provider_429_with_retry_after_ms_answers_both_retry_headers(world, path, model):
    raw, _ = world.create_key()
    resp = world.call("POST", path, {"model": model, "max_tokens": 20, "messages": [
        {"role": "user", "content": "[[fake:status=429]] [[fake:retry_after_ms=1500]]"}]}, principal=world.principal(raw))
    assert resp["statusCode"] == 503
    headers = headers_of(resp)
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("2", "1500")


# --- 8. a provider over-reporting usage ---------------------------------------------------------------

def test_an_over_reporting_provider_cannot_push_spend_past_the_limit_and_alerts_once(world):
    messages = _alerts_queue(world)
    limit = Decimal("0.0005")
    raw, record = world.create_key(user="tara", monthly_budget_usd=limit)
    who = world.principal(raw)
    openai = wiring.providers()["openai"]
    honest = openai.call

    def over_reporting(operation, body, *, api_key):
        result = honest(operation, body, api_key=api_key)
        return replace(result, usage=Usage(input_tokens=result.usage.input_tokens, output_tokens=10_000_000))
    openai.call = over_reporting
    try:
        answers = [world.call("POST", CHAT, _chat(_distinct(i), max_tokens=50), principal=who) for i in range(4)]
    finally:
        openai.call = honest
    ok = [a for a in answers if a["statusCode"] == 200]
    assert ok and all(a["statusCode"] in (200, 429) for a in answers)

    key_month = _counter(world, budgets.principal_pk(record.key_id), budgets.month_sk(datetime.now(timezone.utc)))
    records = _usage(world, "tara")
    assert key_month["spentUsd"] <= limit and key_month["reservedUsd"] == 0
    assert key_month["spentUsd"] == sum(Decimal(r["costUsd"]) for r in records)
    for r in records:  # the provider's figures as reported, flagged, charged at most the worst case
        assert r["completionTokens"] == 10_000_000 and r["usageAnomaly"] is True
        assert Decimal(r["reportedCostUsd"]) > Decimal(r["costUsd"]) > 0
    assert {Decimal(headers_of(a)["x-tollgate-cost-usd"]) for a in ok} == {Decimal(r["costUsd"]) for r in records}
    shown = body_of(world.call("GET", "/v1/usage", principal=who))["records"]
    assert shown and all(r["usage_anomaly"] is True and r["completion_tokens"] == 10_000_000
                         and Decimal(r["reported_cost_usd"]) > Decimal(r["cost_usd"]) for r in shown)
    anomalies = [m for m in messages() if m["type"] == "usage_anomaly"]
    assert len(anomalies) == 1 and anomalies[0]["output_tokens"] == 10_000_000
