"""cfn-lint over the synthesised templates: no errors; warnings are reported, not failed on."""
from __future__ import annotations

import warnings

import pytest
from cfnlint.api import lint_file

from stacks.agents_stack import AGENTS_STACK_NAME
from stacks.api_stack import API_STACK_NAME
from stacks.data_stack import DATA_STACK_NAME
from stacks.monitoring_stack import MONITORING_STACK_NAME


def _findings(path) -> list:
    return lint_file(path)


@pytest.mark.parametrize("stack", [DATA_STACK_NAME, API_STACK_NAME, AGENTS_STACK_NAME, MONITORING_STACK_NAME])
def test_template_has_no_cfn_lint_errors(synthesis, stack):
    findings = _findings(synthesis.outdir / f"{stack}.template.json")
    errors = [str(m) for m in findings if m.rule.id.startswith("E")]
    others = [str(m) for m in findings if not m.rule.id.startswith("E")]
    if others:
        warnings.warn(f"cfn-lint on {stack}:\n" + "\n".join(others), stacklevel=1)
    assert errors == []
