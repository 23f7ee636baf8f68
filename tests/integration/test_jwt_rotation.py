"""Rotating the JWT signing secret in Secrets Manager: tokens signed before the rotation keep working
through the overlap, new ones are signed with the new secret."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest

from tollgate.auth import jwt_secrets, jwt_tokens
from tollgate.errors import AuthenticationFailed


def test_previous_and_current_versions_are_both_loaded_after_a_rotation(world):
    arn = world.env["TOLLGATE_JWT_SECRET_ARN"]
    sm = boto3.client("secretsmanager")
    [before] = jwt_secrets.load(arn, client=sm)
    assert before.current
    old_token, _ = jwt_tokens.issue(before, service="svc", scopes=["ai:complete"], now=datetime.now(timezone.utc))

    sm.put_secret_value(SecretId=arn, SecretString="n" * 48)  # a rotation: AWSCURRENT moves, AWSPREVIOUS follows
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    current, previous = jwt_secrets.load(arn, provider=SecretsProvider(), client=sm)
    assert (current.value, current.current) == ("n" * 48, True)
    assert (previous.value, previous.current) == (before.value, False)
    now = datetime.now(timezone.utc)
    assert jwt_tokens.verify(old_token, [current, previous], now).id == "svc:svc"
    after = previous.became_previous_at + timedelta(seconds=jwt_tokens.ROTATION_OVERLAP_S + 5)
    late_old, _ = jwt_tokens.issue(before, service="svc", scopes=["ai:complete"], now=after)
    late_new, _ = jwt_tokens.issue(current, service="svc", scopes=["ai:complete"], now=after)
    assert jwt_tokens.verify(late_new, [current, previous], after).id == "svc:svc"
    with pytest.raises(AuthenticationFailed):  # the old secret no longer verifies anything
        jwt_tokens.verify(late_old, [current, previous], after)
