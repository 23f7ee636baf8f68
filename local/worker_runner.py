"""The agent worker on this machine: `python -m agents` as a child process, against the local stack.

It is the container's own command, so everything but the image is the production path: it long-polls
the emulated SQS queue, reads and writes the emulated runs table, and calls the LLM through the API
Gateway emulator's /internal/v1 routes, signing each request with SigV4 (service execute-api) using the
local credentials, which the emulator verifies against its IAM credential map (local/dev.py maps
LOCAL_ACCESS_KEY_ID to the agent role). `stop()` sends SIGTERM, exactly what ECS sends a task.

    env = {**stack.env, **create_runs_queue(sqs_client)}     # tables, AWS endpoint, queue URL
    worker = start_worker(env, stack.url, (LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY))
    ...
    worker.stop()
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from tollgate.schema import BUDGETS, RUNS, Env

ROOT = Path(__file__).resolve().parent.parent
QUEUE_VISIBILITY_S = 300  # as stacks/runs_queue.py
MAX_RECEIVES = 5
_REQUIRED = (Env.RUNS_QUEUE_URL, RUNS.env_var, BUDGETS.env_var)


def create_runs_queue(sqs: Any, prefix: str = "tollgate-local") -> dict[str, str]:
    """The runs queue and its dead-letter queue, as the API stack makes them; returns the env var that
    names the queue (for the runs handler and the worker)."""
    dlq = sqs.create_queue(QueueName=f"{prefix}-agent-runs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=f"{prefix}-agent-runs", Attributes={
        "VisibilityTimeout": str(QUEUE_VISIBILITY_S),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
    })["QueueUrl"]
    return {Env.RUNS_QUEUE_URL: queue}


def _keys(credentials: Any) -> tuple[str, str]:
    if isinstance(credentials, (tuple, list)):
        return str(credentials[0]), str(credentials[1])
    frozen = credentials.get_frozen_credentials() if hasattr(credentials, "get_frozen_credentials") else credentials
    return frozen.access_key, frozen.secret_key


class WorkerHandle:
    """A running worker process. Its JSON log lines are kept (the last `keep`) and passed to `on_line`."""

    def __init__(self, process: subprocess.Popen, on_line: Callable[[str], None] | None, keep: int = 2000):
        self.process = process
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._on_line = on_line
        self._reader = threading.Thread(target=self._read, name="agent-worker-log", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM (what ECS sends), then wait: the worker hands back the run in hand at its next step
        and exits 0. Killed if it does not exit in time (ECS's SIGKILL after stopTimeout)."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return self.process.returncode

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if self._on_line:
                self._on_line(line)
        self.process.stdout.close()


def start_worker(env: Mapping[str, str], gateway_url: str, credentials: Any, *,
                 on_line: Callable[[str], None] | None = None, extra_env: Mapping[str, str] | None = None,
                 python: str = sys.executable) -> WorkerHandle:
    """Start `python -m agents` against the local stack.

    env: the stack's environment (LocalStack.env: AWS_ENDPOINT_URL, region, table names) plus the runs
    queue URL (create_runs_queue). gateway_url: the API Gateway emulator's URL. credentials: the local
    (access key id, secret) pair the emulator knows, or a botocore credentials object.
    """
    missing = [name for name in _REQUIRED if not env.get(name)]
    if missing:
        raise ValueError(f"the worker needs {', '.join(missing)} in env")
    access_key, secret_key = _keys(credentials)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    child = {k: v for k, v in env.items() if k != "AWS_SESSION_TOKEN"}
    child.update({
        "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
        "TOLLGATE_GATEWAY_URL": gateway_url.rstrip("/"), "TOLLGATE_GATEWAY_REGION": region,
        "TOLLGATE_WORKER_WAIT_S": env.get("TOLLGATE_WORKER_WAIT_S") or "1",  # short polls: quick to stop
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",
    })
    child.update(extra_env or {})
    process = subprocess.Popen([python, "-m", "agents"], cwd=str(ROOT), env=child, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return WorkerHandle(process, on_line)
