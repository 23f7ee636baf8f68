"""Fixtures shared by every test tier."""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

# Never reach a real AWS account from a test, whatever the machine's environment holds.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ[_name] = "testing"
os.environ.pop("AWS_PROFILE", None)

import botocore.loaders  # noqa: E402
import botocore.session  # noqa: E402

from tests.fixtures_fake_provider import fake_provider, fake_provider_server  # noqa: E402,F401


class _PathsOnce(list):
    """A loader's search paths, where appending a path already there does nothing: boto3.Session appends its
    own data directory to its loader each time one is made."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@functools.lru_cache(maxsize=None)
def _one_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    """botocore's data loader, one per search path for the whole test process, as one serves a warm Lambda
    container. moto's `mock_aws` starts each test with no default boto3 session, so every test (and every
    thread of it) made a new session whose loader parsed endpoints.json and the service models again
    (~10 ms each; ~8% of the integration tier's CPU). The loader only caches what it read from botocore's
    data files, which no test changes."""
    paths = botocore.loaders.create_loader(search_path_string).search_paths
    return botocore.loaders.Loader(extra_search_paths=_PathsOnce(paths), include_default_search_paths=False)


botocore.session.create_loader = _one_loader

# Under pytest-xdist (`make test` runs `-n auto --dist loadgroup`) a session fixture is built once per worker
# that needs it, so tests sharing an expensive one go to one worker as a unit: tests/infra (the CDK synthesis,
# ~15 s of CPU) with the e2e observability module (it reads the synthesised monitoring template), and each
# module that defines a module-scoped fixture (a local stack of its own, keys, a template). Every other test
# goes, alone, to whichever worker is free; the e2e tests' session local stack starts once on each worker
# that runs one (~2 s of CPU), which is cheaper than holding all of tests/e2e on one worker. The units are
# chosen here, from node ids, because xdist's own `xdist_group` marks do not take effect under pytest 9.2
# (xdist 3.8 renames `item._nodeid`, which pytest no longer reads).
_SHARED_UNITS = {"tests/infra/": "tests/infra/", "tests/e2e/test_observability.py": "tests/infra/"}

# The longest units, measured (CPU, or waiting on paced streams and subprocesses), handed out first in this
# order so that none of them starts last and leaves one worker idle at the end; the rest follow by size
# (xdist's default). A stale entry only changes the order, never a result.
_LONG_FIRST = (
    "tests/infra/",
    "tests/integration/test_budget_concurrency.py::test_32_containers",
    "tests/e2e/test_streaming.py",
    "tests/integration/test_hot_key_escrow.py::test_64_containers",
    "tests/unit/test_sim_hotkey.py",
    "tests/integration/test_agents_local_worker.py",
    "tests/integration/test_local_stack_concurrency.py",
    "tests/e2e/test_agent_clients.py",
    "tests/integration/test_budget_concurrency.py",
    "tests/e2e/test_loop_guard.py",
)


@functools.lru_cache(maxsize=None)
def _defines_a_module_fixture(path: Path) -> bool:
    try:
        return re.search(r"scope\s*=\s*[\"']module[\"']", path.read_text()) is not None
    except OSError:
        return False


def _rank(scope: str) -> int:
    return next((i for i, prefix in enumerate(_LONG_FIRST) if scope.startswith(prefix)), len(_LONG_FIRST))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            shared = next((unit for prefix, unit in _SHARED_UNITS.items() if module.startswith(prefix)), None)
            if shared:
                return shared
            return module if _defines_a_module_fixture(config.rootpath / module) else nodeid

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # once, on the first assignment: the long units to the front, stably
                self._ordered = True
                units = sorted(self.workqueue.items(), key=lambda unit: _rank(unit[0]))
                self.workqueue.clear()
                self.workqueue.update(units)
            super()._assign_work_unit(node)

    return SharedFixtureScheduling(config, log)


# The CDK app synthesised once per session, in-process, with cdk.json's context (as `cdk synth` does):
# tests/infra reads every template from it, the e2e tier the monitoring one. A synthesis takes seconds.
@dataclass
class Synthesis:
    app: object  # aws_cdk.App
    outdir: Path
    error: str | None  # set when synthesis failed (e.g. cdk-nag violations)

    def template(self, stack_name: str) -> dict:
        return json.loads((self.outdir / f"{stack_name}.template.json").read_text())

    def stack(self, stack_name: str):
        return self.app.node.find_child(stack_name)


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory) -> Synthesis:
    import app as cdk_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    # The templates are what is under test: skip copying the ~100 MB of asset directories into outdir.
    app = cdk_app.build_app(context={"aws:cdk:disable-asset-staging": True}, outdir=str(outdir))
    try:
        app.synth()
        error = None
    except RuntimeError as exc:  # cdk-nag violations fail synthesis after the templates are written
        error = str(exc)
    return Synthesis(app=app, outdir=outdir, error=error)
