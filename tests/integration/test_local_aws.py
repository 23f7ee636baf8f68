"""The local AWS emulation: serialised moto (in-process and as a server), tables and resources from the
schema, and the local stack's start/stop."""
from __future__ import annotations

import json
import os
import stat
import threading
import urllib.request

import boto3
import pytest

from local.aws import MotoServer, serialised_mock_aws, spawn_server
from local.tables import JWT_SECRET_LENGTH, create_tables, local_table_names, provision
from tollgate.schema import API_KEYS, BUDGETS, TABLES, Env

REGION = "us-east-1"
THREADS = 32
ATTEMPTS_PER_THREAD = 10  # 320 attempts on a counter of 100
START = 100


@pytest.fixture(autouse=True)
def _offline_aws_env(monkeypatch):
    """Whatever the shell holds, nothing here may reach real AWS."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL") or n in ("AWS_PROFILE", "AWS_SESSION_TOKEN")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def _count_successful_decrements(make_client) -> tuple[int, int]:
    """32 threads, each with its own client, race to take 1 from a counter with `n >= 1` as condition."""
    setup = make_client()
    setup.create_table(TableName="counter", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                       AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                       BillingMode="PAY_PER_REQUEST")
    setup.put_item(TableName="counter", Item={"pk": {"S": "c"}, "n": {"N": str(START)}})
    clients = [make_client() for _ in range(THREADS)]
    granted = []
    barrier = threading.Barrier(THREADS)

    def take(client) -> None:
        barrier.wait()
        for _ in range(ATTEMPTS_PER_THREAD):
            try:
                client.update_item(TableName="counter", Key={"pk": {"S": "c"}}, UpdateExpression="SET n = n - :one",
                                   ConditionExpression="n >= :one", ExpressionAttributeValues={":one": {"N": "1"}})
                granted.append(1)
            except client.exceptions.ConditionalCheckFailedException:
                pass

    threads = [threading.Thread(target=take, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = int(setup.get_item(TableName="counter", Key={"pk": {"S": "c"}}, ConsistentRead=True)["Item"]["n"]["N"])
    return len(granted), left


def test_in_process_conditional_decrement_is_granted_exactly_start_times():
    with serialised_mock_aws():
        granted, left = _count_successful_decrements(lambda: boto3.client("dynamodb", region_name=REGION))
    assert (granted, left) == (START, 0)


@pytest.mark.parametrize("where", ["thread", "subprocess"])
def test_server_conditional_decrement_is_granted_exactly_start_times(where):
    server = spawn_server() if where == "subprocess" else MotoServer()
    if where == "thread":
        server.start()
    try:
        granted, left = _count_successful_decrements(
            lambda: boto3.client("dynamodb", region_name=REGION, endpoint_url=server.endpoint_url))
    finally:
        server.stop()
    assert (granted, left) == (START, 0)


def test_stubber_lock_is_removed_when_the_last_mock_exits():
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request
    with serialised_mock_aws():
        assert BotocoreStubber.process_request is not original
        with serialised_mock_aws():
            pass
        assert BotocoreStubber.process_request is not original
    assert BotocoreStubber.process_request is original


def test_spawned_server_is_shared_between_clients_and_stops():
    server = spawn_server()
    try:
        a = boto3.client("sns", region_name=REGION, endpoint_url=server.endpoint_url)
        b = boto3.client("sns", region_name=REGION, endpoint_url=server.endpoint_url)
        arn = a.create_topic(Name="shared")["TopicArn"]
        assert arn in [t["TopicArn"] for t in b.list_topics()["Topics"]]
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_local_table_names_cover_every_table():
    names = local_table_names("p")
    assert set(names) == {t.env_var for t in TABLES}
    assert names[API_KEYS.env_var] == "p-api-keys"


def test_create_tables_follows_the_schema():
    with serialised_mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        created = create_tables(client, local_table_names())
        assert set(created) == {t.env_var for t in TABLES}
        for table in TABLES:
            desc = client.describe_table(TableName=created[table.env_var])["Table"]
            keys = {k["KeyType"]: k["AttributeName"] for k in desc["KeySchema"]}
            assert keys == {"HASH": table.partition_key, **({"RANGE": table.sort_key} if table.sort_key else {})}
            assert {a["AttributeType"] for a in desc["AttributeDefinitions"]} == {"S"}
            assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
            indexes = {i["IndexName"]: i for i in desc.get("GlobalSecondaryIndexes", [])}
            assert set(indexes) == {i.name for i in table.indexes}
            assert all(i["Projection"]["ProjectionType"] == "ALL" for i in indexes.values())
            ttl = client.describe_time_to_live(TableName=created[table.env_var])["TimeToLiveDescription"]
            if table.ttl_attribute:
                assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", table.ttl_attribute)
            else:
                assert ttl["TimeToLiveStatus"] == "DISABLED"
        assert BUDGETS.ttl_attribute


def test_create_tables_accepts_logical_ids_and_skips_unnamed_tables():
    with serialised_mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        assert create_tables(client, {API_KEYS.logical_id: "keys"}) == {API_KEYS.env_var: "keys"}
        assert client.list_tables()["TableNames"] == ["keys"]


def test_provision_creates_usable_resources():
    with serialised_mock_aws():
        env = provision(lambda service: boto3.client(service, region_name=REGION))
        kms = boto3.client("kms", region_name=REGION)
        blob = kms.encrypt(KeyId=env[Env.BYOK_KMS_KEY_ID], Plaintext=b"sk-user-key")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"sk-user-key"
        topics = boto3.client("sns", region_name=REGION).list_topics()["Topics"]
        assert env[Env.ALERT_TOPIC_ARN] in [t["TopicArn"] for t in topics]
        secret = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=env[Env.JWT_SECRET_ARN])
        assert len(secret["SecretString"]) == JWT_SECRET_LENGTH and secret["SecretString"].isalnum()
        assert set(local_table_names()) <= set(env)


def test_local_stack_starts_serves_health_and_restores_the_environment(tmp_path, monkeypatch):
    from local.dev import FAKE_PLATFORM_KEYS, LocalStack

    monkeypatch.setenv(Env.OPENAI_API_KEY, "sk-real-looking-key-that-must-not-be-used")
    before = dict(os.environ)
    stack = LocalStack(use_fake=True, aws_in_subprocess=True, quiet=True)
    stack.start(port=0, state_dir=tmp_path / "state")
    try:
        assert os.environ["AWS_ENDPOINT_URL"] == stack.aws_endpoint
        assert os.environ[Env.OPENAI_API_KEY] == FAKE_PLATFORM_KEYS[Env.OPENAI_API_KEY]
        assert os.environ[Env.OPENAI_BASE_URL].endswith("/v1")
        key_file = tmp_path / "state" / "admin-key"
        assert key_file.read_text().strip() == stack.admin_key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert (tmp_path / "state" / "endpoint").read_text().strip() == stack.url
        assert stack.env["TOLLGATE_ADMIN_KEY"] == stack.admin_key
        assert Env.OPENAI_API_KEY not in stack.env and Env.ANTHROPIC_API_KEY not in stack.env
        with urllib.request.urlopen(f"{stack.url}/health") as response:
            assert response.status == 200

        dynamodb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint, region_name=REGION)
        item = dynamodb.get_item(TableName=os.environ[API_KEYS.env_var],
                                 Key={"keyId": {"S": stack.admin_key[:12]}})["Item"]
        assert item["userId"]["S"] == "admin"
        assert stack.admin_key not in json.dumps(item)  # only the hash is stored

        stack.restore_env()
        assert dict(os.environ) == before
        with stack.environment():
            assert os.environ["AWS_ENDPOINT_URL"] == stack.aws_endpoint
        assert dict(os.environ) == before
    finally:
        stack.stop()
    assert dict(os.environ) == before


def test_a_cancelled_transaction_leaves_every_item_it_named_as_it_was():
    """moto_fixes: transactions back up the items they name, not whole tables; the rollback must still
    undo a write made before a later condition failed, and leave other items alone."""
    with serialised_mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                                  {"AttributeName": "sk", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
        for sk in ("a", "other"):
            db.put_item(TableName="t", Item={"pk": {"S": "p"}, "sk": {"S": sk}, "n": {"N": "5"}})

        def key(sk: str) -> dict:
            return {"pk": {"S": "p"}, "sk": {"S": sk}}

        with pytest.raises(db.exceptions.TransactionCanceledException):
            db.transact_write_items(TransactItems=[
                {"Update": {"TableName": "t", "Key": key("a"), "UpdateExpression": "SET n = n - :x",
                            "ExpressionAttributeValues": {":x": {"N": "1"}}}},
                {"Put": {"TableName": "t", "Item": {**key("new"), "n": {"N": "1"}}}},
                {"ConditionCheck": {"TableName": "t", "Key": key("other"), "ConditionExpression": "n > :big",
                                    "ExpressionAttributeValues": {":big": {"N": "100"}}}},
            ])
        items = {i["sk"]["S"]: i["n"]["N"] for i in db.scan(TableName="t")["Items"]}
        assert items == {"a": "5", "other": "5"}

        db.transact_write_items(TransactItems=[
            {"Update": {"TableName": "t", "Key": key("a"), "UpdateExpression": "SET n = n - :x",
                        "ExpressionAttributeValues": {":x": {"N": "1"}}}},
            {"Put": {"TableName": "t", "Item": {**key("new"), "n": {"N": "1"}}}},
        ])
        items = {i["sk"]["S"]: i["n"]["N"] for i in db.scan(TableName="t")["Items"]}
        assert items == {"a": "4", "other": "5", "new": "1"}
