"""Issue 9, fault 2: a revoked key cannot be resumed, from the CLI either; the key stays refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.e2e.test_sdks import tollgate


def test_resume_of_a_revoked_key_is_409_in_the_cli_and_the_key_stays_401(local_stack):
    key = tollgate(local_stack, "keys", "create", "--user", "e2e-revoked-for-good")
    tollgate(local_stack, "keys", "revoke", key["key_id"])
    done = subprocess.run([str(Path(sys.executable).parent / "tollgate"), "keys", "resume", key["key_id"]],
                          env=local_stack.env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "revoked" in done.stderr and "409" in done.stderr, done.stderr
    local_stack.emulator.clear_authorizer_cache()  # what API Gateway does when the 30 s TTL runs out
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key["key"], max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
