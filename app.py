#!/usr/bin/env python3
"""The Tollgate CDK app: TollgateData, TollgateApi, TollgateAgents and TollgateMonitoring, checked by cdk-nag
(AwsSolutions) on every synth.

`build_app()` is also what the infra tests synthesise, with cdk.json's context, so they check exactly
what `cdk synth` produces.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
for path in (ROOT, ROOT / "lambdas"):  # stacks/, and the shared constants in tollgate.schema/routes
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from stacks.agents_stack import AgentsStack, gateway_principals  # noqa: E402
from stacks.api_stack import ApiStack  # noqa: E402
from stacks.config import DeploySettings  # noqa: E402
from stacks.data_stack import DataStack  # noqa: E402
from stacks.log_retention import LambdaLogRetention  # noqa: E402
from stacks.monitoring_stack import MonitoringStack  # noqa: E402


def cdk_json_context() -> dict:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def environment(app: cdk.App) -> cdk.Environment | None:
    """The target account/region when known; otherwise environment-agnostic stacks (synth works offline)."""
    account = app.node.try_get_context("account") or os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION")
    if not (account or region):
        return None
    return cdk.Environment(account=account, region=region)


def build_app(context: dict | None = None, outdir: str | None = None) -> cdk.App:
    # Context from the CLI (and so cdk.json under `cdk synth`) takes precedence over this argument.
    app = cdk.App(context={**cdk_json_context(), **(context or {})}, outdir=outdir)
    env = environment(app)
    settings = DeploySettings.from_context(app)
    data = DataStack(app, alert_email=settings.alert_email, env=env)
    api = ApiStack(app, data=data, settings=settings, iam_principals=gateway_principals(), env=env)
    agents = AgentsStack(app, data=data, api=api, env=env)
    MonitoringStack(app, data=data, api=api, settings=settings, env=env, ecs_service=agents.service,
                    queue=api.runs_queue.queue, dead_letter_queue=api.runs_queue.dead_letters,
                    dead_letter_alarm=api.runs_queue.dead_letter_alarm)
    cdk.Tags.of(app).add("project", "tollgate")
    cdk.Aspects.of(app).add(LambdaLogRetention())  # CDK's own functions' logs expire too
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build_app().synth()
