"""`tollgate budgets show | set`: a user's or a key's monthly (and, for keys, hourly) budget."""
from __future__ import annotations

import argparse
import shlex

from tollgate_cli import invocation, parsing
from tollgate_cli.commands.keys import DEFAULT_MARK
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
    budget = ctx.client().get("/admin/budgets", query)
    _render(ctx, budget, defaults=_defaults(budget))
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
    _render(ctx, result, heading=False, defaults=_defaults(result))
    if a.user is not None:
        warn_if_unknown(ctx, a.user, "The budget is set and applies from their first key; check the spelling.")


def _defaults(budget: dict) -> tuple[bool, bool]:
    """Whether the (monthly, hourly) limits of a budgets answer are the deployment's defaults rather than set
    ones: its `monthly_limit_is_default` and `hourly.limit_is_default` (absent from an older gateway's answer:
    nothing marked)."""
    return bool(budget.get("monthly_limit_is_default")), bool((budget.get("hourly") or {}).get("limit_is_default"))


def _limit(value: object, default: bool) -> str:
    return money(value, none="no limit") + (DEFAULT_MARK if default else "")


def _render(ctx: Context, budget: dict, heading: bool = True, defaults: tuple[bool, bool] = (False, False)) -> None:
    """The budget as a table; limits that are the deployment's defaults (`defaults`: monthly, hourly) are
    marked with DEFAULT_MARK and explained below it, as `keys list` does."""
    if ctx.json:
        ctx.print_json(budget)
        return
    if heading:
        ctx.print(f"Budget for {budget.get('scope')} {budget.get('id')}")
    rows = [("monthly", budget.get("period"), _limit(budget.get("monthly_limit_usd"), defaults[0]),
             money(budget.get("spent_usd")), money(budget.get("reserved_usd")), money(budget.get("remaining_usd")))]
    hourly = budget.get("hourly")
    if hourly:
        rows.append(("hourly", hourly.get("period"), _limit(hourly.get("limit_usd"), defaults[1]),
                     money(hourly.get("spent_usd")), money(hourly.get("reserved_usd")),
                     money(hourly.get("remaining_usd"))))
    ctx.print(table(("WINDOW", "PERIOD", "LIMIT", "SPENT", "RESERVED", "REMAINING"), rows, right=(2, 3, 4, 5)))
    if defaults[0] or (defaults[1] and hourly):
        who = f"--user {shlex.quote(ctx.args.user)}" if ctx.args.user is not None else f"--key {ctx.args.key}"
        flags = " ".join(flag for flag, default in (("--monthly-usd USD", defaults[0]),
                                                    ("--hourly-usd USD", defaults[1] and hourly)) if default)
        ctx.print(f"{DEFAULT_MARK} the deployment's default budget (set one: {invocation.command()} budgets set "
                  f"{who} {flags})")
