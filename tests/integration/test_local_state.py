"""Local state across restarts (local.state): what `make dev` keeps in its state directory, and the TTL
expiry DynamoDB does and moto does not."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import boto3

from local import state
from local.aws import serialised_mock_aws
from local.dev import LocalStack
from local.tables import local_table_names, provision
from tollgate.schema import BUDGETS, PROVIDER_KEYS, USAGE


def _call(stack: LocalStack, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{stack.url}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _stack(n: int) -> LocalStack:
    # Emulated AWS in this process (quicker to start than a child): moto's state is per process, so each
    # "session" gets its own table names; the snapshot is keyed by table, not by name.
    return LocalStack(use_fake=True, quiet=True, persist=True, prefix=f"restart{n}")


def test_keys_budgets_and_usage_survive_a_restart(tmp_path):
    first = _stack(1)
    try:
        first.start(port=0, state_dir=tmp_path)
        status, key = _call(first, "POST", "/admin/keys", first.admin_key, {"user": "carol", "scopes": ["ai:complete"]})
        assert status == 201, key
        assert _call(first, "PUT", "/admin/budgets", first.admin_key, {"user": "carol", "monthly_usd": "12.5"})[0] == 200
        status, chat = _call(first, "POST", "/v1/chat/completions", key["key"], {
            "model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200, chat
        admin_key = first.admin_key
    finally:
        first.stop()
    assert (tmp_path / state.SNAPSHOT_FILE).exists()

    second = _stack(2)
    try:
        second.start(port=0, state_dir=tmp_path)
        assert second.restored > 0 and second.admin_key == admin_key  # the same admin key keeps working
        keys = _call(second, "GET", "/admin/keys?user=carol", admin_key)[1]["keys"]
        assert [k["key_id"] for k in keys] == [key["key_id"]]
        budget = _call(second, "GET", "/admin/budgets?user=carol", admin_key)[1]
        assert budget["monthly_limit_usd"] in ("12.5", "12.50") and float(budget["spent_usd"]) > 0
        usage = _call(second, "GET", "/admin/usage?user=carol", admin_key)[1]
        assert [r["model"] for r in usage["records"]] == ["gpt-4o-mini"]
        assert _call(second, "GET", "/v1/models", key["key"])[0] == 200  # the user's key still works
    finally:
        second.stop()

    state.reset(tmp_path)  # make dev-reset: the next start restores nothing
    assert not (tmp_path / state.SNAPSHOT_FILE).exists() and not (tmp_path / state.JWT_SECRET_FILE).exists()


def test_save_drops_ttl_expired_items_and_restore_round_trips_typed_values(tmp_path):
    now = time.time()
    with serialised_mock_aws():
        env = provision(boto3.client, prefix="st")
        names = local_table_names("st")
        db = boto3.client("dynamodb", region_name="us-east-1")
        budgets, usage = env[BUDGETS.env_var], env[USAGE.env_var]
        db.put_item(TableName=budgets, Item={"pk": {"S": "rate#k"}, "sk": {"S": "w1"}, "ttl": {"N": str(int(now) - 5)}})
        db.put_item(TableName=budgets, Item={"pk": {"S": "rate#k"}, "sk": {"S": "w2"}, "ttl": {"N": str(int(now) + 600)}})
        db.put_item(TableName=usage, Item={"pk": {"S": "u"}, "sk": {"S": "t#1"}, "blob": {"B": b"\x00\xff"},
                                           "cost": {"N": "0.000012"}})
        db.put_item(TableName=env[PROVIDER_KEYS.env_var], Item={"userId": {"S": "u"}, "provider": {"S": "openai"}})

        assert state.save(db, names, tmp_path, now) == {"written": 2, "expired": 1}
        assert [i["sk"]["S"] for i in db.scan(TableName=budgets)["Items"]] == ["w2"]  # deleted, as DynamoDB's TTL does

    with serialised_mock_aws():  # a new session: empty tables
        provision(boto3.client, prefix="st")
        db = boto3.client("dynamodb", region_name="us-east-1")
        assert state.restore(db, names, tmp_path) == 2
        [record] = db.scan(TableName=usage)["Items"]
        assert record["blob"]["B"] == b"\x00\xff" and record["cost"]["N"] == "0.000012"
        assert db.scan(TableName=env[PROVIDER_KEYS.env_var])["Items"] == []  # BYOK keys are not kept
