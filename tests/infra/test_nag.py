"""cdk-nag (AwsSolutions) finds nothing unacknowledged, and every acknowledgement says why.

cdk-nag 3 is a CDK policy-validation plugin: violations of any level fail `cdk synth` and are written
to the cloud assembly's validation report rather than added as annotations.
"""
from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks

from stacks.agents_stack import AGENTS_STACK_NAME
from stacks.api_stack import API_STACK_NAME
from stacks.data_stack import DATA_STACK_NAME
from stacks.monitoring_stack import MONITORING_STACK_NAME

MIN_REASON_LENGTH = 40


def _violations(app: cdk.App, severity: str) -> list[str]:
    report = AwsSolutionsChecks().validate_scope(app)
    return [
        f"{v.rule_name} at {', '.join(r.construct_path for r in v.violating_resources)}: {v.description}"
        for v in report.violations if v.severity == severity
    ]


def test_synthesis_passes_policy_validation(synthesis):
    assert synthesis.error is None, synthesis.error + "\n" + (synthesis.outdir / "validation-report.json").read_text()


def test_validation_report_has_no_violations(synthesis):
    report = json.loads((synthesis.outdir / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])]
    assert violations == []


def test_no_unacknowledged_aws_solutions_errors(synthesis):
    assert _violations(synthesis.app, "error") == []


def test_no_unacknowledged_aws_solutions_warnings(synthesis):
    """Warnings fail `cdk synth` too under cdk-nag 3."""
    assert _violations(synthesis.app, "warning") == []


def test_the_check_is_not_vacuous():
    app = cdk.App()
    sns.Topic(cdk.Stack(app, "Bad"), "Topic")  # no SSL enforcement, no encryption
    assert any(v.startswith("AwsSolutions-SNS3 ") for v in _violations(app, "error"))


def test_no_error_annotations_from_cdk_itself(synthesis):
    if synthesis.error:
        pytest.skip("synthesis failed (see test_synthesis_passes_policy_validation); annotations would re-run it")
    for name in (DATA_STACK_NAME, API_STACK_NAME, AGENTS_STACK_NAME, MONITORING_STACK_NAME):
        assert Annotations.from_stack(synthesis.stack(name)).find_error("*", Match.any_value()) == []


def test_every_acknowledgement_is_an_aws_solutions_rule_with_a_written_reason(synthesis):
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = {}
    for construct in synthesis.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key:
                for rule, reason in entry.data.items():
                    # CDK stores ids without a known plugin prefix as annotation rules; cdk-nag strips it.
                    acknowledged[(construct.node.path, re.sub(r"(?i)^annotation::", "", rule))] = reason
    assert acknowledged, "no acknowledgements found: has the metadata key changed?"
    for (path, rule), reason in acknowledged.items():
        # CDK acknowledges a few findings of its own CloudFormation validator itself, with its reasons
        # (W3010 when a VPC reads the stack's AZs, F3002/F3003 on VPC flow logs).
        assert rule.startswith(("AwsSolutions-", "CloudFormation-Validate::")), f"{path}: {rule}"
        assert len(reason.strip()) >= MIN_REASON_LENGTH, f"{path}: {rule} needs a real reason, got {reason!r}"
