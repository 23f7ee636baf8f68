"""`make sim-hotkey`: one hot key under DynamoDB's documented limits, served by the real ledger
(tollgate.store.ledger: reserve, settle, escrow slices) against a simulated table in virtual time
(tools.sim_hotkey.client), for the single-item design (1 shard) and the adaptive escrow design.

Each simulated request runs in its own Lambda container (one request at a time, as Lambda runs them; a
new container, with an empty memory, when none is free): reserve, the provider's answer, settle. Reported
per design and budget: admitted requests a second, p99 of the time spent in DynamoDB calls (reserve +
settle: the latency the ledger adds), the share of transactions cancelled by TransactionConflict, write
units per admitted request, overshoot in USD (spent beyond a level's limit, over every level), and the
requests refused (409, or a budget or rate refusal) while every counter they needed had room for them at
that instant (the counter's pool and slices summed): "near" starts each level with $4 left, which runs out
during the run. The line before the last: `refused_with_money=N one_shard_refused_with_money=M` (over
both budgets; counted in the warm-up too, so it can exceed the measured `offered`). Last line: `hot_key_rps=X overshoot_usd=Y` (the adaptive design far from its limits; the
largest overshoot of any run). Deterministic (seeded), a few minutes of CPU.
"""
from __future__ import annotations

import argparse
import logging
import random
import types
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tollgate.errors import BudgetExceeded, Conflict, RateLimited
from tollgate.store import escrow
from tollgate.store.counters import (KEY_HOUR, KEY_MONTH, USER_MONTH, Level, Window, hour_sk, minute_window, month_sk,
                                     principal_pk, user_pk)
from tollgate.store.ledger import Ledger, Plan
from tools.sim_hotkey.client import SimClient
from tools.sim_hotkey.clock import Clock
from tools.sim_hotkey.params import SOURCES, Params
from tools.sim_hotkey.table import Tables

NOW = datetime(2026, 11, 27, 14, 30, 0, tzinfo=timezone.utc)
BUDGETS, USAGE = "budgets", "usage"
CENT = Decimal("0.0000001")


@dataclass
class Result:
    """One scenario's outcome: requests offered, admitted, refused (BudgetExceeded) and failed (409), the
    latency the ledger added per request (seconds), DynamoDB work, and money: USD spent past any level's
    limit (overshoot_usd, must be 0), USD left, whether spent equals the usage records' sum."""

    design: str
    budget: str
    offered: int = 0
    admitted: int = 0
    refused: int = 0  # BudgetExceeded: the budget had no room (correct answers near the limit)
    failed: int = 0  # Conflict / throttled beyond the ledger's retries: a 409 the client may retry
    settle_failed: int = 0
    refused_with_money: int = 0  # refused (either way) while every counter it needed had room for it: must be 0
    added_s: list[float] = field(default_factory=list)
    transactions: int = 0
    conflicts: int = 0
    write_units: int = 0
    overshoot_usd: Decimal = Decimal(0)
    left_usd: Decimal = Decimal(0)
    balanced: bool = True  # spent on every level = the usage records' sum

    def p99_ms(self) -> float:
        """The 99th percentile of the latency the ledger added, milliseconds (0 without requests)."""
        s = sorted(self.added_s)
        return 1000 * s[min(len(s) - 1, int(0.99 * len(s)))] if s else 0.0


def _levels(limit: Decimal) -> tuple[Level, ...]:
    floor = limit * Decimal("0.2")
    return (Level(KEY_MONTH, principal_pk("sk-hotkey0001"), month_sk(NOW), limit, floor),
            Level(KEY_HOUR, principal_pk("sk-hotkey0001"), hour_sk(NOW), limit, floor, 1_900_000_000),
            Level(USER_MONTH, user_pk("fleet"), month_sk(NOW), limit, floor))


def room(tables: Tables, levels: tuple[Level, ...], window: Window, cost: Decimal, tokens: int) -> bool:
    """Whether, at this instant, every counter a request needs has room for it: each level's remaining USD
    and the window's remaining requests and tokens, summed over the counter's pool (its limit if never
    written) and its slices, fit the request's worst case (`cost` USD, `tokens`)."""
    def total(pk: str, sk: str, attribute: str, start: Decimal | int) -> Decimal:
        pool = tables.items.get((BUDGETS, pk, sk))
        out = Decimal((pool or {}).get(attribute, start))
        for k in range(1, escrow.MAX_SHARDS + 1):
            out += Decimal(tables.items.get((BUDGETS, escrow.slice_pk(pk, k), sk), {}).get(attribute, 0))
        return out

    return (all(total(lvl.pk, lvl.sk, "remainingUsd", lvl.limit) >= cost for lvl in levels)
            and total(window.pk, window.sk, window.requests_attr, window.rpm) >= 1
            and total(window.pk, window.sk, window.tokens_attr, window.tpm) >= tokens)


def run(p: Params, design: str, shards: int | None, budget: str, left: Decimal | None = None) -> Result:
    """One run: `left`, every level starts with only this much of its limit left (its warning long sent)."""
    random.seed(p.seed)
    rng = random.Random(p.seed)
    clock = Clock()
    tables = Tables({BUDGETS: ("pk", "sk"), USAGE: ("pk", "sk")})
    client = SimClient(clock, tables, p)
    free: list[Ledger] = []
    out = Result(design, budget)
    levels = _levels(p.far_limit_usd)
    for lvl in levels if left is not None else ():
        tables.items[(BUDGETS, lvl.pk, lvl.sk)] = {
            "pk": lvl.pk, "sk": lvl.sk, "limitUsd": lvl.limit, "remainingUsd": left, "reservedUsd": Decimal(0),
            "spentUsd": lvl.limit - left, "warned": True}
    window = minute_window("sk-hotkey0001", NOW, p.rpm, p.rpm * 10_000, 60, 1_900_000_000)  # the production layout
    usage_total = [Decimal(0)]

    def request(n: int, measured: bool) -> None:
        ledger = free.pop() if free else Ledger(BUDGETS, USAGE, client, shards=shards)
        stats = out if measured else Result(design, budget)
        cost = (p.cost_min + (p.cost_max - p.cost_min) * Decimal(rng.random())).quantize(CENT)
        rid = f"sim-{n:07d}"
        plan = Plan(request_id=rid, user="fleet", principal_id="sk-hotkey0001", levels=levels, window=window,
                    cost=cost, tokens=2_000, started_at=NOW, expires_at=NOW + timedelta(minutes=15),
                    usage_sk=f"{NOW.isoformat()}#{rid}")
        t0 = clock.now
        try:
            res = ledger.reserve(plan)
        except (BudgetExceeded, Conflict, RateLimited) as refusal:
            if isinstance(refusal, BudgetExceeded):
                stats.refused += 1
            else:
                stats.failed += 1
            out.refused_with_money += room(tables, levels, window, cost, plan.tokens)  # in any phase
            free.append(ledger)
            return
        reserved = clock.now - t0
        clock.sleep(p.provider_s)
        actual = (cost * Decimal(rng.uniform(0.2, 1.0))).quantize(CENT)
        t1 = clock.now
        try:
            ok = ledger.settle(res, {"pk": "fleet", "sk": plan.usage_sk, "requestId": rid, "costUsd": actual},
                               actual, 1_000)
        except Exception:  # noqa: BLE001 - counted: the sweeper would release it, unmetered
            ok = False
        if ok:
            stats.admitted += 1
            usage_total[0] += actual
            stats.added_s.append(reserved + clock.now - t1)
        else:
            out.settle_failed += 1  # counted in any phase: an unmetered answer
        free.append(ledger)

    t, n = 0.0, 0
    while True:
        t += rng.expovariate(p.offered_rps)
        if t >= p.warmup_s + p.seconds:
            break
        clock.spawn(t, lambda n=n, measured=t >= p.warmup_s: request(n, measured))
        out.offered += t >= p.warmup_s
        n += 1
    real_time = escrow.time  # the ledger's backoff sleeps in virtual time (shardedAt keeps the wall clock)
    escrow.time = types.SimpleNamespace(sleep=clock.sleep, time=real_time.time,  # type: ignore[assignment]
                                        monotonic=lambda: clock.now)
    try:
        clock.run()
    finally:
        escrow.time = real_time  # type: ignore[assignment]
    out.transactions, out.conflicts, out.write_units = (client.counts.transactions, client.counts.conflicts,
                                                         client.counts.write_units)
    for lvl in levels:
        items = [i for (table, pk, sk), i in tables.items.items()
                 if table == BUDGETS and sk == lvl.sk and (pk == lvl.pk or pk.endswith("#" + lvl.pk)
                                                           and pk.startswith("SHARD#"))]
        spent = sum((Decimal(i.get("spentUsd", 0)) for i in items), Decimal(0))
        reserved = sum((Decimal(i.get("reservedUsd", 0)) for i in items), Decimal(0))
        remaining = sum((Decimal(i.get("remainingUsd", 0)) for i in items), Decimal(0))
        out.overshoot_usd = max(out.overshoot_usd, spent + reserved - lvl.limit)
        out.left_usd = remaining if lvl.kind == USER_MONTH else out.left_usd
        out.balanced &= spent - (lvl.limit - left if left is not None else 0) == usage_total[0] and reserved == 0
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, help="seconds of arrivals per run")
    ap.add_argument("--rps", type=float, help="offered requests a second")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    p = Params()
    if args.seconds:
        p = replace(p, seconds=args.seconds)
    if args.rps:
        p = replace(p, offered_rps=args.rps)
    print(f"hot-key simulation: one key and user, Poisson arrivals at {p.offered_rps:g}/s for {p.seconds:g} s measured "
          f"after {p.warmup_s:g} s of warm-up, "
          f"provider answer {p.provider_s * 1000:g} ms, worst case ${p.cost_min}-${p.cost_max}, seed {p.seed}")
    print(f"DynamoDB: {p.item_wcu_per_s:g} WCU/s per item (bucket {p.burst_s:g} s), transactional write 2 WCU/KB, "
          f"round trip {2000 * p.one_way_s:g} ms, transaction holds its items {1000 * p.transaction_s:g} ms, "
          f"read {1000 * p.read_s:g} ms; escrow: up to {escrow.MAX_SHARDS} slices, first {escrow.FIRST_SHARDS}, "
          f"borrow {escrow.REFILL_REQUESTS} requests' worth")
    for what, source in SOURCES.items():
        print(f"  source: {what}: {source}")
    runs = []
    for budget, left in (("far", None), ("near", p.near_left_usd)):
        for design, shards in (("1 shard", 1), ("adaptive", None)):
            runs.append(run(p, design, shards, budget, left))
    print(f"{'design':10} {'budget':6} {'offered':>7} {'admitted/s':>10} {'refused':>7} {'failed':>6} "
          f"{'unsettled':>9} {'p99 added ms':>12} {'conflicts':>9} {'WRU/req':>7} {'overshoot $':>11} "
          f"{'left $':>10} balanced {'refused w/ money':>16}")
    for r in runs:
        print(f"{r.design:10} {r.budget:6} {r.offered:7d} {r.admitted / p.seconds:10.0f} {r.refused:7d} {r.failed:6d} "
              f"{r.settle_failed:9d} {r.p99_ms():12.1f} {r.conflicts / max(1, r.transactions):9.1%} "
              f"{r.write_units / max(1, r.admitted):7.1f} {r.overshoot_usd:11.7f} {r.left_usd:10.7f} "
              f"{r.balanced!s:8} {r.refused_with_money:16d}")
    adaptive_far = next(r for r in runs if r.design == "adaptive" and r.budget == "far")
    overshoot = max(max(r.overshoot_usd for r in runs), Decimal(0))
    with_money = {d: sum(r.refused_with_money for r in runs if r.design == d) for d in ("adaptive", "1 shard")}
    print(f"refused_with_money={with_money['adaptive']} one_shard_refused_with_money={with_money['1 shard']}")
    print(f"hot_key_rps={adaptive_far.admitted / p.seconds:.0f} overshoot_usd={overshoot.normalize():f}")


if __name__ == "__main__":
    main()
