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
