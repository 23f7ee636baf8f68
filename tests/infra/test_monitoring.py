"""TollgateMonitoring: dashboards, alarms (thresholds and actions), the cost anomaly detector, the
top-spenders rule; and log retention on every log group of every stack."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Annotations, Match
from cfnlint.api import lint_file
from tollgate import metric_names as mn
from tollgate import schema

from stacks import monitoring_stack as ms
from stacks.monitoring_stack import MONITORING_STACK_NAME
from stacks import web_adapter

from .cfn import data_refs, local_refs, resources
from .dashboards import alarm_metrics, dashboard_metrics, dashboards, detector_metrics, flatten, widgets

ALL_TOLLGATE_METRICS = {mn.REQUESTS, mn.TOKENS, mn.COST_USD, mn.ERRORS, mn.BUDGET_REFUSALS, mn.RATE_LIMIT_REFUSALS,
                        mn.LOOP_DETECTIONS, mn.PROVIDER_LATENCY_MS, mn.RESERVATIONS_RELEASED,
                        mn.TIME_TO_FIRST_TOKEN_MS}
ALL_TOLLGATE_METRICS |= {mn.RECONCILIATION_DRIFT_PCT, mn.RECONCILIATION_MISSING}  # tollgate.reconcile (issue 17)
ALL_TOLLGATE_METRICS |= {mn.CACHE_HITS, mn.CACHE_MISSES}  # tollgate.response_cache (issue 17)


@pytest.fixture(scope="module")
def templates(synthesis) -> dict[str, dict]:
    """Every stack of the app, by name."""
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text())
            for p in Path(synthesis.outdir).glob("*.template.json")}


@pytest.fixture(scope="module")
def monitoring_template(synthesis) -> dict:
    return synthesis.template(MONITORING_STACK_NAME)


@pytest.fixture(scope="module")
def alarms(monitoring_template) -> dict[str, dict]:
    """Alarm name (without the stack prefix) -> properties."""
    return {a["Properties"]["AlarmName"].removeprefix(f"{MONITORING_STACK_NAME}-"): a["Properties"]
            for a in resources(monitoring_template, "AWS::CloudWatch::Alarm").values()}


def _refers_to(value, logical_id: str, other: dict) -> bool:
    """Does `value` reference `logical_id` of the stack `other` (through its outputs)?"""
    return logical_id in data_refs(value, other)


# -- log retention, every stack ----------------------------------------------------------------------

def test_the_app_has_the_monitoring_stack(templates):
    assert MONITORING_STACK_NAME in templates


def test_every_log_group_in_every_stack_has_a_retention(templates):
    groups = {(stack, k): g for stack, t in templates.items() for k, g in resources(t, "AWS::Logs::LogGroup").items()}
    assert len(groups) >= 7  # four functions at least, API access and execution logs, WAF logs
    assert [k for k, g in groups.items() if not g["Properties"].get("RetentionInDays")] == []


def test_every_lambda_function_logs_to_a_group_with_retention(templates):
    """Ours name their own group; CDK's own (custom-resource providers) get /aws/lambda/<name> created
    before any custom resource runs them (stacks/log_retention.py): else Lambda creates it, unbounded."""
    functions = 0
    for stack, template in templates.items():
        groups = resources(template, "AWS::Logs::LogGroup")
        by_name = {json.dumps(g["Properties"].get("LogGroupName"), sort_keys=True): k for k, g in groups.items()}
        for fid, fn in resources(template, "AWS::Lambda::Function").items():
            functions += 1
            if "LoggingConfig" in fn["Properties"]:
                [group] = local_refs(fn["Properties"]["LoggingConfig"]["LogGroup"])
            else:
                name = {"Fn::Join": ["", ["/aws/lambda/", {"Ref": fid}]]}
                group = by_name.get(json.dumps(name, sort_keys=True))
                assert group, f"{stack}/{fid}: Lambda would create its log group, with no retention"
                for cid, custom in template["Resources"].items():
                    if fid in local_refs(custom.get("Properties", {}).get("ServiceToken", {})):
                        assert group in custom.get("DependsOn", []), f"{stack}/{cid} may run before {group} exists"
            assert group in groups, f"{stack}/{fid}: logs to a group the stack does not own"
            assert groups[group]["Properties"]["RetentionInDays"] > 0
    assert functions >= 4


def test_every_ecs_container_logs_to_a_group_with_retention(templates):
    for stack, template in templates.items():
        groups = resources(template, "AWS::Logs::LogGroup")
        for tid, task in resources(template, "AWS::ECS::TaskDefinition").items():
            for container in task["Properties"]["ContainerDefinitions"]:
                log = container["LogConfiguration"]
                assert log["LogDriver"] == "awslogs", f"{stack}/{tid}"
                [group] = local_refs(log["Options"]["awslogs-group"])
                assert groups[group]["Properties"]["RetentionInDays"] > 0


# -- alarms --------------------------------------------------------------------------------------------

def test_every_alarm_notifies_the_one_alerts_topic(templates, data_template):
    """Every alarm for people, that is: the agent service's scaling alarms drive its scaling policies."""
    [topic] = resources(data_template, "AWS::SNS::Topic")
    found = 0
    for stack, template in templates.items():
        scaling = set(resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy"))
        for aid, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
            actions = alarm["Properties"].get("AlarmActions", [])
            if actions and all(local_refs(a) <= scaling for a in actions):
                continue
            found += 1
            assert len(actions) == 1, f"{stack}/{aid}"
            assert topic in data_refs(actions[0], data_template) | local_refs(actions[0]), f"{stack}/{aid}"
    assert found >= 9


def test_cost_anomaly_detection_on_cost_per_hour_as_in_the_article(monitoring_template, alarms):
    [detector] = resources(monitoring_template, "AWS::CloudWatch::AnomalyDetector").values()
    queries = detector["Properties"]["MetricMathAnomalyDetector"]["MetricDataQueries"]
    alarm = alarms["CostAnomaly"]
    assert alarm["ComparisonOperator"] == "GreaterThanUpperThreshold"
    assert alarm["EvaluationPeriods"] == ms.COST_ANOMALY_EVALUATION_PERIODS == 2
    band = {q["Id"]: q for q in alarm["Metrics"]}[alarm["ThresholdMetricId"]]
    assert band["Expression"] == f"ANOMALY_DETECTION_BAND(cost, {ms.COST_ANOMALY_STD_DEVS})"
    # The alarm's band is the detector's model: the same queries (bar labels and the band itself).
    strip = [{k: v for k, v in q.items() if k != "Label"} for q in alarm["Metrics"] if q["Id"] != band["Id"]]
    assert strip == queries
    # CostUsd summed over an hour, across every provider.
    [cost] = [q for q in queries if q["ReturnData"]]
    stats = [q["MetricStat"] for q in queries if "MetricStat" in q]
    assert {(s["Metric"]["MetricName"], s["Period"], s["Stat"]) for s in stats} == {(mn.COST_USD, 3600, "Sum")}
    providers = {d["Value"] for s in stats for d in s["Metric"]["Dimensions"] if d["Name"] == mn.DIM_PROVIDER}
    assert providers == set(mn.PROVIDERS)
    assert all(f"FILL({q['Id']}, 0)" in cost["Expression"] for q in queries if "MetricStat" in q)
    assert alarm["TreatMissingData"] == "notBreaching"


def test_static_cost_per_hour_ceiling_from_cdk_json(alarms, monitoring_template, synthesis):
    alarm = alarms["CostPerHourCeiling"]
    assert alarm["Threshold"] == synthesis.app.node.try_get_context("cost_per_hour_ceiling_usd") == 25
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["EvaluationPeriods"] == 1
    [expression] = [q for q in alarm["Metrics"] if q["ReturnData"]]
    [anomaly_cost] = [q for q in alarms["CostAnomaly"]["Metrics"] if q["Id"] == "cost"]
    assert expression["Expression"] == anomaly_cost["Expression"]  # the same cost per hour
    stats = [q["MetricStat"] for q in alarm["Metrics"] if "MetricStat" in q]
    assert {(s["Metric"]["MetricName"], s["Period"], s["Stat"]) for s in stats} == {(mn.COST_USD, 3600, "Sum")}


def test_gateway_error_rate_is_5xx_over_requests(alarms, monitoring_template):
    alarm = alarms["GatewayErrorRate"]
    by_id = {q["Id"]: q for q in alarm["Metrics"]}
    [rate] = [q for q in alarm["Metrics"] if q["ReturnData"]]
    assert "errors / requests" in rate["Expression"]
    assert by_id["errors"]["MetricStat"]["Metric"]["MetricName"] == "5XXError"
    assert by_id["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    assert {by_id[i]["MetricStat"]["Stat"] for i in ("errors", "requests")} == {"Sum"}
    assert alarm["Threshold"] == ms.ERROR_RATE_THRESHOLD
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
        ms.ERROR_RATE_EVALUATION_PERIODS, ms.ERROR_RATE_DATAPOINTS)


def test_dynamodb_throttling_alarm_on_every_table_and_index_a_request_needs(alarms, data_template, monitoring_template):
    tables = resources(data_template, "AWS::DynamoDB::Table")
    for spec in schema.TABLES:
        [table_id] = [k for k in tables if k.startswith(spec.logical_id)]
        alarm = alarms[f"{spec.logical_id}Throttling"]
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        metrics = [q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q]
        assert all(_refers_to(m["Dimensions"], table_id, data_template) for m in metrics)
        seen = {(m["MetricName"], next((d["Value"] for d in m["Dimensions"] if d["Name"] == "GlobalSecondaryIndexName"),
                                       None)) for m in metrics}
        assert seen == {(name, index) for name in ("ReadThrottleEvents", "WriteThrottleEvents")
                        for index in (None, *(i.name for i in spec.indexes
                                              if (spec.logical_id, i.name) not in ms.UNALARMED_INDEXES))}
    assert ms.UNALARMED_INDEXES == {("ApiKeysTable", "byUser")}  # the budgets' `pending` index stays alarmed


def test_sweeper_failures_alarm(alarms, api_template, monitoring_template):
    from .cfn import function_id

    sweeper = function_id(api_template, "handlers.sweeper.lambda_handler")
    alarm = alarms["SweeperFailures"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert sweeper in data_refs(alarm["Dimensions"], api_template)


def test_a_non_empty_dead_letter_queue_alarms(templates):
    dlq_alarms = [a["Properties"] for t in templates.values() for a in resources(t, "AWS::CloudWatch::Alarm").values()
                  if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    if not any(resources(t, "AWS::SQS::Queue") for t in templates.values()):
        pytest.skip("no queues in this app")
    assert dlq_alarms
    for alarm in dlq_alarms:
        assert alarm["Statistic"] == "Maximum"
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) in {("GreaterThanThreshold", 0),
                                                                     ("GreaterThanOrEqualToThreshold", 1)}


# -- dashboards ----------------------------------------------------------------------------------------

def test_one_dashboard(monitoring_template):
    """One dashboard ($3 a month each): the business rows, then the infrastructure rows."""
    [dashboard] = resources(monitoring_template, "AWS::CloudWatch::Dashboard").values()
    [body] = dashboards(monitoring_template).values()
    titles = [w["properties"].get("markdown", "") for w in body["widgets"] if w["type"] == "text"]
    assert [t.split("\n")[0] for t in titles] == ["# Tollgate: business", "# Tollgate: infrastructure health"]


def _dashboard(monitoring_template: dict) -> dict:
    [body] = dashboards(monitoring_template).values()
    return {"Resources": {"D": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
        "DashboardBody": json.dumps(body)}}}}


def test_infrastructure_dashboard_covers_every_function_table_and_the_api(templates, monitoring_template):
    infra = dashboard_metrics(_dashboard(monitoring_template))
    lambda_metrics = {(name, dict(dims)["FunctionName"]) for ns, name, dims in infra if ns == "AWS/Lambda"}
    functions = [(stack, fid) for stack, t in templates.items()
                 for fid, f in resources(t, "AWS::Lambda::Function").items()
                 if f["Properties"]["Handler"].startswith("handlers.")]  # ours, not CDK's custom-resource providers
    assert len(functions) >= 4
    drawn = {value for _, value in lambda_metrics}
    for stack, fid in functions:
        # A function of another stack appears through that stack's output referencing it.
        outputs = {f"<output:{n}>" for n, o in templates[stack].get("Outputs", {}).items()
                   if fid in local_refs(o["Value"])}
        assert outputs & drawn or f"<{fid}>" in drawn, f"{stack}/{fid} is not on the dashboard"
        for metric in ("Duration", "Errors", "Throttles"):
            assert any((metric, v) in lambda_metrics for v in outputs | {f"<{fid}>"}), (fid, metric)
    api = {name for ns, name, _ in infra if ns == "AWS/ApiGateway"}
    assert {"Count", "4XXError", "5XXError", "Latency"} <= api
    dynamo = {(name, dict(dims)["TableName"]) for ns, name, dims in infra if ns == "AWS/DynamoDB"}
    assert len({table for _, table in dynamo}) == len(schema.TABLES)
    assert {name for name, _ in dynamo} == {"ReadThrottleEvents", "WriteThrottleEvents"}


def test_infrastructure_dashboard_shows_every_alarm(templates, monitoring_template):
    [status] = [w for w in widgets(monitoring_template) if w["type"] == "alarm"]
    shown = set(status["properties"]["alarms"])
    assert {f"<{k}>" for k in resources(monitoring_template, "AWS::CloudWatch::Alarm")} <= shown
    # Alarms of other stacks (the runs dead-letter queue's) appear through those stacks' outputs.
    elsewhere = {f"<output:{name}>" for stack, t in templates.items() if stack != MONITORING_STACK_NAME
                 for name, o in t.get("Outputs", {}).items()
                 if local_refs(o["Value"]) & set(resources(t, "AWS::CloudWatch::Alarm"))}
    assert shown == {f"<{k}>" for k in resources(monitoring_template, "AWS::CloudWatch::Alarm")} | elsewhere


def test_business_dashboard_requests_tokens_cost_per_hour_and_refusals(monitoring_template):
    business = dashboard_metrics(_dashboard(monitoring_template))
    assert {name for ns, name, _ in business if ns == mn.NAMESPACE} == ALL_TOLLGATE_METRICS
    cost = [w for w in widgets(monitoring_template) if w["properties"].get("title") == "Cost per hour (USD)"]
    [graph] = cost
    rows = [r for r in graph["properties"]["metrics"] if mn.COST_USD in r]
    assert rows and all(r[-1]["stat"] == "Sum" and r[-1]["period"] == 3600 for r in rows)
    refusals = [w for w in widgets(monitoring_template) if "Refusals" in w["properties"].get("title", "")]
    [refusal_graph] = refusals
    drawn = {x for row in refusal_graph["properties"]["metrics"] for x in row if isinstance(x, str)}
    assert {mn.BUDGET_REFUSALS, mn.RATE_LIMIT_REFUSALS, mn.LOOP_DETECTIONS} <= drawn


def test_business_dashboard_shows_response_cache_hits_and_misses_over_every_provider(monitoring_template):
    [graph] = [w for w in widgets(monitoring_template) if "Response cache" in w["properties"].get("title", "")]
    rows = graph["properties"]["metrics"]
    for name in (mn.CACHE_HITS, mn.CACHE_MISSES):
        providers = {r[r.index(mn.DIM_PROVIDER) + 1] for r in rows if name in r}
        assert providers == set(mn.PROVIDERS), name


def test_tollgate_metrics_have_only_low_cardinality_dimensions(monitoring_template):
    referenced = dashboard_metrics(monitoring_template)
    for alarm in resources(monitoring_template, "AWS::CloudWatch::Alarm").values():
        referenced |= alarm_metrics(alarm)
    for detector in resources(monitoring_template, "AWS::CloudWatch::AnomalyDetector").values():
        referenced |= detector_metrics(detector)
    ours = [(name, dict(dims)) for ns, name, dims in referenced if ns == mn.NAMESPACE]
    assert ours
    for name, dims in ours:
        assert name in ALL_TOLLGATE_METRICS
        assert set(dims) <= {mn.DIM_SERVICE, mn.DIM_PROVIDER}
        assert dims[mn.DIM_SERVICE] == mn.SERVICE and dims.get(mn.DIM_PROVIDER, mn.PROVIDERS[0]) in mn.PROVIDERS


# -- top spenders ----------------------------------------------------------------------------------------

def test_top_spenders_is_a_logs_insights_query_over_the_gateway_logs(monitoring_template, api_template):
    """The top spenders are a Logs Insights query widget (billed per GB scanned when drawn), not a Contributor
    Insights rule ($0.50 a month whether anyone looks or not)."""
    from .cfn import function_id

    assert not resources(monitoring_template, "AWS::CloudWatch::InsightRule")
    [widget] = [w for w in widgets(monitoring_template) if w["type"] == "log"]
    query = widget["properties"]["query"]
    # The log group is the gateway function's.
    gateway = api_template["Resources"][function_id(api_template, web_adapter.HANDLER)]
    [group] = local_refs(gateway["Properties"]["LoggingConfig"]["LogGroup"])
    [output] = [n for n, o in api_template["Outputs"].items() if local_refs(o["Value"]) == {group}]
    assert query.startswith(f"SOURCE '<output:{output}>' | ")
    assert f'filter message = "{mn.METERED_LOG_MESSAGE}"' in query
    assert f"stats sum({mn.LOG_COST_USD}) as spent_usd" in query and query.count(f"by {mn.LOG_USER}") == 1
    assert "sort spent_usd desc" in query and "limit 10" in query
    assert widget["properties"]["view"] == "table"


# -- optional agents inputs -------------------------------------------------------------------------------

def test_ecs_memory_alarm_when_an_agent_service_is_given():
    """With an ECS service (the agents stack's), memory above 80% alarms and CPU/memory are drawn."""
    import app as cdk_app
    from stacks.api_stack import ApiStack
    from stacks.config import DeploySettings
    from stacks.data_stack import DataStack

    app = cdk.App(context={**cdk_app.cdk_json_context(), "aws:cdk:disable-asset-staging": True})
    settings = DeploySettings.from_context(app)
    data = DataStack(app)
    api = ApiStack(app, data=data, settings=settings)
    agents = cdk.Stack(app, "Agents")
    cluster = ecs.Cluster(agents, "Cluster", vpc=ec2.Vpc(agents, "Vpc", max_azs=1, nat_gateways=0))
    task = ecs.FargateTaskDefinition(agents, "Task")
    task.add_container("agent", image=ecs.ContainerImage.from_registry("public.ecr.aws/docker/library/python:3.14"))
    service = ecs.FargateService(agents, "Service", cluster=cluster, task_definition=task)
    monitoring = ms.MonitoringStack(app, "Monitoring", data=data, api=api, settings=settings, ecs_service=service)
    template = cdk.assertions.Template.from_stack(monitoring).to_json()
    [alarm] = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()
               if a["Properties"].get("MetricName") == "MemoryUtilization"]
    assert (alarm["Namespace"], alarm["Statistic"]) == ("AWS/ECS", "Maximum")
    assert alarm["Threshold"] == ms.ECS_MEMORY_THRESHOLD_PERCENT == 80
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and len(alarm["AlarmActions"]) == 1
    drawn = {(ns, name) for ns, name, _ in dashboard_metrics(template)}
    assert {("AWS/ECS", "CPUUtilization"), ("AWS/ECS", "MemoryUtilization")} <= drawn


# -- the checks tests/infra/test_nag.py and test_cfn_lint.py run on the other stacks ---------------------------

def test_monitoring_template_has_no_cfn_lint_errors(synthesis):
    findings = lint_file(Path(synthesis.outdir) / f"{MONITORING_STACK_NAME}.template.json")
    errors = [str(m) for m in findings if m.rule.id.startswith("E")]
    others = [str(m) for m in findings if not m.rule.id.startswith("E")]
    if others:
        warnings.warn("cfn-lint on TollgateMonitoring:\n" + "\n".join(others), stacklevel=1)
    assert errors == []


def test_no_error_annotations_on_the_monitoring_stack(synthesis):
    if synthesis.error:
        pytest.skip("synthesis failed (see test_nag.py)")
    assert Annotations.from_stack(synthesis.stack(MONITORING_STACK_NAME)).find_error("*", Match.any_value()) == []


def test_time_to_first_token_per_provider_sits_next_to_provider_latency(monitoring_template):
    business = list(widgets(monitoring_template))
    titles = [w["properties"].get("title") for w in business]
    latency, ttft = titles.index("Provider latency (ms)"), titles.index("Time to first token, streams (ms)")
    assert ttft == latency + 1 and business[ttft]["y"] == business[latency]["y"]  # the same row, beside it
    drawn = {(row[1], row[3]) for row in business[ttft]["properties"]["metrics"] if mn.TIME_TO_FIRST_TOKEN_MS in row}
    assert {provider for _, provider in drawn} == set(mn.PROVIDERS)
