"""Virtual time for the simulation: every simulated request runs the real (synchronous) ledger code in its
own greenlet; a call that takes time (a DynamoDB round trip, a backoff sleep, the provider's answer)
schedules the greenlet's wake-up and switches to the loop, which wakes greenlets in time order. One
greenlet runs at a time and ties break by scheduling order, so a run is deterministic."""
from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import greenlet


class Clock:
    """A virtual clock (`now`, seconds from the run's start) and the loop waking greenlets in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, greenlet.greenlet]] = []
        self._seq = 0
        self._loop: greenlet.greenlet | None = None

    def _at(self, when: float, g: greenlet.greenlet) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, g))

    def spawn(self, when: float, fn: Callable[[], Any]) -> None:
        """Run fn from virtual time `when` on."""
        self._at(when, greenlet.greenlet(fn))

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass for the calling greenlet."""
        self._at(self.now + max(0.0, seconds), greenlet.getcurrent())
        self._loop.switch()  # type: ignore[union-attr]

    def run(self) -> None:
        """Run every scheduled greenlet to its end."""
        self._loop = greenlet.getcurrent()
        while self._queue:
            when, _, g = heapq.heappop(self._queue)
            self.now = when
            if g.parent is not self._loop:
                g.parent = self._loop
            g.switch()
