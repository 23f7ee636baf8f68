"""The gateway-side loop guard: the same principal sending the same request too often is refused.

A request's fingerprint is a hash of its model and its content (messages, system, tools, input), not of
sampling parameters, so a client retrying the same call with another temperature is still caught. The
counter is one more item in the reservation transaction: no extra round trip.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from tollgate.store.counters import LoopCounter

_CONTENT_FIELDS = ("model", "messages", "system", "tools", "functions", "input", "prompt")


def fingerprint(body: dict[str, Any]) -> str:
    content = {k: body.get(k) for k in _CONTENT_FIELDS if k in body}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def counter(principal_id: str, body: dict[str, Any], now: datetime, max_repeats: int, window_s: int) -> LoopCounter:
    window = int(now.timestamp()) // window_s
    return LoopCounter(pk=f"LOOP#{principal_id}", sk=f"{fingerprint(body)}#{window}", limit=max_repeats,
                       expires=(window + 2) * window_s)
