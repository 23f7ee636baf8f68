"""Every parameter of the hot-key simulation, with its source. Times in seconds, money in USD."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

DG = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"


@dataclass(frozen=True)
class Params:
    """The simulation's inputs: DynamoDB's limits (documented or assumed, as marked), the traffic, the
    budgets. Seconds, USD, requests; each value's source in SOURCES or its comment."""

    # -- DynamoDB (documented) --
    item_wcu_per_s: float = 1000.0
    # transactional writes: 2 WCU per started KB of the item (client.py, from tools.costing's item sizes)
    # -- DynamoDB (not documented as numbers: assumptions) --
    burst_s: float = 0.1  # an item's token bucket holds 0.1 s of its throughput
    one_way_s: float = 0.001  # Lambda to DynamoDB in one Region, one way
    transaction_s: float = 0.004  # a TransactWriteItems holds its items this long (both phases)
    read_s: float = 0.002  # a strongly consistent BatchGetItem's service time
    # -- the traffic --
    offered_rps: float = 1500.0  # one key, one user: Poisson arrivals
    warmup_s: float = 0.5  # of arrivals first, not measured: every container starts cold and learns the key
    seconds: float = 1.0  # of measured arrivals per scenario, after the warm-up
    provider_s: float = 0.2  # the provider's answer (between reserve and settle)
    cost_min: Decimal = Decimal("0.001")  # a request's worst case, uniform in [min, max]
    cost_max: Decimal = Decimal("0.01")
    far_limit_usd: Decimal = Decimal("100000")  # "far from its limits": every budget level
    near_left_usd: Decimal = Decimal("4")  # "at its limit": every level starts with this much of far_limit_usd
    # left (past its 80% warning), so it runs out during the run
    rpm: int = 10_000_000  # the rate window: never the limit here, but written by every request
    seed: int = 16


SOURCES = {
    "item_wcu_per_s": DG + "warm-throughput-scenarios.html (\"each individual partition is limited to 1,000 write "
                           "units per second\"); " + DG + "throttling-key-range-limit-exceeded-mitigation.html",
    "2 WCU per KB, transactional": DG + "transaction-apis.html#transaction-capacity-handling",
    "TransactionConflict": DG + "transaction-apis.html#transaction-conflict-handling (a transaction on an item "
                                "another transaction holds is cancelled)",
    "ThrottlingError / retries with backoff": DG + "Programming.Errors.html#Programming.Errors.RetryAndBackoff; "
                                              "the ledger's own retries (tollgate.store.ledger._transact)",
    "burst_s, one_way_s, transaction_s, read_s": "assumptions: AWS documents single-digit-millisecond latency, "
                                                 "not these figures; each is printed with the results",
    "traffic (offered_rps, warmup_s, seconds)": "the issue's target (issue 16: one key at 1,000 requests a second "
                                                "and more), offered at 1,500/s so the admitted rate has room above it",
    "provider_s, cost_min, cost_max": "assumptions: a short chat answer's wait and worst case (tools/costing's "
                                      "request shape is 256 max_tokens); the ledger's protocol does not depend on them",
    "far_limit_usd, near_left_usd, rpm": "chosen: far never reaches a limit; near runs out within the run; the "
                                         "rate window is written by every request but never the limit",
    "seed": "any: the run is deterministic for a seed",
    "escrow: 32 slices at most, 8 first, borrows of 32 requests": "tollgate.store.escrow (MAX_SHARDS, FIRST_SHARDS, "
                                                                  "REFILL_REQUESTS): the code under test, not inputs",
}
