"""Key lifecycle and service tokens through the CLI and the SDKs, against the local stack."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.e2e.test_sdks import tollgate


def _chat(client):
    return client.chat.completions.create(model="gpt-4o-mini", max_tokens=5,
                                          messages=[{"role": "user", "content": "lifecycle"}])


def test_a_service_token_from_the_cli_calls_the_gateway(local_stack):
    issued = tollgate(local_stack, "tokens", "issue", "--service", "nightly-report", "--scopes", "ai:complete",
                      "--ttl", "15m")
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=issued["token"], max_retries=0)
    assert _chat(client).choices
    usage = tollgate(local_stack, "usage", "--user", "svc:nightly-report")
    assert len(usage["records"]) == 1


def test_rotation_keeps_the_old_key_for_the_grace_period_and_budgets_follow_the_line(local_stack):
    old = tollgate(local_stack, "keys", "create", "--user", "e2e-rotor", "--monthly-budget-usd", "5")
    rotated = tollgate(local_stack, "keys", "rotate", old["key_id"], "--grace", "1h")
    assert rotated["key"] != old["key"] and rotated["lineage"] == old["key_id"]
    assert rotated["previous"]["expires_at"] is not None
    for key in (old["key"], rotated["key"]):
        assert _chat(openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key, max_retries=0)).choices
    budget = tollgate(local_stack, "budgets", "show", "--key", rotated["key_id"])
    assert budget["monthly_limit_usd"] == "5" and float(budget["spent_usd"]) > 0  # both calls, one budget


def test_a_rotated_key_is_not_rotated_again_and_its_expiry_is_listed(local_stack):
    """The new user's sequence: rotate --grace 24h, then rotate the same key --grace 1h. The second used to
    make another successor that expired with the first rotation's grace; now it is a 409 naming the first."""
    old = tollgate(local_stack, "keys", "create", "--user", "e2e-twice")
    first = tollgate(local_stack, "keys", "rotate", old["key_id"], "--grace", "24h")
    assert first["expires_at"] is None
    done = subprocess.run([str(Path(sys.executable).parent / "tollgate"), "keys", "rotate", old["key_id"], "--grace", "1h"],
                          env=local_stack.env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "409" in done.stderr and f"rotate {first['key_id']}" in done.stderr, done.stderr
    short = tollgate(local_stack, "keys", "create", "--user", "e2e-twice", "--expires-in", "1s")
    time.sleep(1.2)
    listed = {k["key_id"]: k for k in tollgate(local_stack, "keys", "list", "--user", "e2e-twice")["keys"]}
    assert set(listed) == {old["key_id"], first["key_id"], short["key_id"]}
    assert listed[old["key_id"]]["rotated_to"] == first["key_id"] and listed[old["key_id"]]["status"] == "active"
    assert listed[short["key_id"]]["status"] == "expired" and listed[first["key_id"]]["status"] == "active"


def test_a_revoked_key_stops_once_the_authorizer_cache_expires(local_stack):
    key = tollgate(local_stack, "keys", "create", "--user", "e2e-leaked")
    client = openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=key["key"], max_retries=0)
    assert _chat(client).choices
    tollgate(local_stack, "keys", "revoke", key["key_id"])
    local_stack.emulator.clear_authorizer_cache()  # what API Gateway does when the 30 s TTL runs out
    with pytest.raises(openai.AuthenticationError):
        _chat(client)


def test_per_user_settings_from_the_cli(local_stack):
    assert tollgate(local_stack, "users", "show", "--user", "e2e-debug")["log_prompts"] is False
    changed = tollgate(local_stack, "users", "set", "--user", "e2e-debug", "--log-prompts", "on")
    assert changed == {"user": "e2e-debug", "monthly_usd": None, "byok_budget_exempt": False, "log_prompts": True,
                       "cache_ttl_s": 0}
