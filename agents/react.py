"""A ReAct loop (reason, act, observe) whose decisions are parsed from the model's text.

At each step the model is shown the task, the tools, the progress so far and the step the agent's plan
would take next, and answers in the classic ReAct format:

    Thought: <one sentence>
    Action: <tool name>
    Action Input: <argument, or ->

A valid action is taken as the model's decision. A reply that names no valid action (empty, prose, an
unknown tool or argument) is not retried: the loop takes the plan's step instead and notes that it did,
so an off-protocol model cannot stall a run, and the same reply can never be asked for twice in a row.
The loop ends when the plan has nothing left to do (the work is done), or when a guard trips.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from agents.base import Interrupted, RunContext
from agents.gateway import StepFailed
from agents.guards import Guards

MAX_TRACE = 8
CONTROLLER_MAX_TOKENS = 80

_ACTION = re.compile(r"^\s*\**\s*Action\s*\**\s*:\s*\**\s*([A-Za-z_][\w-]*)\s*(?:[\[(](.*?)[\])])?\s*$", re.M)
_ACTION_INPUT = re.compile(r"^\s*\**\s*Action[ _]Input\s*\**\s*:\s*(.*?)\s*$", re.M | re.I)
_NO_ARGUMENT = {"", "-", "none", "null", "n/a", "{}"}


@dataclass(frozen=True)
class Decision:
    action: str
    argument: str | None
    source: str  # "model" or "plan"

    def describe(self) -> str:
        return self.action + (f" {self.argument}" if self.argument is not None else "")


@dataclass(frozen=True)
class Observation:
    ok: bool  # False: the tool failed (counts towards the consecutive-failure guard)
    text: str  # one short line for the trace; never the review text


class Tool(Protocol):
    name: str
    description: str

    def __call__(self, argument: str | None) -> Observation: ...


def _argument(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip().strip("`'\"*").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            values = [v for v in data.values() if v is not None]
            text = str(values[0]) if values else ""
    return None if text.lower() in _NO_ARGUMENT else text


def parse_decision(text: str) -> tuple[str, str | None] | None:
    """(tool, argument) from a ReAct reply, or None if it names no action."""
    match = _ACTION.search(text or "")
    if not match:
        return None
    tool, inline = match.group(1), match.group(2)
    if inline is not None:
        return tool, _argument(inline)
    rest = text[match.end():]
    given = _ACTION_INPUT.search(rest)
    return tool, _argument(given.group(1)) if given else None


class ReActLoop:
    def __init__(self, ctx: RunContext, guards: Guards, tools: dict[str, Tool], *, task: str,
                 progress: Callable[[], str], plan: Callable[[], Decision | None],
                 valid: Callable[[str, str | None], bool], checkpoint: Callable[[], dict[str, Any]],
                 trace: list[str], on_decision: Callable[[Decision], None] | None = None):
        self.ctx = ctx
        self.on_decision = on_decision
        self.guards = guards
        self.tools = tools
        self.task = task
        self.progress = progress
        self.plan = plan
        self.valid = valid
        self.checkpoint = checkpoint
        self.trace = trace  # shared with the agent's state: part of the checkpoint

    def run(self) -> None:
        self.guards.start()
        while True:
            if self.ctx.should_stop():
                raise Interrupted(self.checkpoint(), self.guards.state.iterations)
            suggestion = self.plan()
            if suggestion is None:
                return  # the work is done
            self.guards.before_step()
            decision = self.decide(suggestion)
            if decision is None:  # the model could not be asked (after the client's retries)
                self.guards.on_result(False)
                self._note("controller call failed")
                continue
            if self.on_decision:
                self.on_decision(decision)
            self.guards.on_tool_call(decision.action, decision.argument)
            observation = self.tools[decision.action](decision.argument)
            self._note(f"{decision.describe()} -> {observation.text}"
                       + ("" if decision.source == "model" else " (plan)"))
            try:
                self.guards.on_result(observation.ok)
            finally:
                self.ctx.save(self.checkpoint(), self.guards.state.iterations)

    def decide(self, suggestion: Decision) -> Decision | None:
        tools = "\n".join(f"- {t.name}: {t.description}" for t in self.tools.values())
        system = (f"{self.task}\n\nYou work in steps. Tools:\n{tools}\n\n"
                  "Reply in exactly this format:\nThought: <one sentence>\nAction: <tool name>\n"
                  "Action Input: <review id, or - if the tool takes none>")
        recent = "\n".join(self.trace[-MAX_TRACE:]) or "(nothing yet)"
        user = (f"{self.progress()}\n\nRecent steps:\n{recent}\n\n"
                f"Suggested next step:\nAction: {suggestion.action}\n"
                f"Action Input: {suggestion.argument if suggestion.argument is not None else '-'}")
        try:
            reply = self.ctx.llm.chat([{"role": "system", "content": system}, {"role": "user", "content": user}],
                                      max_tokens=CONTROLLER_MAX_TOKENS)
        except StepFailed:
            return None
        parsed = parse_decision(reply.text)
        if parsed and parsed[0] in self.tools and self.valid(*parsed):
            return Decision(parsed[0], parsed[1], "model")
        return suggestion

    def _note(self, line: str) -> None:
        self.trace.append(line)
        del self.trace[:-MAX_TRACE]
