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


@pytest.fixture(scope="module")
def with_bedrock_bill(tmp_path_factory) -> dict:
    """The app synthesised with `-c reconcile_bedrock=true` (and without the agent service, which it does not
    touch, so the synthesis is quicker): {stack name: template}."""
    import app as cdk_app
    from stacks.agents_stack import ENABLED_CONTEXT

    app = cdk_app.build_app(context={"aws:cdk:disable-asset-staging": True, ENABLED_CONTEXT: "false",
                                     "reconcile_bedrock": "true"}, outdir=str(tmp_path_factory.mktemp("ce")))
    return {s.stack_name: s.template for s in app.synth().stacks}


def test_bedrocks_bill_is_read_from_cost_explorer_only_when_asked(api_template, with_bedrock_bill):
    from stacks.api_stack import API_STACK_NAME

    def cost_explorer(template):
        return [s for s in role_statements(template, function_id(template, RECONCILE))
                if "ce:GetCostAndUsage" in as_list(s["Action"])]

    def env(template):
        return resources(template, "AWS::Lambda::Function")[function_id(template, RECONCILE)][
            "Properties"]["Environment"]["Variables"]

    assert not cost_explorer(api_template) and "TOLLGATE_RECONCILE_COST_EXPLORER" not in env(api_template)
    on = with_bedrock_bill[API_STACK_NAME]
    assert cost_explorer(on) and not any(a.startswith("ce:") and a != "ce:GetCostAndUsage"
                                         for s in cost_explorer(on) for a in as_list(s["Action"]))
    assert env(on)["TOLLGATE_RECONCILE_COST_EXPLORER"] == "true"


def test_with_bedrocks_bill_the_drift_alarm_reads_bedrocks_drift_too(monitoring_template, with_bedrock_bill):
    from stacks.monitoring_stack import MONITORING_STACK_NAME

    def drift_providers(template):
        [alarm] = [a for k, a in resources(template, "AWS::CloudWatch::Alarm").items()
                   if k.startswith("ReconciliationDrift")]
        return {d["Value"] for m in alarm["Properties"]["Metrics"] if "MetricStat" in m
                for d in m["MetricStat"]["Metric"]["Dimensions"] if d["Name"] == "provider"}

    assert drift_providers(monitoring_template) == {"openai", "anthropic"}
    assert drift_providers(with_bedrock_bill[MONITORING_STACK_NAME]) == {"openai", "anthropic", "bedrock"}
