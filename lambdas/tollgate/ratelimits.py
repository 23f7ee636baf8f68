"""Requests- and tokens-per-minute limits: one fixed one-minute window per principal, in DynamoDB.

A fixed window shared by every container is the limit that holds across Lambda instances; the cost
is that a client may burst up to twice the limit across a window boundary. The window's counters are
attributes of the principal's key-hour budget item, named by the minute (store.counters.minute_window).
"""
from __future__ import annotations

from datetime import datetime

from tollgate import periods
from tollgate.auth.principal import Principal
from tollgate.budgets import hour_expiry
from tollgate.settings import Settings
from tollgate.store.counters import Window, minute_window


def window_for(principal: Principal, now: datetime, settings: Settings) -> Window:
    """The principal's window of `now`'s minute, on its key-hour budget item (counters.minute_window), which
    expires with that item (tollgate.budgets.hour_expiry)."""
    lim = principal.limits
    return minute_window(
        principal.account, now,
        rpm=lim.rpm if lim.rpm is not None else settings.default_rpm,
        tpm=lim.tpm if lim.tpm is not None else settings.default_tpm,
        resets_in_s=periods.seconds_to_next_minute(now),
        expires=hour_expiry(now),
    )


def headers(window: Window, remaining_requests: int | None, remaining_tokens: int | None) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers (https://platform.openai.com/docs/guides/rate-limits): remaining =
    limit - used in the current window, reset in seconds. A remaining value passed as None is not known
    exactly (the ledger's counter was contended) and its header is left out rather than guessed."""
    reset = f"{max(0.0, window.resets_in_s):.3f}s"
    out = {
        "x-ratelimit-limit-requests": str(window.rpm),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(window.tpm),
        "x-ratelimit-reset-tokens": reset,
    }
    if remaining_requests is not None:
        out["x-ratelimit-remaining-requests"] = str(max(0, remaining_requests))
    if remaining_tokens is not None:
        out["x-ratelimit-remaining-tokens"] = str(max(0, remaining_tokens))
    return out
