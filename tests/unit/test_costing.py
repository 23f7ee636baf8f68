"""tools.costing: per-item arithmetic on small synthetic templates, and DynamoDB's unit rules."""
from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from tools.costing import model, prices as price_file
from tools.costing.assumptions import Assumptions
from tools.costing.templates import Templates
from tools.costing.writes import IndexSpec, Measurement, TableSpec, Write, index_writes, item_size

PRICES = price_file.load()
A = Assumptions()


def _template(**resources) -> dict:
    return {"Resources": {k: {"Type": t, "Properties": p} for k, (t, p) in resources.items()}}


BASE = _template(
    Acl=("AWS::WAFv2::WebACL", {"Rules": [{"Name": "RateLimit"}, {"Name": "Managed"}]}),
    Board=("AWS::CloudWatch::Dashboard", {}),
    Simple=("AWS::CloudWatch::Alarm", {"MetricName": "Errors"}),
    Math=("AWS::CloudWatch::Alarm", {"Metrics": [{"Id": "a", "MetricStat": {}}, {"Id": "b", "MetricStat": {}},
                                                 {"Id": "e", "Expression": "a + b"}]}),
    Anomaly=("AWS::CloudWatch::Alarm", {"Metrics": [{"Id": "c", "MetricStat": {}},
                                                    {"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(c, 2)"}]}),
    Key=("AWS::KMS::Key", {}),
    Secret=("AWS::SecretsManager::Secret", {}),
    Role=("AWS::IAM::Role", {}),
)


def _idle(template: dict, **overrides) -> list[model.Line]:
    return model.idle_lines(Templates({"S": template}), PRICES, Assumptions(idle_custom_metrics=Decimal(0), **overrides))


def test_each_idle_line_is_quantity_times_its_unit_price_and_the_total_is_their_sum():
    lines = _idle(BASE)
    by_item = {line.item.split(" S/")[0].split(" (")[0]: line for line in lines}
    assert by_item["WAF web ACL"].total == Decimal("5.00")
    assert by_item["  its rules"].quantity == 2 and by_item["  its rules"].total == Decimal("2.00")
    assert by_item["dashboard"].total == Decimal("3.00")
    # 1 (plain) + 2 (each metric of a math alarm) + 3 (an anomaly band: the metric and both bounds)
    assert by_item["alarm metrics"].quantity == 6 and by_item["alarm metrics"].total == Decimal("0.60")
    assert by_item["KMS key"].total == Decimal("1.00") and by_item["secret"].total == Decimal("0.40")
    for line in lines:
        assert line.total == line.quantity * PRICES[line.price.key].usd
    assert model.total(lines, model.IDLE) == Decimal("12.00")


def test_adding_a_nat_gateway_moves_idle_by_exactly_its_hours_at_its_price():
    with_nat = copy.deepcopy(BASE)
    with_nat["Resources"]["Nat"] = {"Type": "AWS::EC2::NatGateway", "Properties": {}}
    before, after = model.total(_idle(BASE), model.IDLE), model.total(_idle(with_nat), model.IDLE)
    assert after - before == Decimal(730) * PRICES["nat_gateway_hour"].usd == Decimal("32.85")


def test_a_nat_instance_costs_its_hours_its_root_volume_and_its_public_address():
    t = copy.deepcopy(BASE)
    t["Resources"]["Public"] = {"Type": "AWS::EC2::Subnet", "Properties": {"MapPublicIpOnLaunch": True}}
    t["Resources"]["Nat"] = {"Type": "AWS::EC2::Instance", "Properties": {
        "InstanceType": "t4g.nano", "SubnetId": {"Ref": "Public"},
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}]}}
    added = model.total(_idle(t), model.IDLE) - model.total(_idle(BASE), model.IDLE)
    assert added == 730 * Decimal("0.0042") + 8 * Decimal("0.08") + 730 * Decimal("0.005")


def test_an_unpriced_resource_type_stops_the_calculation():
    t = copy.deepcopy(BASE)
    t["Resources"]["Db"] = {"Type": "AWS::RDS::DBInstance", "Properties": {}}
    with pytest.raises(model.UnpricedResource, match="AWS::RDS::DBInstance"):
        _idle(t)


def test_a_scheduled_function_is_priced_per_invocation_of_its_rate():
    t = _template(
        Fn=("AWS::Lambda::Function", {"MemorySize": 1024, "TracingConfig": {"Mode": "Active"}}),
        Every=("AWS::Events::Rule", {"ScheduleExpression": "rate(1 hour)",
                                     "Targets": [{"Arn": {"Fn::GetAtt": ["Fn", "Arn"]}}]}))
    lines = _idle(t, sweeper_s=Decimal(1))
    gb_s = next(line for line in lines if "GB-seconds" in line.item)
    assert gb_s.quantity == 730  # 730 runs x 1 GB x 1 s
    traces = next(line for line in lines if "X-Ray" in line.item)
    assert traces.quantity * 1_000_000 == 730


# -- per million requests ------------------------------------------------------------------------------------

REQUEST_TEMPLATE = _template(
    GatewayFunctionAB12=("AWS::Lambda::Function", {"MemorySize": 512}),
    Stage=("AWS::ApiGateway::Stage", {"TracingEnabled": True}),
    Sampling=("AWS::XRay::SamplingRule", {"SamplingRule": {"ServiceType": "AWS::ApiGateway::Stage",
                                                           "FixedRate": 0.05, "ReservoirSize": 0}}),
)


def _measurement(units: list[int], index_units: int = 0) -> Measurement:
    from tools.costing.writes import IndexWrite

    return Measurement(writes=[Write("BudgetsTable", "Update", "k", 100, u, u == 2) for u in units],
                       index_writes=[IndexWrite("BudgetsTable", "pending", "put", 100, 1)] * index_units,
                       log_bytes=650)


def test_per_million_lines_scale_with_write_units_memory_and_sampling():
    lines = model.request_lines(Templates({"S": REQUEST_TEMPLATE}), PRICES, A, _measurement([2, 2, 1], 1), {})
    by = {line.item.split(",")[0].split(" (")[0].strip(): line for line in lines}
    assert by["DynamoDB write units"].quantity == 6 and by["DynamoDB write units"].total == 6 * Decimal("0.625")
    # 0.5 GB x (0.6 s waiting + 0.05 s x 1024/512 of own work) x 1M requests
    assert by["GB-seconds"].quantity == Decimal("0.5") * (Decimal("0.6") + Decimal("0.1")) * 1_000_000
    assert by["X-Ray traces"].quantity == Decimal("0.05")
    assert by["log GB"].quantity == (650 + A.lambda_platform_log_bytes) * 1_000_000 / model.GB
    assert by["API Gateway REST requests"].total == Decimal("3.50")


def test_without_a_sampling_rule_the_default_traces_almost_every_request_at_low_rates():
    t = copy.deepcopy(REQUEST_TEMPLATE)
    del t["Resources"]["Sampling"]
    templates = Templates({"S": t})
    assert model.traced_share(templates, A) == 1  # 0.38 requests a second: all inside the 1-a-second reservoir
    busy = Assumptions(requests_per_month=Decimal(A.seconds_per_month * 11))  # 11 a second
    assert model.traced_share(templates, busy) == (1 + Decimal("0.05") * 10) / 11


def test_the_authorizer_runs_on_cache_misses_only():
    t = _template(Auth=("AWS::ApiGateway::Authorizer", {"AuthorizerResultTtlInSeconds": 30}))
    one_a_second_per_key = Assumptions(requests_per_month=A.seconds_per_month, active_keys=Decimal(1))
    assert model.authorizer_share(Templates({"S": t}), one_a_second_per_key) == Decimal(1) / 31


def test_waf_logs_every_request_unless_its_filter_keeps_only_blocked_and_counted_ones():
    every = _template(Log=("AWS::WAFv2::LoggingConfiguration", {}))
    [config] = Templates({"S": every}).resources("AWS::WAFv2::LoggingConfiguration")
    assert model.waf_logged_share(config, A) == 1
    kept = [{"ActionCondition": {"Action": a}} for a in ("BLOCK", "COUNT")]
    filtered = _template(Log=("AWS::WAFv2::LoggingConfiguration", {"LoggingFilter": {
        "DefaultBehavior": "DROP", "Filters": [{"Behavior": "KEEP", "Requirement": "MEETS_ANY", "Conditions": kept}]}}))
    [config] = Templates({"S": filtered}).resources("AWS::WAFv2::LoggingConfiguration")
    assert model.waf_logged_share(config, A) == A.waf_logged_share
    lines = model.request_lines(Templates({"S": {"Resources": {**REQUEST_TEMPLATE["Resources"], **filtered["Resources"]}}}),
                                PRICES, A, _measurement([2]), {})
    [waf_logs] = [line for line in lines if line.item.strip().startswith("WAF log records")]
    assert waf_logs.quantity == A.waf_logged_share * A.waf_log_bytes * 1_000_000 / model.GB


# -- DynamoDB's unit rules -----------------------------------------------------------------------------------

def test_item_size_follows_dynamodbs_rules():
    # names + values: "pk"(2) + "u1"(2); "n"(1) + 12345 (5 digits -> 3 + 1); "ok"(2) + BOOL(1)
    assert item_size({"pk": {"S": "u1"}, "n": {"N": "12345"}, "ok": {"BOOL": True}}) == 4 + 5 + 3
    assert item_size({"m": {"M": {"a": {"S": "x"}}}}) == 1 + 3 + (1 + 1 + 1)


TABLE = TableSpec("BudgetsTable", ("pk", "sk"),
                  (IndexSpec("pending", ("pendingShard", "expiresAt"), "KEYS_ONLY"),), None)


def _item(**attrs) -> dict:
    return {k: {"S": v} for k, v in {"pk": "p", "sk": "s", **attrs}.items()}


@pytest.mark.parametrize("before, after, expected", [
    (None, _item(pendingShard="p1", expiresAt="t"), [("put", 1)]),            # enters the sparse index
    (_item(pendingShard="p1", expiresAt="t"), None, [("delete", 1)]),         # leaves it
    (_item(pendingShard="p1", expiresAt="t"), _item(pendingShard="p1", expiresAt="u"), [("move", 2)]),
    (_item(pendingShard="p1", expiresAt="t", x="1"), _item(pendingShard="p1", expiresAt="t", x="2"), []),  # not projected
    (_item(x="1"), _item(x="2"), []),                                           # never in the index
])
def test_index_writes_follow_the_projection(before, after, expected):
    assert [(w.action, w.units) for w in index_writes(TABLE, before, after)] == expected


def test_a_change_of_a_projected_attribute_is_one_index_write():
    table = TableSpec("T", ("pk", "sk"), (IndexSpec("all", ("g",), "ALL"),), None)
    assert [(w.action, w.units) for w in index_writes(table, _item(g="1", x="a"), _item(g="1", x="b"))] == [("update", 1)]


# -- SnapStart (issue 15 item 4) -------------------------------------------------------------------------------

def _snapstart_template(apply_on: str | None) -> dict:
    t = copy.deepcopy(REQUEST_TEMPLATE)
    t["Resources"]["GatewayFunctionAB12"]["Properties"].update({"MemorySize": 256} if apply_on is None else
                                                               {"MemorySize": 256, "SnapStart": {"ApplyOn": apply_on}})
    t["Resources"]["GatewayVersion1"] = {"Type": "AWS::Lambda::Version",
                                         "Properties": {"FunctionName": {"Ref": "GatewayFunctionAB12"}}}
    return t


def _kept_active(t: dict, expression: str = "rate(1 day)") -> dict:
    """The keep-active schedule: a rule invoking the SnapStart version's alias."""
    t = copy.deepcopy(t)
    t["Resources"]["GatewayLive"] = {"Type": "AWS::Lambda::Alias", "Properties": {
        "FunctionName": {"Ref": "GatewayFunctionAB12"}, "FunctionVersion": {"Fn::GetAtt": ["GatewayVersion1", "Version"]}}}
    t["Resources"]["KeepActive"] = {"Type": "AWS::Events::Rule", "Properties": {
        "ScheduleExpression": expression, "Targets": [{"Id": "T", "Arn": {"Ref": "GatewayLive"}}]}}
    return t


def test_a_snapstart_version_is_cached_all_month_even_idle():
    """The version is kept invoked (a version uninvoked for 14 days goes Inactive and fails its calls), so idle
    pays for the whole month of its snapshot, never the 14 days Lambda keeps an uninvoked one."""
    without = model.total(_idle(_snapstart_template(None)), model.IDLE)
    lines = _idle(_snapstart_template("PublishedVersions"))
    [cache] = [line for line in lines if "SnapStart" in line.item]
    assert cache.quantity == Decimal("0.25") * A.seconds_per_month  # GB x every second of the month
    assert cache.quantity > Decimal("0.25") * 14 * 86400
    assert model.total(lines, model.IDLE) - without == cache.quantity * PRICES["lambda_snapstart_cache_gb_s"].usd
    assert not [line for line in _idle(_snapstart_template("None")) if "SnapStart" in line.item]


def test_the_keep_active_schedule_costs_its_invocations_and_a_restore_each():
    t = _snapstart_template("PublishedVersions")
    added = [line for line in _idle(_kept_active(t), sweeper_s=Decimal(1)) if line not in _idle(t, sweeper_s=Decimal(1))]
    runs = A.seconds_per_month / 86400
    by_key = {line.price.key: line.quantity for line in added}
    assert by_key["lambda_requests_million"] == runs / 1_000_000  # through the alias to its function
    assert by_key["lambda_arm_gb_s"] == runs * Decimal("0.25")
    assert by_key["lambda_snapstart_restore_gb"] == runs * Decimal("0.25")  # a day apart: each run is a restore
    weekly = [line for line in _idle(_kept_active(t, "rate(7 days)")) if line.price.key == "lambda_snapstart_restore_gb"]
    assert [line.quantity for line in weekly] == [runs / 7 * Decimal("0.25")]


def test_traffic_adds_only_a_restore_per_cold_start():
    def snapstart(t: dict) -> list[model.Line]:
        lines = model.request_lines(Templates({"S": t}), PRICES, A, _measurement([2]), {})
        return [line for line in lines if line.price.key.startswith("lambda_snapstart")]

    [restore] = snapstart(_snapstart_template("PublishedVersions"))  # the cache is all in idle
    assert restore.quantity == 1_000_000 * A.cold_start_share * Decimal("0.25")  # GB restored per million requests
    assert restore.price.key == "lambda_snapstart_restore_gb"
    assert snapstart(_snapstart_template(None)) == []
