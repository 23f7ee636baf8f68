"""Fixtures shared by every test tier."""
from __future__ import annotations

import os

# Never reach a real AWS account from a test, whatever the machine's environment holds.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ[_name] = "testing"
os.environ.pop("AWS_PROFILE", None)

from tests.fixtures_fake_provider import fake_provider, fake_provider_server  # noqa: E402,F401
