"""The WAF web ACL in front of the REST API stage: per-IP rate limit, optional geo block, a body-size cap,
AWS's core managed rule set, and WAF logs of what a rule blocked or counted, with credentials redacted.

LLM requests are not ordinary web form posts: prompts routinely exceed 8 KB and contain code, HTML, file
paths and questions about exploits. So the managed rules that inspect the *body* only count (visible in
metrics and WAF logs, never blocking); their header, URI and query-string rules still block. The body size
is capped by a rule of our own instead, on the Content-Length header: WAF inspects at most the first
8-64 KB of an API Gateway request body, so it cannot measure a 1 MB body, but it can read the header
that announces it.

Each rule costs $1 a month (`make cost`), so a rule earns its place by what it protects: the Amazon IP
reputation list and the known-bad-inputs group are not used (docs/design-decisions.md, issue 15). Every
route needs a credential, unknown paths and methods end at API Gateway, and no Java runs behind it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.functions import LOG_RETENTION

# Priorities, in evaluation order. The geo rule exists only when countries are configured.
RATE_LIMIT_RULE = "RateLimitPerIp"
GEO_BLOCK_RULE = "GeoBlock"
BODY_SIZE_RULE = "BodyTooLarge"
COMMON_RULES = "AWSManagedRulesCommonRuleSet"
_PRIORITY = {RATE_LIMIT_RULE: 0, GEO_BLOCK_RULE: 1, BODY_SIZE_RULE: 2, COMMON_RULES: 3}

# Managed rules that look at the request body: count only (see the module docstring).
# SizeRestrictions_BODY blocks bodies over 8 KB, i.e. most real prompts.
COMMON_RULES_COUNT_ONLY = (
    "SizeRestrictions_BODY",
    "CrossSiteScripting_BODY",
    "GenericLFI_BODY",
    "GenericRFI_BODY",
    "EC2MetaDataSSRF_BODY",
)

# Bodies of MAX_BODY_BYTES or more are refused at the edge (413). A power of ten, so the rule is a regex on
# the number of digits of Content-Length. 1 MB is ~250k tokens of text, more than any model's context
# that the gateway prices; API Gateway's own cap is 10 MB and a synchronous Lambda payload's 6 MB.
MAX_BODY_BYTES = 1_000_000
if str(MAX_BODY_BYTES).rstrip("0") != "1":
    raise ValueError("MAX_BODY_BYTES must be a power of ten")
CONTENT_LENGTH_AT_LEAST_MAX = rf"^0*[1-9][0-9]{{{len(str(MAX_BODY_BYTES)) - 1},}}$"

# Request headers replaced by "REDACTED" in WAF logs: API keys, service tokens and SigV4 session tokens.
REDACTED_HEADERS = ("authorization", "x-api-key", "x-amz-security-token")
WAF_LOG_GROUP_PREFIX = "aws-waf-logs-"  # WAF delivers only to log groups named so
# WAF logs only the requests a rule blocked or counted (a count-only rule's match included: WAF's
# EXCLUDED_AS_COUNT); allowed requests are in the API's access log already, and each WAF record
# (~1.5 KB) would otherwise cost more to ingest than the request's own access log line.
LOGGED_ACTIONS = ("BLOCK", "COUNT", "EXCLUDED_AS_COUNT")

_RATE_LIMITED_BODY_KEY = "rate_limited"
_TOO_LARGE_BODY_KEY = "body_too_large"
# OpenAI's error shape (which the anthropic SDK reads too), so SDK clients raise the right error class
# (RateLimitError backs off) rather than a parse error.
_RATE_LIMITED_BODY = {"type": "error", "error": {
    "type": "rate_limit_error", "code": "rate_limit_exceeded",
    "message": "Too many requests from this IP address. Slow down."}}
_TOO_LARGE_BODY = {"type": "error", "error": {
    "type": "invalid_request_error", "code": "request_too_large",
    "message": f"The request body is larger than the gateway accepts ({MAX_BODY_BYTES:,} bytes)."}}


def _not_internal() -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(not_statement=wafv2.CfnWebACL.NotStatementProperty(
        statement=wafv2.CfnWebACL.StatementProperty(byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
            field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
            positional_constraint="STARTS_WITH", search_string="/internal/",
            text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")]))))


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True)


def _block(status: int, body_key: str) -> wafv2.CfnWebACL.RuleActionProperty:
    return wafv2.CfnWebACL.RuleActionProperty(block=wafv2.CfnWebACL.BlockActionProperty(
        custom_response=wafv2.CfnWebACL.CustomResponseProperty(response_code=status,
                                                               custom_response_body_key=body_key)))


def _managed(name: str, count_only: Sequence[str] = ()) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=name,
        priority=_PRIORITY[name],
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
                name=RATE_LIMIT_RULE,
                priority=_PRIORITY[RATE_LIMIT_RULE],
                action=_block(429, _RATE_LIMITED_BODY_KEY),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=rate_limit_per_5min, aggregate_key_type="IP", evaluation_window_sec=300,
                        # The agent tasks all leave through one NAT address and are SigV4-signed callers
                        # with rate limits of their own in the gateway: /internal is not counted per IP.
                        scope_down_statement=_not_internal())),
                visibility_config=_visibility(RATE_LIMIT_RULE),
            ),
            wafv2.CfnWebACL.RuleProperty(
                name=BODY_SIZE_RULE,
                priority=_PRIORITY[BODY_SIZE_RULE],
                action=_block(413, _TOO_LARGE_BODY_KEY),
                statement=wafv2.CfnWebACL.StatementProperty(
                    regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
                        field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                            single_header={"Name": "content-length"}),
                        regex_string=CONTENT_LENGTH_AT_LEAST_MAX,
                        text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
                    )),
                visibility_config=_visibility(BODY_SIZE_RULE),
            ),
            _managed(COMMON_RULES, count_only=COMMON_RULES_COUNT_ONLY),
        ]
        if geo_block_countries:
            rules.append(wafv2.CfnWebACL.RuleProperty(
                name=GEO_BLOCK_RULE,
                priority=_PRIORITY[GEO_BLOCK_RULE],
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    geo_match_statement=wafv2.CfnWebACL.GeoMatchStatementProperty(
                        country_codes=list(geo_block_countries))),
                visibility_config=_visibility(GEO_BLOCK_RULE),
            ))
        # Named, because WAF's CloudWatch metrics are keyed by the web ACL's name (the dashboards read them).
        self.web_acl_name = f"{Stack.of(self).stack_name}-WebAcl"
        self.web_acl = wafv2.CfnWebACL(
            self, "WebAcl",
            name=self.web_acl_name,
            scope="REGIONAL",
            description="Tollgate API: rate limit per IP, geo block, body size, AWS core rule set",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            custom_response_bodies={
                key: wafv2.CfnWebACL.CustomResponseBodyProperty(content_type="APPLICATION_JSON",
                                                                content=json.dumps(body))
                for key, body in ((_RATE_LIMITED_BODY_KEY, _RATE_LIMITED_BODY), (_TOO_LARGE_BODY_KEY, _TOO_LARGE_BODY))
            },
            rules=sorted(rules, key=lambda r: r.priority),
            visibility_config=_visibility("TollgateWebAcl"),
        )
        wafv2.CfnWebACLAssociation(self, "Association", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn)
        self.log_group = self._logging()

    def _logging(self) -> logs.LogGroup:
        stack = Stack.of(self)
        # A fixed name (WAF requires the prefix): destroyed with the stack, so a redeploy can recreate it.
        name = f"{WAF_LOG_GROUP_PREFIX}{stack.stack_name}"
        log_group = logs.LogGroup(self, "Logs", log_group_name=name, retention=LOG_RETENTION,
                                  removal_policy=RemovalPolicy.DESTROY)
        # WAF wants the log group's ARN without the ":*" suffix that the Arn attribute carries.
        arn = stack.format_arn(service="logs", resource="log-group", resource_name=log_group.log_group_name,
                               arn_format=ArnFormat.COLON_RESOURCE_NAME)
        wafv2.CfnLoggingConfiguration(
            self, "Logging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[arn],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": header})
                for header in REDACTED_HEADERS
            ],
            logging_filter={
                "DefaultBehavior": "DROP",
                "Filters": [{"Behavior": "KEEP", "Requirement": "MEETS_ANY", "Conditions": [
                    {"ActionCondition": {"Action": action}} for action in LOGGED_ACTIONS]}],
            },
        )
        return log_group
