"""local.environments: one request at a time per execution environment, each a separate copy of the
handler module, as Lambda runs a function (issue 9 item 7: no per-request state shared across threads)."""
from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from local.environments import EnvironmentPool

HANDLER = '''
import probe_shared

current = None  # per-request state in a module global, like Powertools' resolver.current_event


def lambda_handler(event, context):
    global current
    current = event["n"]
    probe_shared.barrier.wait(timeout=10)  # every request is in flight before any reads its state back
    return {"n": current, "environment": id(globals())}
'''


@pytest.fixture
def handler_module(tmp_path, monkeypatch):
    (tmp_path / "probe_handler.py").write_text(HANDLER)
    (tmp_path / "probe_shared.py").write_text("barrier = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_shared

    yield probe_shared
    for name in ("probe_handler", "probe_shared"):
        sys.modules.pop(name, None)


def test_concurrent_requests_each_run_in_their_own_environment(handler_module):
    handler_module.barrier = threading.Barrier(4)
    pool = EnvironmentPool("probe_handler")
    with ThreadPoolExecutor(4) as executor:
        results = list(executor.map(lambda n: pool.invoke({"n": n}, None), range(4)))
    assert [r["n"] for r in results] == [0, 1, 2, 3]  # nobody saw another request's state
    assert len({r["environment"] for r in results}) == 4 and pool.created == 4
    assert "probe_handler" not in sys.modules  # copies, not the importable module

    handler_module.barrier = threading.Barrier(1)
    again = [pool.invoke({"n": n}, None) for n in (7, 8)]
    assert [r["n"] for r in again] == [7, 8]
    assert {r["environment"] for r in again} <= {r["environment"] for r in results}  # idle ones reused
    assert pool.created == 4


def test_a_missing_module_is_reported_not_imported():
    pool = EnvironmentPool("no_such_handler_module")
    assert not pool.exists()
    with pytest.raises(ModuleNotFoundError):
        pool.invoke({}, None)
