from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.kms import models as kms_models

from local.aws import serialised_mock_aws
from local.tables import provision
from tests.integration.world import World
from tollgate import wiring
from tollgate.store import ledger as ledger_module
from tollgate.schema import Env

_create_client = boto3.client
_clients: dict[tuple[Any, ...], Any] = {}


def _shared_client(service_name: str, *args: Any, **kwargs: Any) -> Any:
    """boto3.client, but one client per (arguments, endpoint) for the session's main thread.

    Building a botocore client costs ~75 ms of CPU; a `world` test builds five or more (its tables, then
    every collaborator `wiring` rebuilds after its reset), which was most of each such test's time. A
    client holds no emulated state (moto keeps that in its backends, which `mock_aws` resets), so one
    client serves every test, as one serves every request of a warm Lambda container. Other threads keep
    their own: the concurrency tests model separate containers, each with its own clients."""
    if threading.current_thread() is not threading.main_thread():
        return _create_client(service_name, *args, **kwargs)
    key = (service_name, args, tuple(sorted(kwargs.items())), os.environ.get("AWS_ENDPOINT_URL"),
           os.environ.get("AWS_DEFAULT_REGION"))
    try:
        client = _clients.get(key)
    except TypeError:  # an unhashable argument: nothing to share
        return _create_client(service_name, *args, **kwargs)
    if client is None:
        client = _clients[key] = _create_client(service_name, *args, **kwargs)
    return client


_generate_private_key = kms_models.generate_private_key


@functools.lru_cache(maxsize=None)
def _one_private_key(key_spec: str) -> Any:
    return _generate_private_key(key_spec)


def _private_key(key_spec: str) -> Any:
    """moto gives every KMS key an RSA-2048 pair for Sign/Verify (~65 ms of CPU), a SYMMETRIC_DEFAULT key
    too, for which KMS refuses Sign, Verify and GetPublicKey; each `world` creates one such key (BYOK),
    so those share one pair. Their encryption key material stays per key; asymmetric keys keep their own."""
    return _one_private_key(key_spec) if key_spec == "SYMMETRIC_DEFAULT" else _generate_private_key(key_spec)


@pytest.fixture
def world(fake_provider, monkeypatch) -> Iterator[World]:
    monkeypatch.setattr(boto3, "client", _shared_client)
    monkeypatch.setattr(kms_models, "generate_private_key", _private_key)
    with serialised_mock_aws():
        env = provision(boto3.client, prefix=f"t{uuid.uuid4().hex[:8]}")
        env.update({
            Env.OPENAI_BASE_URL: f"{fake_provider.url}/v1",
            Env.ANTHROPIC_BASE_URL: fake_provider.url,
            Env.OPENAI_API_KEY: "sk-fake-platform-openai",
            Env.ANTHROPIC_API_KEY: "sk-fake-platform-anthropic",
            Env.BCRYPT_ROUNDS: "4",
            Env.PROVIDER_MAX_RETRIES: "0",
            Env.PROVIDER_TIMEOUT_S: "5",
        })
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        wiring.reset()
        yield World(env=env, fake=fake_provider, dynamodb=boto3.client("dynamodb"))
        wiring.reset()


@pytest.fixture(autouse=True)
def _emulator_time(monkeypatch):
    """The emulator serialises every call (~30 ms each in-process, more on a loaded machine), so the
    concurrency tests' 24 to 64 threads queue for seconds per call where DynamoDB answers in milliseconds:
    the escrow's time budget (ledger._SHARDED_BUDGET_S, 5 s) is scaled to match, so a reservation is
    answered by the limits, never by running out of time (a test that loops still ends)."""
    monkeypatch.setattr(ledger_module, "_SHARDED_BUDGET_S", 120.0)
