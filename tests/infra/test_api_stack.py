"""TollgateApi: the REST API follows tollgate.routes; the functions are arm64 on the chosen runtime."""
from __future__ import annotations

import json

import pytest
from tollgate import routes
from tollgate.schema import TABLES, Env

from stacks.functions import RUNTIME
from stacks.waf import TollgateWaf
from stacks import web_adapter

from .cfn import local_refs, resources

HANDLERS = {
    "authorizer": "handlers.authorizer.lambda_handler",
    routes.GATEWAY_FUNCTION: web_adapter.HANDLER,
    routes.ADMIN_FUNCTION: "handlers.admin.lambda_handler",
    routes.RUNS_FUNCTION: "handlers.runs.lambda_handler",
    "sweeper": "handlers.sweeper.lambda_handler",
    "reconcile": "handlers.reconcile.lambda_handler",  # issue 17: daily reconciliation with the providers' bills
}


def _resource_paths(template: dict) -> dict[str, str]:
    res = resources(template, "AWS::ApiGateway::Resource")

    def path(rid: str) -> str:
        props = res[rid]["Properties"]
        parent = props["ParentId"]
        prefix = "" if "Fn::GetAtt" in parent else path(parent["Ref"])  # GetAtt: the API's root resource
        return f"{prefix}/{props['PathPart']}"

    return {rid: path(rid) for rid in res}


def _functions_by_handler(template: dict) -> dict[str, str]:
    return {v["Properties"]["Handler"]: k for k, v in resources(template, "AWS::Lambda::Function").items()}


@pytest.fixture(scope="module")
def methods(api_template) -> dict[tuple[str, str], dict]:
    paths = _resource_paths(api_template)
    out = {}
    for method in resources(api_template, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["Integration"]["Type"] != "MOCK":  # the catch-all 404s (test_unknown_paths_...)
            out[(props["HttpMethod"], paths[props["ResourceId"]["Ref"]])] = props
    return out


@pytest.fixture(scope="module")
def authorizers(api_template) -> dict[str, str]:
    """identity source -> authorizer logical id."""
    return {v["Properties"]["IdentitySource"]: k for k, v in resources(api_template, "AWS::ApiGateway::Authorizer").items()}


def test_two_request_authorizers_with_exact_identity_sources_and_cache_ttl(api_template):
    found = resources(api_template, "AWS::ApiGateway::Authorizer")
    assert sorted(a["Properties"]["IdentitySource"] for a in found.values()) == sorted(
        ["method.request.header.Authorization", "method.request.header.x-api-key"])
    assert sorted(a.identity_source for a in routes.AUTHORIZERS) == sorted(
        a["Properties"]["IdentitySource"] for a in found.values())
    for authorizer in found.values():
        assert authorizer["Properties"]["Type"] == "REQUEST"
        assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == routes.AUTHORIZER_CACHE_TTL_S


def test_both_authorizers_run_the_one_authorizer_function(api_template):
    authorizer_fn = _functions_by_handler(api_template)[HANDLERS["authorizer"]]
    for authorizer in resources(api_template, "AWS::ApiGateway::Authorizer").values():
        assert authorizer_fn in local_refs(authorizer["Properties"]["AuthorizerUri"])


def test_exactly_one_method_per_route(methods):
    assert set(methods) == {(r.method, r.path) for r in routes.ROUTES}


@pytest.mark.parametrize("route", routes.ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_route_authentication_and_target_function(api_template, methods, authorizers, route):
    method = methods[(route.method, route.path)]
    if route.auth == routes.IAM:
        assert method["AuthorizationType"] == "AWS_IAM"
        assert "AuthorizerId" not in method
    elif route.auth == routes.NONE:
        assert method["AuthorizationType"] == "NONE"
    else:
        assert method["AuthorizationType"] == "CUSTOM"
        expected = authorizers[routes.authorizer(route.auth).identity_source]
        assert method["AuthorizerId"] == {"Ref": expected}
    integration = method["Integration"]
    assert integration["Type"] == "AWS_PROXY"
    target = _functions_by_handler(api_template)[HANDLERS[route.function]]
    aliases = {k for k, v in resources(api_template, "AWS::Lambda::Alias").items()
               if v["Properties"]["FunctionName"] == {"Ref": target}}  # the gateway's: SnapStart (test_snapstart.py)
    assert local_refs(integration["Uri"]) & ({target} | aliases)


def test_internal_v1_routes_use_iam_auth(methods):
    internal = {key: m for key, m in methods.items() if key[1].startswith("/internal/v1/")}
    assert internal, "no /internal/v1 routes synthesised"
    assert {m["AuthorizationType"] for m in internal.values()} == {"AWS_IAM"}


def test_public_v1_routes_never_skip_authentication(methods):
    public = [m for (_, path), m in methods.items() if path.startswith(("/v1/", "/anthropic/", "/admin/"))]
    assert public and all(m["AuthorizationType"] == "CUSTOM" for m in public)


def test_functions_are_arm64_on_the_runtime_matching_the_layer(api_template):
    functions = resources(api_template, "AWS::Lambda::Function")
    assert {f["Properties"]["Handler"] for f in functions.values()} == set(HANDLERS.values())
    for fn in functions.values():
        props = fn["Properties"]
        assert props["Architectures"] == ["arm64"]
        assert props["Runtime"] == RUNTIME.name == "python3.14"
        assert props["TracingConfig"] == {"Mode": "Active"}
    [layer] = resources(api_template, "AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME.name]


def test_functions_share_the_dependency_layer_and_powertools_and_table_settings(api_template):
    [layer_id] = resources(api_template, "AWS::Lambda::LayerVersion")
    for fn in resources(api_template, "AWS::Lambda::Function").values():
        props = fn["Properties"]
        assert props["Layers"][0] == {"Ref": layer_id}  # the gateway adds the Lambda Web Adapter's
        assert len(props["Layers"]) == (2 if props["Handler"] == web_adapter.HANDLER else 1)
        env = props["Environment"]["Variables"]
        assert env[Env.POWERTOOLS_SERVICE_NAME] == "tollgate"
        assert env[Env.POWERTOOLS_METRICS_NAMESPACE] == "Tollgate"
        assert {t.env_var for t in TABLES} <= set(env)


def test_functions_log_to_their_own_groups_with_retention(api_template):
    groups = resources(api_template, "AWS::Logs::LogGroup")
    assert all("RetentionInDays" in g["Properties"] for g in groups.values())
    for fn in resources(api_template, "AWS::Lambda::Function").values():
        assert local_refs(fn["Properties"]["LoggingConfig"]["LogGroup"]) <= set(groups)


def test_unknown_paths_and_methods_answer_404_in_the_paths_shape_without_a_function(api_template):
    paths = {**_resource_paths(api_template), None: "/"}
    catch_all = {}
    for method in resources(api_template, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["Integration"]["Type"] == "MOCK":
            catch_all[paths[props["ResourceId"].get("Ref")]] = props
    # an ANY on every resource (root included) and a greedy proxy under / and /anthropic
    assert set(catch_all) == set(paths.values())
    assert {"/{proxy+}", "/anthropic/{proxy+}", "/", "/v1/chat/completions"} <= set(catch_all)
    for path, props in catch_all.items():
        assert props["HttpMethod"] == "ANY" and props["AuthorizationType"] == "NONE"
        [response] = props["Integration"]["IntegrationResponses"]
        status, body = routes.not_found(path)
        assert response["StatusCode"] == str(status) == "404" and "SelectionPattern" not in response
        assert json.loads(response["ResponseTemplates"]["application/json"]) == body
        assert json.loads(props["Integration"]["RequestTemplates"]["application/json"]) == {"statusCode": 404}
    assert "type" in json.loads(catch_all["/anthropic/{proxy+}"]["Integration"]["IntegrationResponses"][0][
        "ResponseTemplates"]["application/json"])  # Anthropic's shape
    assert "type" not in json.loads(catch_all["/v1/chat/completions"]["Integration"]["IntegrationResponses"][0][
        "ResponseTemplates"]["application/json"])  # OpenAI's shape


def test_missing_authentication_token_is_an_unsigned_iam_call_403():
    status, body = routes.GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"]
    assert status == 403 and body["error"]["type"] == "permission_error"


def test_gateway_responses_come_from_the_route_module(api_template):
    found = {r["Properties"]["ResponseType"]: r["Properties"]
             for r in resources(api_template, "AWS::ApiGateway::GatewayResponse").values()}
    assert set(found) == set(routes.GATEWAY_RESPONSES)
    for response_type, (status, body) in routes.GATEWAY_RESPONSES.items():
        assert found[response_type]["StatusCode"] == str(status)
        assert json.loads(found[response_type]["ResponseTemplates"]["application/json"]) == body


def test_stage_logs_json_access_logs_traces_and_throttles(api_template):
    [stage] = resources(api_template, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    access_format = json.loads(props["AccessLogSetting"]["Format"])
    assert access_format["requestId"] == "$context.requestId"
    assert props["TracingEnabled"] is True
    [settings] = props["MethodSettings"]
    assert settings["DataTraceEnabled"] is False  # request bodies (prompts) never reach the logs
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0


def test_rest_api_is_regional(api_template):
    [api] = resources(api_template, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["EndpointConfiguration"]["Types"] == ["REGIONAL"]


def test_sweeper_runs_every_five_minutes(api_template):
    sweeper = _functions_by_handler(api_template)[HANDLERS["sweeper"]]
    [rule] = [r for r in resources(api_template, "AWS::Events::Rule").values()
              if any(sweeper in local_refs(t["Arn"]) for t in r["Properties"]["Targets"])]
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert [local_refs(t["Arn"]) for t in rule["Properties"]["Targets"]] == [{sweeper}]


def test_waf_protects_the_stage_with_the_configured_rate_limit(api_template):
    [stage_id] = resources(api_template, "AWS::ApiGateway::Stage")
    [association] = resources(api_template, "AWS::WAFv2::WebACLAssociation").values()
    assert stage_id in local_refs(association["Properties"]["ResourceArn"])
    [acl] = resources(api_template, "AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]["Limit"] == 1000  # cdk.json default
    assert "GeoBlock" not in rules  # cdk.json: no countries
    overrides = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"]
    assert {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}} in overrides  # prompts exceed 8 KB


def test_waf_geo_block_rule_when_countries_are_configured():
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw
    from aws_cdk.assertions import Match, Template

    stack = cdk.Stack(cdk.App(), "WafOnly")
    api = apigw.RestApi(stack, "Api")
    api.root.add_method("GET")
    TollgateWaf(stack, "Waf", stage=api.deployment_stage, rate_limit_per_5min=500, geo_block_countries=("KP", "RU"))
    Template.from_stack(stack).has_resource_properties("AWS::WAFv2::WebACL", {"Rules": Match.array_with([
        Match.object_like({"Name": "RateLimitPerIp", "Statement": {"RateBasedStatement": Match.object_like({"Limit": 500})}}),
        Match.object_like({"Name": "GeoBlock", "Statement": {"GeoMatchStatement": {"CountryCodes": ["KP", "RU"]}}}),
    ])})
