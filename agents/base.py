"""What an agent gets from the worker, and what it gives back."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from agents.gateway import GatewayClient
from agents.guards import Limits


@dataclass
class RunContext:
    run_id: str
    user: str
    input: dict[str, Any]
    llm: GatewayClient
    limits: Limits
    checkpoint: dict[str, Any] | None = None  # from an earlier attempt of this run, if any
    save: Callable[[dict[str, Any], int], None] = lambda checkpoint, iterations: None
    should_stop: Callable[[], bool] = lambda: False  # the worker was told to stop (SIGTERM)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("agents.run"))
    iterations: int = 0  # kept up to date by the agent, for a run that ends by an exception


@dataclass(frozen=True)
class Outcome:
    status: str  # contract.SUCCEEDED or contract.FAILED
    stop_reason: str
    reason: str
    result: dict[str, Any] | None
    iterations: int


class Interrupted(Exception):
    """The worker is stopping: the run is handed back at a step boundary, with its checkpoint."""

    def __init__(self, checkpoint: dict[str, Any] | None, iterations: int):
        super().__init__("interrupted")
        self.checkpoint = checkpoint
        self.iterations = iterations


class Agent(Protocol):
    name: str

    def run(self, ctx: RunContext) -> Outcome: ...


def reviews_of(payload: dict[str, Any]) -> list[dict[str, str]]:
    """The run input's reviews as [{"id", "text"}]: strings are numbered from 1."""
    out = []
    for i, review in enumerate(payload.get("reviews") or []):
        if isinstance(review, dict):
            out.append({"id": str(review.get("id", i + 1)), "text": str(review.get("text", ""))})
        else:
            out.append({"id": str(i + 1), "text": str(review)})
    return out
