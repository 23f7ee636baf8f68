"""SnapStart on the gateway (issue 15 item 4): its published versions are snapshotted, API Gateway invokes the
alias of the current one, a replaced version is deleted with its snapshot, and the Web Adapter bridges the
snapshot's lifecycle to the app (tollgate.snapshot)."""
from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template
from tollgate import snapshot

from stacks import web_adapter
from stacks.api_stack import API_STACK_NAME, GATEWAY_ALIAS, KEEP_ACTIVE_EVENT

from .cfn import function_id, resources


@pytest.fixture(scope="module")
def template(synthesis) -> Template:
    return Template.from_stack(synthesis.stack(API_STACK_NAME))


def test_only_the_gateway_is_snapshotted_on_published_versions(api_template, template):
    gateway_id = function_id(api_template, web_adapter.HANDLER)
    snapshotted = {k for k, v in resources(api_template, "AWS::Lambda::Function").items()
                   if v["Properties"].get("SnapStart")}
    assert snapshotted == {gateway_id}
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": web_adapter.HANDLER, "SnapStart": {"ApplyOn": "PublishedVersions"}})
    # One version, deleted (with its cached snapshot) when a deployment replaces it.
    template.resource_properties_count_is("AWS::Lambda::Version", {"FunctionName": {"Ref": gateway_id}}, 1)
    template.has_resource("AWS::Lambda::Version", {"Properties": {"FunctionName": {"Ref": gateway_id}},
                                                   "DeletionPolicy": "Delete"})


def test_api_gateway_invokes_the_alias_of_the_published_version(api_template, template):
    gateway_id = function_id(api_template, web_adapter.HANDLER)
    [(version_id, _)] = [(k, v) for k, v in resources(api_template, "AWS::Lambda::Version").items()
                         if v["Properties"]["FunctionName"] == {"Ref": gateway_id}]
    [(alias_id, alias)] = [(k, v) for k, v in resources(api_template, "AWS::Lambda::Alias").items()
                           if v["Properties"]["FunctionName"] == {"Ref": gateway_id}]
    assert alias["Properties"]["Name"] == GATEWAY_ALIAS
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}

    gateway_integrations = [m["Properties"]["Integration"] for m in resources(api_template, "AWS::ApiGateway::Method").values()
                            if gateway_id in str(m["Properties"]["Integration"].get("Uri"))
                            or alias_id in str(m["Properties"]["Integration"].get("Uri"))]
    assert gateway_integrations
    for integration in gateway_integrations:  # never $LATEST, which SnapStart does not restore
        assert {"Ref": alias_id} in integration["Uri"]["Fn::Join"][1]
        assert gateway_id not in str(integration["Uri"])
    # API Gateway may invoke the alias (and only through it).
    template.has_resource_properties("AWS::Lambda::Permission", {
        "FunctionName": {"Ref": alias_id}, "Principal": "apigateway.amazonaws.com"})
    for permission in resources(api_template, "AWS::Lambda::Permission").values():
        assert permission["Properties"]["FunctionName"] != {"Fn::GetAtt": [gateway_id, "Arn"]}


def test_the_web_adapter_calls_the_apps_snapshot_hooks(template):
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": web_adapter.HANDLER,
        "Environment": {"Variables": Match.object_like({
            "AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH": snapshot.BEFORE_SNAPSHOT_PATH,
            "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH": snapshot.AFTER_RESTORE_PATH})},
        # v1.1.0 is the first adapter that bridges SnapStart's hooks (layer 30).
        "Layers": Match.array_with([{"Fn::Join": ["", Match.array_with([
            Match.string_like_regexp(r":layer:LambdaAdapterLayerArm64:(3\d|[4-9]\d)$")])]}]),
    })


def test_a_daily_schedule_keeps_the_alias_version_active(api_template, template):
    """A version not invoked for 14 days goes Inactive (SnapStartNotReadyException): the schedule invokes the alias
    API Gateway calls, not $LATEST, with a permission on the alias only, and the adapter passes its event to the
    app's keep-active path."""
    gateway_id = function_id(api_template, web_adapter.HANDLER)
    [alias_id] = [k for k, v in resources(api_template, "AWS::Lambda::Alias").items()
                  if v["Properties"]["FunctionName"] == {"Ref": gateway_id}]
    [(rule_id, rule)] = [(k, v) for k, v in resources(api_template, "AWS::Events::Rule").items()
                         if any(t["Arn"] == {"Ref": alias_id} for t in v["Properties"]["Targets"])]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"  # well inside the 14 days
    [target] = rule["Properties"]["Targets"]
    assert json.loads(target["Input"]) == KEEP_ACTIVE_EVENT
    template.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunction", "FunctionName": {"Ref": alias_id}, "Principal": "events.amazonaws.com",
        "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}})
    # No schedule reaches the gateway's $LATEST.
    for permission in resources(api_template, "AWS::Lambda::Permission").values():
        if permission["Properties"]["Principal"] == "events.amazonaws.com":
            assert gateway_id not in str(permission["Properties"]["FunctionName"]) or \
                permission["Properties"]["FunctionName"] == {"Ref": alias_id}
    template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": web_adapter.HANDLER,
        "Environment": {"Variables": Match.object_like({"AWS_LWA_PASS_THROUGH_PATH": snapshot.KEEP_ACTIVE_PATH})}})
