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

from tests.fixtures_fake_provider import fake_provider, fake_provider_server  # noqa: E402,F401

# Under pytest-xdist (`make test` runs `-n auto --dist loadgroup`) a session fixture is built once per worker
# that needs it, so tests sharing an expensive one go to one worker as a unit: tests/e2e (the local stack),
# tests/infra (the CDK synthesis; the e2e observability test synthesises again on its own worker), and
# each module that defines a module-scoped fixture (a local stack of its own, a template). Every other
# test goes, alone, to whichever worker is free. The units are chosen here, from node ids, because
# xdist's own `xdist_group` marks do not take effect under pytest 9.2 (xdist 3.8 renames `item._nodeid`,
# which pytest no longer reads).
_SHARED_DIRECTORIES = ("tests/e2e/", "tests/infra/")


@functools.lru_cache(maxsize=None)
def _defines_a_module_fixture(path: Path) -> bool:
    try:
        return re.search(r"scope\s*=\s*[\"']module[\"']", path.read_text()) is not None
    except OSError:
        return False


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            shared = next((d for d in _SHARED_DIRECTORIES if module.startswith(d)), None)
            if shared:
                return shared
            return module if _defines_a_module_fixture(config.rootpath / module) else nodeid

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
