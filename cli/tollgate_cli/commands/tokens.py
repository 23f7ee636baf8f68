"""`tollgate tokens issue`: a short-lived JWT service token (HS256), signed by the gateway."""
from __future__ import annotations

import argparse
import shlex
from datetime import timedelta

from tollgate import scopes
from tollgate.auth.jwt_tokens import MAX_TTL_S
from tollgate_cli import invocation, parsing
from tollgate_cli.context import Context
from tollgate_cli.formatting import fields, when
from tollgate_cli.known_users import service_user, warn_if_unknown


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tokens = subparsers.add_parser("tokens", help="issue service tokens", description="Issue JWT service tokens.")
    sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    p = sub.add_parser("issue", parents=[common], help="issue a service token",
                       description="Issue a JWT service token for an internal service. It is shown once.")
    p.add_argument("--service", required=True, help="the service's name (the token's subject)")
    p.add_argument("--scopes", nargs="+", required=True, type=parsing.scopes_of(scopes.ALL), metavar="SCOPE",
                   help=f"scopes to grant: {', '.join(scopes.ALL)} (spaces or commas between them)")
    p.add_argument("--ttl", type=parsing.duration_type(maximum=timedelta(seconds=MAX_TTL_S)), default=None,
                   metavar="DURATION",
                   help="lifetime, e.g. 30s, 15m, 1h (default 1h, at most 12h)")
    p.add_argument("--user", help="the user whose budgets the service's calls count against and under whom their "
                                  f"usage is recorded (default: {service_user('SERVICE')}, e.g. "
                                  f"`{invocation.command()} usage --user {service_user('nightly')}`)")
    p.set_defaults(handler=issue, parser=p)


def issue(ctx: Context) -> None:
    a = ctx.args
    body: dict = {"service": a.service, "scopes": parsing.flat(a.scopes)}
    if a.ttl is not None:
        body["ttl_s"] = int(a.ttl.total_seconds())
    if a.user:
        body["user"] = a.user
    result = ctx.client().post("/admin/tokens", body)
    if ctx.json:
        ctx.print_json(result)
        return
    ctx.print(result["token"])
    ctx.print()
    ctx.print(fields([("service", result.get("service")), ("scopes", " ".join(result.get("scopes") or [])),
                      ("expires", when(result.get("expires_at")))]))
    ctx.print("This token is shown once. Send it as `Authorization: Bearer <token>`.")
    ctx.print(f"Its usage: {invocation.command()} usage --user {shlex.quote(a.user or service_user(a.service))}")
    if a.user:
        warn_if_unknown(ctx, a.user, "The token's calls count against that user's budgets; check the spelling.")
