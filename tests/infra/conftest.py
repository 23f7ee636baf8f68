"""Templates of the CDK app, from the session's one synthesis (tests/conftest.py `synthesis`)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def data_template(synthesis) -> dict:
    from stacks.data_stack import DATA_STACK_NAME

    return synthesis.template(DATA_STACK_NAME)


@pytest.fixture(scope="session")
def api_template(synthesis) -> dict:
    from stacks.api_stack import API_STACK_NAME

    return synthesis.template(API_STACK_NAME)
