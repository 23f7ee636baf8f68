"""The CLI's messages and help say what is true (issue 10): plain-decimal amounts, no secret echoed back,
warnings for users nobody has, help texts present, default budgets shown as what they are."""
from __future__ import annotations

import pytest

from tests.unit.test_cli import BUDGET_KEY, BUDGET_USER, KEY, NEW_KEY, api, clean_env, cli  # noqa: F401 - fixtures
from tollgate_cli import parsing


@pytest.mark.parametrize("amount", ["1,5", "1_0", "1e3", "-1", "1.2.3", "", "ten", "$", "1 0", "nan", "Infinity"])
def test_amounts_that_are_not_plain_decimals_are_refused_without_a_call(api, cli, amount):
    code, out, err = cli("budgets", "set", "--user", "alice", "--monthly-usd", amount)
    assert code == 2 and api.requests == []
    assert "plain decimal" in err


@pytest.mark.parametrize("amount,sent", [("15", "15"), ("1.50", "1.50"), ("$2", "2"), (".5", "0.5"), ("0", "0")])
def test_plain_decimals_are_sent_as_given(amount, sent):
    assert parsing.usd(amount) == sent


@pytest.mark.parametrize("argv", [
    ["budgets", "show", "--key", NEW_KEY],
    ["budgets", "set", "--key", NEW_KEY, "--monthly-usd", "5"],
    ["keys", "revoke", NEW_KEY],
    ["keys", "rotate", NEW_KEY],
])
def test_a_whole_secret_key_is_refused_and_never_echoed(api, cli, argv):
    code, out, err = cli(*argv)
    assert code == 2 and api.requests == []
    assert NEW_KEY not in out + err and NEW_KEY[12:] not in out + err
    assert "12-character key id" in err


def test_a_key_id_is_accepted(api, cli):
    api.on("GET", "/admin/budgets", BUDGET_KEY)
    assert cli("budgets", "show", "--key", NEW_KEY[:12])[0] == 0
    assert api.requests[0]["query"] == {"key": [NEW_KEY[:12]]}


def test_zero_grace_is_refused_saying_why(api, cli):
    code, _, err = cli("keys", "rotate", NEW_KEY[:12], "--grace", "0s")
    assert code == 2 and api.requests == []
    assert "longer than zero" in err and "revoke" in err


def test_help_lists_rotate_and_explains_usage_user_and_service_users(cli):
    assert cli("keys", "--help")[1].count("rotate") >= 1
    usage_help = cli("usage", "--help")[1]
    assert "svc:SERVICE" in " ".join(usage_help.split())
    tokens_help = " ".join(cli("tokens", "issue", "--help")[1].split())
    assert "svc:SERVICE" in tokens_help and "usage --user svc:nightly" in tokens_help


@pytest.mark.parametrize("argv,route,body", [
    (["budgets", "set", "--user", "ghost", "--monthly-usd", "5"], ("PUT", "/admin/budgets"), BUDGET_USER),
    (["budgets", "show", "--user", "ghost"], ("GET", "/admin/budgets"), BUDGET_USER),
    (["users", "show", "--user", "ghost"], ("GET", "/admin/users/ghost"), {"user": "ghost"}),
    (["tokens", "issue", "--service", "nightly", "--scopes", "ai:complete", "--user", "ghost"],
     ("POST", "/admin/tokens"), {"token": "t", "service": "nightly", "scopes": ["ai:complete"]}),
])
def test_users_without_a_key_get_a_warning_not_an_error(api, cli, argv, route, body):
    api.on(*route, body)
    api.on("GET", "/admin/keys", {"keys": []})
    code, out, err = cli(*argv)
    assert code == 0, err
    assert "warning: no user 'ghost' is known" in err
    assert [r["query"] for r in api.requests if r["path"] == "/admin/keys"] == [{"user": ["ghost"]}]

    api.requests.clear()
    api.on("GET", "/admin/keys", {"keys": [KEY]})
    code, _, err = cli(*argv)
    assert code == 0 and "warning" not in err


def test_service_users_are_not_looked_up(api, cli):
    api.on("GET", "/admin/budgets", BUDGET_USER)
    code, _, err = cli("budgets", "show", "--user", "svc:nightly")
    assert code == 0 and "warning" not in err
    assert "/admin/keys" not in [r["path"] for r in api.requests]


def test_keys_list_shows_the_effective_default_budgets(api, cli):
    api.on("GET", "/admin/keys", {"keys": [{**KEY, "monthly_budget_usd": None, "hourly_budget_usd": None}]})
    api.on("GET", "/admin/budgets", {**BUDGET_KEY, "monthly_limit_usd": "100",
                                     "hourly": {**BUDGET_KEY["hourly"], "limit_usd": "25"}})
    code, out, err = cli("keys", "list")
    assert code == 0, err
    row = out.splitlines()[1]
    assert "$100.00*" in row and "$25.00*" in row
    assert "default budget" in out
    assert api.requests[-1]["query"] == {"key": [KEY["key_id"]]}


def test_byok_flags_say_whose_key_they_take(cli):
    help_text = " ".join(cli("byok", "set", "--help")[1].split())
    assert "--provider-key-file" in help_text and "--tollgate-key" in help_text
    assert "--api-key" not in help_text and "--key-file FILE" not in help_text.replace("--provider-key-file FILE", "")


def test_resume_help_says_a_revoked_key_stays_revoked(cli):
    help_text = " ".join(cli("keys", "resume", "--help")[1].split())
    assert "suspended key" in help_text and "revoked key cannot be resumed" in help_text
