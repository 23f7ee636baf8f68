"""Many independent gateways (as separate Lambda containers would be: own service, own boto3 clients)
sharing one emulated DynamoDB."""
from __future__ import annotations

import json
import random
import threading
from typing import Any

import boto3

from tollgate.auth.principal import Principal
from tollgate.pricing import Catalogue
from tollgate.providers.base import ProviderResult, Usage
from tollgate.service import MeteredGateway
from tollgate.settings import Settings
from tollgate.store.ledger import Ledger


class RandomUsageProvider:
    """An in-memory provider: answers at once with a random usage within the request's own caps."""

    name = "openai"

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.calls = 0
        self.lock = threading.Lock()

    def call(self, operation: str, body: dict[str, Any], *, api_key: str) -> ProviderResult:
        with self.lock:
            self.calls += 1
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        usage = Usage(input_tokens=self.rng.randint(1, 40), output_tokens=self.rng.randint(1, cap))
        doc = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [],
               "usage": {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens}}
        return ProviderResult(200, json.dumps(doc).encode(), "application/json", usage, body["model"])


def independent_gateway(settings: Settings, seed: int, clock=None) -> tuple[MeteredGateway, RandomUsageProvider]:
    provider = RandomUsageProvider(seed)
    ledger = Ledger(settings.budgets_table, settings.usage_table, boto3.client("dynamodb"))
    kwargs = {"clock": clock} if clock else {}
    gateway = MeteredGateway(settings, Catalogue.load(), ledger, {"openai": provider},
                             lambda principal, name: ("sk-platform", False), **kwargs)
    return gateway, provider


def principal(user: str, key_id: str, **limits: Any) -> Principal:
    from tollgate.auth.principal import Limits

    return Principal(kind="api_key", id=key_id, user=user, scopes=frozenset({"ai:complete"}), limits=Limits(**limits))


def run_containers(target: Any, count: int, timeout_s: float = 240) -> None:
    """Run `target(n)` for n in 0..count-1, each on its own thread (one "Lambda container" each), and wait for
    all of them; fails the test if any is still running after `timeout_s` seconds (bounded, never hangs)."""
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)
    assert not any(t.is_alive() for t in threads), "a container did not finish in time"
