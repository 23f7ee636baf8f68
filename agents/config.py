"""The worker's configuration: environment variables read once into one typed object.

Set by the CDK stack (stacks/agents_stack.py) on the ECS task, and by local/worker_runner.py locally.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Mapping

from agents import contract
from agents.guards import Limits

GATEWAY_URL = "TOLLGATE_GATEWAY_URL"  # the API's stage URL, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/prod
GATEWAY_REGION = "TOLLGATE_GATEWAY_REGION"  # the API's region: SigV4 signs for it
WAIT_S = "TOLLGATE_WORKER_WAIT_S"  # SQS long-poll wait
VISIBILITY_S = "TOLLGATE_WORKER_VISIBILITY_S"  # how long a taken message stays hidden, renewed by the heartbeat
HEARTBEAT_S = "TOLLGATE_WORKER_HEARTBEAT_S"
MAX_ITERATIONS = "TOLLGATE_AGENT_MAX_ITERATIONS"
MAX_IDENTICAL_CALLS = "TOLLGATE_AGENT_MAX_IDENTICAL_CALLS"
MAX_CONSECUTIVE_FAILURES = "TOLLGATE_AGENT_MAX_CONSECUTIVE_FAILURES"
WALL_CLOCK_S = "TOLLGATE_AGENT_WALL_CLOCK_S"
LOG_LEVEL = "TOLLGATE_WORKER_LOG_LEVEL"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class WorkerConfig:
    queue_url: str
    runs_table: str
    budgets_table: str
    gateway_url: str
    region: str
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    wait_s: int = 20
    visibility_s: int = 300
    heartbeat_s: float = 60.0
    limits: Limits = field(default_factory=Limits)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "WorkerConfig":
        e = os.environ if env is None else env

        def need(name: str) -> str:
            value = (e.get(name) or "").strip()
            if not value:
                raise ConfigError(f"{name} is not set")
            return value

        def num(name: str, default: float) -> float:
            value = (e.get(name) or "").strip()
            try:
                return float(value) if value else default
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {value!r}") from None

        defaults = Limits()
        return cls(
            queue_url=need(contract.RUNS_QUEUE_URL_ENV),
            runs_table=need(contract.RUNS_TABLE_ENV),
            budgets_table=need(contract.BUDGETS_TABLE_ENV),
            gateway_url=need(GATEWAY_URL).rstrip("/"),
            region=(e.get(GATEWAY_REGION) or e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "").strip()
            or _missing(GATEWAY_REGION),
            wait_s=int(num(WAIT_S, 20)),
            visibility_s=int(num(VISIBILITY_S, 300)),
            heartbeat_s=num(HEARTBEAT_S, 60),
            limits=Limits(
                max_iterations=int(num(MAX_ITERATIONS, defaults.max_iterations)),
                max_identical_calls=int(num(MAX_IDENTICAL_CALLS, defaults.max_identical_calls)),
                max_consecutive_failures=int(num(MAX_CONSECUTIVE_FAILURES, defaults.max_consecutive_failures)),
                wall_clock_s=num(WALL_CLOCK_S, defaults.wall_clock_s),
            ),
            log_level=(e.get(LOG_LEVEL) or "INFO").upper(),
        )


def _missing(name: str) -> str:
    raise ConfigError(f"{name} (or AWS_REGION) is not set")
