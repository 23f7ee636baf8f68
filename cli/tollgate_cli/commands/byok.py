"""`tollgate byok set | show | delete`: your own provider key (bring your own key).

The key belongs to the calling user, so these commands authenticate with that user's Tollgate API key
(--tollgate-key or TOLLGATE_API_KEY, needing the byok:manage scope), falling back to the admin key. The
provider key is never taken from the command line (it would land in shell history and `ps`): it is
read from --provider-key-file, from a pipe, or typed at a prompt without echo. The two flags name whose
key they take, so neither can be mistaken for the other.
"""
from __future__ import annotations

import argparse
import getpass
import sys

from tollgate.providers.registry import DEFAULT_FACTORIES
from tollgate_cli import config
from tollgate_cli.arguments import refuse
from tollgate_cli.client import AdminClient, path_param
from tollgate_cli.context import Context
from tollgate_cli.errors import CliError, UsageError
from tollgate_cli.formatting import fields, when
from tollgate_cli.redaction import check_credential, shown

PROVIDERS = tuple(sorted(DEFAULT_FACTORIES))
MAX_KEY_CHARS = 512


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    byok = subparsers.add_parser("byok", help="store, show and delete your own provider keys",
                                 description="Bring your own provider key: requests to that provider then use it.")
    sub = byok.add_subparsers(dest="byok_command", metavar="ACTION", required=True)

    p = sub.add_parser("set", parents=[common], help="validate and store your key for a provider",
                       description="Validate your key with the provider, then store it encrypted. The provider "
                                   "key is read from --provider-key-file, from standard input, or typed without "
                                   "echo; never from the command line.")
    _provider(p)
    p.add_argument("--provider-key-file", metavar="FILE",
                   help="read the provider's API key (e.g. OpenAI's sk-...) from this file ('-': standard input)")
    refuse(p, ("--provider-key", "--key", "--api-key", "--openai-key", "--anthropic-key"),
           "a provider key is never taken from the command line (it would stay in the shell's history); "
           "put it in a file and pass --provider-key-file FILE, pipe it in, or type it at the prompt. Your "
           "Tollgate key goes in --tollgate-key. The value given is not repeated.")
    p.set_defaults(handler=set_key, parser=p)

    p = sub.add_parser("show", parents=[common], help="show your stored key for a provider (last 4 characters)",
                       description="Show your stored key for a provider: its last 4 characters and dates.")
    _provider(p)
    p.set_defaults(handler=show, parser=p)

    p = sub.add_parser("delete", parents=[common], help="delete your stored key for a provider",
                       description="Delete your stored key: requests to that provider use the platform's key again.")
    _provider(p)
    p.set_defaults(handler=delete, parser=p)


def _provider(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provider", required=True, choices=PROVIDERS, help=f"one of: {', '.join(PROVIDERS)}")
    p.add_argument("--tollgate-key", dest="api_key", metavar="KEY",
                   help=f"your Tollgate API key (not the provider's), with the byok:manage scope "
                        f"(env {config.API_KEY_ENV}; default: the admin key)")


def _client(ctx: Context) -> AdminClient:
    return ctx.user_client("byok:manage")

def _path(provider: str) -> str:
    return f"/v1/provider-keys/{path_param(provider)}"


def read_provider_key(ctx: Context) -> str:
    a = ctx.args
    if a.provider_key_file and a.provider_key_file != "-":
        try:
            with open(a.provider_key_file, encoding="utf-8") as f:
                text = f.read(MAX_KEY_CHARS * 2)
        except OSError as e:
            raise CliError(f"cannot read --provider-key-file {shown(a.provider_key_file)}: {e.strerror or e}") from None
    elif a.provider_key_file == "-" or not sys.stdin.isatty():
        text = sys.stdin.readline()
    else:
        text = getpass.getpass(f"{a.provider} API key (not echoed): ")
    key = text.strip()
    if not key:
        raise UsageError("no provider key given (empty input)")
    if len(key) > MAX_KEY_CHARS:
        raise UsageError(f"the provider key is longer than {MAX_KEY_CHARS} characters")
    source = ("--provider-key-file" if a.provider_key_file and a.provider_key_file != "-"
              else "the provider key from standard input" if a.provider_key_file == "-" or not sys.stdin.isatty()
              else "the provider key typed")
    return check_credential(key, source)  # it goes in a header to the provider: no placeholder, no spaces


def set_key(ctx: Context) -> None:
    provider_key = read_provider_key(ctx)
    client = _client(ctx)
    try:
        result = client.put(_path(ctx.args.provider), {"api_key": provider_key})
    except CliError as e:  # the gateway never echoes it; be sure anyway
        e.message = e.message.replace(provider_key, "[redacted]")
        raise
    if ctx.json:
        ctx.print_json(result)
        return
    ctx.print(f"Stored your {result.get('provider', ctx.args.provider)} key ending in "
              f"{result.get('last4')}; the provider accepted it.")
    ctx.print("Requests to this provider use it within a minute (once cached credentials expire).")


def show(ctx: Context) -> None:
    result = _client(ctx).get(_path(ctx.args.provider))
    if ctx.json:
        ctx.print_json(result)
        return
    ctx.print(fields([
        ("provider", result.get("provider")),
        ("key", f"…{result.get('last4')}" if result.get("last4") else None),
        ("created", when(result.get("created_at"))),
        ("updated", when(result.get("updated_at"))),
        ("validated", when(result.get("validated_at"))),
    ], indent=""))


def delete(ctx: Context) -> None:
    result = _client(ctx).request("DELETE", _path(ctx.args.provider))
    if ctx.json:
        ctx.print_json(result)
        return
    ctx.print(f"Deleted your {ctx.args.provider} key: requests to {ctx.args.provider} use the platform's key.")
