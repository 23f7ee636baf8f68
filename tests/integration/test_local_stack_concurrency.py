"""The local stack as `make dev` runs it, agent worker included, under concurrent clients (issue 10 speed,
issue 9 item 7): a long poll holds up no other emulated call, 64 concurrent clients all get an HTTP
answer, and concurrent errors on routes of different wire formats each come back in their own shape.
Timings are `make bench-local`'s business, not these tests'."""
from __future__ import annotations

import http.client
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from local.dev import REGION, LocalStack

LONG_POLL_S = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    local = LocalStack(use_fake=True, aws_in_subprocess=True, quiet=True, worker=True)
    try:
        local.start(port=0, state_dir=tmp_path_factory.mktemp("tollgate-state"))
        with local.environment():  # the handlers run in this process
            yield local
    finally:
        local.stop()


def _request(stack, method: str, path: str, body: dict | None = None, headers: dict | None = None,
             timeout: float = 60) -> tuple[int, dict]:
    host, port = urlsplit(stack.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={
            "Authorization": f"Bearer {stack.admin_key}", "content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def test_a_long_poll_does_not_hold_up_other_emulated_calls(stack):
    assert stack.worker is not None and stack.worker.alive  # its own long polls run all the time
    sqs = boto3.client("sqs", endpoint_url=stack.aws_endpoint, region_name=REGION,
                       config=Config(read_timeout=LONG_POLL_S + 30, retries={"max_attempts": 1}))
    queue = sqs.create_queue(QueueName=f"t-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    received: dict = {}
    poll = threading.Thread(target=lambda: received.update(sqs.receive_message(
        QueueUrl=queue, WaitTimeSeconds=LONG_POLL_S)))
    poll.start()
    try:
        # Each admin call is several emulated DynamoDB calls. Had the poll held the emulator's lock, the
        # first of them would have waited for its whole 20 s wait to end.
        for _ in range(10):  # ~10 ms each when idle: far inside the poll's 20 s even on a loaded machine
            assert _request(stack, "GET", "/admin/keys")[0] == 200
        assert poll.is_alive(), "the long poll ended before the calls made while it waited"
    finally:
        boto3.client("sqs", endpoint_url=stack.aws_endpoint, region_name=REGION).send_message(
            QueueUrl=queue, MessageBody="wake up")
        poll.join(timeout=LONG_POLL_S + 30)
    assert [m["Body"] for m in received["Messages"]] == ["wake up"]  # a send ends the wait


def test_64_concurrent_clients_all_get_an_http_answer(stack):
    clients = 64
    start = threading.Barrier(clients)
    chat = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

    def one(i: int) -> int:
        start.wait(timeout=60)
        if i % 2:
            return _request(stack, "POST", "/v1/chat/completions", chat)[0]
        return _request(stack, "GET", "/admin/keys")[0]

    with ThreadPoolExecutor(clients) as executor:
        statuses = list(executor.map(one, range(clients)))  # a refused or dropped connection raises here
    assert len(statuses) == clients and all(status < 500 for status in statuses), statuses


def test_concurrent_errors_on_both_wire_formats_each_keep_their_routes_shape(stack):
    threads, rounds = 8, 3
    start = threading.Barrier(threads)
    unpriced = {"model": "no-such-model-anywhere", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

    def one(i: int) -> list[tuple[str, int, dict]]:
        path = "/v1/messages" if i % 2 else "/v1/chat/completions"
        start.wait(timeout=60)
        return [(path, *_request(stack, "POST", path, unpriced)) for _ in range(rounds)]

    with ThreadPoolExecutor(threads) as executor:
        answers = [a for batch in executor.map(one, range(threads)) for a in batch]
    assert len(answers) == threads * rounds
    for path, status, body in answers:
        assert status == 400, (path, body)
        if path == "/v1/messages":  # Anthropic's shape
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        else:  # OpenAI's
            assert "type" not in body and body["error"]["code"], body
