"""Prompt text is logged only for a user an operator turned it on for."""
from __future__ import annotations

from tests.e2e.logcapture import captured
from tests.integration.world import body_of


def _ask(world, raw, text):
    return world.call("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [
        {"role": "user", "content": text}]}, principal=world.principal(raw))


def test_prompt_logging_is_off_by_default_and_on_only_for_the_chosen_user(world):
    admin_raw, _ = world.create_key(user="root", scopes=("admin",))
    admin = world.principal(admin_raw)
    alice, _ = world.create_key(user="alice")
    bob, _ = world.create_key(user="bob")
    assert body_of(world.call("GET", "/admin/users/alice", principal=admin))["log_prompts"] is False

    with captured() as logs:
        _ask(world, alice, "alice-secret-before")
        resp = world.call("PUT", "/admin/users/alice", {"log_prompts": True}, principal=admin)
        assert resp["statusCode"] == 200 and body_of(resp)["log_prompts"] is True
        _ask(world, alice, "alice-visible-after")
        _ask(world, bob, "bob-never-logged")
    out = logs.text
    assert "alice-visible-after" in out
    assert "alice-secret-before" not in out and "bob-never-logged" not in out

    bad = world.call("PUT", "/admin/users/alice", {"log_prompts": "yes"}, principal=admin)
    assert bad["statusCode"] == 400
