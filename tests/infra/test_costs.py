"""The cost settings in the templates: traces sampled at the API stage."""
from __future__ import annotations

from stacks.api_stack import TRACE_SAMPLE_RATE

from .cfn import resources


def test_api_traces_are_sampled_by_a_rule_that_matches_the_stage(api_template):
    [stage] = resources(api_template, "AWS::ApiGateway::Stage").values()
    [api] = resources(api_template, "AWS::ApiGateway::RestApi").values()
    assert stage["Properties"]["TracingEnabled"] is True
    [rule] = [r["Properties"]["SamplingRule"] for r in resources(api_template, "AWS::XRay::SamplingRule").values()]
    # API Gateway names its X-Ray segments "<API name>/<stage>": the rule must match exactly that.
    assert rule["ServiceName"] == f"{api['Properties']['Name']}/{stage['Properties']['StageName']}"
    assert rule["ServiceType"] == "AWS::ApiGateway::Stage"
    assert rule["FixedRate"] == TRACE_SAMPLE_RATE and rule["ReservoirSize"] == 0
    assert all(rule[k] == "*" for k in ("Host", "HTTPMethod", "URLPath", "ResourceARN"))
