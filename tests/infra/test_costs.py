"""The cost settings in the templates: traces sampled at the API stage, idle cost within its goal."""
from __future__ import annotations

from decimal import Decimal

from stacks.api_stack import TRACE_SAMPLE_RATE

from .cfn import resources

IDLE_GOAL_USD = Decimal(25)  # a month, no traffic (issue 15)


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


def test_make_cost_prices_every_resource_the_app_synthesises(synthesis):
    """The calculator fails closed on a resource type or schedule it cannot price: every one the real app
    synthesises must be priced or listed as free, so `make cost` keeps working as the stacks change."""
    from tools.costing import model
    from tools.costing import prices as price_file
    from tools.costing.assumptions import Assumptions
    from tools.costing.templates import Templates

    assert synthesis.error is None, synthesis.error
    lines = model.idle_lines(Templates.from_cdk_out(synthesis.outdir), price_file.load(), Assumptions())
    assert model.total(lines, model.IDLE) > 0


def test_idle_cost_stays_within_the_goal(synthesis):
    """Issue 15: a deployment with no traffic costs at most $25 a month at list prices (`make cost`): a
    new billable resource must make room for itself."""
    from tools.costing import model
    from tools.costing import prices as price_file
    from tools.costing.assumptions import Assumptions
    from tools.costing.templates import Templates

    lines = model.idle_lines(Templates.from_cdk_out(synthesis.outdir), price_file.load(), Assumptions())
    assert model.total(lines, model.IDLE) <= IDLE_GOAL_USD, "\n".join(
        f"{line.item}: {line.total:.2f}" for line in lines)
