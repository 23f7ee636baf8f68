"""`tollgate bootstrap`: the first admin key, written straight to the API keys table.

IAM is the root of trust: whoever may write that table with their own AWS credentials may create an
admin key, so no admin key is needed here. boto3 honours AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>),
which is how this runs against the local moto server.
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from tollgate_cli.context import Context
from tollgate_cli.errors import CliError

DEFAULT_USER = "admin"
DEFAULT_STACK = "TollgateData"
TABLE_OUTPUT = "ApiKeysTableName"
KEY_NAME = "bootstrap-admin"


def register(subparsers: argparse._SubParsersAction, json_only: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "bootstrap", parents=[json_only], help="create the first admin key with your AWS credentials",
        description="Create an admin key directly in the API keys table, using your AWS credentials "
                    "(no admin key needed). The key is shown once.")
    p.add_argument("--user", default=DEFAULT_USER, help=f"the admin's user id (default: {DEFAULT_USER})")
    p.add_argument("--stack", default=DEFAULT_STACK,
                   help=f"the data stack whose {TABLE_OUTPUT} output names the table (default: {DEFAULT_STACK})")
    p.add_argument("--table", help="the API keys table name (skips the CloudFormation lookup)")
    p.add_argument("--region", help="AWS region (default: your AWS configuration)")
    p.set_defaults(handler=bootstrap, parser=p)


def bootstrap(ctx: Context) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    from tollgate import scopes
    from tollgate.auth.api_keys import issue
    from tollgate.store.api_keys import ApiKeyStore

    a = ctx.args
    session = boto3.session.Session(region_name=a.region)
    region = session.region_name
    if not region:
        raise CliError("no AWS region: pass --region or set AWS_REGION")
    try:
        table = a.table or _table_from_stack(session, a.stack, region)
        raw, record = issue(a.user, name=KEY_NAME, scopes=scopes.ALL, now=datetime.now(timezone.utc))
        ApiKeyStore(table, session.client("dynamodb")).put(record)
    except NoCredentialsError:
        raise CliError("no AWS credentials: configure them (aws configure, AWS_PROFILE, ...) and try again") from None
    except NoRegionError:
        raise CliError("no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as e:
        raise CliError(_aws_message(e, table=a.table)) from None
    except BotoCoreError as e:
        raise CliError(f"AWS call failed: {e}") from None

    if ctx.json:
        ctx.print_json({"key": raw, **record.public(), "table": table, "region": region})
        return
    ctx.print(f"Created admin key {record.key_id} for {record.user_id} in table {table} ({region}).")
    ctx.print()
    ctx.print(f"    {raw}")
    ctx.print()
    ctx.print("Copy this key now: it cannot be shown again (Tollgate stores only its hash).")
    ctx.print(f"Scopes: {', '.join(record.scopes)}")
    ctx.print("Use it:  export TOLLGATE_ADMIN_KEY=<the key above>  and  export TOLLGATE_ENDPOINT=<the API's URL>")


def _table_from_stack(session: Any, stack: str, region: str) -> str:
    from botocore.exceptions import ClientError

    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except ClientError as e:
        if "does not exist" in str(e):
            raise CliError(f"stack {stack} not found in {region}: pass --stack, --region or --table") from None
        raise
    outputs = {o.get("OutputKey"): o.get("OutputValue") for o in (stacks[0].get("Outputs") or [])} if stacks else {}
    table = outputs.get(TABLE_OUTPUT)
    if not table:
        raise CliError(f"stack {stack} has no {TABLE_OUTPUT} output: pass --table")
    return table


def _aws_message(e: Any, *, table: str | None) -> str:
    error = e.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", str(e))
    if code == "ResourceNotFoundException":
        return f"API keys table not found ({message}): check --table / --stack and --region"
    if code == "ConditionalCheckFailedException":
        return "a key with the same id already exists (a one-in-a-lifetime collision): run bootstrap again"
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                "ExpiredTokenException", "InvalidClientTokenId"):
        return f"AWS refused ({code}): {message}"
    return f"AWS call failed ({code}): {message}"
