"""Scope names: what a principal may do."""
from __future__ import annotations

COMPLETE = "ai:complete"
EMBED = "ai:embed"
AGENTS_RUN = "agents:run"
BYOK_MANAGE = "byok:manage"
ADMIN = "admin"
ACT_AS = "act-as"

ALL = (COMPLETE, EMBED, AGENTS_RUN, BYOK_MANAGE, ADMIN, ACT_AS)
# What a new API key gets when none are named (the article's default).
DEFAULT_KEY_SCOPES = (COMPLETE, EMBED)


def unknown(scopes: list[str] | tuple[str, ...]) -> list[str]:
    return [s for s in scopes if s not in ALL]
