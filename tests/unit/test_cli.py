"""The `tollgate` CLI against a stub admin API (canned contract responses) and, for bootstrap, moto."""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from tollgate import scopes
from tollgate.auth import api_keys
from tollgate.clock import parse_iso
from tollgate.schema import API_KEYS
from tollgate.store.api_keys import ApiKeyStore
from tollgate_cli import config
from tollgate_cli.formatting import money, table
from tollgate_cli.main import main

ADMIN_KEY = "sk-ADMINadminADMINadminADMINadminADMINadminADMINadmin"
NEW_KEY = "sk-NEWKEYnewkeyNEWKEYnewkeyNEWKEYnewkeyNEWKEYnewkey"

KEY = {
    "key_id": NEW_KEY[:12], "user": "alice", "name": "laptop", "scopes": ["ai:complete", "ai:embed"],
    "status": "active", "created_at": "2026-11-27T14:10:42.123Z", "expires_at": None, "rpm": 60,
    "tpm": None, "monthly_budget_usd": "10.00", "hourly_budget_usd": None,
}
USAGE = {
    "user": "alice",
    "records": [
        {"request_id": "r1", "time": "2026-11-27T14:10:42.123Z", "provider": "openai", "model": "gpt-4o-mini",
         "prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "cached_tokens": 0,
         "cost_usd": "0.000012", "request_type": "chat", "endpoint": "/v1/chat/completions",
         "user_agent": "OpenAI/Python", "duration_ms": 321, "byok": False, "status": 200, "key_id": "sk-a1b2c3d4e"},
        {"request_id": "r2", "time": "2026-11-27T14:11:00.000Z", "provider": "anthropic",
         "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "deployment": "bedrock-us@us-east-1",
         "prompt_tokens": 12000, "completion_tokens": 800, "total_tokens": 12800,
         "cached_tokens": 4096, "cost_usd": "1.5", "request_type": "chat", "endpoint": "/v1/messages",
         "user_agent": "Anthropic/Python", "duration_ms": 4321, "byok": False, "status": 200},
    ],
    "total_cost_usd": "1.500012", "total_tokens": 12815,
}
BUDGET_KEY = {
    "scope": "key", "id": NEW_KEY[:12], "period": "2026-11", "monthly_limit_usd": "10.00", "spent_usd": "1.234567",
    "reserved_usd": "0.01", "remaining_usd": "8.755433",
    "hourly": {"period": "2026-11-27T14", "limit_usd": "1", "spent_usd": "0.5", "reserved_usd": "0",
               "remaining_usd": "0.5"},
}
BUDGET_USER = {"scope": "user", "id": "alice", "period": "2026-11", "monthly_limit_usd": None, "spent_usd": "0",
               "reserved_usd": "0", "remaining_usd": None, "hourly": None}


# --- a stub admin API -------------------------------------------------------------------------------------------

class StubApi:
    def __init__(self):
        self.requests: list[dict] = []
        self.routes: dict[tuple[str, str], tuple[int, object]] = {}
        self.delay_s = 0.0
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def on(self, method: str, path: str, body: object, status: int = 200) -> None:
        self.routes[(method, path)] = (status, body)

    @property
    def last(self) -> dict:
        assert self.requests, "no request reached the stub"
        return self.requests[-1]


class _Handler(BaseHTTPRequestHandler):
    api: StubApi

    def log_message(self, *args):  # keep test output clean
        pass

    def _serve(self):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.api.requests.append({
            "method": self.command, "path": parts.path, "query": parse_qs(parts.query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": json.loads(raw) if raw else None,
        })
        if self.api.delay_s:
            time.sleep(self.api.delay_s)
        status, body = self.api.routes.get(
            (self.command, parts.path),
            (404, {"error": {"message": "No such route.", "type": "not_found_error", "code": "not_found"}}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No TOLLGATE_* settings and a working directory without .tollgate/ above it."""
    for name in ("TOLLGATE_ENDPOINT", "TOLLGATE_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def api(clean_env, monkeypatch):
    stub = StubApi()
    stub.thread.start()
    monkeypatch.setenv("TOLLGATE_ENDPOINT", stub.url)
    monkeypatch.setenv("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


@pytest.fixture
def cli(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert ADMIN_KEY not in out and ADMIN_KEY not in err, "the admin key must never be printed"
        return code, out, err
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _column_starts(header: str, names: list[str]) -> list[int]:
    return [header.index(n) for n in names]


# --- keys ---------------------------------------------------------------------------------------------------------

def test_keys_create_sends_every_option_and_json_has_the_key(api, cli):
    api.on("POST", "/admin/keys", {"key": NEW_KEY, **KEY}, status=201)
    code, out, err = cli("keys", "create", "--user", "alice", "--name", "laptop", "--scopes", "ai:complete",
                         "admin", "--expires-in", "30d", "--monthly-budget-usd", "10.00",
                         "--hourly-budget-usd", "0.5", "--rpm", "60", "--tpm", "100000", "--json")
    assert code == 0, err
    req = api.last
    assert (req["method"], req["path"]) == ("POST", "/admin/keys")
    assert req["headers"]["authorization"] == f"Bearer {ADMIN_KEY}"
    assert req["headers"]["content-type"] == "application/json"
    body = req["body"]
    expires = parse_iso(body.pop("expires_at"))
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(days=30))) < timedelta(minutes=1)
    assert body == {"user": "alice", "name": "laptop", "scopes": ["ai:complete", "admin"],
                    "monthly_budget_usd": "10.00", "hourly_budget_usd": "0.5", "rpm": 60, "tpm": 100000}
    printed = json.loads(out)
    assert printed["key"] == NEW_KEY and printed["key_id"] == NEW_KEY[:12]


def test_keys_create_minimal_body_and_hours(api, cli):
    api.on("POST", "/admin/keys", {"key": NEW_KEY, **KEY}, status=201)
    assert cli("keys", "create", "--user", "alice")[0] == 0
    assert api.last["body"] == {"user": "alice"}
    assert cli("keys", "create", "--user", "bob", "--expires-in", "12h")[0] == 0
    expires = parse_iso(api.last["body"]["expires_at"])
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(hours=12))) < timedelta(minutes=1)


def test_keys_create_human_output_shows_the_key_once_with_a_warning(api, cli):
    api.on("POST", "/admin/keys", {"key": NEW_KEY, **KEY}, status=201)
    code, out, _ = cli("keys", "create", "--user", "alice", "--name", "laptop")
    assert code == 0
    assert out.count(NEW_KEY) == 1
    assert "cannot be shown again" in out
    assert NEW_KEY[:12] in out and "alice" in out and "$10.00" in out
    assert "ai:complete, ai:embed" in out


@pytest.mark.parametrize("argv", [
    ["keys", "create", "--user", "alice", "--scopes", "root"],
    ["keys", "create", "--user", "alice", "--expires-in", "30"],
    ["keys", "create", "--user", "alice", "--expires-in", "0d"],
    ["keys", "create", "--user", "alice", "--monthly-budget-usd", "-1"],
    ["keys", "create", "--user", "alice", "--rpm", "0"],
    ["keys", "create"],
    ["keys"],
    [],
    ["usage", "--user", "alice", "--from", "27/11/2026"],
    ["budgets", "show"],
    ["budgets", "show", "--user", "alice", "--key", "sk-abc"],
    ["budgets", "set", "--user", "alice"],
    ["budgets", "set", "--user", "alice", "--hourly-usd", "1"],
])
def test_usage_errors_exit_2_without_calling_the_api(api, cli, argv):
    code, out, err = cli(*argv)
    assert code == 2
    assert "usage:" in err
    assert api.requests == []


def test_keys_list_table_and_user_filter(api, cli):
    other = {**KEY, "key_id": "sk-OtherKey01", "user": "bob", "name": None, "scopes": ["admin"], "status": "revoked",
             "monthly_budget_usd": "0.000012", "last_used": "2026-11-28T09:00:00.000Z"}
    api.on("GET", "/admin/keys", {"keys": [{**KEY, "last_used": None}, other]})
    code, out, err = cli("keys", "list", "--user", "alice")
    assert code == 0, err
    assert api.requests[0]["query"] == {"user": ["alice"]}
    assert api.requests[0]["headers"]["authorization"] == f"Bearer {ADMIN_KEY}"
    lines = out.splitlines()
    header = lines[0]
    assert header.split()[:4] == ["KEY", "ID", "USER", "NAME"]
    starts = _column_starts(header, ["USER", "STATUS", "CREATED"])
    for line, row in zip(lines[1:], (KEY, other)):
        assert [line[s:].split()[0] for s in starts] == [row["user"], row["status"], row["created_at"][:10]]
    assert "$10.00" in out and "$0.000012" in out and "never" in out
    assert "2026-11-28 09:00" in out

    api.requests.clear()
    assert cli("keys", "list")[0] == 0
    assert api.requests[0]["query"] == {}


def test_keys_list_names_the_key_that_replaced_a_rotated_one(api, cli):
    old = {**KEY, "key_id": "sk-OldKey0001", "rotated_to": KEY["key_id"], "expires_at": "2026-11-29T10:00:00.000Z"}
    api.on("GET", "/admin/keys", {"keys": [old, KEY, {**KEY, "key_id": "sk-Expired001", "status": "expired"}]})
    code, out, err = cli("keys", "list")
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.startswith("sk-")}
    assert f"active (rotated to {KEY['key_id']})" in rows["sk-OldKey0001"]
    assert "rotated" not in rows[KEY["key_id"]] and " expired " in rows["sk-Expired001"]


def test_keys_list_json_and_empty(api, cli):
    api.on("GET", "/admin/keys", {"keys": []})
    code, out, _ = cli("keys", "list", "--json")
    assert code == 0 and json.loads(out) == {"keys": []}
    code, out, _ = cli("keys", "list", "--user", "carol")
    assert code == 0 and out.strip() == "No keys for carol."


@pytest.mark.parametrize("action,status", [("revoke", "revoked"), ("suspend", "suspended"), ("resume", "active")])
def test_key_status_changes(api, cli, action, status):
    api.on("POST", f"/admin/keys/{KEY['key_id']}/{action}", {**KEY, "status": status, "last_used": None})
    code, out, err = cli("keys", action, KEY["key_id"])
    assert code == 0, err
    assert (api.last["method"], api.last["path"]) == ("POST", f"/admin/keys/{KEY['key_id']}/{action}")
    assert KEY["key_id"] in out and status in out
    code, out, _ = cli("keys", action, KEY["key_id"], "--json")
    assert code == 0 and json.loads(out)["status"] == status


# --- usage --------------------------------------------------------------------------------------------------------

def test_usage_query_and_table(api, cli):
    api.on("GET", "/admin/usage", USAGE)
    code, out, err = cli("usage", "--user", "alice", "--from", "2026-11-01", "--to", "2026-11-30", "--limit", "50")
    assert code == 0, err
    assert api.last["query"] == {"user": ["alice"], "from": ["2026-11-01"], "to": ["2026-11-30"], "limit": ["50"]}
    lines = out.splitlines()
    header = lines[0]
    for name in ("TIME", "KEY", "MODEL", "DEPLOYMENT", "IN", "OUT", "CACHED", "COST", "ENDPOINT", "STATUS"):
        assert name in header
    key_at, model_at, deployment_at = header.index("KEY"), header.index("MODEL"), header.index("DEPLOYMENT")
    # the key that made the call; "-" for a service token or IAM caller (no key)
    assert lines[1][key_at:].startswith("sk-a1b2c3d4e ") and lines[2][key_at:].startswith("- ")
    assert lines[1][model_at:].startswith("gpt-4o-mini") and lines[2][model_at:].startswith("us.anthropic.claude")
    # the deployment that answered; "-" for a record written before usage records named it
    assert lines[1][deployment_at:].startswith("- ") and lines[2][deployment_at:].startswith("bedrock-us@us-east-1 ")
    cost_end = header.index("COST") + len("COST")  # right-aligned: every cost ends under the header's end
    assert lines[1][:cost_end].endswith("$0.000012") and lines[2][:cost_end].endswith("$1.50")
    assert "2026-11-27 14:10:42" in lines[1] and "/v1/chat/completions" in lines[1]
    assert " 4096 " in lines[2] and " 12000 " in lines[2] and " 800 " in lines[2]
    assert lines[-1] == "Total: 2 requests, 12815 tokens, $1.500012"


def test_usage_shows_a_response_cache_hit_apart_from_cached_prompt_tokens(api, cli):
    hit = {**USAGE["records"][0], "request_id": "r3", "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
           "cost_usd": "0", "cached": True}
    api.on("GET", "/admin/usage", {**USAGE, "records": [*USAGE["records"], hit]})
    code, out, err = cli("usage", "--user", "alice")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[3].rstrip().endswith("200 (cache hit)") and not lines[1].rstrip().endswith("(cache hit)")
    assert "response cache" in out
    api.on("GET", "/admin/usage", USAGE)
    assert "cache hit" not in cli("usage", "--user", "alice")[1]


def test_usage_json_and_defaults(api, cli):
    api.on("GET", "/admin/usage", USAGE)
    code, out, _ = cli("--json", "usage", "--user", "alice")
    assert code == 0
    assert api.last["query"] == {"user": ["alice"]}
    assert json.loads(out) == USAGE


# --- models -------------------------------------------------------------------------------------------------------

SONNET = {"id": "claude-sonnet-4-5", "object": "model", "created": 0, "owned_by": "anthropic",
          "provider": "anthropic", "deployments": [
              {"name": "anthropic", "provider": "anthropic", "model": "claude-sonnet-4-5-20250929"},
              {"name": "bedrock-us", "provider": "bedrock", "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
               "region": "us-east-1"}]}
NOVA = {"id": "us.amazon.nova-lite-v1:0", "object": "model", "created": 0, "owned_by": "bedrock",
        "provider": "bedrock", "deployments": [
            {"name": "bedrock", "provider": "bedrock", "model": "us.amazon.nova-lite-v1:0", "region": "us-east-1"}]}


def test_models_lists_each_models_deployments_in_the_order_tried(api, cli):
    api.on("GET", "/v1/models", {"object": "list", "data": [SONNET, NOVA]})
    code, out, err = cli("models")
    assert code == 0, err
    header, *rows = out.splitlines()
    for name in ("MODEL", "PROVIDER", "#", "DEPLOYMENT", "VIA", "PROVIDER'S MODEL ID", "REGION"):
        assert name in header
    assert [r.split()[:4] for r in rows] == [["claude-sonnet-4-5", "anthropic", "1", "anthropic"],
                                             ["claude-sonnet-4-5", "anthropic", "2", "bedrock-us"],
                                             ["us.amazon.nova-lite-v1:0", "bedrock", "1", "bedrock"]]
    assert rows[1].split()[4:] == ["bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1"]
    assert rows[0].endswith("-")  # no region: not an AWS deployment

    code, out, _ = cli("models", "--provider", "bedrock", "--json")
    assert code == 0 and json.loads(out) == [NOVA]


def test_models_one_model_by_name(api, cli):
    api.on("GET", "/v1/models/claude-sonnet-4-5", SONNET)
    code, out, err = cli("models", "claude-sonnet-4-5")
    assert code == 0, err
    assert api.last["path"] == "/v1/models/claude-sonnet-4-5" and len(out.splitlines()) == 3
    code, out, _ = cli("models", "claude-sonnet-4-5", "--json")
    assert json.loads(out) == SONNET


# --- budgets ------------------------------------------------------------------------------------------------------

def test_budgets_show_key_and_user(api, cli):
    api.on("GET", "/admin/budgets", BUDGET_KEY)
    code, out, err = cli("budgets", "show", "--key", BUDGET_KEY["id"])
    assert code == 0, err
    assert api.requests[0]["query"] == {"key": [BUDGET_KEY["id"]]}
    assert "monthly" in out and "hourly" in out and "2026-11-27T14" in out
    assert "$10.00" in out and "$1.234567" in out and "$8.755433" in out and "$1.00" in out

    api.on("GET", "/admin/budgets", BUDGET_USER)
    code, out, _ = cli("budgets", "show", "--user", "alice", "--json")
    assert code == 0 and json.loads(out) == BUDGET_USER
    assert api.last["query"] == {"user": ["alice"]}
    code, out, _ = cli("budgets", "show", "--user", "alice")
    assert "no limit" in out and "hourly" not in out


def test_budgets_set(api, cli):
    api.on("PUT", "/admin/budgets", BUDGET_KEY)
    code, out, err = cli("budgets", "set", "--key", BUDGET_KEY["id"], "--monthly-usd", "10", "--hourly-usd", "$1")
    assert code == 0, err
    assert api.requests[0]["method"] == "PUT"
    assert api.requests[0]["body"] == {"key": BUDGET_KEY["id"], "monthly_usd": "10", "hourly_usd": "1"}
    assert "updated" in out and "$10.00" in out

    code, out, _ = cli("budgets", "set", "--user", "alice", "--monthly-usd", "25.50", "--json")
    assert code == 0
    assert [r["body"] for r in api.requests if r["method"] == "PUT"][-1] == {"user": "alice", "monthly_usd": "25.50"}
    assert json.loads(out)["scope"] == "key"  # the canned answer, printed as is


# --- errors -------------------------------------------------------------------------------------------------------

def test_api_error_prints_the_servers_message(api, cli):
    api.on("POST", "/admin/keys/sk-NOPEnope1/revoke",
           {"error": {"message": "No API key with id sk-NOPEnope1.", "type": "not_found_error", "code": "not_found"}},
           status=404)
    code, out, err = cli("keys", "revoke", "sk-NOPEnope1")
    assert code == 1 and out == ""
    assert err.strip() == "tollgate: No API key with id sk-NOPEnope1. (HTTP 404 not_found)"


def test_unauthorised_names_where_the_key_came_from_but_not_the_key(api, cli):
    api.on("GET", "/admin/keys", {"error": {"message": "Invalid API key.", "type": "invalid_request_error",
                                            "code": "invalid_api_key"}}, status=401)
    code, _, err = cli("keys", "list")
    assert code == 1
    assert "Invalid API key." in err and "TOLLGATE_ADMIN_KEY" in err and len(err.strip().splitlines()) == 1


def test_server_error_without_json_body(api, cli):
    api.on("GET", "/admin/keys", {"message": "Internal server error"}, status=502)
    code, _, err = cli("keys", "list")
    assert code == 1 and "Internal server error (HTTP 502)" in err


def test_connection_refused(clean_env, monkeypatch, cli):
    endpoint = f"http://127.0.0.1:{_free_port()}"
    code, out, err = cli("--endpoint", endpoint, "--admin-key", ADMIN_KEY, "keys", "list")
    assert code == 1 and out == ""
    assert err.strip() == f"tollgate: cannot reach {endpoint}: is `make dev` running?"


def test_timeout(api, cli):
    api.on("GET", "/admin/keys", {"keys": []})
    api.delay_s = 1.0
    code, _, err = cli("keys", "list", "--timeout", "0.2")
    assert code == 1 and "no answer from" in err and "0.2s" in err


def test_missing_admin_key(clean_env, cli):
    code, _, err = cli("keys", "list")
    assert code == 1
    assert "no admin key" in err and "TOLLGATE_ADMIN_KEY" in err


# --- where the endpoint and admin key come from ------------------------------------------------------------------

def _stub(request):
    stub = StubApi()
    stub.on("GET", "/admin/keys", {"keys": []})
    stub.thread.start()
    request.addfinalizer(lambda: (stub.server.shutdown(), stub.server.server_close()))
    return stub


def test_local_state_dir_is_found_in_a_parent(clean_env, request, cli, monkeypatch):
    stub = _stub(request)
    state = clean_env / ".tollgate"
    state.mkdir()
    (state / "endpoint").write_text(stub.url + "/\n")
    (state / "admin-key").write_text(ADMIN_KEY + "\n")
    nested = clean_env / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    code, _, err = cli("keys", "list")
    assert code == 0, err
    assert stub.last["headers"]["authorization"] == f"Bearer {ADMIN_KEY}"
    assert stub.last["path"] == "/admin/keys"


def test_default_endpoint_is_the_local_stack(clean_env):
    (clean_env / ".tollgate").mkdir()
    (clean_env / ".tollgate" / "admin-key").write_text(ADMIN_KEY + "\n")
    cfg = config.resolve(endpoint_flag=None, admin_key_flag=None, environ={}, cwd=clean_env)
    assert cfg.endpoint == "http://127.0.0.1:8080"
    assert cfg.admin_key == ADMIN_KEY and cfg.admin_key_source.endswith(".tollgate/admin-key")
    assert ADMIN_KEY not in repr(cfg)
    cfg = config.resolve(endpoint_flag=None, admin_key_flag=None, environ={"TOLLGATE_ADMIN_KEY": " "},
                         cwd=clean_env.parent)
    assert cfg.endpoint == "http://127.0.0.1:8080" and cfg.admin_key is None


def test_precedence_flag_over_env_over_file(clean_env, request, cli, monkeypatch):
    file_api, env_api, flag_api = _stub(request), _stub(request), _stub(request)
    state = clean_env / ".tollgate"
    state.mkdir()
    (state / "endpoint").write_text(file_api.url)
    (state / "admin-key").write_text("sk-from-file")

    assert cli("keys", "list")[0] == 0
    assert file_api.last["headers"]["authorization"] == "Bearer sk-from-file"

    monkeypatch.setenv("TOLLGATE_ENDPOINT", env_api.url)
    monkeypatch.setenv("TOLLGATE_ADMIN_KEY", "sk-from-env")
    assert cli("keys", "list")[0] == 0
    assert env_api.last["headers"]["authorization"] == "Bearer sk-from-env"

    # Flags work before and after the command name.
    assert cli("--endpoint", flag_api.url, "--admin-key", ADMIN_KEY, "keys", "list")[0] == 0
    assert flag_api.last["headers"]["authorization"] == f"Bearer {ADMIN_KEY}"
    assert cli("keys", "list", "--endpoint", flag_api.url, "--admin-key", "sk-after")[0] == 0
    assert flag_api.last["headers"]["authorization"] == "Bearer sk-after"
    assert len(file_api.requests) == 1 and len(env_api.requests) == 1 and len(flag_api.requests) == 2

    # Each setting falls back on its own: endpoint from the environment, key from the flag.
    assert cli("keys", "list", "--admin-key", "sk-flag-only")[0] == 0
    assert env_api.last["headers"]["authorization"] == "Bearer sk-flag-only"


def test_invalid_endpoint_is_a_usage_error(clean_env, cli):
    code, _, err = cli("--endpoint", "127.0.0.1:8080", "--admin-key", ADMIN_KEY, "keys", "list")
    assert code == 2 and "invalid endpoint" in err


# --- formatting ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,shown", [
    ("10", "$10.00"), ("10.00", "$10.00"), ("1.5", "$1.50"), ("0.000012", "$0.000012"), ("0", "$0.00"),
    ("1.500012", "$1.500012"), ("1E+1", "$10.00"), ("-0.25", "-$0.25"), (None, "-"), ("1.2300", "$1.23"),
])
def test_money(value, shown):
    assert money(value) == shown


def test_table_aligns_columns():
    text = table(("NAME", "COST"), [("a", "$1.00"), ("longer", "$0.000012")], right=(1,))
    assert text.splitlines() == ["NAME         COST", "a           $1.00", "longer  $0.000012"]


# --- bootstrap ----------------------------------------------------------------------------------------------------

@pytest.fixture
def aws(monkeypatch, clean_env):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_CLOUDFORMATION",
                 "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _create_api_keys_table(client, name: str) -> None:
    index = API_KEYS.indexes[0]
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in API_KEYS.key_attributes],
        KeySchema=[{"AttributeName": API_KEYS.partition_key, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{
            "IndexName": index.name, "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": index.partition_key, "KeyType": "HASH"},
                          {"AttributeName": index.sort_key, "KeyType": "RANGE"}],
        }])


def _assert_stored_admin_key(client, table: str, raw: str, user: str = "admin") -> None:
    record = ApiKeyStore(table, client).get(raw[:12])
    assert record is not None
    assert api_keys.secret_matches(raw, record)
    assert record.user_id == user and record.name == "bootstrap-admin"
    assert set(record.scopes) == set(scopes.ALL)
    assert api_keys.check_usable(record, datetime.now(timezone.utc)) is None


def test_bootstrap_with_table_name(aws, cli):
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _create_api_keys_table(client, "keys")
        code, out, err = cli("bootstrap", "--table", "keys", "--region", "us-east-1", "--json")
        assert code == 0, err
        printed = json.loads(out)
        assert printed["key_id"] == printed["key"][:12] and printed["user"] == "admin"
        assert printed["table"] == "keys" and "key_hash" not in printed
        _assert_stored_admin_key(client, "keys", printed["key"])


def test_bootstrap_finds_the_table_from_the_stack_output(aws, cli):
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiKeysTableName": {"Value": "TollgateData-ApiKeys"}},
    }
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _create_api_keys_table(client, "TollgateData-ApiKeys")
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="TollgateData", TemplateBody=json.dumps(template))
        code, out, err = cli("bootstrap", "--user", "ops")
        assert code == 0, err
        raw = next(w for w in out.split() if w.startswith("sk-") and len(w) == 51)
        assert out.count(raw) == 1 and "cannot be shown again" in out and "TollgateData-ApiKeys" in out
        _assert_stored_admin_key(client, "TollgateData-ApiKeys", raw, user="ops")


def test_bootstrap_reports_a_missing_stack_or_table(aws, cli):
    with mock_aws():
        code, _, err = cli("bootstrap", "--stack", "Nope")
        assert code == 1 and "stack Nope not found" in err and "--table" in err
        code, _, err = cli("bootstrap", "--table", "missing")
        assert code == 1 and "table not found" in err


def test_bootstrap_honours_aws_endpoint_url(aws, cli, monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        client = boto3.client("dynamodb", region_name="us-east-1")  # also through the endpoint URL
        assert client.meta.endpoint_url == f"http://{host}:{port}"
        _create_api_keys_table(client, "served-keys")
        code, out, err = cli("bootstrap", "--table", "served-keys", "--json")
        assert code == 0, err
        _assert_stored_admin_key(client, "served-keys", json.loads(out)["key"])
    finally:
        server.stop()


def test_the_local_admin_key_is_never_sent_to_a_remote_endpoint(tmp_path):
    from tollgate_cli import config

    state = tmp_path / config.STATE_DIR
    state.mkdir()
    (state / config.ADMIN_KEY_FILE).write_text("sk-local-admin")
    local = config.resolve(endpoint_flag="http://127.0.0.1:8080", admin_key_flag=None, environ={}, cwd=tmp_path)
    remote = config.resolve(endpoint_flag="https://abc.execute-api.eu-west-1.amazonaws.com/prod",
                            admin_key_flag=None, environ={}, cwd=tmp_path)
    assert local.admin_key == "sk-local-admin"
    assert remote.admin_key is None
