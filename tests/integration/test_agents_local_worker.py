"""The agent worker as a process (local/worker_runner.py: `python -m agents`, the container's command)
against the local stack: emulated AWS in a child process, the fake provider, and the API Gateway
emulator running the real authorizer and handlers. The worker signs its /internal/v1 calls with SigV4
and the emulator verifies them; runs are started and read over HTTP with a user's API key, also through
the `tollgate runs` CLI; stop() sends the worker SIGTERM, as ECS does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from typing import Any

import boto3
import pytest

from local.dev import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY, REGION, LocalStack
from local.worker_runner import create_runs_queue, start_worker
from tollgate import routes, wiring

REVIEWS = [
    {"id": "a", "text": "The app crashes every time I upload a photo."},
    {"id": "b", "text": "La aplicación se cierra cada vez que subo una foto. [[fake:empty]]"},
    {"id": "c", "text": "Search has been painfully slow since the last update."},
]
STEPS = 2 * len(REVIEWS) + 1  # sentiment + classification per review, then the report
DEADLINE_S = 60


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    local = LocalStack(use_fake=True, aws_in_subprocess=True, quiet=True)
    try:
        local.start(port=0, state_dir=tmp_path_factory.mktemp("tollgate-state"))
        # What local/dev.py is to do (see the report): the runs queue, and the runs function served.
        from handlers import runs as runs_handler

        sqs = boto3.client("sqs", endpoint_url=local.aws_endpoint, region_name=REGION)
        queue_env = create_runs_queue(sqs, prefix=local.prefix)
        local._apply_env(queue_env)  # noqa: SLF001 - the handlers run in this process
        local.env.update(queue_env)
        local.emulator.functions.setdefault(routes.RUNS_FUNCTION, runs_handler.lambda_handler)
        local.restore_env()
        yield local
    finally:
        local.stop()


@pytest.fixture
def env(stack):
    with stack.environment():
        wiring.reset()
        yield stack
    wiring.reset()


def _http(stack, method: str, path: str, key: str, body: Any = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{stack.url}{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _user_key(stack, user: str = "alice") -> str:
    status, key = _http(stack, "POST", "/admin/keys", stack.admin_key,
                        {"user": user, "scopes": ["ai:complete", "agents:run"]})
    assert status == 201, key
    return key["key"]


def _start(stack, key: str, budget: str, reviews=REVIEWS) -> str:
    status, run = _http(stack, "POST", "/v1/agents/runs", key,
                        {"agent": "feedback-analysis", "input": {"reviews": reviews}, "budget_usd": budget})
    assert status == 202, run
    return run["id"]


def _wait(stack, key: str, run_id: str, until=lambda run: run["status"] in ("succeeded", "failed")) -> dict:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        status, run = _http(stack, "GET", f"/v1/agents/runs/{run_id}", key)
        assert status == 200, run
        if until(run):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not get there in {DEADLINE_S}s: {run}")


def _credentials(secret: str = LOCAL_SECRET_ACCESS_KEY) -> tuple[str, str]:
    return LOCAL_ACCESS_KEY_ID, secret


def test_worker_process_runs_a_queued_run_through_the_emulator_with_sigv4(env):
    stack = env
    key = _user_key(stack)
    stack.fake.reset()
    run_id = _start(stack, key, "0.50")
    worker = start_worker(stack.env, stack.url, _credentials())
    try:
        run = _wait(stack, key, run_id)
    finally:
        assert worker.stop() == 0  # SIGTERM while idle: a clean exit
    assert (run["status"], run["stop_reason"]) == ("succeeded", "completed"), (run, worker.logs()[-5:])
    by_id = {r["id"]: r for r in run["result"]["reviews"]}
    assert by_id["b"]["category"] == "unclassified" and by_id["a"]["category"] != "unclassified"
    # Each step is one call; on a loaded machine a step whose call failed is asked again (a new call).
    provider_calls = len(stack.fake.calls_to("/v1/chat/completions"))
    assert run["calls"] >= 2 * STEPS and 2 * STEPS <= provider_calls <= run["calls"], (run["calls"], provider_calls)
    assert 0 < Decimal(run["cost_usd"]) <= Decimal("0.50")
    messages = [line.get("message") for line in worker.logs()]
    assert "run finished" in messages and "worker stopped" in messages


def test_a_worker_whose_signature_is_wrong_gets_nothing_from_the_gateway(env):
    stack = env
    key = _user_key(stack)
    stack.fake.reset()
    run_id = _start(stack, key, "0.50")
    worker = start_worker(stack.env, stack.url, _credentials("not-the-secret"))
    try:
        run = _wait(stack, key, run_id)
    finally:
        worker.stop()
    assert (run["status"], run["stop_reason"]) == ("failed", "gateway_error")
    assert stack.fake.calls == [] and Decimal(run["cost_usd"]) == 0


def test_sigterm_to_the_worker_process_hands_the_run_back_and_a_new_worker_finishes_it(env):
    stack = env
    key = _user_key(stack)
    stack.fake.reset()
    slow = [{**r, "text": r["text"] + " [[fake:delay_ms=250]]"} for r in REVIEWS]  # slow tool calls
    run_id = _start(stack, key, "0.50", slow)
    first = start_worker(stack.env, stack.url, _credentials())
    try:
        _wait(stack, key, run_id, until=lambda run: run["status"] == "running" and run["iterations"] >= 2)
    finally:
        assert first.stop() == 0  # SIGTERM mid-run: finishes the step, hands the run back, exits 0
    interrupted = _wait(stack, key, run_id, until=lambda run: True)
    assert interrupted["status"] == "interrupted", (interrupted, first.logs()[-5:])
    assert 2 <= interrupted["iterations"] < STEPS
    assert "run interrupted" in [line.get("message") for line in first.logs()]

    second = start_worker(stack.env, stack.url, _credentials())
    try:
        run = _wait(stack, key, run_id)
    finally:
        second.stop()
    assert (run["status"], run["attempts"]) == ("succeeded", 2)
    # the same calls as an uninterrupted run: nothing done twice, nothing paid twice
    # Each step is one call; on a loaded machine a step whose call failed is asked again (a new call).
    provider_calls = len(stack.fake.calls_to("/v1/chat/completions"))
    assert run["calls"] >= 2 * STEPS and 2 * STEPS <= provider_calls <= run["calls"], (run["calls"], provider_calls)
    assert Decimal(run["cost_usd"]) <= Decimal("0.50")


def test_tollgate_runs_cli_starts_a_run_and_shows_it(env, tmp_path):
    stack = env
    key = _user_key(stack, "carol")
    reviews = tmp_path / "reviews.json"
    reviews.write_text(json.dumps([r["text"] for r in REVIEWS]))
    cli_env = {**stack.env, "TOLLGATE_API_KEY": key}

    def tollgate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([os.path.join(os.path.dirname(sys.executable), "tollgate"), *args], env=cli_env,
                              capture_output=True, text=True, timeout=120)

    started = tollgate("runs", "start", "--agent", "feedback-analysis", "--input-file", str(reviews),
                       "--budget-usd", "0.25", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["id"]
    worker = start_worker(stack.env, stack.url, _credentials())
    try:
        _wait(stack, key, run_id)
    finally:
        worker.stop()
    shown = tollgate("runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "status           succeeded" in shown.stdout and "unclassified" in shown.stdout
    assert "of $0.25" in shown.stdout and "Report:" in shown.stdout
    other = tollgate("runs", "show", run_id, "--api-key", _user_key(stack, "mallory"))
    assert other.returncode == 1 and "No agent run" in other.stderr
