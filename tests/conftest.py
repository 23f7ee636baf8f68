"""Fixtures shared by every test tier."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# Never reach a real AWS account from a test, whatever the machine's environment holds.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ[_name] = "testing"
os.environ.pop("AWS_PROFILE", None)

from tests.fixtures_fake_provider import fake_provider, fake_provider_server  # noqa: E402,F401

# Under pytest-xdist (`make test` runs `-n auto --dist loadgroup`), tests that share an expensive fixture run
# on one worker, so it is built once: the CDK synthesis and the e2e local stack (both session-scoped, and
# one e2e test reads both) share one group; a module whose tests share a module-scoped fixture (a local
# stack of its own, a template) stays together. Every other test goes to whichever worker is free.
_SHARED_SESSION_FIXTURES = ("synthesis", "local_stack")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(name in info.names_closure for name in _SHARED_SESSION_FIXTURES):
            item.add_marker(pytest.mark.xdist_group("synthesis-and-local-stack"))
        elif any(d.scope in ("module", "package") for defs in info.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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
