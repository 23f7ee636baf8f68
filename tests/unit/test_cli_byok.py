"""`tollgate byok` against a stub of the /v1/provider-keys routes."""
from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tollgate_cli.commands import byok as byok_command
from tollgate_cli.main import main

ADMIN_KEY = "sk-ADMINadminADMINadminADMINadminADMINadminADMINadmin"
USER_KEY = "sk-USERKEYuserkeyUSERKEYuserkeyUSERKEYuserkeyUSERKEY"
PROVIDER_KEY = "sk-alice-own-openai-key-1234"
SHOWN = {"provider": "openai", "last4": "1234", "created_at": "2026-11-27T14:10:42.123Z",
         "updated_at": "2026-11-27T15:00:00.000Z", "validated_at": "2026-11-27T15:00:00.000Z"}


class Stub:
    def __init__(self):
        self.requests: list[dict] = []
        self.answers: dict[tuple[str, str], tuple[int, object]] = {}
        handler = type("Handler", (_Handler,), {"stub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def on(self, method: str, path: str, body: object, status: int = 200) -> None:
        self.answers[(method, path)] = (status, body)


class _Handler(BaseHTTPRequestHandler):
    stub: Stub

    def log_message(self, *args):
        pass

    def _serve(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.stub.requests.append({"method": self.command, "path": self.path, "body": json.loads(raw) if raw else None,
                                   "authorization": self.headers.get("Authorization")})
        status, body = self.stub.answers.get((self.command, self.path), (404, {"error": {"message": "no route"}}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_DELETE = _serve


@pytest.fixture
def api(monkeypatch, tmp_path):
    for name in ("TOLLGATE_ENDPOINT", "TOLLGATE_ADMIN_KEY", "TOLLGATE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    stub = Stub()
    monkeypatch.setenv("TOLLGATE_ENDPOINT", stub.url)
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


class Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool):
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def cli(capsys, monkeypatch):
    def run(*argv: str, stdin: str = "", tty: bool = False) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", Stdin(stdin, tty))
        code = main(list(argv))
        out, err = capsys.readouterr()
        for secret in (PROVIDER_KEY, USER_KEY, ADMIN_KEY):
            assert secret not in out and secret not in err, "a key was printed"
        return code, out, err
    return run


def test_set_reads_the_key_from_a_pipe_and_uses_the_callers_api_key(api, cli):
    api.on("PUT", "/v1/provider-keys/openai", SHOWN)
    code, out, err = cli("byok", "set", "--provider", "openai", "--tollgate-key", USER_KEY, stdin=PROVIDER_KEY + "\n")
    assert code == 0, err
    [req] = api.requests
    assert req["method"] == "PUT" and req["body"] == {"api_key": PROVIDER_KEY}
    assert req["authorization"] == f"Bearer {USER_KEY}"
    assert "1234" in out and "openai" in out


def test_set_prompts_without_echo_on_a_terminal(api, cli, monkeypatch):
    prompts = []
    monkeypatch.setattr(byok_command.getpass, "getpass", lambda prompt: prompts.append(prompt) or PROVIDER_KEY)
    monkeypatch.setenv("TOLLGATE_API_KEY", USER_KEY)
    api.on("PUT", "/v1/provider-keys/anthropic", {**SHOWN, "provider": "anthropic"})
    code, out, err = cli("byok", "set", "--provider", "anthropic", "--json", tty=True)
    assert code == 0, err
    assert prompts and "anthropic" in prompts[0]
    assert api.requests[-1]["body"] == {"api_key": PROVIDER_KEY}
    assert api.requests[-1]["authorization"] == f"Bearer {USER_KEY}"
    assert json.loads(out)["provider"] == "anthropic"


def test_set_reads_a_key_file(api, cli, tmp_path):
    path = tmp_path / "openai.key"
    path.write_text(f"  {PROVIDER_KEY}\n")
    api.on("PUT", "/v1/provider-keys/openai", SHOWN)
    code, out, _ = cli("byok", "set", "--provider", "openai", "--provider-key-file", str(path), "--tollgate-key", USER_KEY, "--json")
    assert code == 0 and json.loads(out) == SHOWN
    assert api.requests[-1]["body"] == {"api_key": PROVIDER_KEY}


def test_the_admin_key_is_the_fallback_credential(api, cli, monkeypatch):
    monkeypatch.setenv("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
    api.on("GET", "/v1/provider-keys/openai", SHOWN)
    code, out, _ = cli("byok", "show", "--provider", "openai")
    assert code == 0 and api.requests[-1]["authorization"] == f"Bearer {ADMIN_KEY}"
    assert "…1234" in out and "2026-11-27 14:10:42" in out


def test_show_and_delete_with_json(api, cli):
    api.on("GET", "/v1/provider-keys/openai", SHOWN)
    api.on("DELETE", "/v1/provider-keys/openai", {"provider": "openai", "deleted": True})
    code, out, _ = cli("byok", "show", "--provider", "openai", "--tollgate-key", USER_KEY, "--json")
    assert code == 0 and json.loads(out) == SHOWN
    code, out, _ = cli("byok", "delete", "--provider", "openai", "--tollgate-key", USER_KEY, "--json")
    assert code == 0 and json.loads(out) == {"provider": "openai", "deleted": True}
    assert [r["method"] for r in api.requests] == ["GET", "DELETE"]
    code, out, _ = cli("byok", "delete", "--provider", "openai", "--tollgate-key", USER_KEY)
    assert code == 0 and "Deleted your openai key" in out


def test_a_refused_key_is_one_line_and_never_echoed(api, cli):
    api.on("PUT", "/v1/provider-keys/openai", {"error": {
        "message": f"openai refused this key ({PROVIDER_KEY}); nothing was stored.",  # worst case: an echo
        "type": "invalid_request_error", "code": "invalid_provider_key"}}, status=400)
    code, out, err = cli("byok", "set", "--provider", "openai", "--tollgate-key", USER_KEY, stdin=PROVIDER_KEY)
    assert code == 1 and out == ""
    assert "invalid_provider_key" in err and "[redacted]" in err


def test_without_scope_the_error_names_where_the_key_came_from(api, cli):
    api.on("GET", "/v1/provider-keys/openai", {"error": {"message": "This credential lacks the 'byok:manage' scope.",
                                                          "type": "invalid_request_error",
                                                          "code": "insufficient_scope"}}, status=403)
    code, _, err = cli("byok", "show", "--provider", "openai", "--tollgate-key", USER_KEY)
    assert code == 1 and "--tollgate-key" in err and "byok:manage" in err


@pytest.mark.parametrize("argv, stdin", [
    (["byok", "set", "--provider", "openai", "--tollgate-key", USER_KEY], ""),
    (["byok", "set", "--provider", "openai", "--tollgate-key", USER_KEY], "   \n"),
    (["byok", "set", "--provider", "openai", "--tollgate-key", USER_KEY], "x" * 513),
    (["byok", "set", "--provider", "mistral", "--tollgate-key", USER_KEY], PROVIDER_KEY),
    (["byok", "show"], ""),
    (["byok"], ""),
])
def test_usage_errors_send_nothing(api, cli, argv, stdin):
    code, _, err = cli(*argv, stdin=stdin)
    assert code == 2 and err
    assert api.requests == []


def test_no_credential_at_all_is_a_clear_error(api, cli):
    code, _, err = cli("byok", "show", "--provider", "openai")
    assert code == 1 and "--tollgate-key" in err and "TOLLGATE_API_KEY" in err
    assert api.requests == []


def test_an_unreadable_key_file_is_a_clear_error(api, cli, tmp_path):
    code, _, err = cli("byok", "set", "--provider", "openai", "--provider-key-file", str(tmp_path / "missing"),
                       "--tollgate-key", USER_KEY)
    assert code == 1 and "cannot read" in err and api.requests == []


@pytest.mark.parametrize("how", ["file", "stdin", "prompt"])
@pytest.mark.parametrize("value,shown", [("sk-\u2026", "U+2026 HORIZONTAL ELLIPSIS"), ("sk-alice own", "U+0020 SPACE")])
def test_a_provider_key_that_cannot_be_sent_is_refused_before_the_call(api, cli, tmp_path, monkeypatch, how, value,
                                                                       shown):
    argv = ["byok", "set", "--provider", "openai", "--tollgate-key", USER_KEY]
    if how == "file":
        (tmp_path / "openai.key").write_text(value + "\n", encoding="utf-8")
        code, out, err = cli(*argv, "--provider-key-file", str(tmp_path / "openai.key"))
    elif how == "prompt":
        monkeypatch.setattr(byok_command.getpass, "getpass", lambda prompt: value)
        code, out, err = cli(*argv, tty=True)
    else:
        code, out, err = cli(*argv, stdin=value + "\n")
    assert code == 2 and api.requests == [] and "Traceback" not in err
    assert shown in err and "position" in err and "alice" not in err
