"""API Gateway hygiene: execution logging without bodies, throttling, request validation of the metered
routes, and timeouts that fit LLM calls (integration, gateway Lambda, reservation lifetime, sweeper)."""
from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from tollgate import routes
from tollgate.schema import Env
from tollgate.settings import Settings

from app import build_app, cdk_json_context
from stacks import rest_api
from stacks.config import DeploySettings
from stacks import web_adapter

from .cfn import function_id, local_refs, resources

GATEWAY_HANDLER = web_adapter.HANDLER


@pytest.fixture(scope="module")
def methods(api_template) -> dict[tuple[str, str], dict]:
    res = resources(api_template, "AWS::ApiGateway::Resource")

    def path(rid: str) -> str:
        props = res[rid]["Properties"]
        parent = props["ParentId"]
        return ("" if "Fn::GetAtt" in parent else path(parent["Ref"])) + "/" + props["PathPart"]

    return {(m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"]["Ref"])): m["Properties"]
            for m in resources(api_template, "AWS::ApiGateway::Method").values()
            if m["Properties"]["Integration"]["Type"] != "MOCK"}  # the catch-all 404s


@pytest.fixture(scope="module")
def stage(api_template) -> dict:
    [stage] = resources(api_template, "AWS::ApiGateway::Stage").values()
    return stage


def test_execution_logging_at_error_level_without_data_trace(stage):
    [settings] = stage["Properties"]["MethodSettings"]
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False  # no request or response bodies: no prompts, no completions
    assert settings["MetricsEnabled"] is True
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (
        rest_api.THROTTLE_RATE_PER_S, rest_api.THROTTLE_BURST)


def test_execution_log_group_exists_before_the_stage_with_retention(api_template, stage):
    [api_id] = resources(api_template, "AWS::ApiGateway::RestApi")
    groups = {k: v for k, v in resources(api_template, "AWS::Logs::LogGroup").items()
              if "API-Gateway-Execution-Logs_" in json.dumps(v["Properties"].get("LogGroupName", ""))}
    [(group_id, group)] = groups.items()
    name = group["Properties"]["LogGroupName"]["Fn::Join"][1]
    assert name == ["API-Gateway-Execution-Logs_", {"Ref": api_id}, f"/{rest_api.STAGE_NAME}"]
    assert group["Properties"]["RetentionInDays"] > 0
    assert group_id in stage["DependsOn"]  # else API Gateway may create it first, without retention


def test_access_logs_are_json_with_the_request_id_and_have_retention(api_template, stage):
    setting = stage["Properties"]["AccessLogSetting"]
    fields = json.loads(setting["Format"])
    assert fields["requestId"] == "$context.requestId" and fields["resource"] == "$context.resourcePath"
    # Never the concrete path or anything with a client's input in it: a pasted secret key would be kept.
    assert not {"$context.path", "$context.requestOverride.path", "$input.body"} & set(fields.values())
    [group_id] = {r for r in local_refs(setting["DestinationArn"]) if not r.startswith("AWS::")}
    assert api_template["Resources"][group_id]["Properties"]["RetentionInDays"] > 0


def test_metered_routes_validate_a_json_object_with_a_model(api_template, methods):
    [validator_id] = resources(api_template, "AWS::ApiGateway::RequestValidator")
    validator = api_template["Resources"][validator_id]["Properties"]
    assert validator["ValidateRequestBody"] is True
    [(model_id, model)] = resources(api_template, "AWS::ApiGateway::Model").items()
    schema = model["Properties"]["Schema"]
    assert model["Properties"]["ContentType"] == "application/json"
    assert {k: v for k, v in schema.items() if k != "$schema"} == rest_api.METERED_BODY_SCHEMA
    metered = [r for r in routes.ROUTES if r.metered]
    assert metered and all(r.method == "POST" for r in metered)
    for route in metered:
        method = methods[(route.method, route.path)]
        assert method["RequestValidatorId"] == {"Ref": validator_id}, route.path
        assert method["RequestModels"] == {"application/json": {"Ref": model_id}}, route.path
    for route in routes.ROUTES:
        if not route.metered:  # admin bodies have their own shapes; some POSTs have none at all
            assert "RequestValidatorId" not in methods[(route.method, route.path)], route.path


def test_a_refused_body_answers_in_the_provider_error_shape():
    status, body = routes.GATEWAY_RESPONSES["BAD_REQUEST_BODY"]
    assert status == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error" and body["error"]["message"]


@pytest.fixture(scope="module")
def timeouts(synthesis):
    """The deployed chain of timeouts, from the session's synthesis (cdk.json's context): no app of its own."""
    return DeploySettings.from_context(synthesis.app).timeouts


def test_gateway_routes_use_the_configured_integration_timeout(methods, timeouts):
    """The timeout is per integration, i.e. per function: every gateway route has it, the others not. The
    gateway's integrations stream, so it defaults to the 15-minute stream limit (no quota increase needed)."""
    assert timeouts.integration_s == 900
    assert any(r.metered for r in routes.ROUTES if r.function == routes.GATEWAY_FUNCTION)
    for route in routes.ROUTES:
        timeout = methods[(route.method, route.path)]["Integration"].get("TimeoutInMillis")
        if route.function == routes.GATEWAY_FUNCTION:
            assert timeout == timeouts.integration_s * 1000, route.path
        else:
            assert timeout is None, route.path  # API Gateway's default 29 s


def test_a_lowered_integration_timeout_moves_the_whole_chain():
    # build_app reads its settings from this context before it builds a stack; building them (~6 s) adds nothing.
    app = cdk.App(context={**cdk_json_context(), "integration_timeout_s": 120})
    lowered = DeploySettings.from_context(app).timeouts
    assert (lowered.provider_s, lowered.integration_s, lowered.gateway_lambda_s, lowered.reservation_ttl_s) == \
        (90, 120, 120, 240)


@pytest.mark.parametrize("seconds", [59, 901])
def test_an_integration_timeout_outside_the_stream_limit_is_refused(seconds):
    with pytest.raises(ValueError, match="integration_timeout_s"):
        DeploySettings.from_context(build_app({"integration_timeout_s": seconds}))


def test_a_gateway_timeout_tells_the_sdks_not_to_retry(api_template):
    responses = [r["Properties"] for r in api_template["Resources"].values()
                 if r["Type"] == "AWS::ApiGateway::GatewayResponse"]
    [timeout] = [r for r in responses if r["ResponseType"] == "INTEGRATION_TIMEOUT"]
    assert timeout["StatusCode"] == "504"
    assert timeout["ResponseParameters"] == {"gatewayresponse.header.x-should-retry": "'false'"}


def test_the_gateway_ends_its_streams_before_api_gateway_and_lambda_and_reservations_outlive_the_lambda(
        api_template, timeouts):
    gateway = api_template["Resources"][function_id(api_template, GATEWAY_HANDLER)]["Properties"]
    timeout_s = gateway["Timeout"]
    assert timeout_s == timeouts.gateway_lambda_s == timeouts.integration_s <= 900  # Lambda's maximum
    settings = Settings.from_env(gateway["Environment"]["Variables"])
    # the stream deadline: time to settle before API Gateway ends the stream and Lambda the function
    assert settings.provider_timeout_s + 30 <= timeout_s
    ttl_s = int(gateway["Environment"]["Variables"][Env.RESERVATION_TTL_S])
    assert ttl_s == timeouts.reservation_ttl_s
    assert ttl_s > timeout_s  # the sweeper never releases a reservation whose Lambda still runs
    assert ttl_s == Settings.from_env({Env.RESERVATION_TTL_S: str(ttl_s)}).reservation_ttl_s


def test_provider_calls_with_their_retries_fit_in_the_integration_timeout(api_template, timeouts):
    gateway = api_template["Resources"][function_id(api_template, GATEWAY_HANDLER)]["Properties"]
    settings = Settings.from_env(gateway["Environment"]["Variables"])
    worst_case_s = settings.provider_timeout_s * (1 + settings.provider_max_retries)
    assert worst_case_s < timeouts.integration_s  # strictly: the answer must still reach API Gateway
