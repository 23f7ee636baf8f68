"""local.dev: what `make dev` prints and where it puts the fake provider (the README's `$FAKE`)."""
from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

from local import dev
from local.fake_provider import FakeProvider


def _stack(fake):
    return SimpleNamespace(state_dir=Path(".tollgate"), providers={"openai": "fake"}, persist=False, restored=0,
                           url="http://127.0.0.1:8080", aws_endpoint="http://127.0.0.1:5000", fake=fake)


def test_the_banner_prints_the_fake_providers_url_ready_to_export():
    shown = dev.banner(_stack(SimpleNamespace(url="http://127.0.0.1:8081")))
    assert "export FAKE=http://127.0.0.1:8081" in shown
    assert "FAKE=" not in dev.banner(_stack(None))  # real providers only: no fake to point at


def test_the_fake_takes_the_port_after_the_apis_and_any_free_one_when_that_is_taken():
    assert dev.fake_port_for(8080) == 8081 and dev.fake_port_for(0) == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fake = FakeProvider()
        try:
            url = dev.start_preferring(fake.start, port)
            assert url.startswith("http://127.0.0.1:") and not url.endswith(f":{port}")
        finally:
            fake.stop()
