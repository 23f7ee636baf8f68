"""`tollgate`: argument parsing and dispatch. Handlers live in tollgate_cli.commands.*."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tollgate_cli import __version__, config, invocation, parsing
from tollgate_cli.arguments import Parser
from tollgate_cli.commands import bootstrap, budgets, byok, keys, loops, models, runs, tokens, usage, users
from tollgate_cli.commands import invoice, reconcile
from tollgate_cli.context import Context
from tollgate_cli.errors import EXIT_USAGE, CliError, UsageError

EPILOG = f"""\
The gateway and admin key come from --endpoint / --admin-key, else {config.ENDPOINT_ENV} /
{config.ADMIN_KEY_ENV}, else the local stack (`make dev`): {config.STATE_DIR}/{config.ENDPOINT_FILE} or \
{config.LOCAL_ENDPOINT},
and {config.STATE_DIR}/{config.ADMIN_KEY_FILE}, looked for in this directory and its parents.
"""


def _options(*, top_level: bool, api: bool = True) -> argparse.ArgumentParser:
    """Options every command takes. They work before or after the command name: below the top level
    their default is SUPPRESS, so an option not repeated there keeps its top-level value."""
    p = Parser(add_help=False)
    unset = {} if top_level else {"default": argparse.SUPPRESS}
    if api:
        p.add_argument("--endpoint", metavar="URL", help=f"the gateway's URL (env {config.ENDPOINT_ENV})", **unset)
        p.add_argument("--admin-key", metavar="KEY", help=f"an admin API key (env {config.ADMIN_KEY_ENV})", **unset)
        p.add_argument("--timeout", type=parsing.positive_float, metavar="SECONDS",
                       help="HTTP timeout (default: 30)", **unset)
    p.add_argument("--json", action="store_true", help="print the API's JSON answer", **unset)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=invocation.command(), parents=[_options(top_level=True)], epilog=EPILOG,
                                     description="Manage a Tollgate gateway: API keys, usage and budgets.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tollgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _options(top_level=False)
    keys.register(sub, common)
    usage.register(sub, common)
    models.register(sub, common)
    budgets.register(sub, common)
    byok.register(sub, common)
    tokens.register(sub, common)
    users.register(sub, common)
    runs.register(sub, common)
    loops.register(sub, common)
    invoice.register(sub, common)
    reconcile.register(sub, common)
    bootstrap.register(sub, _options(top_level=False, api=False))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    ctx = Context(args=args, out=sys.stdout, environ=os.environ, cwd=Path.cwd())
    try:
        args.handler(ctx)
    except UsageError as e:
        command = getattr(args, "parser", parser)
        command.print_usage(sys.stderr)
        print(f"{command.prog}: error: {e.message}", file=sys.stderr)
        return e.exit_code
    except CliError as e:
        print(f"tollgate: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tollgate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tollgate keys list | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
