"""TollgateData: tables from the shared schema, durable and encrypted; keys, secret, alerts topic."""
from __future__ import annotations

import json

import pytest
from tollgate import schema

from stacks.data_stack import output_name

from .cfn import local_refs, resources


def _table(template: dict, spec: schema.Table) -> dict:
    [table] = [v for k, v in resources(template, "AWS::DynamoDB::Table").items() if k.startswith(spec.logical_id)]
    return table


def test_one_table_per_schema_entry(data_template):
    assert len(resources(data_template, "AWS::DynamoDB::Table")) == len(schema.TABLES)


@pytest.mark.parametrize("spec", schema.TABLES, ids=lambda t: t.logical_id)
def test_table_keys_indexes_and_ttl_follow_the_schema(data_template, spec):
    props = _table(data_template, spec)["Properties"]
    expected_keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
    if spec.sort_key:
        expected_keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
    assert props["KeySchema"] == expected_keys
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        name: "S" for name in spec.key_attributes}

    indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
    assert set(indexes) == {i.name for i in spec.indexes}
    for index in spec.indexes:
        keys = [{"AttributeName": index.partition_key, "KeyType": "HASH"}]
        if index.sort_key:
            keys.append({"AttributeName": index.sort_key, "KeyType": "RANGE"})
        assert indexes[index.name]["KeySchema"] == keys
        assert indexes[index.name]["Projection"] == {"ProjectionType": "ALL"}

    if spec.ttl_attribute:
        assert props["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in props


@pytest.mark.parametrize("spec", schema.TABLES, ids=lambda t: t.logical_id)
def test_table_is_on_demand_recoverable_encrypted_and_retained(data_template, spec):
    table = _table(data_template, spec)
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("spec", schema.TABLES, ids=lambda t: t.logical_id)
def test_table_name_is_an_output(data_template, spec):
    """`tollgate bootstrap` reads ApiKeysTableName from the TollgateData stack's outputs."""
    output = data_template["Outputs"][output_name(spec)]
    [table_id] = [k for k in resources(data_template, "AWS::DynamoDB::Table") if k.startswith(spec.logical_id)]
    assert output["Value"] == {"Ref": table_id}


def test_api_keys_table_output_keeps_the_name_the_cli_reads(data_template):
    assert "ApiKeysTableName" in data_template["Outputs"]


def test_every_kms_key_rotates(data_template):
    keys = resources(data_template, "AWS::KMS::Key")
    assert len(keys) == 1  # BYOK envelope key, also the alerts topic's ($1 a month each: issue 15)
    assert all(k["Properties"]["EnableKeyRotation"] is True for k in keys.values())


def test_byok_key_is_retained_with_the_ciphertexts_it_protects(data_template):
    [byok] = [v for k, v in resources(data_template, "AWS::KMS::Key").items() if k.startswith("ByokKey")]
    assert byok["DeletionPolicy"] == "Retain"


def test_jwt_secret_is_generated_long_and_without_punctuation(data_template):
    [secret] = [v for k, v in resources(data_template, "AWS::SecretsManager::Secret").items()
                if k.startswith("JwtSigningSecret")]
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["PasswordLength"] >= 32
    assert generate["ExcludePunctuation"] is True
    assert "SecretString" not in secret["Properties"]


def test_alert_topic_is_kms_encrypted_and_ssl_only(data_template):
    [(topic_id, topic)] = resources(data_template, "AWS::SNS::Topic").items()
    assert local_refs(topic["Properties"]["KmsMasterKeyId"]) <= set(resources(data_template, "AWS::KMS::Key"))
    [policy] = resources(data_template, "AWS::SNS::TopicPolicy").values()
    deny_insecure = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert deny_insecure and local_refs(deny_insecure[0]["Resource"]) == {topic_id}


def test_cloudwatch_alarms_may_use_the_alert_topic_key_only_for_sns_topics(data_template):
    [(topic_id, topic)] = resources(data_template, "AWS::SNS::Topic").items()
    [key_id] = local_refs(topic["Properties"]["KmsMasterKeyId"])
    key = resources(data_template, "AWS::KMS::Key")[key_id]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    [alarms] = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    # The key also seals BYOK keys: CloudWatch may use it only under an SNS topic's encryption context.
    [(context, pattern)] = alarms["Condition"]["StringLike"].items()
    assert context == "kms:EncryptionContext:aws:sns:topicArn"
    assert ":sns:" in json.dumps(pattern) and json.dumps(pattern).endswith(':*"]]}')


def test_platform_keys_secret_ships_only_empty_placeholders(data_template):
    [secret] = [v for k, v in resources(data_template, "AWS::SecretsManager::Secret").items()
                if k.startswith("PlatformKeysSecret")]
    assert json.loads(secret["Properties"]["SecretString"]) == {"openai": "", "anthropic": ""}
