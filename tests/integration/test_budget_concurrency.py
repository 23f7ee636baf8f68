"""The hard cap under concurrency: many containers, one budget, no overshoot, no drift."""
from __future__ import annotations

import random
import threading
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.integration.concurrency import independent_gateway, principal, run_containers
from tollgate import budgets
from tollgate.errors import BudgetExceeded, RateLimited
from tollgate.service import MeteredRequest
from tollgate.settings import Settings
from tollgate.store.dynamo import from_item

THREADS = 32


def _items(world, table_env, **query):
    pages = world.dynamodb.get_paginator("scan").paginate(TableName=world.env[table_env])
    return [from_item(i) for p in pages for i in p["Items"]]


def _counter(world, pk, sk):
    item = world.dynamodb.get_item(TableName=world.env["TOLLGATE_BUDGETS_TABLE"],
                                   Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
    return from_item(item)


def test_32_containers_never_overshoot_one_users_budget_and_the_ledger_balances(world):
    settings = Settings.from_env()
    budget = Decimal("0.25")
    now = datetime.now(timezone.utc)
    accepted: dict[str, Decimal] = {}
    refused: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def container(n: int) -> None:
        gateway, _ = independent_gateway(settings, seed=n)
        who = principal("carol", f"sk-key{n % 4:08d}", user_monthly_usd=budget, rpm=10_000, tpm=10_000_000)
        rng = random.Random(1000 + n)
        start.wait()
        for _ in range(12):
            rid = str(uuid.uuid4())
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * rng.randint(1, 400)}],
                    "max_tokens": rng.randint(50, 2000)}
            try:
                reply = gateway.handle(MeteredRequest(rid, "/v1/chat/completions", who, body))
            except BudgetExceeded:
                with lock:
                    refused.append(rid)
                continue
            with lock:
                accepted[rid] = Decimal(reply.headers["x-tollgate-cost-usd"])

    run_containers(container, THREADS)

    records = _items(world, "TOLLGATE_USAGE_TABLE")
    by_request = {r["requestId"]: r for r in records}
    assert len(records) == len(by_request) == len(accepted)  # exactly one record per 2xx
    assert set(by_request) == set(accepted) and not set(refused) & set(by_request)
    assert all(Decimal(by_request[rid]["costUsd"]) == cost for rid, cost in accepted.items())

    user_month = _counter(world, budgets.user_pk("carol"), budgets.month_sk(now))
    total = sum((Decimal(r["costUsd"]) for r in records), Decimal(0))
    assert user_month["spentUsd"] == total  # exact: Decimal end to end, no drift
    assert user_month["spentUsd"] <= budget
    assert user_month["reservedUsd"] == 0
    assert user_month["remainingUsd"] == budget - total
    assert refused, "the budget should have run out under this load"
    assert accepted, "some requests should have fitted"
    assert _items(world, "TOLLGATE_BUDGETS_TABLE")
    assert not [r for r in records if r["status"] in ("pending", "released") or "pendingShard" in r]  # every one settled


@pytest.mark.parametrize("instances", [4])
def test_independent_instances_share_one_keys_requests_per_minute(world, instances):
    settings = Settings.from_env()
    rpm = 10
    frozen = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(instances * 4)

    def worker(n: int) -> None:
        gateway, _ = independent_gateway(settings, seed=n, clock=lambda: frozen)
        who = principal("dave", "sk-sharedkey1", rpm=rpm)
        start.wait()
        for _ in range(6):
            try:
                gateway.handle(MeteredRequest(str(uuid.uuid4()), "/v1/chat/completions", who,
                                              {"model": "gpt-4o-mini", "max_tokens": 20,
                                               "messages": [{"role": "user", "content": "hi"}]}))
                result = "ok"
            except RateLimited as exc:
                assert exc.headers["retry-after"] == "55"
                result = "limited"
            with lock:
                outcomes.append(result)

    run_containers(worker, instances * 4, timeout_s=120)
    assert len(outcomes) == instances * 4 * 6
    assert outcomes.count("ok") == rpm
