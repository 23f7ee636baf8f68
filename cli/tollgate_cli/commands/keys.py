"""`tollgate keys create | list | revoke | suspend | resume | rotate`."""
from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

from tollgate import scopes as scope_names
from tollgate.clock import iso
from tollgate_cli import invocation, parsing
from tollgate_cli.client import path_param
from tollgate_cli.context import Context
from tollgate_cli.errors import CliError
from tollgate_cli.formatting import fields, money, number, table, when

ONCE_WARNING = "Copy this key now: it cannot be shown again (Tollgate stores only its hash)."
MAX_GRACE = timedelta(days=30)  # the gateway's limit on grace_s (POST /admin/keys/{id}/rotate)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    keys = subparsers.add_parser("keys", help="create, list, revoke, suspend, resume and rotate API keys",
                                 description="Manage API keys: create, list, revoke, suspend, resume and rotate.")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    p = sub.add_parser("create", parents=[common], help="issue a new API key (shown once)",
                       description="Issue a new API key. The key is shown once and cannot be shown again.")
    p.add_argument("--user", required=True, help="the user the key belongs to")
    p.add_argument("--name", help="a label for the key, e.g. laptop or ci")
    p.add_argument("--scopes", nargs="+", metavar="SCOPE", type=parsing.scopes_of(scope_names.ALL),
                   help=f"what the key may do (default: {' '.join(scope_names.DEFAULT_KEY_SCOPES)}); "
                        f"one or more of: {', '.join(scope_names.ALL)} (spaces or commas between them)")
    p.add_argument("--expires-in", type=parsing.duration, metavar="DURATION",
                   help="lifetime, e.g. 30d, 12h, 90m, 2w (default: never expires)")
    p.add_argument("--monthly-budget-usd", type=parsing.usd, metavar="USD", help="this key's monthly budget")
    p.add_argument("--hourly-budget-usd", type=parsing.usd, metavar="USD", help="this key's hourly budget")
    p.add_argument("--rpm", type=parsing.positive_int, help="requests per minute limit")
    p.add_argument("--tpm", type=parsing.positive_int, help="tokens per minute limit")
    p.add_argument("--cache-ttl", type=int, metavar="SECONDS", dest="cache_ttl_s",
                   help="keep this key's answers in the response cache this long and answer repeats from it at $0 "
                        "(0: off; default: the user's setting)")
    p.set_defaults(handler=create, parser=p)

    p = sub.add_parser("list", parents=[common], help="list API keys", description="List API keys.")
    p.add_argument("--user", help="only this user's keys")
    p.set_defaults(handler=list_keys, parser=p)

    for action, verb, text in (("revoke", "Revoked", "revoke a key for good"),
                               ("suspend", "Suspended", "stop a key working until it is resumed"),
                               ("resume", "Resumed", "let a suspended key work again (revocation is final: "
                                                     "a revoked key cannot be resumed)")):
        p = sub.add_parser(action, parents=[common], help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("key_id", metavar="KEY_ID", type=parsing.key_id,
                       help="the key id (the first 12 characters of the key)")
        p.set_defaults(handler=change_status, parser=p, action=action, verb=verb)

    p = sub.add_parser("rotate", parents=[common], help="replace a key; the old one works for a grace period",
                       description="Issue a replacement key with the same user, scopes, limits and budgets. "
                                   "The old key keeps working for the grace period, then expires.")
    p.add_argument("key_id", metavar="KEY_ID", type=parsing.key_id,
                   help="the id of the key to rotate (its first 12 characters)")
    p.add_argument("--grace", type=parsing.key_duration(maximum=MAX_GRACE), default=None, metavar="DURATION",
                   help="how long the old key keeps working, e.g. 1h, 7d or 1h30m (default 24h; longer than "
                        "zero and at most 30d: to stop a key at once, revoke it)")
    p.set_defaults(handler=rotate, parser=p)


def create(ctx: Context) -> None:
    a = ctx.args
    body: dict = {"user": a.user}
    if a.name is not None:
        body["name"] = a.name
    if a.scopes:
        body["scopes"] = parsing.flat(a.scopes)
    if a.expires_in is not None:
        body["expires_at"] = iso(datetime.now(timezone.utc) + a.expires_in)
    for field in ("monthly_budget_usd", "hourly_budget_usd", "rpm", "tpm", "cache_ttl_s"):
        if getattr(a, field) is not None:
            body[field] = getattr(a, field)
    key = ctx.client().post("/admin/keys", body)
    if ctx.json:
        ctx.print_json(key)
        return
    ctx.print(f"Created API key {key.get('key_id')} for {key.get('user')}.")
    ctx.print()
    ctx.print(f"    {key.get('key')}")
    ctx.print()
    ctx.print(ONCE_WARNING)
    ctx.print()
    ctx.print(_details(key))


def list_keys(ctx: Context) -> None:
    result = ctx.client().get("/admin/keys", {"user": ctx.args.user})
    if ctx.json:
        ctx.print_json(result)
        return
    keys = result.get("keys") or []
    if not keys:
        ctx.print(f"No keys for {ctx.args.user}." if ctx.args.user else "No keys.")
        return
    monthly_default, hourly_default = _default_budgets(ctx, keys)
    rows = [(k.get("key_id"), k.get("user"), k.get("name"), _status(k), ",".join(k.get("scopes") or []),
             when(k.get("created_at"), seconds=False), when(k.get("last_used"), seconds=False),
             when(k.get("expires_at"), seconds=False, none="never"),
             money(k.get("monthly_budget_usd"), none=monthly_default),
             money(k.get("hourly_budget_usd"), none=hourly_default), number(k.get("rpm")), number(k.get("tpm")))
            for k in keys]
    ctx.print(table(("KEY ID", "USER", "NAME", "STATUS", "SCOPES", "CREATED", "LAST USED", "EXPIRES",
                     "MONTHLY", "HOURLY", "RPM", "TPM"), rows, right=(8, 9, 10, 11)))
    if any(k.get("monthly_budget_usd") is None or k.get("hourly_budget_usd") is None for k in keys):
        ctx.print(f"{DEFAULT_MARK} the deployment's default budget for a key "
                  f"(set one: {invocation.command()} budgets set --key KEY_ID)")


DEFAULT_MARK = "*"


def _status(key: dict) -> str:
    """The STATUS cell: the key's status (`expired` once past its expiry), and for a rotated key the key id
    that replaced it: `active (rotated to sk-…)` during its grace period."""
    status = str(key.get("status") or "-")
    return f"{status} (rotated to {key['rotated_to']})" if key.get("rotated_to") else status


def _default_budgets(ctx: Context, keys: list[dict]) -> tuple[str, str]:
    """The effective (monthly, hourly) budget of a key that sets none, as shown in `keys list`: read from
    the budget of one such key (the gateway's defaults are its configuration), marked with DEFAULT_MARK;
    "default" if that cannot be read."""
    monthly = hourly = "default"
    unset = next((k for k in keys if k.get("monthly_budget_usd") is None or k.get("hourly_budget_usd") is None), None)
    if unset is None:
        return monthly, hourly
    try:
        budget = ctx.client().get("/admin/budgets", {"key": unset.get("key_id")})
    except CliError:
        return monthly, hourly
    if unset.get("monthly_budget_usd") is None and budget.get("monthly_limit_usd") is not None:
        monthly = money(budget["monthly_limit_usd"]) + DEFAULT_MARK
    hourly_limit = (budget.get("hourly") or {}).get("limit_usd")
    if unset.get("hourly_budget_usd") is None and hourly_limit is not None:
        hourly = money(hourly_limit) + DEFAULT_MARK
    return monthly, hourly


def change_status(ctx: Context) -> None:
    a = ctx.args
    key = ctx.client().post(f"/admin/keys/{path_param(a.key_id)}/{a.action}")
    if ctx.json:
        ctx.print_json(key)
        return
    ctx.print(f"{a.verb} key {key.get('key_id', a.key_id)} of {key.get('user')}: status is now {key.get('status')}.")


def rotate(ctx: Context) -> None:
    a = ctx.args
    body = {"grace_s": int(a.grace.total_seconds())} if a.grace is not None else {}
    key = ctx.client().post(f"/admin/keys/{path_param(a.key_id)}/rotate", body)
    if ctx.json:
        ctx.print_json(key)
        return
    previous = key.get("previous") or {}
    ctx.print(f"Rotated {a.key_id}: new key {key.get('key_id')} for {key.get('user')}.")
    ctx.print()
    ctx.print(f"    {key.get('key')}")
    ctx.print()
    ctx.print(ONCE_WARNING)
    old_id, status = previous.get("key_id", a.key_id), previous.get("status")
    if status in (None, "active"):
        ctx.print(f"The old key {old_id} works until {when(previous.get('expires_at'))}.")
    else:  # suspended (or expired): rotating does not make it work again
        ctx.print(f"The old key {old_id} is {status}: it does not work, and ends at {when(previous.get('expires_at'))}."
                  + (f" To let it work until then: {invocation.command()} keys resume {old_id}"
                     if status == "suspended" else ""))


def _details(key: dict) -> str:
    return fields([
        ("key id", key.get("key_id")),
        ("user", key.get("user")),
        ("name", key.get("name")),
        ("scopes", ", ".join(key.get("scopes") or [])),
        ("status", key.get("status")),
        ("created", when(key.get("created_at"))),
        ("expires", when(key.get("expires_at"), none="never")),
        ("monthly budget", money(key.get("monthly_budget_usd"), none="default")),
        ("hourly budget", money(key.get("hourly_budget_usd"), none="default")),
        ("rpm", key.get("rpm") if key.get("rpm") is not None else "default"),
        ("tpm", key.get("tpm") if key.get("tpm") is not None else "default"),
        ("response cache", "the user's" if key.get("cache_ttl_s") is None
         else f"{key['cache_ttl_s']} s" if key["cache_ttl_s"] else "off"),
    ])
