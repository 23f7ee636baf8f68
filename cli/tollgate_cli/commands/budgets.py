"""`tollgate budgets show | set`: a user's or a key's monthly (and, for keys, hourly) budget."""
from __future__ import annotations

import argparse

from tollgate_cli import parsing
from tollgate_cli.context import Context
from tollgate_cli.known_users import warn_if_unknown
from tollgate_cli.errors import UsageError
from tollgate_cli.formatting import money, table


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    budgets = subparsers.add_parser("budgets", help="show and set budgets", description="Show and set budgets.")
    sub = budgets.add_subparsers(dest="budgets_command", metavar="ACTION", required=True)

    p = sub.add_parser("show", parents=[common], help="a user's or a key's budget and spend this period",
                       description="Show a user's or a key's budget and spend this period.")
    _who(p)
    p.set_defaults(handler=show, parser=p)

    p = sub.add_parser("set", parents=[common], help="set a user's or a key's budget",
                       description="Set a user's or a key's budget.")
    _who(p)
    p.add_argument("--monthly-usd", type=parsing.usd, metavar="USD", help="monthly budget in dollars")
    p.add_argument("--hourly-usd", type=parsing.usd, metavar="USD", help="hourly budget in dollars (keys only)")
    p.set_defaults(handler=set_budget, parser=p)


def _who(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id (a service token's calls count under svc:SERVICE)")
    who.add_argument("--key", metavar="KEY_ID", type=parsing.key_id,
                     help="a key id (the key's first 12 characters, never the whole key)")


def show(ctx: Context) -> None:
    a = ctx.args
    query = {"user": a.user} if a.user is not None else {"key": a.key}
    _render(ctx, ctx.client().get("/admin/budgets", query))
    if a.user is not None:
        warn_if_unknown(ctx, a.user, "The figures shown are the defaults.")


def set_budget(ctx: Context) -> None:
    a = ctx.args
    if a.monthly_usd is None and a.hourly_usd is None:
        raise UsageError("nothing to set: give --monthly-usd and/or --hourly-usd")
    if a.hourly_usd is not None and a.user is not None:
        raise UsageError("--hourly-usd applies to keys only: use --key KEY_ID")
    body: dict = {"user": a.user} if a.user is not None else {"key": a.key}
    if a.monthly_usd is not None:
        body["monthly_usd"] = a.monthly_usd
    if a.hourly_usd is not None:
        body["hourly_usd"] = a.hourly_usd
    result = ctx.client().put("/admin/budgets", body)
    if not ctx.json:
        ctx.print(f"Budget updated for {result.get('scope') or ('user' if a.user else 'key')} "
                  f"{result.get('id') or a.user or a.key}.")
    _render(ctx, result, heading=False)
    if a.user is not None:
        warn_if_unknown(ctx, a.user, "The budget is set and applies from their first key; check the spelling.")


def _render(ctx: Context, budget: dict, heading: bool = True) -> None:
    if ctx.json:
        ctx.print_json(budget)
        return
    if heading:
        ctx.print(f"Budget for {budget.get('scope')} {budget.get('id')}")
    rows = [("monthly", budget.get("period"), money(budget.get("monthly_limit_usd"), none="no limit"),
             money(budget.get("spent_usd")), money(budget.get("reserved_usd")), money(budget.get("remaining_usd")))]
    hourly = budget.get("hourly")
    if hourly:
        rows.append(("hourly", hourly.get("period"), money(hourly.get("limit_usd"), none="no limit"),
                     money(hourly.get("spent_usd")), money(hourly.get("reserved_usd")),
                     money(hourly.get("remaining_usd"))))
    ctx.print(table(("WINDOW", "PERIOD", "LIMIT", "SPENT", "RESERVED", "REMAINING"), rows, right=(2, 3, 4, 5)))
