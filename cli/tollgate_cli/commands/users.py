"""`tollgate users show | set`: per-user settings (prompt logging, BYOK budget exemption, response cache)."""
from __future__ import annotations

import argparse

from tollgate_cli.client import path_param
from tollgate_cli.context import Context
from tollgate_cli.errors import UsageError
from tollgate_cli.formatting import fields
from tollgate_cli.known_users import warn_if_unknown

_ON_OFF = {"on": True, "off": False}


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    users = subparsers.add_parser("users", help="per-user settings", description="Show and change per-user settings.")
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    p = sub.add_parser("show", parents=[common], help="a user's settings", description="Show a user's settings.")
    p.add_argument("--user", required=True, help="a user id")
    p.set_defaults(handler=show, parser=p)
    p = sub.add_parser("set", parents=[common], help="change a user's settings",
                       description="Change a user's settings.")
    p.add_argument("--user", required=True)
    p.add_argument("--log-prompts", choices=sorted(_ON_OFF), help="log this user's prompts (off by default)")
    p.add_argument("--byok-budget-exempt", choices=sorted(_ON_OFF),
                   help="let calls made with the user's own provider keys bypass the budgets (off by default)")
    p.add_argument("--cache-ttl", type=int, metavar="SECONDS",
                   help="keep this user's answers in the response cache this long and answer repeats from it at $0 "
                        "(0: off, the default)")
    p.set_defaults(handler=set_settings, parser=p)


def show(ctx: Context) -> None:
    _render(ctx, ctx.client().get(f"/admin/users/{path_param(ctx.args.user)}"))
    warn_if_unknown(ctx, ctx.args.user, "The settings shown are the defaults.")


def set_settings(ctx: Context) -> None:
    a = ctx.args
    body = {name: _ON_OFF[value] for name, value in (("log_prompts", a.log_prompts),
                                                      ("byok_budget_exempt", a.byok_budget_exempt)) if value}
    if a.cache_ttl is not None:
        body["cache_ttl_s"] = a.cache_ttl
    if not body:
        raise UsageError("nothing to set: give --log-prompts, --byok-budget-exempt and/or --cache-ttl")
    _render(ctx, ctx.client().put(f"/admin/users/{path_param(a.user)}", body))


def _render(ctx: Context, settings: dict) -> None:
    if ctx.json:
        ctx.print_json(settings)
        return
    ctx.print(fields([("user", settings.get("user")), ("log prompts", "on" if settings.get("log_prompts") else "off"),
                      ("byok budget exempt", "on" if settings.get("byok_budget_exempt") else "off"),
                      ("response cache", f"{settings['cache_ttl_s']} s" if settings.get("cache_ttl_s") else "off")]))
