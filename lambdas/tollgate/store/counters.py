"""The counter items the ledger reserves against: budget levels, rate-limit windows, loop counters, and
their keys. Value types only; the domain (tollgate.budgets, tollgate.ratelimits, tollgate.loopguard)
decides which apply to a request and with what limits."""
from __future__ import annotations

import math
from dataclasses import dataclass
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

    @property
    def label(self) -> str:
        return LABELS[self.kind]


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
    pk: str
    sk: str
    rpm: int
    tpm: int
    resets_in_s: float
    expires: int

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.resets_in_s)))


@dataclass(frozen=True)
class LoopCounter:
    """Identical requests from one principal within a window: the gateway-side loop guard."""

    pk: str
    sk: str
    limit: int
    expires: int
