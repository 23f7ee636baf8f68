"""Body of PUT /v1/provider-keys/{provider}. Its format (printable ASCII, length) is checked in
tollgate.byok, which never echoes the key."""
from __future__ import annotations

from tollgate.requests.base import TollgateRequest
from tollgate.requests.types import Text


class PutProviderKey(TollgateRequest):
    api_key: Text
