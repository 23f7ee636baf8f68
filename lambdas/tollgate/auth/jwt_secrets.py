"""The JWT signing secret from Secrets Manager: the current version and, during a rotation, the previous
one. Read with Powertools parameters, cached for CACHE_S."""
from __future__ import annotations

import time
from typing import Any

from tollgate.auth.jwt_tokens import MIN_SECRET_BYTES, SigningSecret

CACHE_S = 300


_memo: dict[str, tuple[float, list[SigningSecret]]] = {}


def cached(secret_arn: str) -> list[SigningSecret]:
    """load(), remembered for CACHE_S (the rotation date costs a call of its own)."""
    hit = _memo.get(secret_arn)
    if hit and time.monotonic() < hit[0]:
        return hit[1]
    secrets = load(secret_arn)
    _memo[secret_arn] = (time.monotonic() + CACHE_S, secrets)
    return secrets


def load(secret_arn: str, provider: Any = None, client: Any = None) -> list[SigningSecret]:
    """The current secret (Powertools parameters) and, during a rotation, the previous one. Powertools
    caches by name, not by version stage, so the previous version is read with boto3 (this whole list is
    cached for CACHE_S by `cached`)."""
    provider = provider or _provider()
    current = provider.get(secret_arn, max_age=CACHE_S)
    if len(current.encode()) < MIN_SECRET_BYTES:
        raise RuntimeError("the JWT signing secret is shorter than 32 bytes")
    secrets = [SigningSecret(current, current=True)]
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    versions = client.list_secret_version_ids(SecretId=secret_arn)["Versions"]
    became_previous = next((v["CreatedDate"] for v in versions if "AWSCURRENT" in v.get("VersionStages", [])), None)
    if any("AWSPREVIOUS" in v.get("VersionStages", []) for v in versions) and became_previous is not None:
        previous = client.get_secret_value(SecretId=secret_arn, VersionStage="AWSPREVIOUS")["SecretString"]
        secrets.append(SigningSecret(previous, current=False, became_previous_at=became_previous))
    return secrets


_PROVIDER = None


def _provider() -> Any:
    global _PROVIDER
    if _PROVIDER is None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        _PROVIDER = SecretsProvider()
    return _PROVIDER
