"""The Bedrock adapter's pure parts: model ids, error mapping, regions, the lazy boto3 import."""
from __future__ import annotations

import subprocess
import sys

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from tollgate import errors
from tollgate.providers.bedrock_provider import BedrockProvider, foundation_model, invoke_body, is_claude, translate_error
from tollgate.settings import Settings


@pytest.mark.parametrize("model, foundation", [
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("apac.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
    ("eu.meta.llama3-2-3b-instruct-v1:0", "meta.llama3-2-3b-instruct-v1:0"),
    ("amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
])
def test_inference_profiles_route_to_their_foundation_model(model, foundation):
    assert foundation_model(model) == foundation
    assert is_claude(model) == foundation.startswith("anthropic.")


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Converse")


@pytest.mark.parametrize("code, status, kind, client_status", [
    ("ThrottlingException", 429, errors.ProviderRejected, 429),
    ("ServiceQuotaExceededException", 400, errors.ProviderRejected, 429),
    ("ValidationException", 400, errors.ProviderRejected, 400),
    ("ResourceNotFoundException", 404, errors.ProviderRejected, 404),
    ("ModelNotReadyException", 429, errors.ProviderFailed, 503),
    ("ServiceUnavailableException", 503, errors.ProviderFailed, 503),
    ("InternalServerException", 500, errors.ProviderFailed, 502),
    ("ModelTimeoutException", 408, errors.ProviderFailed, 502),
])
def test_bedrock_errors_map_like_provider_errors(code, status, kind, client_status):
    mapped = translate_error(_client_error(code, status), "m")
    assert type(mapped) is kind and mapped.status == client_status


def test_access_denied_tells_the_operator_to_enable_model_access():
    mapped = translate_error(_client_error("AccessDeniedException", 403), "us.amazon.nova-pro-v1:0")
    assert isinstance(mapped, errors.ProviderFailed) and mapped.code == "bedrock_model_access"
    assert "Model access" in mapped.message and "us.amazon.nova-pro-v1:0" in mapped.message


def test_a_timeout_is_a_provider_failure():
    assert isinstance(translate_error(ReadTimeoutError(endpoint_url="http://x"), "m"), errors.ProviderFailed)


def test_the_invoke_body_carries_the_bedrock_anthropic_version_and_no_model_or_stream():
    body = invoke_body({"model": "us.anthropic.x", "stream": True, "max_tokens": 5, "messages": []})
    assert body == {"max_tokens": 5, "messages": [], "anthropic_version": "bedrock-2023-05-31"}


def test_a_deployment_region_gets_its_own_adapter_once():
    provider = BedrockProvider(Settings.from_env({"TOLLGATE_BEDROCK_REGION": "us-east-1"}))
    assert provider.in_region("us-east-1") is provider
    assert provider.in_region("eu-west-1") is provider.in_region("eu-west-1") is not provider
    assert provider.in_region("eu-west-1")._settings.bedrock_region == "eu-west-1"
    assert (provider.region, provider.in_region("eu-west-1").region) == ("us-east-1", "eu-west-1")


def test_without_a_configured_region_the_adapter_reports_boto3s_own(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert BedrockProvider(Settings.from_env({})).region == "ap-southeast-2"
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert BedrockProvider(Settings.from_env({})).region is None  # no region anywhere: none claimed


def test_byok_does_not_apply_to_bedrock():
    with pytest.raises(errors.InvalidRequest):
        BedrockProvider(Settings.from_env({})).validate_key("k", timeout_s=1)


def test_importing_the_adapter_does_not_import_boto3():
    code = ("import sys; import tollgate.providers.bedrock_provider, tollgate.translate.openai_anthropic; "
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=".", env={"PYTHONPATH": "lambdas:."})
