"""`make bench-local`: what a `make dev` user waits for, with the agent worker running (its default) and
without it: the median time of a chat completion through the local stack (API Gateway emulator, real
handlers, moto, fake provider) and of `GET /admin/keys`, over 20 calls each, after one warm-up call.

The worker long-polls SQS all the time; before the emulator stopped holding its lock for a long poll,
every emulated AWS call waited for the poll to end (a chat took ~2 s with the worker, 0.04 s without).
"""
from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import time
from typing import Callable
from urllib.parse import urlsplit

from local.dev import LocalStack

CALLS = 20
WORDS = ("apple", "river", "stone", "cloud", "maple", "ember", "tiger", "lemon", "ocean", "piano", "amber")


def _chat(i: int) -> dict:
    """A different prompt each call: the same one repeated is what the loop guard refuses."""
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))
    return {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": f"Say {words}"}]}


def _median_s(stack: LocalStack, method: str, path: str, body: Callable[[int], dict] | None) -> float:
    host, port = urlsplit(stack.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Bearer {stack.admin_key}", "content-type": "application/json"}
    samples = []
    try:
        for i in range(CALLS + 1):
            started = time.perf_counter()
            conn.request(method, path, body=json.dumps(body(i)) if body else None, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path} answered {response.status}: {answer[:300]!r}")
            if i:  # the first call warms the execution environments
                samples.append(time.perf_counter() - started)
    finally:
        conn.close()
    return statistics.median(samples)


def main() -> None:
    for worker in (True, False):
        with tempfile.TemporaryDirectory() as state, LocalStack(use_fake=True, quiet=True, worker=worker,
                                                                    prefix=f"bench-{int(worker)}") as stack:
            stack.start(port=0, state_dir=state)
            chat = _median_s(stack, "POST", "/v1/chat/completions", _chat)
            keys = _median_s(stack, "GET", "/admin/keys", None)
            label = "with the worker   " if worker else "without the worker"
            print(f"{label}: chat median {chat * 1000:7.1f} ms, GET /admin/keys median {keys * 1000:7.1f} ms "
                  f"(over {CALLS} calls)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
