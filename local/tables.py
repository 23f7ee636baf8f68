"""Local AWS resources, built from the same schema module as the CDK stacks: the DynamoDB tables, the
BYOK KMS key, the alert topic and the JWT signing secret. `provision` makes all of them and returns the
environment variables (tollgate.schema names) that point the runtime at them."""
from __future__ import annotations

import re
import secrets
import string
from typing import Any, Callable, Mapping

from tollgate.schema import TABLES, Env, Table

JWT_SECRET_LENGTH = 48


def _slug(logical_id: str) -> str:
    """ApiKeysTable -> api-keys"""
    words = re.findall(r"[A-Z][a-z0-9]*", logical_id.removesuffix("Table"))
    return "-".join(w.lower() for w in words)


def local_table_names(prefix: str = "tollgate-local") -> dict[str, str]:
    """Env var -> physical table name, e.g. TOLLGATE_API_KEYS_TABLE -> tollgate-local-api-keys."""
    return {t.env_var: f"{prefix}-{_slug(t.logical_id)}" for t in TABLES}


def _key_schema(partition_key: str, sort_key: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": partition_key, "KeyType": "HASH"}]
    if sort_key:
        schema.append({"AttributeName": sort_key, "KeyType": "RANGE"})
    return schema


def create_table_args(table: Table, name: str) -> dict[str, Any]:
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": _key_schema(table.partition_key, table.sort_key),
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in table.key_attributes],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.indexes:
        args["GlobalSecondaryIndexes"] = [
            {"IndexName": i.name, "KeySchema": _key_schema(i.partition_key, i.sort_key),
             "Projection": {"ProjectionType": "ALL"}}
            for i in table.indexes
        ]
    return args


def create_tables(client: Any, names: Mapping[str, str]) -> dict[str, str]:
    """Create every table in tollgate.schema.TABLES. `names` maps a table's env var or logical id to
    its physical name; tables missing from it are skipped. Returns env var -> name of those created."""
    created: dict[str, str] = {}
    for table in TABLES:
        name = names.get(table.env_var) or names.get(table.logical_id)
        if not name:
            continue
        description = client.create_table(**create_table_args(table, name))["TableDescription"]
        if description.get("TableStatus") != "ACTIVE":  # moto's are at once; the waiter costs ~12 ms of CPU
            client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
        if table.ttl_attribute:
            client.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": table.ttl_attribute})
        created[table.env_var] = name
    return created


def create_byok_key(kms: Any, prefix: str = "tollgate-local") -> str:
    """A symmetric KMS key for envelope-encrypting BYOK provider keys; returns its ARN."""
    meta = kms.create_key(Description=f"{prefix} BYOK provider keys", KeyUsage="ENCRYPT_DECRYPT",
                          KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/{prefix}-byok", TargetKeyId=meta["KeyId"])
    return meta["Arn"]


def create_alert_topic(sns: Any, prefix: str = "tollgate-local") -> str:
    return sns.create_topic(Name=f"{prefix}-alerts")["TopicArn"]


def create_jwt_secret(secretsmanager: Any, prefix: str = "tollgate-local") -> str:
    """The HS256 signing secret for service tokens, stored as a plain SecretString (like CDK's
    generateSecretString without a template); returns the secret's ARN."""
    alphabet = string.ascii_letters + string.digits
    value = "".join(secrets.choice(alphabet) for _ in range(JWT_SECRET_LENGTH))
    return secretsmanager.create_secret(Name=f"{prefix}-jwt-signing-secret", SecretString=value)["ARN"]


def provision(client: Callable[[str], Any], prefix: str = "tollgate-local") -> dict[str, str]:
    """Create tables and resources with `client(service_name)`; returns the env vars that name them."""
    env = create_tables(client("dynamodb"), local_table_names(prefix))
    env[Env.BYOK_KMS_KEY_ID] = create_byok_key(client("kms"), prefix)
    env[Env.ALERT_TOPIC_ARN] = create_alert_topic(client("sns"), prefix)
    env[Env.JWT_SECRET_ARN] = create_jwt_secret(client("secretsmanager"), prefix)
    return env
