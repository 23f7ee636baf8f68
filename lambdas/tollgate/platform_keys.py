"""The platform's own provider keys: from the environment locally, from Secrets Manager when deployed.

The secret holds a JSON object {"openai": "...", "anthropic": "..."}; Powertools parameters caches it.
"""
from __future__ import annotations

import json

from tollgate.errors import ProviderFailed
from tollgate.settings import Settings

_CACHE_S = 300


def platform_key(provider: str, settings: Settings) -> str:
    direct = {"openai": settings.openai_api_key, "anthropic": settings.anthropic_api_key}.get(provider)
    if direct:
        return direct
    if settings.platform_keys_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        keys = json.loads(parameters.get_secret(settings.platform_keys_secret_arn, max_age=_CACHE_S) or "{}")
        if keys.get(provider):
            return keys[provider]
    raise ProviderFailed(f"No platform key is configured for provider '{provider}'.",
                         code="provider_not_configured", status=503)
