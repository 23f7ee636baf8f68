"""An agent's own guards: what the article's agent lacked.

- max iterations: a hard cap on reason-act steps;
- consecutive identical tool calls: the same tool with the same arguments, again and again;
- consecutive failures: steps whose tool failed, in a row;
- wall clock: the run's age (across resumes: the elapsed time is checkpointed).

Each raises GuardTripped with the stop reason the run reports. They are the agent's first line; the
gateway (run budget, loop guard) is the one the agent cannot switch off.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from agents import contract


class GuardTripped(Exception):
    def __init__(self, stop_reason: str, message: str):
        super().__init__(message)
        self.stop_reason = stop_reason
        self.message = message


@dataclass(frozen=True)
class Limits:
    # A ceiling: an agent sets its own below it from its input (the feedback agent: two steps per
    # review, one report, a little slack), so a 200-review batch fits and a 3-review one cannot wander.
    max_iterations: int = 500
    max_identical_calls: int = 3  # at most this many identical calls in a row; one more trips the guard
    max_consecutive_failures: int = 3
    wall_clock_s: float = 3600.0


@dataclass
class GuardState:
    """What the guards remember; part of the run's checkpoint."""

    iterations: int = 0
    last_call: str | None = None
    identical_calls: int = 0
    consecutive_failures: int = 0
    elapsed_s: float = 0.0  # before the current attempt

    def to_json(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "last_call": self.last_call, "identical_calls": self.identical_calls,
                "consecutive_failures": self.consecutive_failures, "elapsed_s": self.elapsed_s}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "GuardState":
        return cls(**(data or {}))


@dataclass
class Guards:
    limits: Limits
    state: GuardState = field(default_factory=GuardState)
    monotonic: Callable[[], float] = time.monotonic
    _started: float | None = None

    def start(self) -> None:
        self._started = self.monotonic()

    @property
    def elapsed_s(self) -> float:
        now = self.monotonic()
        return self.state.elapsed_s + (now - self._started if self._started is not None else 0.0)

    def before_step(self) -> None:
        if self.state.iterations >= self.limits.max_iterations:
            raise GuardTripped(contract.MAX_ITERATIONS,
                               f"Stopped after {self.state.iterations} iterations (the limit).")
        if self.elapsed_s >= self.limits.wall_clock_s:
            raise GuardTripped(contract.WALL_CLOCK,
                               f"Stopped after {self.elapsed_s:.0f} s (the limit is {self.limits.wall_clock_s:.0f} s).")
        self.state.iterations += 1

    def on_tool_call(self, tool: str, args: Any) -> None:
        call = tool + " " + json.dumps(args, sort_keys=True, ensure_ascii=False)
        if call == self.state.last_call:
            self.state.identical_calls += 1
        else:
            self.state.last_call, self.state.identical_calls = call, 1
        if self.state.identical_calls > self.limits.max_identical_calls:
            raise GuardTripped(contract.REPEATED_TOOL_CALL,
                               f"Stopped: {tool} was called with the same arguments "
                               f"{self.limits.max_identical_calls} times in a row.")

    def on_result(self, ok: bool) -> None:
        self.state.consecutive_failures = 0 if ok else self.state.consecutive_failures + 1
        if self.state.consecutive_failures >= self.limits.max_consecutive_failures:
            raise GuardTripped(contract.CONSECUTIVE_FAILURES,
                               f"Stopped after {self.state.consecutive_failures} failed steps in a row.")

    def snapshot(self) -> dict[str, Any]:
        state = self.state.to_json()
        state["elapsed_s"] = round(self.elapsed_s, 3)
        return state
