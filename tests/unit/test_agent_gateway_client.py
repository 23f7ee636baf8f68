"""The worker's gateway client: a call that has not settled is asked again with the same key (paid
once); a stopping worker stops retrying."""
from __future__ import annotations

import json

import pytest

from agents.gateway import GatewayClient, StepFailed


def _answer(status, body, headers=None):
    return status, {k.lower(): v for k, v in (headers or {}).items()}, json.dumps(body).encode()


COMPLETION = {"choices": [{"message": {"content": "ok"}}]}


def test_a_timed_out_call_is_asked_again_with_the_same_key_until_it_settles():
    answers = [
        _answer(504, {"type": "error", "error": {"type": "timeout_error", "code": "gateway_timeout",
                                                 "message": "slow"}}, {"x-should-retry": "false"}),
        _answer(409, {"error": {"message": "still running", "code": "idempotency_in_progress"}}),
        _answer(409, {"error": {"message": "still running", "code": "idempotency_in_progress"}}),
        _answer(409, {"error": {"message": "still running", "code": "idempotency_in_progress"}}),
        _answer(409, {"error": {"message": "still running", "code": "idempotency_in_progress"}}),
        _answer(200, COMPLETION, {"x-tollgate-idempotent-replay": "true", "x-tollgate-cost-usd": "0.5"}),
    ]
    keys = []

    def transport(method, path, headers, body):
        keys.append(headers["idempotency-key"])
        return answers.pop(0)

    client = GatewayClient(transport, user="u", run_id="run-1", model="m", sleep=lambda s: None)
    completion = client.chat([{"role": "user", "content": "hi"}], max_tokens=5)
    assert completion.text == "ok" and completion.replayed
    assert keys == ["run-1/1"] * 6  # more than max_attempts polls, one logical call, one key
    assert client.spent == 0  # the replay was paid by the first, timed-out call


def test_a_stopping_worker_does_not_retry():
    calls = []

    def transport(method, path, headers, body):
        calls.append(1)
        return _answer(503, {"error": {"message": "busy", "code": "provider_rate_limited"}})

    client = GatewayClient(transport, user="u", run_id="run-2", model="m", sleep=lambda s: None,
                           should_stop=lambda: True)
    with pytest.raises(StepFailed):
        client.chat([{"role": "user", "content": "hi"}], max_tokens=5)
    assert calls == [1]
