"""UTC period keys. Counters are keyed by period, so a new month or hour needs no reset job."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


def month(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m")


def hour(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")


def minute(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M")


def seconds_to_next_minute(t: datetime) -> float:
    t = t.astimezone(timezone.utc)
    nxt = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return (nxt - t).total_seconds()


def epoch(t: datetime) -> int:
    return int(t.timestamp())
