"""What a new user types wrong, refused before anything is sent and never repeated back when it is a secret:
credentials that cannot go in a header, abbreviated or secret-taking options, things that are not key ids,
durations; and the CLI's own hints, which name the program as it was invoked."""
from __future__ import annotations

import argparse
import json
import ast
import os
import re
import sys
from pathlib import Path

import pytest

from tests.unit.test_cli import ADMIN_KEY, BUDGET_KEY, BUDGET_USER, KEY, NEW_KEY, api, clean_env, cli  # noqa: F401
from tollgate.runs import AGENTS
from tollgate_cli import invocation
from tollgate_cli.errors import InputError
from tollgate_cli.main import build_parser
from tollgate_cli.redaction import check_credential, looks_secret, redact

SECRET = "sk-SECRETsecretSECRETsecretSECRETsecretSECRETsecr"  # shaped like a key: never to be echoed
USER_KEY = "sk-USERKEYuserkeyUSERKEYuserkeyUSERKEYuserkeyUSERKEY"


# --- 1. credentials and URLs that cannot be sent --------------------------------------------------------------

def _credential_sources(api, monkeypatch, clean_env, value):
    """(argv, name of the source) for each place a key comes from, with `value` put there."""
    yield ["--admin-key", value, "keys", "list"], "--admin-key"
    yield ["keys", "list", "--admin-key", value], "--admin-key"
    yield ["byok", "show", "--provider", "openai", "--tollgate-key", value], "--tollgate-key"
    yield ["runs", "show", "run_1", "--api-key", value], "--tollgate-key"
    monkeypatch.setenv("TOLLGATE_API_KEY", value)
    yield ["byok", "show", "--provider", "openai"], "TOLLGATE_API_KEY"
    monkeypatch.delenv("TOLLGATE_API_KEY")
    monkeypatch.setenv("TOLLGATE_ADMIN_KEY", value)
    yield ["keys", "list"], "TOLLGATE_ADMIN_KEY"
    monkeypatch.delenv("TOLLGATE_ADMIN_KEY")
    state = clean_env / ".tollgate"
    state.mkdir()
    (state / "admin-key").write_text(value + "\n", encoding="utf-8")
    yield ["keys", "list"], str(state.resolve() / "admin-key")


@pytest.mark.parametrize("value,shown,position,hint", [
    ("sk-\u2026", "'\u2026' (U+2026 HORIZONTAL ELLIPSIS)", 4, "not the README's placeholder"),
    ("sk-SECRETsecret\u00e9SECRET", "'\u00e9' (U+00E9 LATIN SMALL LETTER E WITH ACUTE)", 16, "plain ASCII"),
    ("sk-SECRET\x07secret", "'\\x07' (U+0007, a control character)", 10, "no spaces or line breaks"),
    ("sk-SECRET secret", "' ' (U+0020 SPACE)", 10, "no spaces or line breaks"),
    ("sk-SECRET\u00a0secret", "'\\xa0' (U+00A0 NO-BREAK SPACE)", 10, "no spaces or line breaks"),
])
def test_a_key_that_cannot_go_in_a_header_is_one_line_naming_its_source(api, cli, monkeypatch, clean_env, value,
                                                                         shown, position, hint):
    for argv, source in _credential_sources(api, monkeypatch, clean_env, value):
        code, out, err = cli(*argv)
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err and out == ""
        assert err.startswith(f"tollgate: {source} contains {shown} at position {position}: "), err
        assert hint in err
        assert "SECRET" not in err  # the value is never repeated
        assert api.requests == []


def test_a_key_with_bearer_in_front_is_refused_without_echo(api, cli):
    code, _, err = cli("--admin-key", f"Bearer {SECRET}", "keys", "list")
    assert code == 2 and "'Bearer '" in err and "--admin-key" in err
    assert SECRET not in err and SECRET[3:12] not in err and api.requests == []


def test_a_plain_key_passes_the_check():
    assert check_credential(SECRET, "--admin-key") == SECRET
    with pytest.raises(InputError) as e:
        check_credential("sk-\u2026", "X")
    assert e.value.exit_code == 2


@pytest.mark.parametrize("path,shown,position", [
    ("/st\u00e9ge", "U+00E9", 26), ("/\u2026", "U+2026", 24), ("/a b", "U+0020", 25), ("/a\tb", "U+0009", 25),
])
def test_an_endpoint_that_cannot_be_sent_is_one_line(api, cli, path, shown, position):
    code, _, err = cli("--endpoint", api.url + path, "keys", "list")
    assert len(api.url) == 22
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert f"--endpoint contains" in err and shown in err and f"position {position}" in err
    assert api.requests == []


# --- 2. no abbreviations; secrets given as options are refused without echo -------------------------------------

def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_accepts_abbreviations():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 20
    assert [p.prog for p in parsers if p.allow_abbrev] == []


@pytest.mark.parametrize("argv", [
    ["keys", "create", "--user", "alice", "--na", "laptop"],  # was --name
    ["keys", "list", "--use", "alice"],
    ["usage", "--user", "alice", "--lim", "5"],
    ["budgets", "set", "--key", KEY["key_id"], "--monthly", "5"],
])
def test_abbreviated_options_are_refused(api, cli, argv):
    code, _, err = cli(*argv)
    assert code == 2 and "unrecognized arguments" in err and api.requests == []


@pytest.mark.parametrize("flag", ["--provider-key", "--key", "--api-key"])
@pytest.mark.parametrize("joined", [False, True])
def test_byok_set_refuses_a_provider_key_on_the_command_line(api, cli, flag, joined):
    value = "sk-oops"
    argv = ["byok", "set", "--provider", "openai", *([f"{flag}={value}"] if joined else [flag, value])]
    code, out, err = cli(*argv)
    assert code == 2 and api.requests == []
    assert value not in out + err and "never taken from the command line" in err and "--provider-key-file" in err
    assert "cannot read" not in err


@pytest.mark.parametrize("argv,secret", [
    (["byok", "set", "--provider", "openai", "--provider-key-fil", "sk-oops"], "sk-oops"),
    (["keys", "list", "--token", "AbCdEf1234567890XyZ12345"], "AbCdEf1234567890XyZ12345"),
    (["keys", "list", "--token=AbCdEf1234567890XyZ12345"], "AbCdEf1234567890XyZ12345"),
    (["keys", "list", "--auth", "Bearer", "eyJhbGciOiJIUzI1NiJ9.e30.abc"], "eyJhbGciOiJIUzI1NiJ9"),
    (["byok", "set", "--provider", "sk-proj-abc123"], "sk-proj-abc123"),
    (["keys", "rotate", KEY["key_id"], "--grace", SECRET], SECRET[3:]),
])
def test_argparse_errors_do_not_repeat_secret_looking_values(api, cli, argv, secret):
    code, out, err = cli(*argv)
    assert code == 2 and api.requests == []
    assert secret not in out + err and "[redacted]" in err


def test_a_key_file_name_that_looks_like_a_secret_is_not_repeated(api, cli, clean_env):
    argv = ["byok", "set", "--provider", "openai", "--tollgate-key", USER_KEY, "--provider-key-file"]
    code, _, err = cli(*argv, "sk-oops-this-is-the-key")
    assert code == 1 and "cannot read --provider-key-file" in err and "sk-oops" not in err
    code, _, err = cli(*argv, "missing.key")  # a file name is still named
    assert code == 1 and "cannot read --provider-key-file missing.key" in err
    code, _, err = cli("runs", "start", "--agent", AGENTS[0], "--budget-usd", "1", "--input-file", SECRET)
    assert code == 2 and "cannot read --input-file" in err and SECRET not in err and SECRET[3:] not in err
    assert api.requests == []


@pytest.mark.parametrize("text", [SECRET, "sk-oops", "sk-proj-abc", "Bearer abc", "eyJhbGciOiJIUzI1NiJ9",
                                  SECRET[3:], "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "abcdef0123456789abcdef01"])
def test_looks_secret(text):
    assert looks_secret(text) and text not in redact(f"error: unrecognized arguments: --x {text}")


@pytest.mark.parametrize("text", ["alice", "svc:nightly", "sk-", "--provider-key-file", "openai.key",
                                  "/home/alice/Keys/openai2024key", "2026-11-27", "gpt-4o-mini-2024-07-18",
                                  "claude-sonnet-4-5-20250929", "123e4567-e89b-12d3-a456-426614174000",
                                  "us.anthropic.claude-sonnet-4-5-20250929-v1:0"])
def test_does_not_look_secret(text):
    assert not looks_secret(text) and redact(f"x {text}") == f"x {text}"


# --- 3. key ids -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    lambda k: ["keys", "revoke", k], lambda k: ["keys", "rotate", k], lambda k: ["budgets", "show", "--key", k],
    lambda k: ["budgets", "set", "--key", k, "--monthly-usd", "5"],
])
@pytest.mark.parametrize("value,reason,secret", [
    (f"Bearer {NEW_KEY}", "drop 'Bearer '", NEW_KEY[3:]),
    (f"Bearer {NEW_KEY[:12]}", "drop 'Bearer '", None),
    (NEW_KEY, "whole secret API key", NEW_KEY[3:]),
    (NEW_KEY[3:], "looks like a secret", NEW_KEY[3:]),
    ("sk-proj-" + "Ab1" * 15, "whole secret API key", "Ab1Ab1"),
    ("sk-NOPENOPENO", "not a key id (13 characters)", None),
    ("sk-nope", "not a key id (7 characters)", None),
    ("NEWKEYnew", "not a key id (9 characters)", None),
    ("sk-NEWKEYne\u2026", "not a key id (12 characters)", None),
])
def test_what_is_not_a_key_id_is_refused_locally(api, cli, command, value, reason, secret):
    code, out, err = cli(*command(value))
    assert code == 2 and api.requests == [], err
    assert reason in err and "12" in err
    if secret:
        assert secret not in out + err
    if "not a key id" in reason:
        assert "whole secret" not in err and "12 characters" in err


def test_a_key_id_passes(api, cli):
    api.on("POST", f"/admin/keys/{KEY['key_id']}/revoke", {**KEY, "status": "revoked"})
    assert cli("keys", "revoke", f" {KEY['key_id']} ")[0] == 0
    assert api.last["path"] == f"/admin/keys/{KEY['key_id']}/revoke"


# --- 4. hints name the program as it was run --------------------------------------------------------------------

def test_the_program_as_invoked(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert invocation.command("tollgate") == "tollgate"
    assert invocation.command(".venv/bin/tollgate") == ".venv/bin/tollgate"
    assert invocation.command("/opt/my tools/tollgate") == "'/opt/my tools/tollgate'"
    on_path = tmp_path / "bin" / "tollgate"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert invocation.command(str(on_path)) == "tollgate"  # the shell passes the full path it found
    assert invocation.command("/usr/lib/python3/site-packages/pytest/__main__.py") == "tollgate"
    assert invocation.command(str(Path("x") / "tollgate_cli" / "main.py")).endswith(" -m tollgate_cli.main")


@pytest.fixture
def as_venv(monkeypatch):
    monkeypatch.setattr(sys, "argv", [".venv/bin/tollgate"])
    return ".venv/bin/tollgate"


def test_hints_repeat_the_program_as_invoked(api, cli, as_venv, clean_env):
    (clean_env / "in.json").write_text('{"reviews": ["good"]}')
    api.on("POST", "/v1/agents/runs", {"id": "run_1", "agent": AGENTS[0], "budget_usd": "1", "status": "queued"}, 202)
    out = cli("runs", "start", "--agent", AGENTS[0], "--budget-usd", "1", "--input-file", "in.json")[1]
    assert "Follow it: .venv/bin/tollgate runs show run_1" in out

    api.on("POST", "/admin/tokens", {"token": "t", "service": "nightly", "scopes": ["ai:complete"]})
    out = cli("tokens", "issue", "--service", "nightly", "--scopes", "ai:complete")[1]
    assert "Its usage: .venv/bin/tollgate usage --user svc:nightly" in out

    api.on("GET", "/admin/keys", {"keys": [{**KEY, "monthly_budget_usd": None}]})
    api.on("GET", "/admin/budgets", BUDGET_KEY)
    out = cli("keys", "list")[1]
    assert "(set one: .venv/bin/tollgate budgets set --key KEY_ID)" in out

    err = cli("keys", "rotate", KEY["key_id"], "--grace", "0s")[2]
    assert "`.venv/bin/tollgate keys revoke KEY_ID`" in err and "usage: .venv/bin/tollgate keys rotate" in err
    err = cli("keys", "revoke", "sk-NOPENOPENO")[2]
    assert "`.venv/bin/tollgate keys list`" in err
    help_text = " ".join(cli("tokens", "issue", "--help")[1].split())
    assert "`.venv/bin/tollgate usage --user svc:nightly`" in help_text


_COMMANDS = "keys|usage|models|budgets|byok|tokens|users|runs|loops|invoice|reconcile|bootstrap"


def test_no_message_in_the_cli_hardcodes_a_bare_tollgate_command():
    """Every string in tollgate_cli but docstrings: a suggested command goes through invocation.command()."""
    root = Path(invocation.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and re.search(rf"\btollgate ({_COMMANDS})\b", node.value)):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


# --- 5. usage of a service under its bare name ------------------------------------------------------------------

def test_no_usage_for_a_bare_name_suggests_its_service_user(api, cli, as_venv):
    api.on("GET", "/admin/usage", {"user": "nightly", "records": []})
    code, out, _ = cli("usage", "--user", "nightly")
    assert code == 0 and out.splitlines()[0] == "No usage for nightly."
    assert "svc:NAME" in out and "`.venv/bin/tollgate usage --user svc:nightly`" in out
    api.on("GET", "/admin/usage", {"user": "svc:nightly", "records": []})
    assert cli("usage", "--user", "svc:nightly")[1] == "No usage for svc:nightly.\n"


# --- 6. durations -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grace,reason", [
    ("0", "longer than zero"), ("0s", "longer than zero"), ("0h0m", "longer than zero"), ("-1h", "negative"),
    ("=-1h", "negative"), ("30", "no unit"), ("1.5h", "whole numbers"), ("30x", "unknown unit 'x'"),
    ("30min", "unknown unit 'min'"), ("30m1h", "largest first"), ("1h1h", "largest first"), ("", "empty"),
    ("h", "a number and a unit"), ("400d", "at most 30d (400d is longer)"), ("30d1s", "at most 30d"),
    ("5w", "at most 30d"), ("\u0661h", "a number and a unit"),
])
def test_grace_refusals_say_why(api, cli, grace, reason):
    argv = ["keys", "rotate", KEY["key_id"], *([f"--grace{grace}"] if grace.startswith("=") else ["--grace", grace])]
    code, _, err = cli(*argv)
    assert code == 2 and api.requests == [], err
    assert reason in err and "expected one argument" not in err


@pytest.mark.parametrize("grace,seconds", [("1h30m", 5400), ("30d", 2592000), ("1d12h", 129600), ("4w", 2419200),
                                           ("90M", 5400), ("1s", 1)])
def test_grace_accepts_compounds_up_to_30_days(api, cli, grace, seconds):
    api.on("POST", f"/admin/keys/{KEY['key_id']}/rotate", {"key": NEW_KEY, **KEY, "previous": KEY})
    code, _, err = cli("keys", "rotate", KEY["key_id"], "--grace", grace)
    assert code == 0, err
    assert api.last["body"] == {"grace_s": seconds}


def test_token_ttl_is_checked_against_the_gateways_12_hours(api, cli):
    code, _, err = cli("tokens", "issue", "--service", "s", "--scopes", "ai:complete", "--ttl", "13h")
    assert code == 2 and "at most 12h" in err and api.requests == []
    api.on("POST", "/admin/tokens", {"token": "t", "service": "s", "scopes": ["ai:complete"]})
    assert cli("tokens", "issue", "--service", "s", "--scopes", "ai:complete", "--ttl", "11h59m")[0] == 0
    assert api.last["body"]["ttl_s"] == 43140


def test_a_key_lifetime_has_no_maximum(api, cli):
    api.on("POST", "/admin/keys", {"key": NEW_KEY, **KEY}, status=201)
    assert cli("keys", "create", "--user", "alice", "--expires-in", "400d")[0] == 0


# --- 7. default budgets are marked in budgets show / set ----------------------------------------------------------

DEFAULTS = {**BUDGET_KEY, "monthly_limit_usd": "100", "monthly_limit_is_default": True,
            "hourly": {**BUDGET_KEY["hourly"], "limit_usd": "25", "limit_is_default": True}}


def _limits(out: str) -> list[str]:
    return [line.split()[2] for line in out.splitlines() if line.startswith(("monthly", "hourly"))]


def test_budgets_show_marks_a_keys_default_limits(api, cli):
    api.on("GET", "/admin/budgets", DEFAULTS)
    code, out, err = cli("budgets", "show", "--key", KEY["key_id"])
    assert code == 0, err
    assert _limits(out) == ["$100.00*", "$25.00*"]
    assert f"* the deployment's default budget (set one: tollgate budgets set --key {KEY['key_id']} " \
           "--monthly-usd USD --hourly-usd USD)" in out
    assert [r["path"] for r in api.requests] == ["/admin/budgets"]  # the answer says so: no look-up

    api.on("GET", "/admin/budgets", {**DEFAULTS, "monthly_limit_is_default": False})
    out = cli("budgets", "show", "--key", KEY["key_id"])[1]
    assert _limits(out) == ["$100.00", "$25.00*"] and "--hourly-usd USD)" in out and "--monthly-usd" not in out

    api.on("GET", "/admin/budgets", {**DEFAULTS, "monthly_limit_is_default": False,
                                     "hourly": {**DEFAULTS["hourly"], "limit_is_default": False}})
    out = cli("budgets", "show", "--key", KEY["key_id"])[1]
    assert _limits(out) == ["$100.00", "$25.00"] and "default" not in out

    api.on("PUT", "/admin/budgets", {**DEFAULTS, "monthly_limit_usd": "5", "monthly_limit_is_default": False})
    out = cli("budgets", "set", "--key", KEY["key_id"], "--monthly-usd", "5")[1]
    assert _limits(out) == ["$5.00", "$25.00*"]

    api.on("GET", "/admin/budgets", DEFAULTS)
    code, out, _ = cli("budgets", "show", "--key", KEY["key_id"], "--json")  # the API's answer, unmarked
    assert code == 0 and "*" not in out and json.loads(out)["monthly_limit_is_default"] is True


def test_budgets_show_marks_a_users_default_limit(api, cli):
    api.on("GET", "/admin/budgets", {**BUDGET_USER, "monthly_limit_usd": "50", "monthly_limit_is_default": True})
    api.on("GET", "/admin/keys", {"keys": [KEY]})
    out = cli("budgets", "show", "--user", "alice")[1]
    assert _limits(out) == ["$50.00*"] and "budgets set --user alice --monthly-usd USD" in out
    api.on("GET", "/admin/budgets", {**BUDGET_USER, "monthly_limit_usd": "50", "monthly_limit_is_default": False})
    out = cli("budgets", "show", "--user", "alice")[1]
    assert _limits(out) == ["$50.00"] and "default" not in out


def test_an_answer_without_the_default_flags_leaves_the_limits_unmarked(api, cli):
    api.on("GET", "/admin/budgets", {**BUDGET_KEY, "monthly_limit_usd": "100"})  # an older gateway's answer
    code, out, _ = cli("budgets", "show", "--key", KEY["key_id"])
    assert code == 0 and "*" not in "".join(_limits(out))


@pytest.mark.parametrize("service, shown", [("night ly", "'svc:night ly'"), ("x;rm", "'svc:x;rm'"),
                                            ("nightly", "svc:nightly")])
def test_the_usage_hint_after_issuing_a_token_works_as_typed(api, cli, service, shown):
    api.on("POST", "/admin/tokens", {"token": "t", "service": service, "scopes": ["ai:complete"]})
    out = cli("tokens", "issue", "--service", service, "--scopes", "ai:complete")[1]
    assert f"usage --user {shown}\n" in out


@pytest.mark.parametrize("words", [["ai:complete,byok:manage"], ["ai:complete", "byok:manage"],
                                   ["ai:complete,", "byok:manage,ai:complete"]])
def test_scopes_may_be_given_as_keys_list_prints_them(api, cli, words):
    api.on("POST", "/admin/keys", {"key": NEW_KEY, **KEY}, status=201)
    assert cli("keys", "create", "--user", "alice", "--scopes", *words)[0] == 0
    assert api.requests[-1]["body"]["scopes"] == ["ai:complete", "byok:manage"]
    api.on("POST", "/admin/tokens", {"token": "t", "service": "n", "scopes": ["ai:complete", "byok:manage"]})
    assert cli("tokens", "issue", "--service", "n", "--scopes", *words)[0] == 0
    assert api.requests[-1]["body"]["scopes"] == ["ai:complete", "byok:manage"]


def test_an_unknown_scope_among_commas_is_named(api, cli):
    code, _, err = cli("keys", "create", "--user", "alice", "--scopes", "ai:complete,root")
    assert code == 2 and "invalid scope 'root'" in err and not api.requests


def test_rotating_a_suspended_key_does_not_say_the_old_key_works(api, cli):
    suspended = {**KEY, "status": "suspended", "expires_at": "2026-11-29T10:00:00.000Z"}
    api.on("POST", f"/admin/keys/{KEY['key_id']}/rotate", {"key": NEW_KEY, **KEY, "previous": suspended})
    out = cli("keys", "rotate", KEY["key_id"], "--grace", "1h")[1]
    assert "is suspended: it does not work" in out and "works until" not in out
    assert f"To let it work until then: tollgate keys resume {KEY['key_id']}" in out
    api.on("POST", f"/admin/keys/{KEY['key_id']}/rotate", {"key": NEW_KEY, **KEY, "previous": KEY})
    assert "works until" in cli("keys", "rotate", KEY["key_id"], "--grace", "1h")[1]
