"""Deployment settings from CDK context: cdk.json values, or strings from `cdk deploy -c key=value`."""
from __future__ import annotations

import aws_cdk as cdk
import pytest

from stacks.config import DeploySettings


def _settings(**context) -> DeploySettings:
    return DeploySettings.from_context(cdk.App(context=context))


def test_defaults_when_nothing_is_set():
    settings = _settings()
    assert settings == DeploySettings(alert_email=None, geo_block_countries=(), waf_rate_limit_per_5min=1000)


def test_values_as_cdk_json_writes_them():
    settings = _settings(geo_block_countries=["kp", "RU"], alert_email="ops@example.com", waf_rate_limit_per_5min=300)
    assert settings == DeploySettings(alert_email="ops@example.com", geo_block_countries=("KP", "RU"),
                                      waf_rate_limit_per_5min=300)


@pytest.mark.parametrize("raw", ['["KP", "RU"]', "KP,RU", " kp , ru "])
def test_countries_from_the_command_line(raw):
    assert _settings(geo_block_countries=raw).geo_block_countries == ("KP", "RU")


def test_rate_limit_below_the_waf_minimum_is_rejected():
    with pytest.raises(ValueError, match="at least 10"):
        _settings(waf_rate_limit_per_5min="5")
