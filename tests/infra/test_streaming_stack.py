"""Response streaming (issue 11): every gateway route is a STREAM integration invoked with
InvokeWithResponseStream, and the gateway function is what the Lambda Web Adapter needs on arm64."""
from __future__ import annotations

import json
import os
import re

import pytest
from tollgate import routes

from stacks import web_adapter
from stacks.functions import LAMBDAS_DIR, ROOT

from .cfn import function_id, resources

STREAMING_URI = re.compile(r"^arn:\$\{AWS::Partition\}:apigateway:\$\{AWS::Region\}:lambda:path/2021-11-15/functions/"
                           r"\$\{(?P<function>[A-Za-z0-9]+)(\.Arn)?\}/response-streaming-invocations$")


def _joined(value) -> str:
    """An Fn::Join of strings, Refs and GetAtts as one ${...} string."""
    parts = value["Fn::Join"][1]
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif "Ref" in part:
            out.append("${%s}" % part["Ref"])
        else:
            out.append("${%s.%s}" % tuple(part["Fn::GetAtt"]))
    return "".join(out)


@pytest.fixture(scope="module")
def gateway_id(api_template) -> str:
    return function_id(api_template, web_adapter.HANDLER)


@pytest.fixture(scope="module")
def gateway_target(api_template, gateway_id) -> str:
    """What API Gateway invokes: the gateway's alias (SnapStart restores published versions only)."""
    [alias] = [k for k, v in resources(api_template, "AWS::Lambda::Alias").items()
               if v["Properties"]["FunctionName"] == {"Ref": gateway_id}]
    return alias


@pytest.fixture(scope="module")
def gateway(api_template, gateway_id) -> dict:
    return api_template["Resources"][gateway_id]["Properties"]


def test_every_gateway_route_streams_through_invoke_with_response_stream(api_template, gateway_id, gateway_target):
    gateway_paths = {r.path for r in routes.ROUTES if r.function == routes.GATEWAY_FUNCTION}
    res = resources(api_template, "AWS::ApiGateway::Resource")
    streamed, buffered = 0, 0
    for method in resources(api_template, "AWS::ApiGateway::Method").values():
        integration = method["Properties"]["Integration"]
        if integration["Type"] == "MOCK":  # the catch-all 404s (stacks/rest_api.py): no function behind them
            continue
        uri = _joined(integration["Uri"])
        match = STREAMING_URI.match(uri)
        if match and match["function"] == gateway_target:
            assert integration["ResponseTransferMode"] == "STREAM"
            assert integration["Type"] == "AWS_PROXY"
            streamed += 1
        else:
            assert "response-streaming-invocations" not in uri
            assert integration.get("ResponseTransferMode", "BUFFERED") == "BUFFERED"
            assert gateway_id not in json.dumps(integration["Uri"]) and gateway_target not in json.dumps(integration["Uri"])
            buffered += 1
    assert streamed == len([r for r in routes.ROUTES if r.function == routes.GATEWAY_FUNCTION])
    assert buffered == len(routes.ROUTES) - streamed and res  # the admin and runs routes stay buffered
    assert any(r.metered for r in routes.ROUTES if r.path in gateway_paths)


def test_the_gateway_runs_behind_the_arm64_lambda_web_adapter_layer(gateway):
    assert gateway["Architectures"] == ["arm64"]
    layers = [_joined(layer) for layer in gateway["Layers"] if "Fn::Join" in layer]
    assert layers == ["arn:${AWS::Partition}:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerArm64:30"]
    assert len(gateway["Layers"]) == 2  # and the dependency layer (uvicorn among them)
    env = gateway["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"  # no segment in the app's process to attach to
    readiness = env["AWS_LWA_READINESS_CHECK_PATH"]
    [health] = [r for r in routes.ROUTES if r.path == readiness]
    assert health.function == routes.GATEWAY_FUNCTION and health.auth == routes.NONE  # answers LWA's check


def test_the_handler_is_an_executable_script_serving_the_asgi_app_on_the_adapters_port(gateway):
    script = LAMBDAS_DIR / gateway["Handler"]
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n") and "\r" not in text
    assert "uvicorn handlers.gateway:app" in text and '--port "${AWS_LWA_PORT' in text
    assert "--host 127.0.0.1" in text
    assert gateway["Environment"]["Variables"]["AWS_LWA_PORT"] == str(web_adapter.APP_PORT)


def test_uvicorn_is_pinned_for_the_layer_without_native_extras():
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    [uvicorn] = [p for p in pins if p.startswith("uvicorn")]
    assert re.fullmatch(r"uvicorn==[\d.]+", uvicorn)  # exact, and not uvicorn[standard] (uvloop, httptools)
