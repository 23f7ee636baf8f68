"""Budget levels: which counters a request is held against, and their limits.

Every metered request reserves its worst-case cost on each level in one transaction. Levels:
key per month, user per month, key per hour (the burn cap: spend velocity), and agent run.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from tollgate import periods
from tollgate.auth.principal import Principal
from tollgate.settings import Settings
from tollgate.store.counters import (KEY_HOUR, KEY_MONTH, LABELS, RUN, RUN_SK, USER_MONTH, Level,  # noqa: F401
                                     hour_sk, month_sk, principal_pk, run_pk, user_pk)

def hour_expiry(now: datetime) -> int:
    """Epoch seconds of the TTL of `now`'s key-hour item (its hourly cap and the minute windows it holds)."""
    return periods.epoch(now + timedelta(days=2))


def levels_for(principal: Principal, now: datetime, settings: Settings, *,
               run_id: str | None = None) -> list[Level]:
    lim = principal.limits
    floor = Decimal(1) - settings.warning_threshold

    def level(kind: str, pk: str, sk: str, limit: Decimal, expires: int | None = None) -> Level:
        return Level(kind, pk, sk, limit, limit * floor, expires, warning_share=floor)

    levels = [
        level(KEY_MONTH, principal_pk(principal.account), month_sk(now),
              lim.key_monthly_usd if lim.key_monthly_usd is not None else settings.default_key_monthly_usd),
        level(KEY_HOUR, principal_pk(principal.account), hour_sk(now),
              lim.key_hourly_usd if lim.key_hourly_usd is not None else settings.default_key_hourly_usd,
              hour_expiry(now)),
        level(USER_MONTH, user_pk(principal.user), month_sk(now),
              lim.user_monthly_usd if lim.user_monthly_usd is not None
              else settings.default_user_monthly_usd),
    ]
    if run_id is not None:
        # The run's budget item is written when the run is created; its limit lives there, not here.
        levels.append(Level(RUN, run_pk(run_id), RUN_SK, Decimal(0), Decimal(0), must_exist=True,
                            owner=principal.user))
    return levels
