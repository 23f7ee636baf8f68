"""The metrics the handlers emit are exactly the metrics the dashboards and alarms read.

Requests of every kind go through the local stack (real handlers, in-process); their EMF output is
captured from stdout and compared with the metrics of the synthesised TollgateMonitoring template (both
dashboards, every alarm, the anomaly detector). A metric renamed, or a dimension added or dropped, on
either side fails here: CloudWatch would show an empty graph and an alarm that never fires.
"""
from __future__ import annotations

import json
import re
import uuid

import pytest
import requests
from tollgate import metric_names as mn

from local.lambda_context import LambdaContext
from tests.e2e.logcapture import captured, emitted_metrics
from tests.infra.dashboards import referenced_metrics

ALL_METRICS = {mn.REQUESTS, mn.TOKENS, mn.COST_USD, mn.ERRORS, mn.BUDGET_REFUSALS, mn.RATE_LIMIT_REFUSALS,
               mn.LOOP_DETECTIONS, mn.PROVIDER_LATENCY_MS, mn.RESERVATIONS_RELEASED, mn.TIME_TO_FIRST_TOKEN_MS}
ALL_METRICS |= {mn.RECONCILIATION_DRIFT_PCT, mn.RECONCILIATION_MISSING}  # issue 17: the daily reconciliation
ALL_METRICS |= {mn.CACHE_HITS, mn.CACHE_MISSES}  # issue 17 item 1: the response cache
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "bedrock": "us.amazon.nova-lite-v1:0"}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "bedrock": "/v1/chat/completions"}


@pytest.fixture(scope="module")
def monitoring_template(synthesis) -> dict:
    from stacks.monitoring_stack import MONITORING_STACK_NAME

    return synthesis.template(MONITORING_STACK_NAME)


class Client:
    def __init__(self, url: str, admin_key: str):
        self.url, self.admin_key = url, admin_key

    def key(self, user: str, **limits) -> str:
        r = requests.post(f"{self.url}/admin/keys", timeout=30, headers={"Authorization": f"Bearer {self.admin_key}"},
                          json={"user": user, "scopes": ["ai:complete", "ai:embed"], **limits})
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def call(self, key: str, provider: str, content: str, headers: dict | None = None, **extra) -> requests.Response:
        return requests.post(f"{self.url}{PATHS[provider]}", timeout=60,
                             headers={"Authorization": f"Bearer {key}", **(headers or {})},
                             json={"model": MODELS[provider], "max_tokens": 16,
                                   "messages": [{"role": "user", "content": content}], **extra})


def _refusal(response: requests.Response) -> str | None:
    """What a 429 refused for: OpenAI-shaped errors say it in `code`; Anthropic-shaped ones do not, but a
    rate limit carries retry-after and a budget or loop refusal x-should-retry: false."""
    if response.status_code != 429:
        return None
    code = (response.json().get("error") or {}).get("code")
    if code:
        return code
    if "retry-after" in response.headers:
        return "rate_limit_exceeded"
    assert response.headers.get("x-should-retry") == "false", response.headers
    return "insufficient_quota or loop_detected"


def _every_kind_of_request(client: Client) -> None:
    run = uuid.uuid4().hex[:8]
    alice = client.key(f"obs-alice-{run}")
    broke = client.key(f"obs-broke-{run}", monthly_budget_usd=0)
    for provider in MODELS:
        ok = client.call(alice, provider, f"hello {provider}")
        assert ok.status_code == 200, ok.text
        streamed = client.call(alice, provider, f"stream {provider}", stream=True)
        assert streamed.status_code == 200 and streamed.text.rstrip().split("\n")[-1].startswith(": x-tollgate-cost")
        for expected in ("miss", "hit"):  # the response cache, asked for by the request
            cached = client.call(alice, provider, f"cache {provider} {run}", headers={"x-tollgate-cache": "ttl=60"})
            assert cached.headers.get("x-tollgate-cache") == expected, cached.text
        failed = client.call(alice, provider, "[[fake:status=500]] [[fake:retry_after_ms=1]]")
        assert failed.status_code >= 500, failed.text
        refused = client.call(broke, provider, "over budget")
        assert "insufficient_quota" in _refusal(refused), refused.text

        limited = client.key(f"obs-limited-{provider}-{run}", rpm=1)
        # Three calls in a one-minute window of 1: at most one window boundary, so one at least is refused.
        codes = [_refusal(client.call(limited, provider, f"call {i}")) for i in range(3)]
        assert "rate_limit_exceeded" in codes, codes

        looping = client.key(f"obs-loop-{provider}-{run}")  # its own key: alice's requests per minute stay few
        for _ in range(40):  # the loop guard's count is 18 repeats a 10-minute window; a window end resets it once
            repeated = client.call(looping, provider, "the very same request")
            if "loop_detected" in (_refusal(repeated) or ""):
                break
        else:
            pytest.fail("the loop guard never refused the repeated request")
    emb = requests.post(f"{client.url}/v1/embeddings", timeout=60, headers={"Authorization": f"Bearer {alice}"},
                        json={"model": "text-embedding-3-small", "input": ["a", "b"]})
    assert emb.status_code == 200, emb.text


def _sweep() -> None:
    from handlers import sweeper

    sweeper.lambda_handler({}, LambdaContext("tollgate-sweeper"))


def _reconcile(stack) -> None:
    """Issue 17: today reconciled against the fake's bill (drift), then with the bill withheld (missing)."""
    from datetime import datetime, timezone

    from handlers import reconcile

    today = datetime.now(timezone.utc).date().isoformat()
    reconcile.lambda_handler({"day": today}, LambdaContext("tollgate-reconcile"))
    stack.fake.billing.withheld = {today}
    try:
        reconcile.lambda_handler({"day": today}, LambdaContext("tollgate-reconcile"))
    finally:
        stack.fake.billing.withheld = set()


def _shape(metrics) -> set[tuple[str, str, frozenset]]:
    return {(namespace, name, frozenset(k for k, _ in dims)) for namespace, name, dims in metrics}


def test_emitted_metrics_are_exactly_those_the_dashboards_and_alarms_read(local_stack, monitoring_template):
    with captured() as out:
        _every_kind_of_request(Client(local_stack.url, local_stack.admin_key))
        _sweep()
        _reconcile(local_stack)
    emitted = {m for m in emitted_metrics(out.emf()) if m[0] == mn.NAMESPACE}
    referenced = {m for m in referenced_metrics(monitoring_template) if m[0] == mn.NAMESPACE}

    assert emitted, "no EMF captured: did the handlers flush metrics?"
    assert {name for _, name, _ in emitted} == ALL_METRICS
    # Names and dimension *names* agree exactly...
    assert _shape(referenced) == _shape(emitted)
    # ... and so do the values: service is fixed; every provider is drawn and every one emitted. Bedrock's
    # bill comes from Cost Explorer, which is off locally (tollgate.reconcile): its drift is drawn, not emitted.
    bedrock_drift = (mn.NAMESPACE, mn.RECONCILIATION_DRIFT_PCT,
                     frozenset({(mn.DIM_PROVIDER, "bedrock"), (mn.DIM_SERVICE, mn.SERVICE)}))
    assert referenced - {bedrock_drift} == emitted
    for _, _, dims in emitted:
        values = dict(dims)
        assert values[mn.DIM_SERVICE] == mn.SERVICE
        assert values.get(mn.DIM_PROVIDER, mn.PROVIDERS[0]) in mn.PROVIDERS


def test_dimensions_are_low_cardinality(local_stack):
    """Only service and provider: never a user, key or request id (each would be a metric of its own)."""
    client = Client(local_stack.url, local_stack.admin_key)
    with captured() as out:
        for i in range(3):
            assert client.call(client.key(f"obs-card-{i}-{uuid.uuid4().hex[:6]}"), "openai", "hi").status_code == 200
    dimension_sets = {frozenset(dims) for _, _, dims in emitted_metrics(out.emf())}
    assert dimension_sets == {frozenset({(mn.DIM_SERVICE, mn.SERVICE), (mn.DIM_PROVIDER, "openai")})}


def test_the_providers_of_metric_names_are_the_gateways_providers():
    """Dashboards and alarms add up per-provider series over metric_names.PROVIDERS."""
    from tollgate.pricing import Catalogue
    from tollgate.providers.registry import DEFAULT_FACTORIES

    assert set(mn.PROVIDERS) == set(DEFAULT_FACTORIES) == {m.provider for m in Catalogue.load().models()}


def test_one_structured_line_per_metered_answer_as_the_top_spenders_query_reads_it(local_stack, monitoring_template):
    client = Client(local_stack.url, local_stack.admin_key)
    user = f"obs-spender-{uuid.uuid4().hex[:8]}"
    key = client.key(user)
    with captured() as out:
        answers = [client.call(key, provider, "what does it cost?") for provider in MODELS]
        client.call(key, "openai", "[[fake:status=500]]")  # failed: not a metered answer
    assert [a.status_code for a in answers] == [200] * len(MODELS)

    from tests.infra.dashboards import widgets

    # The dashboard's Logs Insights query: filter <field> = "<message>" | stats sum(<cost>) ... by <user>
    [query] = [w["properties"]["query"] for w in widgets(monitoring_template) if w["type"] == "log"]
    message_field, message = re.search(r'filter (\w+) = "([^"]+)"', query).groups()
    cost_field, user_field = re.search(r"stats sum\((\w+)\) as \w+.* by (\w+)", query).groups()

    lines = [r for r in out.log_records() if r.get(message_field) == message]
    assert len(lines) == len(MODELS)
    for line, answer in zip(lines, answers):
        assert line[user_field] == user
        assert isinstance(line[cost_field], float)
        assert line[cost_field] == float(answer.headers["x-tollgate-cost-usd"]) > 0
        assert line["correlation_id"] == answer.headers["x-request-id"]  # the request id, via Powertools
