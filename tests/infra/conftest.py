"""Synthesise the CDK app once per session, in-process, with cdk.json's context (as `cdk synth` does)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture(scope="session")
def data_template(synthesis) -> dict:
    from stacks.data_stack import DATA_STACK_NAME

    return synthesis.template(DATA_STACK_NAME)


@pytest.fixture(scope="session")
def api_template(synthesis) -> dict:
    from stacks.api_stack import API_STACK_NAME

    return synthesis.template(API_STACK_NAME)
