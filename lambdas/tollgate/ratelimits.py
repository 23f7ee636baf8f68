"""Requests- and tokens-per-minute limits: one fixed one-minute window per principal, in DynamoDB.

A fixed window shared by every container is the limit that holds across Lambda instances; the cost
is that a client may burst up to twice the limit across a window boundary.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from tollgate import periods
from tollgate.auth.principal import Principal
from tollgate.settings import Settings
from tollgate.store.counters import Window, margin  # noqa: F401


def window_for(principal: Principal, now: datetime, settings: Settings) -> Window:
    lim = principal.limits
    return Window(
        pk=f"RATE#{principal.account}",
        sk=f"MIN#{periods.minute(now)}",
        rpm=lim.rpm if lim.rpm is not None else settings.default_rpm,
        tpm=lim.tpm if lim.tpm is not None else settings.default_tpm,
        resets_in_s=periods.seconds_to_next_minute(now),
        expires=periods.epoch(now + timedelta(minutes=10)),
    )


def headers(window: Window, remaining_requests: int, remaining_tokens: int) -> dict[str, str]:
    reset = f"{max(0.0, window.resets_in_s):.3f}s"
    return {
        "x-ratelimit-limit-requests": str(window.rpm),
        "x-ratelimit-remaining-requests": str(max(0, remaining_requests)),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(window.tpm),
        "x-ratelimit-remaining-tokens": str(max(0, remaining_tokens)),
        "x-ratelimit-reset-tokens": reset,
    }
