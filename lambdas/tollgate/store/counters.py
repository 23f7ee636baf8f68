"""The counter items the ledger reserves against: budget levels, rate-limit windows, loop counters, and
their keys. Value types only; the domain (tollgate.budgets, tollgate.ratelimits, tollgate.loopguard)
decides which apply to a request and with what limits."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from tollgate import periods

KEY_MONTH = "key_month"
USER_MONTH = "user_month"
KEY_HOUR = "key_hour"
RUN = "run"

LABELS = {
    KEY_MONTH: "monthly budget of this API key",
    USER_MONTH: "monthly budget of this user",
    KEY_HOUR: "hourly spend cap of this API key",
    RUN: "budget of this agent run",
}


@dataclass(frozen=True)
class Level:
    kind: str
    pk: str
    sk: str
    limit: Decimal
    warning_floor: Decimal  # remaining below this is the warning zone
    expires: int | None = None  # epoch seconds for the item's TTL; None keeps it
    must_exist: bool = False  # created elsewhere with its limit (an agent run's budget); never created here
    owner: str | None = None  # the item's `user` must equal this (a run is charged only for its own user)
    warning_share: Decimal | None = None  # warning_floor / limit (tollgate.budgets); None: derived from them

    @property
    def label(self) -> str:
        return LABELS[self.kind]

    def with_limit(self, limit: Decimal) -> Level:
        """This level held to another limit (USD), its warning floor the same share of it as before."""
        share = self.warning_share
        if share is None:
            share = self.warning_floor / self.limit if self.limit > 0 else Decimal(0)
        return replace(self, limit=limit, warning_floor=limit * share)


RUN_SK = "RUN"


def user_pk(user: str) -> str:
    return f"BUDGET#USER#{user}"


def principal_pk(principal_id: str) -> str:
    return f"BUDGET#KEY#{principal_id}"


def run_pk(run_id: str) -> str:
    return f"BUDGET#RUN#{run_id}"


def month_sk(now: datetime) -> str:
    return f"MONTH#{periods.month(now)}"


def hour_sk(now: datetime) -> str:
    return f"HOUR#{periods.hour(now)}"


@dataclass(frozen=True)
class Window:
    """A requests- and tokens-per-minute window: two counters on item (pk, sk), by default the attributes
    remainingRequests and remainingTokens of an item of its own per minute. A principal's windows live on
    its key-hour budget item instead (minute_window), as attributes named by the minute: the request writes
    that item anyway, so the window costs no write of its own (issue 15 item 3)."""

    pk: str
    sk: str
    rpm: int
    tpm: int
    resets_in_s: float
    expires: int
    requests_attr: str = "remainingRequests"
    tokens_attr: str = "remainingTokens"
    drop: tuple[str, ...] = ()  # attributes of other windows on the same item, removed by each reservation

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.resets_in_s)))

    @property
    def remove_others(self) -> str:
        """An update expression's REMOVE clause for `drop` ("" when there is none)."""
        return " REMOVE " + ", ".join(self.drop) if self.drop else ""


def minute_attrs(minute: int) -> tuple[str, str]:
    """The window attributes of minute `minute` (0-59) of an hour, on that hour's key item."""
    return f"requestsLeftAtMinute{minute:02d}", f"tokensLeftAtMinute{minute:02d}"


CLEARED_MINUTES = 5  # a window removes the attributes of the minutes this many before it


def minute_window(principal_id: str, now: datetime, rpm: int, tpm: int, resets_in_s: float, expires: int) -> Window:
    """The window of `now`'s minute on the principal's key-hour item (pk principal_pk, sk hour_sk(now)).
    Taking it removes the windows of the CLEARED_MINUTES minutes before (a later reservation, or a late
    token refund, finds none of them needed: those minutes are over), so only windows followed by
    CLEARED_MINUTES quiet minutes stay, at most 60 / (CLEARED_MINUTES + 1) an hour (~50 B each): the item
    stays under 1 KB, one write unit. (Removing all 59 others would be tidier, but an expression that long
    costs the emulator ~0.5 s a transaction.) `expires`: the key-hour item's TTL (it outlives the window)."""
    requests, tokens = minute_attrs(now.minute)
    before = tuple(a for m in range(max(0, now.minute - CLEARED_MINUTES), now.minute) for a in minute_attrs(m))
    return Window(principal_pk(principal_id), hour_sk(now), rpm, tpm, resets_in_s, expires, requests, tokens, before)


def loop_pk(user: str) -> str:
    """Loop counters are keyed by user, so an operator lists and clears a user's with one Query."""
    return f"LOOP#{user}"


@dataclass(frozen=True)
class LoopCounter:
    """One request pattern of one subject within a fixed window: the gateway-side loop guard
    (tollgate.loopguard decides the pattern and the limits).

    The item (pk `LOOP#<user>`, sk `<subject>#<fingerprint>#<window start>`) holds `hits` and
    `spentUsd` (worst-case input USD). A request is refused when hits >= max_hits, or when
    hits >= min_hits and spentUsd >= max_usd (both before this request)."""

    pk: str
    sk: str
    subject: str
    fingerprint: str
    kind: str
    description: str  # what repeats, for the refusal; never prompt text
    cost: Decimal  # USD this request adds to spentUsd
    max_hits: int
    min_hits: int
    max_usd: Decimal
    window_s: int
    window_end: int  # epoch seconds
    resets_in_s: float  # from the request's start to window_end
    expires: int  # epoch seconds for the item's TTL: a window after the window ends
