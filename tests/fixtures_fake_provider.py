"""pytest fixtures for the fake provider, imported by tests/conftest.py.

One server runs for the whole session; `fake_provider` hands it to a test with its call log cleared.
OpenAI base URL: f"{fake_provider.url}/v1"; Anthropic base URL: fake_provider.url.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.fake_provider import FakeProvider


@pytest.fixture(scope="session")
def fake_provider_server() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_provider(fake_provider_server: FakeProvider) -> FakeProvider:
    fake_provider_server.reset()
    return fake_provider_server
