"""The response cache settings in the CLI (`tollgate users set --cache-ttl`, `tollgate keys create --cache-ttl`)
against the stub admin API of tests/unit/test_cli.py."""
from __future__ import annotations

from tests.unit.test_cli import KEY, NEW_KEY, api, clean_env, cli  # noqa: F401 - fixtures


def test_users_set_cache_ttl_sends_it_and_shows_it(api, cli):  # noqa: F811
    settings = {"user": "alice", "log_prompts": False, "byok_budget_exempt": False, "cache_ttl_s": 3600}
    api.on("PUT", "/admin/users/alice", settings)
    code, out, err = cli("users", "set", "--user", "alice", "--cache-ttl", "3600")
    assert code == 0, err
    assert api.last["body"] == {"cache_ttl_s": 3600}
    assert "3600 s" in out
    api.on("GET", "/admin/users/alice", {**settings, "cache_ttl_s": 0})
    code, out, _ = cli("users", "show", "--user", "alice")
    assert code == 0 and out.split("response cache")[1].splitlines()[0].strip(" :") == "off"


def test_keys_create_cache_ttl_sends_it_and_shows_it(api, cli):  # noqa: F811
    api.on("POST", "/admin/keys", {"key": NEW_KEY, **KEY, "cache_ttl_s": 0}, status=201)
    code, out, err = cli("keys", "create", "--user", "alice", "--cache-ttl", "0")
    assert code == 0, err
    assert api.last["body"] == {"user": "alice", "cache_ttl_s": 0}
    assert out.split("response cache")[1].splitlines()[0].strip(" :") == "off"
