"""`tollgate loops list | clear` against the stub admin API of tests/unit/test_cli.py."""
from __future__ import annotations

import json

import pytest

from tests.unit.test_cli import ADMIN_KEY, StubApi, clean_env, cli  # noqa: F401 - fixtures

LOOPS = {"user": "alice", "loops": [
    {"subject": "sk-ABCDEFGHIJ", "fingerprint": "0123456789abcdef0123456789abcdef", "kind": "tool", "hits": 6,
     "spent_usd": "2.94", "window_ends_at": "2026-11-30T12:10:00Z", "last_at": "2026-11-30T12:03:20Z",
     "refused": True},
    {"subject": "sk-ABCDEFGHIJ", "fingerprint": "fedcba9876543210fedcba9876543210", "kind": "request", "hits": 2,
     "spent_usd": "0.0001", "window_ends_at": "2026-11-30T12:10:00Z", "last_at": "2026-11-30T12:01:00Z",
     "refused": False}]}


@pytest.fixture
def api(clean_env, monkeypatch):  # noqa: F811 - the stub, also answering DELETE
    stub = StubApi()
    stub.server.RequestHandlerClass.do_DELETE = stub.server.RequestHandlerClass._serve
    stub.thread.start()
    monkeypatch.setenv("TOLLGATE_ENDPOINT", stub.url)
    monkeypatch.setenv("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


def test_loops_list_shows_each_pattern_and_whether_it_is_refused(api, cli):  # noqa: F811
    api.on("GET", "/admin/loops", LOOPS)
    code, out, err = cli("loops", "list", "--user", "alice")
    assert code == 0, err
    assert api.last["query"] == {"user": ["alice"]}
    refused, counting = out.splitlines()[1:3]
    assert "tool" in refused and "0123456789ab" in refused and "$2.94" in refused and "refused" in refused
    assert "request" in counting and "counting" in counting
    code, out, _ = cli("loops", "list", "--user", "alice", "--json")
    assert json.loads(out) == LOOPS
    api.on("GET", "/admin/loops", {"user": "bob", "loops": []})
    assert "No repeating patterns for bob" in cli("loops", "list", "--user", "bob")[1]


def test_loops_clear_deletes_the_users_counters(api, cli):  # noqa: F811
    api.on("DELETE", "/admin/loops", {"user": "alice", "cleared": 2})
    code, out, err = cli("loops", "clear", "--user", "alice")
    assert code == 0, err
    assert (api.last["method"], api.last["query"]) == ("DELETE", {"user": ["alice"]})
    assert "Cleared 2 loop counter(s) of alice." in out


def test_loops_needs_a_user(api, cli):  # noqa: F811
    assert cli("loops", "list")[0] == 2 and not api.requests
