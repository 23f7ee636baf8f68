"""Least-privilege IAM statements for Tollgate's tables, keys, secret and topic.

Written out action by action instead of CDK's grant* helpers: those grant more than a role needs
(e.g. Scan, DescribeTable, wildcard index ARNs), and the gateway's exact reach is a security property
the infra tests assert. A DynamoDB transaction needs the per-item action of each of its parts
(ConditionCheckItem, PutItem, UpdateItem, DeleteItem); there is no TransactWriteItems IAM action.
"""
from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from tollgate import schema

GET = "dynamodb:GetItem"
BATCH_GET = "dynamodb:BatchGetItem"
QUERY = "dynamodb:Query"
SCAN = "dynamodb:Scan"
CONDITION_CHECK = "dynamodb:ConditionCheckItem"
PUT = "dynamodb:PutItem"
UPDATE = "dynamodb:UpdateItem"
DELETE = "dynamodb:DeleteItem"

READ = (GET, BATCH_GET, QUERY)
WRITE = (PUT, UPDATE, DELETE)
TRANSACT = (CONDITION_CHECK, PUT, UPDATE, DELETE)
_INDEX_ACTIONS = {QUERY, SCAN}


def table_access(table: dynamodb.ITable, spec: schema.Table, actions: Iterable[str]) -> list[iam.PolicyStatement]:
    """`actions` on the table; Query/Scan also on each of its indexes, by exact ARN."""
    actions = sorted(set(actions))
    statements = [iam.PolicyStatement(actions=actions, resources=[table.table_arn])]
    index_actions = sorted(_INDEX_ACTIONS.intersection(actions))
    if index_actions and spec.indexes:
        statements.append(iam.PolicyStatement(
            actions=index_actions,
            resources=[f"{table.table_arn}/index/{index.name}" for index in spec.indexes],
        ))
    return statements


def item_access(table: dynamodb.ITable, actions: Iterable[str], leading_keys: Iterable[str]) -> iam.PolicyStatement:
    """`actions` on the items of `table` whose partition key matches one of `leading_keys` (wildcards
    allowed), e.g. only the agent runs' budget items of the budgets table: BUDGET#RUN#*."""
    return iam.PolicyStatement(
        actions=sorted(set(actions)), resources=[table.table_arn],
        conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": sorted(set(leading_keys))}},
    )


def queue_send(queue: sqs.IQueue) -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn])


def queue_consume(queue: sqs.IQueue) -> iam.PolicyStatement:
    """What a worker does with a message: take it, keep it hidden while working, hand it back, delete it."""
    return iam.PolicyStatement(actions=["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"],
                               resources=[queue.queue_arn])


def key_use(key: kms.IKey, actions: Iterable[str]) -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=sorted(set(actions)), resources=[key.key_arn])


def byok_key_use(key: kms.IKey, actions: Iterable[str]) -> iam.PolicyStatement:
    """BYOK data keys, only under the encryption context every sealed provider key carries (user,
    provider): the key cannot be used for anything else through this grant."""
    return iam.PolicyStatement(actions=sorted(set(actions)), resources=[key.key_arn], conditions={
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["provider", "user"]},
        "Null": {"kms:EncryptionContext:user": "false", "kms:EncryptionContext:provider": "false"},
    })


def secret_read(secret: secretsmanager.ISecret) -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn])


def topic_publish(topic: sns.ITopic, key: kms.IKey) -> list[iam.PolicyStatement]:
    """Publishing to a KMS-encrypted topic needs a data key from the topic's key."""
    return [
        iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn]),
        key_use(key, ["kms:GenerateDataKey", "kms:Decrypt"]),
    ]
