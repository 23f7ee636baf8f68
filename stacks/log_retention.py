"""Retention for the log groups of the Lambda functions CDK creates for itself.

Our functions log to groups of their own with a retention (stacks/functions.py). CDK's custom-resource
providers (e.g. the one that strips the rules of a VPC's default security group) do not: Lambda creates
`/aws/lambda/<name>` on their first run, and such a group keeps its logs forever. This aspect creates
that group first, with the retention, and makes the stack's custom resources wait for it.
"""
from __future__ import annotations

import jsii
from aws_cdk import CfnResource, Fn, IAspect, Names, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import IConstruct

from stacks.functions import LOG_RETENTION

_CUSTOM_RESOURCE_TYPES = ("AWS::CloudFormation::CustomResource",)


def _is_custom_resource(node: IConstruct) -> bool:
    return isinstance(node, CfnResource) and (
        node.cfn_resource_type.startswith("Custom::") or node.cfn_resource_type in _CUSTOM_RESOURCE_TYPES)


@jsii.implements(IAspect)
class LambdaLogRetention:
    """Give every Lambda function without a configured log group a `/aws/lambda/<name>` group with a
    retention. Add with `Aspects.of(app).add(LambdaLogRetention())`."""

    def __init__(self, retention: logs.RetentionDays = LOG_RETENTION) -> None:
        self.retention = retention
        self._done: set[str] = set()

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource) or node.cfn_resource_type != "AWS::Lambda::Function":
            return
        if isinstance(node, lambda_.CfnFunction) and node.logging_config is not None:
            return  # ours: stacks/functions.py gives each function its own group
        if node.node.path in self._done:
            return
        self._done.add(node.node.path)
        stack = Stack.of(node)
        group = logs.LogGroup(
            stack, f"LogsOf{Names.unique_id(node)}",
            log_group_name=Fn.join("", ["/aws/lambda/", node.ref]),
            retention=self.retention,
            removal_policy=RemovalPolicy.DESTROY,  # named after the function: a new function, a new name
        )
        for construct in stack.node.find_all():
            if _is_custom_resource(construct):
                construct.node.add_dependency(group)
