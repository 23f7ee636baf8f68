"""`tollgate usage`: one user's metered requests and their cost."""
from __future__ import annotations

import argparse
import shlex

from tollgate_cli import invocation, parsing
from tollgate_cli.context import Context
from tollgate_cli.formatting import money, number, table, when
from tollgate_cli.known_users import SERVICE_USER_PREFIX, service_user


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("usage", parents=[common], help="show a user's requests, tokens and cost",
                              description="Show a user's metered requests, tokens and cost.")
    p.add_argument("--user", required=True,
                   help="the user id whose calls to show; a service token's calls are recorded under "
                        "svc:SERVICE unless it was issued with --user")
    p.add_argument("--from", dest="date_from", type=parsing.day, metavar="YYYY-MM-DD", help="first day (UTC)")
    p.add_argument("--to", dest="date_to", type=parsing.day, metavar="YYYY-MM-DD", help="last day (UTC)")
    p.add_argument("--limit", type=parsing.positive_int, metavar="N", help="at most N records")
    p.set_defaults(handler=show, parser=p)


def _status(record: dict) -> object:
    """The STATUS cell: the record's status, with "(cache hit)" for an answer from the response cache
    (usage record `cached: true`), which otherwise looks like any row of zeros."""
    status = record.get("status")
    return f"{status} (cache hit)" if record.get("cached") else status


def show(ctx: Context) -> None:
    a = ctx.args
    result = ctx.client().get("/admin/usage", {"user": a.user, "from": a.date_from, "to": a.date_to,
                                               "limit": a.limit})
    if ctx.json:
        ctx.print_json(result)
        return
    records = result.get("records") or []
    if not records:
        ctx.print(f"No usage for {result.get('user') or a.user}.")
        if not a.user.startswith(SERVICE_USER_PREFIX):
            ctx.print(f"(a service token's calls are recorded under {service_user('NAME')}: for the service "
                      f"{a.user!r}, try `{invocation.command()} usage --user {shlex.quote(service_user(a.user))}`)")
        return
    # KEY: the API key's 12-character id ("-": a service token or IAM caller); DEPLOYMENT: which deployment
    # answered (name, @region for Bedrock); "-" for records written before it
    rows = [(when(r.get("time")), r.get("key_id"), r.get("model"), r.get("deployment"), number(r.get("prompt_tokens")),
             number(r.get("completion_tokens")), number(r.get("cached_tokens")), money(r.get("cost_usd")),
             r.get("endpoint"), _status(r)) for r in records]
    ctx.print(table(("TIME (UTC)", "KEY", "MODEL", "DEPLOYMENT", "IN", "OUT", "CACHED", "COST", "ENDPOINT", "STATUS"),
                    rows, right=(4, 5, 6, 7)))
    count = len(records)
    if any(r.get("cached") for r in records):
        ctx.print("(cache hit: answered from Tollgate's response cache at $0, no provider call; CACHED counts the "
                  "provider's cached prompt tokens)")
    ctx.print()
    ctx.print(f"Total: {count} request{'s' if count != 1 else ''}, {number(result.get('total_tokens'))} tokens, "
              f"{money(result.get('total_cost_usd'), none='$0.00')}")
    if a.limit and count >= a.limit:
        ctx.print(f"(showing the first {a.limit}; raise --limit for more)")
    rec = result.get("reconciliation")
    if rec and rec.get("days"):  # the providers' bills, apportioned (tollgate reconcile)
        missing = f"; {rec['missing']} day/model total(s) missing a provider bill" if rec.get("missing") else ""
        ctx.print(f"Provider-billed: {money(rec.get('actual_usd'), none='$0.00')} against "
                  f"{money(rec.get('estimated_usd'), none='$0.00')} estimated{missing}")
