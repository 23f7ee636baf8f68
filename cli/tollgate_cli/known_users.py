"""Whether a user id names anyone: the gateway has no user table, so a user is known by their API keys.

Commands that take a user id accept ids that match nobody (a budget may be set before a user's first
key), but say so on standard error, so a typo does not pass silently.
"""
from __future__ import annotations

from tollgate_cli.context import Context
from tollgate_cli.errors import CliError

# A service token's calls are recorded under this prefix + the service name (tollgate.auth.jwt_tokens).
SERVICE_USER_PREFIX = "svc:"


def service_user(service: str) -> str:
    """The user id a service token's usage and budgets are recorded under when it names no user."""
    return f"{SERVICE_USER_PREFIX}{service}"


def warn_if_unknown(ctx: Context, user: str, consequence: str) -> None:
    """Print a warning if `user` has no API key. Service users (svc:NAME) have none by design. A failed
    lookup prints nothing: the warning is advice, and the command itself has already run."""
    if user.startswith(SERVICE_USER_PREFIX):
        return
    try:
        keys = ctx.client().get("/admin/keys", {"user": user}).get("keys")
    except CliError:
        return
    if not keys:
        ctx.warn(f"warning: no user {user!r} is known (they have no API key). {consequence}")
