from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest

from local.aws import serialised_mock_aws
from local.tables import provision
from tests.integration.world import World
from tollgate import wiring
from tollgate.schema import Env


@pytest.fixture
def world(fake_provider, monkeypatch) -> Iterator[World]:
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
        yield World(env=env, fake=fake_provider)
        wiring.reset()
