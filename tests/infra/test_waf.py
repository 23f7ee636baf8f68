"""The WAF web ACL on the API stage: its rules, the managed-rule overrides that let prompts through, the
body-size cap, and its logs (retention, credentials redacted)."""
from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk.assertions import Template

from stacks import waf

from .cfn import local_refs, resources


@pytest.fixture(scope="module")
def acl(api_template) -> dict:
    [acl] = resources(api_template, "AWS::WAFv2::WebACL").values()
    return acl["Properties"]


@pytest.fixture(scope="module")
def rules(acl) -> dict[str, dict]:
    return {r["Name"]: r for r in acl["Rules"]}


def _overrides(rule: dict) -> dict[str, dict]:
    statement = rule["Statement"]["ManagedRuleGroupStatement"]
    return {o["Name"]: o["ActionToUse"] for o in statement.get("RuleActionOverrides", [])}


def test_the_web_acl_is_regional_and_associated_with_the_api_stage(api_template):
    [acl_id] = resources(api_template, "AWS::WAFv2::WebACL")
    [stage_id] = resources(api_template, "AWS::ApiGateway::Stage")
    [association] = resources(api_template, "AWS::WAFv2::WebACLAssociation").values()
    assert api_template["Resources"][acl_id]["Properties"]["Scope"] == "REGIONAL"
    assert local_refs(association["Properties"]["WebACLArn"]) == {acl_id}
    assert stage_id in local_refs(association["Properties"]["ResourceArn"])


def test_rules_in_order_and_unique_priorities(acl, rules):
    priorities = [r["Priority"] for r in acl["Rules"]]
    assert len(set(priorities)) == len(priorities)
    assert acl["DefaultAction"] == {"Allow": {}}
    # cdk.json: no geo block by default, so no geo rule at all.
    assert [r["Name"] for r in sorted(acl["Rules"], key=lambda r: r["Priority"])] == [
        waf.RATE_LIMIT_RULE, waf.BODY_SIZE_RULE, waf.COMMON_RULES]


def test_rate_limit_per_ip_from_cdk_json(rules, synthesis):
    rule = rules[waf.RATE_LIMIT_RULE]
    statement = rule["Statement"]["RateBasedStatement"]
    expected = synthesis.app.node.try_get_context("waf_rate_limit_per_5min")
    assert expected == 1000
    assert {k: v for k, v in statement.items() if k != "ScopeDownStatement"} == {
        "Limit": expected, "AggregateKeyType": "IP", "EvaluationWindowSec": 300}
    assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429


def test_blocked_requests_get_an_error_body_the_sdks_parse(acl, rules):
    bodies = acl["CustomResponseBodies"]
    for name in (waf.RATE_LIMIT_RULE, waf.BODY_SIZE_RULE):
        response = rules[name]["Action"]["Block"]["CustomResponse"]
        body = bodies[response["CustomResponseBodyKey"]]
        assert body["ContentType"] == "APPLICATION_JSON"
        error = json.loads(body["Content"])["error"]
        assert error["type"] and error["message"]


def test_managed_rule_groups_with_body_rules_counting_only(rules):
    for name in (waf.COMMON_RULES,):
        statement = rules[name]["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", name)
        assert rules[name]["OverrideAction"] == {"None": {}}  # the group's own actions apply...
    # ... except these, which count: prompts are over 8 KB and hold code, HTML and exploit questions.
    common = _overrides(rules[waf.COMMON_RULES])
    assert common["SizeRestrictions_BODY"] == {"Count": {}}
    assert common == {name: {"Count": {}} for name in waf.COMMON_RULES_COUNT_ONLY}
    assert all(name.endswith("_BODY") for name in common)


def test_bodies_of_a_megabyte_or_more_are_blocked_by_content_length(rules):
    rule = rules[waf.BODY_SIZE_RULE]
    statement = rule["Statement"]["RegexMatchStatement"]
    assert statement["FieldToMatch"] == {"SingleHeader": {"Name": "content-length"}}
    assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
    pattern = re.compile(statement["RegexString"])
    blocked = [str(waf.MAX_BODY_BYTES), "1000001", "0001000000", "52428800", "9" * 12]
    allowed = ["0", "8193", "65536", str(waf.MAX_BODY_BYTES - 1), "0999999"]
    assert [v for v in blocked if not pattern.search(v)] == []
    assert [v for v in allowed if pattern.search(v)] == []


def test_geo_block_rule_when_countries_are_configured():
    stack = cdk.Stack(cdk.App(), "WafOnly")
    api = apigw.RestApi(stack, "Api")
    api.root.add_method("GET")
    waf.TollgateWaf(stack, "Waf", stage=api.deployment_stage, rate_limit_per_5min=500,
                    geo_block_countries=("KP", "RU"))
    [acl] = Template.from_stack(stack).find_resources("AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert rules[waf.GEO_BLOCK_RULE]["Statement"] == {"GeoMatchStatement": {"CountryCodes": ["KP", "RU"]}}
    assert rules[waf.GEO_BLOCK_RULE]["Action"] == {"Block": {}}
    assert rules[waf.RATE_LIMIT_RULE]["Statement"]["RateBasedStatement"]["Limit"] == 500
    assert len({r["Priority"] for r in rules.values()}) == len(rules)


def test_waf_logs_go_to_an_aws_waf_logs_group_with_retention_and_no_credentials(api_template):
    [acl_id] = resources(api_template, "AWS::WAFv2::WebACL")
    [config] = resources(api_template, "AWS::WAFv2::LoggingConfiguration").values()
    props = config["Properties"]
    assert local_refs(props["ResourceArn"]) == {acl_id}
    [destination] = props["LogDestinationConfigs"]
    [group_id] = {r for r in local_refs(destination) if not r.startswith("AWS::")}
    group = api_template["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["LogGroupName"].startswith(waf.WAF_LOG_GROUP_PREFIX)
    assert group["Properties"]["RetentionInDays"] > 0
    # WAF takes the log group ARN without the ":*" that the group's Arn attribute ends with.
    parts = destination["Fn::Join"][1]
    assert parts[-1] == {"Ref": group_id} and parts[-2].endswith(":log-group:")
    redacted = {f["SingleHeader"]["Name"] for f in props["RedactedFields"]}
    assert {"authorization", "x-api-key"} <= redacted


def test_waf_logs_only_what_a_rule_blocked_or_counted(api_template):
    [config] = resources(api_template, "AWS::WAFv2::LoggingConfiguration").values()
    logging_filter = config["Properties"]["LoggingFilter"]
    assert logging_filter["DefaultBehavior"] == "DROP"  # allowed requests: the access log has them
    [kept] = logging_filter["Filters"]
    assert (kept["Behavior"], kept["Requirement"]) == ("KEEP", "MEETS_ANY")
    actions = {c["ActionCondition"]["Action"] for c in kept["Conditions"]}
    assert actions == {"BLOCK", "COUNT", "EXCLUDED_AS_COUNT"}  # count-only body rules' matches are kept


def test_the_per_ip_rate_rule_does_not_count_the_agents_internal_calls(api_template):
    [acl] = [r["Properties"] for r in api_template["Resources"].values() if r["Type"] == "AWS::WAFv2::WebACL"]
    [rule] = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    match = rule["Statement"]["RateBasedStatement"]["ScopeDownStatement"]["NotStatement"]["Statement"]
    assert match["ByteMatchStatement"]["SearchString"] == "/internal/"
    assert match["ByteMatchStatement"]["PositionalConstraint"] == "STARTS_WITH"
