"""Least privilege: what each function's role may do, table by table.

The gateway is the function exposed to every client request, so its reach is pinned exactly: it writes
usage but never reads it, and it cannot touch the API keys table or delete a table.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

import pytest
from tollgate import schema

from stacks import web_adapter
from stacks.permissions import SNS_TOPIC_CONTEXT

from .cfn import as_list, data_refs, function_id, resources, role_statements

AUTHORIZER = "handlers.authorizer.lambda_handler"
GATEWAY = web_adapter.HANDLER
ADMIN = "handlers.admin.lambda_handler"
SWEEPER = "handlers.sweeper.lambda_handler"

READ = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}
WRITE = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
TRANSACT = {"dynamodb:ConditionCheckItem", *WRITE}
SCAN = {"dynamodb:Scan"}

# function -> table -> the exact DynamoDB actions its role has on that table (and its indexes).
EXPECTED_TABLE_ACTIONS = {
    AUTHORIZER: {
        schema.API_KEYS: {"dynamodb:GetItem", "dynamodb:UpdateItem"},  # lookup + lastUsed touch
        schema.PROVIDER_KEYS: READ,
        schema.USAGE: set(),
        schema.BUDGETS: {"dynamodb:GetItem"},  # the user's monthly limit, for the authorizer context
    },
    GATEWAY: {
        schema.API_KEYS: set(),
        schema.USAGE: {"dynamodb:PutItem", "dynamodb:UpdateItem"},  # the pending record at reserve, final at settle
        schema.BUDGETS: READ | TRANSACT,
        schema.PROVIDER_KEYS: READ,
    },
    ADMIN: {
        schema.API_KEYS: READ | SCAN | WRITE,
        schema.USAGE: READ | SCAN,  # one user's records: a Query; a month's invoice, a day's reconciliation: a Scan
        schema.BUDGETS: READ | TRANSACT,
        schema.PROVIDER_KEYS: READ | WRITE,
    },
    SWEEPER: {
        schema.API_KEYS: set(),
        schema.USAGE: {"dynamodb:Query", "dynamodb:UpdateItem"},  # expired pending records, released
        schema.BUDGETS: TRANSACT,
        schema.PROVIDER_KEYS: set(),
    },
}


def _data_id(data_template: dict, prefix: str) -> str:
    [logical_id] = [k for k in data_template["Resources"] if k.startswith(prefix) and not k.startswith(prefix + "Policy")]
    return logical_id


def _allows(statement: dict, action: str) -> bool:
    return statement["Effect"] == "Allow" and any(
        fnmatchcase(action.lower(), pattern.lower()) for pattern in as_list(statement["Action"]))


def _actions_on(statements: list[dict], data_template: dict, logical_id: str) -> set[str]:
    return {
        action
        for s in statements if s["Effect"] == "Allow" and logical_id in data_refs(s["Resource"], data_template)
        for action in as_list(s["Action"])
    }


@pytest.fixture(scope="module")
def statements(api_template) -> dict[str, list[dict]]:
    return {h: role_statements(api_template, function_id(api_template, h)) for h in EXPECTED_TABLE_ACTIONS}


@pytest.mark.parametrize("handler", EXPECTED_TABLE_ACTIONS, ids=lambda h: h.split(".")[1])
def test_dynamodb_actions_per_table_are_exactly_the_needed_ones(statements, data_template, handler):
    for table, expected in EXPECTED_TABLE_ACTIONS[handler].items():
        found = _actions_on(statements[handler], data_template, _data_id(data_template, table.logical_id))
        assert found == expected, f"{handler} on {table.logical_id}"


def test_gateway_may_put_usage_records(statements, data_template):
    usage = _data_id(data_template, schema.USAGE.logical_id)
    assert any(_allows(s, "dynamodb:PutItem") and usage in data_refs(s["Resource"], data_template)
               for s in statements[GATEWAY])


def test_gateway_has_no_action_on_the_api_keys_table(statements, data_template):
    api_keys = _data_id(data_template, schema.API_KEYS.logical_id)
    assert [s for s in statements[GATEWAY] if api_keys in data_refs(s["Resource"], data_template)] == []


def test_gateway_has_no_dynamodb_action_on_a_wildcard_resource(statements):
    wildcard = [s for s in statements[GATEWAY]
                if "*" in as_list(s["Resource"]) and any(a.lower().startswith("dynamodb:") or a == "*"
                                                         for a in as_list(s["Action"]))]
    assert wildcard == []


@pytest.mark.parametrize("handler", EXPECTED_TABLE_ACTIONS, ids=lambda h: h.split(".")[1])
def test_no_function_may_delete_or_reconfigure_a_table(statements, handler):
    for action in ("dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:DeleteBackup", "dynamodb:Scan"):
        if action == "dynamodb:Scan" and handler == ADMIN:
            continue  # operators list keys, budgets and usage across users
        assert not any(_allows(s, action) for s in statements[handler]), f"{handler} may {action}"


def _byok_grants(statements: list[dict]) -> list[dict]:
    return [st for st in statements if "ForAllValues:StringEquals" in (st.get("Condition") or {})]


def _sns_grants(statements: list[dict]) -> list[dict]:
    return [st for st in statements if SNS_TOPIC_CONTEXT in (st.get("Condition") or {}).get("StringEquals", {})]


def test_gateway_decrypts_byok_keys_and_publishes_alerts(statements, data_template):
    byok = _data_id(data_template, "ByokKey")
    topic = _data_id(data_template, "AlertTopic")
    gateway = statements[GATEWAY]
    assert _actions_on(_byok_grants(gateway), data_template, byok) == {"kms:Decrypt"}
    assert _actions_on(gateway, data_template, topic) == {"sns:Publish"}
    # The same key encrypts the alerts topic: a data key for it only under the topic's encryption context.
    [sns_grant] = _sns_grants(gateway)
    assert _actions_on([sns_grant], data_template, byok) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert data_refs(sns_grant["Condition"]["StringEquals"][SNS_TOPIC_CONTEXT], data_template) == {topic}
    assert [st for st in gateway if _actions_on([st], data_template, byok)] == [*_byok_grants(gateway), sns_grant]


def test_only_the_gateway_reads_the_platform_provider_keys(statements, data_template):
    secret = _data_id(data_template, "PlatformKeysSecret")
    readers = {h for h, st in statements.items() if _actions_on(st, data_template, secret)}
    assert readers == {GATEWAY}


def test_admin_seals_byok_keys(statements, data_template):
    byok = _data_id(data_template, "ByokKey")
    assert _actions_on(statements[ADMIN], data_template, byok) == {"kms:GenerateDataKey"}


def test_byok_key_grants_require_the_owner_encryption_context(statements, data_template):
    byok = _data_id(data_template, "ByokKey")
    for handler in (GATEWAY, ADMIN):
        grants = [st for st in statements[handler] if _actions_on([st], data_template, byok)
                  and st not in _sns_grants(statements[handler])]  # the alerts topic's: its own context
        assert grants, handler
        for st in grants:
            assert st["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"] == ["provider", "user"]
            assert st["Condition"]["Null"] == {"kms:EncryptionContext:user": "false",
                                               "kms:EncryptionContext:provider": "false"}


def test_only_the_authorizer_and_admin_read_the_jwt_secret(statements, data_template):
    """The authorizer verifies service tokens; admin signs them (POST /admin/tokens)."""
    secret = _data_id(data_template, "JwtSigningSecret")
    readers = {h for h, st in statements.items() if _actions_on(st, data_template, secret)}
    assert readers == {AUTHORIZER, ADMIN}
    for handler in readers:
        assert _actions_on(statements[handler], data_template, secret) == {"secretsmanager:GetSecretValue"}


def test_function_roles_carry_no_managed_policies(api_template):
    roles = resources(api_template, "AWS::IAM::Role")
    for fn in resources(api_template, "AWS::Lambda::Function").values():
        role = roles[fn["Properties"]["Role"]["Fn::GetAtt"][0]]
        assert "ManagedPolicyArns" not in role["Properties"]
