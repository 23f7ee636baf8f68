"""Issue 17 in the stacks: the daily reconciliation function, its schedule and grants, and the drift alarm."""
from __future__ import annotations

import pytest
from tollgate import metric_names as mn

from .cfn import as_list, function_id, local_refs, resources, role_statements

RECONCILE = "handlers.reconcile.lambda_handler"


@pytest.fixture(scope="module")
def monitoring_template(synthesis) -> dict:
    from stacks.monitoring_stack import MONITORING_STACK_NAME

    return synthesis.template(MONITORING_STACK_NAME)


def test_reconciliation_runs_daily_on_its_own_function(api_template):
    fn = function_id(api_template, RECONCILE)
    [rule] = [r for r in resources(api_template, "AWS::Events::Rule").values()
              if any(fn in local_refs(t["Arn"]) for t in r["Properties"]["Targets"])]
    assert rule["Properties"]["ScheduleExpression"].startswith("cron(30 6 ")


def test_reconciliation_writes_only_daily_totals_and_reads_only_the_admin_keys_secret(api_template):
    statements = role_statements(api_template, function_id(api_template, RECONCILE))
    writes = [s for s in statements if {"dynamodb:PutItem", "dynamodb:UpdateItem"} & set(as_list(s["Action"]))]
    leading = [s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] for s in writes]
    assert leading and all(keys == ["DAILY#USER#*", "RECON#*"] for keys in leading)
    assert not any(a in as_list(s["Action"]) for s in statements for a in ("dynamodb:DeleteItem", "dynamodb:*"))
    secrets = [s for s in statements if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    [secret] = [k for k in resources(api_template, "AWS::SecretsManager::Secret")
                if k.startswith("ProviderAdminKeysSecret")]
    assert secrets and all(local_refs(s["Resource"]) == {secret} for s in secrets)


def test_drift_alarm_fires_above_the_default_threshold_on_the_daily_drift_metric(monitoring_template):
    [alarm] = [a for k, a in resources(monitoring_template, "AWS::CloudWatch::Alarm").items()
               if k.startswith("ReconciliationDrift")]
    props = alarm["Properties"]
    assert props["Threshold"] == mn.RECONCILIATION_DRIFT_ALARM_PCT == 3
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["TreatMissingData"] == "notBreaching"  # a missing bill is its own metric, not zero drift
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m}
    assert names == {mn.RECONCILIATION_DRIFT_PCT}
