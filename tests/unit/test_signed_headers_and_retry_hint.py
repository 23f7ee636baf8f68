"""The worker signs the headers the gateway requires signed, the gateway reads SignedHeaders as SigV4
writes it, and a provider's retry hint is read in each form providers send."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from botocore.credentials import Credentials

from agents import contract
from agents.gateway import SigV4Transport
from tollgate.auth import iam
from tollgate.errors import PermissionDenied
from tollgate.providers._common import retry_hint


class _CapturingHttp:
    def __init__(self):
        self.headers: dict[str, str] = {}

    def request(self, method, url, body=None, headers=None, timeout=None):
        self.headers = dict(headers)

        class Response:
            status, headers, data = 200, {}, b"{}"
        return Response()


def test_the_workers_sigv4_transport_signs_on_behalf_of_and_run_id():
    transport = SigV4Transport("https://api.example.test/prod", Credentials("AKIDTEST", "secret"), "eu-west-1")
    transport.http = _CapturingHttp()
    transport("POST", contract.CHAT_PATH, {contract.ON_BEHALF_OF_HEADER: "alice", contract.RUN_ID_HEADER: "run-1",
                                           "content-type": "application/json"}, b"{}")
    signed = iam.signed_headers(transport.http.headers["Authorization"])
    assert set(iam.MUST_BE_SIGNED) <= signed and "host" in signed


def test_signed_headers_reads_the_sigv4_authorization_header():
    value = ("AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/execute-api/aws4_request, "
             "SignedHeaders=host;X-Amz-Date;x-tollgate-on-behalf-of, Signature=abc")
    assert iam.signed_headers(value) == {"host", "x-amz-date", "x-tollgate-on-behalf-of"}
    assert iam.signed_headers("Bearer x-tollgate-on-behalf-of") == frozenset()
    assert iam.signed_headers(None) == frozenset()


def test_an_on_behalf_of_header_without_any_signature_is_refused():
    mapping = {"agent": {"scopes": ["ai:complete", "act-as"]}}
    identity = {"userArn": "arn:aws:sts::123456789012:assumed-role/agent/s"}
    with pytest.raises(PermissionDenied) as refused:
        iam.principal_for(identity, {"X-Tollgate-On-Behalf-Of": "alice"}, mapping)
    assert refused.value.code == "unsigned_header"
    assert iam.principal_for(identity, {}, mapping).user == "agent"  # no such header: nothing to sign


@pytest.mark.parametrize("headers,expected", [
    ({"retry-after-ms": "1500"}, {"retry-after": "2", "retry-after-ms": "1500"}),
    ({"retry-after-ms": "20", "retry-after": "7"}, {"retry-after": "1", "retry-after-ms": "20"}),  # ms is finer
    ({"retry-after": "3"}, {"retry-after": "3", "retry-after-ms": "3000"}),
    ({"retry-after": "Fri, 27 Nov 2026 14:30:35 GMT"}, {"retry-after": "30", "retry-after-ms": "30000"}),
    ({"retry-after": "soon"}, {}),
    ({"retry-after-ms": "nan"}, {}),
    ({}, {}),
])
def test_a_retry_hint_is_given_in_both_forms(headers, expected):
    now = datetime(2026, 11, 27, 14, 30, 5, tzinfo=timezone.utc)
    assert retry_hint(headers, now=now) == expected
