"""`tollgate loops list | clear --user U`: the loop guard's counters of one user (what repeats, how often,
what it spent, whether it is refused), and clearing them so a refused pattern is served again."""
from __future__ import annotations

import argparse

from tollgate_cli.context import Context
from tollgate_cli.formatting import money, number, table, when


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    loops = subparsers.add_parser("loops", help="repeating request patterns the loop guard counts",
                                  description="List and clear a user's loop guard counters.")
    sub = loops.add_subparsers(dest="loops_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", parents=[common], help="a user's repeating patterns in the current windows",
                       description="List a user's repeating request patterns in the current loop windows.")
    p.add_argument("--user", required=True)
    p.set_defaults(handler=list_loops, parser=p)
    p = sub.add_parser("clear", parents=[common], help="forget a user's counters: refused patterns are served again",
                       description="Clear a user's loop guard counters, so refused patterns are served again.")
    p.add_argument("--user", required=True)
    p.set_defaults(handler=clear, parser=p)


def list_loops(ctx: Context) -> None:
    result = ctx.client().get("/admin/loops", {"user": ctx.args.user})
    if ctx.json:
        ctx.print_json(result)
        return
    rows = [(loop.get("subject"), loop.get("kind"), str(loop.get("fingerprint"))[:12], number(loop.get("hits")),
             money(loop.get("spent_usd")), "refused" if loop.get("refused") else "counting",
             when(loop.get("window_ends_at"))) for loop in result.get("loops", [])]
    if not rows:
        ctx.print(f"No repeating patterns for {result.get('user')} in the current windows.")
        return
    ctx.print(table(("SUBJECT", "KIND", "PATTERN", "HITS", "SPENT", "STATE", "WINDOW ENDS"), rows, right=(3, 4)))


def clear(ctx: Context) -> None:
    result = ctx.client().request("DELETE", "/admin/loops", query={"user": ctx.args.user})
    if ctx.json:
        ctx.print_json(result)
        return
    ctx.print(f"Cleared {result.get('cleared')} loop counter(s) of {result.get('user')}.")
