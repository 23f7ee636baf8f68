"""cdk-nag acknowledgements: every one names the rule (or one finding of it) and says why."""
from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge `rule_id` on `scope` and everything under it.

    Findings of multi-finding rules are acknowledged one by one: `AwsSolutions-IAM5[Resource::*]`.
    """
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
