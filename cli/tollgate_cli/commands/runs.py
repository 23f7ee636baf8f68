"""`tollgate runs start | show`: start an agent run with a budget, and follow it.

Runs are started with a user's own API key (scope `agents:run`): --tollgate-key (or --api-key), else
TOLLGATE_API_KEY, else the admin key (fine locally, where it has every scope). The run acts for that
key's user, and only that user or an admin may read it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tollgate.runs import AGENTS, TERMINAL
from tollgate_cli import config, invocation, parsing
from tollgate_cli.client import AdminClient, path_param
from tollgate_cli.context import Context
from tollgate_cli.errors import CliError, UsageError
from tollgate_cli.formatting import fields, money, table, when
from tollgate_cli.redaction import shown

POLL_EVERY_S = 2.0


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    runs = subparsers.add_parser("runs", help="start and follow agent runs",
                                 description="Start agent runs, each with its own budget, and follow them.")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    p = sub.add_parser("start", parents=[common], help="start an agent run with a budget",
                       description="Start an agent run. It is queued, taken by an agent worker, and every LLM "
                                   "call it makes is held to its budget by the gateway.")
    p.add_argument("--agent", required=True, choices=AGENTS, help="the agent to run")
    p.add_argument("--input-file", required=True, metavar="FILE",
                   help='the run\'s input as JSON, e.g. {"reviews": ["...", "..."]} (a JSON list is taken as '
                        "the reviews); - reads standard input")
    p.add_argument("--budget-usd", required=True, type=parsing.usd, metavar="USD",
                   help="the most this run may spend, in dollars")
    p.add_argument("--model", help="the model the agent calls (default: the gateway's, gpt-4o-mini)")
    _api_key(p)
    p.add_argument("--wait", action="store_true", help="wait until the run finishes, then show it")
    p.add_argument("--wait-s", type=parsing.positive_float, default=600.0, metavar="SECONDS",
                   help="how long --wait waits (default: 600)")
    p.set_defaults(handler=start, parser=p)

    p = sub.add_parser("show", parents=[common], help="a run's status, result, calls and cost",
                       description="Show a run: its status, why it stopped, its result, calls and cost.")
    p.add_argument("run_id", metavar="RUN_ID")
    _api_key(p)
    p.set_defaults(handler=show, parser=p)


def _api_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tollgate-key", "--api-key", dest="api_key", metavar="KEY",
                   help=f"the Tollgate API key to act with (env {config.API_KEY_ENV}; default: the admin key)")


def _client(ctx: Context) -> AdminClient:
    return ctx.user_client("agents:run")

def _read_input(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read --input-file {shown(name)}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--input-file {name} is not JSON: {e}") from None
    if isinstance(data, list):
        data = {"reviews": data}
    if not isinstance(data, dict):
        raise UsageError(f"--input-file {name} must hold a JSON object (or a list of reviews)")
    return data


def start(ctx: Context) -> None:
    a = ctx.args
    body: dict[str, Any] = {"agent": a.agent, "input": _read_input(a.input_file), "budget_usd": a.budget_usd}
    if a.model:
        body["model"] = a.model
    client = _client(ctx)
    run = client.post("/v1/agents/runs", body)
    if a.wait:
        run = _wait(client, run["id"], a.wait_s)
    if ctx.json:
        ctx.print_json(run)
        return
    if not a.wait:
        ctx.print(f"Started run {run.get('id')} ({run.get('agent')}, budget {money(run.get('budget_usd'))}): "
                  f"{run.get('status')}.")
        ctx.print(f"Follow it: {invocation.command()} runs show {run.get('id')}")
        return
    _render(ctx, run)


def _wait(client: AdminClient, run_id: str, wait_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        run = client.get(f"/v1/agents/runs/{path_param(run_id)}")
        if run.get("status") in TERMINAL:
            return run
        if time.monotonic() >= deadline:
            raise CliError(f"run {run_id} is still {run.get('status')} after {wait_s:g}s "
                           f"(see: {invocation.command()} runs show {run_id})")
        time.sleep(POLL_EVERY_S)


def show(ctx: Context) -> None:
    run = _client(ctx).get(f"/v1/agents/runs/{path_param(ctx.args.run_id)}")
    if ctx.json:
        ctx.print_json(run)
        return
    _render(ctx, run)


def _render(ctx: Context, run: dict[str, Any]) -> None:
    ctx.print(f"Run {run.get('id')}")
    ctx.print(fields([
        ("agent", run.get("agent")), ("model", run.get("model")), ("user", run.get("user")),
        ("status", run.get("status")), ("stopped because", run.get("stop_reason")), ("reason", run.get("reason")),
        ("iterations", run.get("iterations")), ("calls", run.get("calls")),
        ("cost", f"{money(run.get('cost_usd'), none='$0.00')} of {money(run.get('budget_usd'))}"
                 + (f" ({money(run.get('reserved_usd'))} reserved)" if _positive(run.get("reserved_usd")) else "")),
        ("attempts", run.get("attempts")), ("created", when(run.get("created_at"))),
        ("started", when(run.get("started_at"))), ("finished", when(run.get("finished_at"))),
    ]))
    result = run.get("result") or {}
    reviews = result.get("reviews") if isinstance(result, dict) else None
    if reviews:
        ctx.print()
        ctx.print(table(("REVIEW", "SENTIMENT", "CATEGORY", "NOTE"),
                        [(r.get("id"), r.get("sentiment"), r.get("category"), r.get("reason")) for r in reviews]))
    if isinstance(result, dict) and result.get("report"):
        ctx.print()
        ctx.print("Report:")
        ctx.print(str(result["report"]))
    elif isinstance(result, dict) and result.get("labels"):
        ctx.print()
        ctx.print(table(("REVIEW", "LABEL"), sorted(result["labels"].items())))


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False
