"""The gateway role's Bedrock reach: InvokeModel / InvokeModelWithResponseStream on exactly the priced
Bedrock models and inference profiles (and the foundation models each profile routes to), never `*`."""
from __future__ import annotations

import json

import pytest

from stacks import permissions as p
from stacks import web_adapter
from tollgate.pricing import Catalogue

from .cfn import as_list, function_id, resources, role_statements


def _all_statements(template: dict, handler: str) -> list[dict]:
    """The role's inline statements and those of managed policies attached to it (CDK moves statements
    into a managed policy when the inline one grows past IAM's size limit)."""
    fid = function_id(template, handler)
    role = template["Resources"][fid]["Properties"]["Role"]["Fn::GetAtt"][0]
    managed = [s for policy in resources(template, "AWS::IAM::ManagedPolicy").values()
               if {"Ref": role} in policy["Properties"].get("Roles", [])
               for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    return role_statements(template, fid) + managed


def _bedrock_statements(api_template) -> list[dict]:
    statements = _all_statements(api_template, web_adapter.HANDLER)
    return [s for s in statements if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]


def _arn_text(resource) -> str:
    """An ARN as written in the template (a Fn::Join of partition / region / account tokens), as text."""
    if isinstance(resource, dict) and "Fn::Join" in resource:
        sep, parts = resource["Fn::Join"]
        return sep.join(part if isinstance(part, str) else "{" + json.dumps(part) + "}" for part in parts)
    return resource


def test_the_gateway_may_invoke_only_the_priced_bedrock_models(api_template):
    [statement] = _bedrock_statements(api_template)
    assert statement["Effect"] == "Allow"
    assert sorted(as_list(statement["Action"])) == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    arns = [_arn_text(r) for r in as_list(statement["Resource"])]
    assert "*" not in arns and all("*" not in arn for arn in arns)
    assert all(":inference-profile/" in arn or ":foundation-model/" in arn for arn in arns)
    for model in Catalogue.load().models("bedrock"):
        assert any(arn.endswith(f":inference-profile/{model.id}") or arn.endswith(f":foundation-model/{model.id}")
                   for arn in arns), model.id


def test_no_other_function_may_invoke_bedrock(api_template):
    for handler in ("handlers.authorizer.lambda_handler", "handlers.admin.lambda_handler"):
        statements = _all_statements(api_template, handler)
        assert not [s for s in statements if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]


def test_a_profile_grants_its_foundation_model_in_every_region_it_routes_to():
    arns = p.bedrock_model_arns(["us.anthropic.claude-haiku-4-5-20251001-v1:0", "amazon.nova-lite-v1:0",
                                 "global.anthropic.claude-sonnet-4-5-20250929-v1:0"],
                                partition="aws", region="us-east-1", account="111122223333")
    assert "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0" in arns
    for region in p.BEDROCK_PROFILE_REGIONS["us"]:
        assert f"arn:aws:bedrock:{region}::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0" in arns
    assert "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0" in arns
    assert "arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0" in arns
    assert not any("*" in arn for arn in arns)


def test_an_unknown_profile_prefix_fails_synthesis_rather_than_granting_a_wildcard():
    with pytest.raises(ValueError):
        p.bedrock_model_arns(["xx.anthropic.claude"], partition="aws", region="us-east-1", account="1")


def test_a_deployment_in_another_region_is_granted_there():
    arns = p.bedrock_model_arns([], partition="aws", region="us-east-1", account="1",
                                elsewhere=[("amazon.nova-lite-v1:0", "eu-west-1")])
    assert arns == ["arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-lite-v1:0"]
