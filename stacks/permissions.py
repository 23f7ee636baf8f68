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


def cost_explorer_read() -> iam.PolicyStatement:
    """Read Bedrock's daily cost (tollgate.reconcile.BedrockCostExplorer). Cost Explorer's actions take no
    resource ARN (Service Authorization Reference, "Actions defined by AWS Cost Explorer Service"): `*`."""
    return iam.PolicyStatement(actions=["ce:GetCostAndUsage"], resources=["*"])


# The encryption context SNS gives KMS for a KMS-encrypted topic: the topic's ARN (Amazon SNS developer guide,
# "Encryption at rest").
SNS_TOPIC_CONTEXT = "kms:EncryptionContext:aws:sns:topicArn"


def topic_publish(topic: sns.ITopic, key: kms.IKey) -> list[iam.PolicyStatement]:
    """Publishing to a KMS-encrypted topic needs a data key from the topic's key; only under the topic's own
    encryption context (the key also seals BYOK keys: stacks/data_stack.py)."""
    return [
        iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn]),
        iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn],
                            conditions={"StringEquals": {SNS_TOPIC_CONTEXT: topic.topic_arn}}),
    ]


# Bedrock: the regions each geographic cross-region inference profile may route a request to (Amazon Bedrock
# user guide, "Supported Regions and models for inference profiles"). The role needs InvokeModel on the
# profile and on the foundation model in every one of them; a `global.` profile routes to any commercial
# region, which IAM names with an empty region in the foundation model's ARN.
BEDROCK_INVOKE = ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream")
BEDROCK_PROFILE_REGIONS = {
    "us": ("us-east-1", "us-east-2", "us-west-1", "us-west-2"),
    "eu": ("eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-3"),
    "apac": ("ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2", "ap-southeast-1",
             "ap-southeast-2", "ap-southeast-4"),
}


def bedrock_model_arns(model_ids: Iterable[str], *, partition: str, region: str, account: str,
                       elsewhere: Iterable[tuple[str, str]] = ()) -> list[str]:
    """The ARNs a role needs to invoke these Bedrock model ids: a foundation model id -> its ARN in `region`;
    a cross-region inference profile (`us.` / `eu.` / `apac.` / `global.` + model) -> the profile's ARN in
    `region` and the foundation model's ARN in every region the profile routes to. `elsewhere`: (model id,
    region) pairs called in another region (a deployment's `region`), granted the same way there. Raises
    ValueError for a profile prefix whose regions are not listed (BEDROCK_PROFILE_REGIONS): never a wildcard."""
    arns: set[str] = set()
    for model_id, region in [*((m, region) for m in model_ids), *elsewhere]:
        prefix, _, rest = model_id.partition(".")
        if prefix in BEDROCK_PROFILE_REGIONS or prefix == "global":
            arns.add(f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}")
            arns.add(f"arn:{partition}:bedrock:{region}::foundation-model/{rest}")
            if prefix == "global":
                arns.add(f"arn:{partition}:bedrock:::foundation-model/{rest}")
            else:
                arns.update(f"arn:{partition}:bedrock:{r}::foundation-model/{rest}" for r in BEDROCK_PROFILE_REGIONS[prefix])
        elif "." in model_id and prefix in ("anthropic", "amazon", "meta", "mistral", "cohere", "ai21", "deepseek",
                                            "openai", "qwen", "writer", "twelvelabs", "stability"):
            arns.add(f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}")
        else:
            raise ValueError(f"'{model_id}': not a Bedrock model id or an inference profile with known regions")
    return sorted(arns)


def bedrock_invoke(model_ids: Iterable[str], *, partition: str, region: str, account: str,
                   elsewhere: Iterable[tuple[str, str]] = ()) -> list[iam.PolicyStatement]:
    """bedrock:InvokeModel and InvokeModelWithResponseStream (Converse and ConverseStream are authorised
    by these two) on exactly these models (bedrock_model_arns); no statement when there are none."""
    arns = bedrock_model_arns(model_ids, partition=partition, region=region, account=account, elsewhere=elsewhere)
    return [iam.PolicyStatement(actions=list(BEDROCK_INVOKE), resources=arns)] if arns else []
