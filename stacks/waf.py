"""The WAF web ACL in front of the REST API stage: per-IP rate limit, optional geo block, managed rules.

LLM requests are not ordinary web form posts: prompts routinely exceed 8 KB and contain code, HTML
and file paths. So the core rule set's body rules only count (visible in metrics, never blocking);
its header, URI and query-string rules still block.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

_CORE_RULE_SET_BODY_RULES = (
    "SizeRestrictions_BODY",
    "CrossSiteScripting_BODY",
    "GenericLFI_BODY",
    "GenericRFI_BODY",
    "EC2MetaDataSSRF_BODY",
)
_RATE_LIMITED_BODY_KEY = "rate_limited"
# OpenAI's error shape, so SDK clients raise RateLimitError (and back off) rather than a parse error.
_RATE_LIMITED_BODY = {"type": "error", "error": {
    "type": "rate_limit_error", "code": "rate_limit_exceeded",
    "message": "Too many requests from this IP address. Slow down."}}


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True)


def _managed(name: str, priority: int, count_only: Sequence[str] = ()) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=name,
        priority=priority,
        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS",
                name=name,
                rule_action_overrides=[
                    wafv2.CfnWebACL.RuleActionOverrideProperty(
                        name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}))
                    for rule in count_only
                ] or None,
            )),
        visibility_config=_visibility(name),
    )


class TollgateWaf(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *,
        stage: apigw.Stage,
        rate_limit_per_5min: int,
        geo_block_countries: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name="RateLimitPerIp",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block=wafv2.CfnWebACL.BlockActionProperty(
                    custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                        response_code=429, custom_response_body_key=_RATE_LIMITED_BODY_KEY))),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=rate_limit_per_5min, aggregate_key_type="IP", evaluation_window_sec=300)),
                visibility_config=_visibility("RateLimitPerIp"),
            ),
            _managed("AWSManagedRulesAmazonIpReputationList", priority=2),
            _managed("AWSManagedRulesCommonRuleSet", priority=3, count_only=_CORE_RULE_SET_BODY_RULES),
        ]
        if geo_block_countries:
            rules.append(wafv2.CfnWebACL.RuleProperty(
                name="GeoBlock",
                priority=1,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    geo_match_statement=wafv2.CfnWebACL.GeoMatchStatementProperty(
                        country_codes=list(geo_block_countries))),
                visibility_config=_visibility("GeoBlock"),
            ))
        self.web_acl = wafv2.CfnWebACL(
            self, "WebAcl",
            scope="REGIONAL",
            description="Tollgate API: rate limit per IP, geo block, AWS managed rules",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            custom_response_bodies={_RATE_LIMITED_BODY_KEY: wafv2.CfnWebACL.CustomResponseBodyProperty(
                content_type="APPLICATION_JSON", content=json.dumps(_RATE_LIMITED_BODY))},
            rules=sorted(rules, key=lambda r: r.priority),
            visibility_config=_visibility("TollgateWebAcl"),
        )
        wafv2.CfnWebACLAssociation(self, "Association", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn)
