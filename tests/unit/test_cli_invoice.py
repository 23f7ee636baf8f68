"""`tollgate invoice` against the stub admin API of tests/unit/test_cli.py: query, table, CSV = JSON lines."""
from __future__ import annotations

import csv
import io
import json

import pytest

from tests.unit.test_cli import api, clean_env, cli  # noqa: F401 - fixtures

LINE = {"user": "alice", "key": "sk-ABCDEFGHIJ", "byok": False, "requests": 3, "failed_requests": 0,
        "prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42, "metered_usd": "0.625",
        "provider_cost_usd": "0.63", "markup_usd": "0.01", "total_usd": "0.64"}
BYOK = {**LINE, "byok": True, "requests": 1, "metered_usd": "0.2", "provider_cost_usd": "0.00", "markup_usd": "0.00",
        "total_usd": "0.00"}
INVOICE = {"month": "2026-11", "markup_pct": "2", "rounding": "half-up to the cent per line", "lines": [LINE, BYOK],
           "users": [], "totals": {"provider_cost_usd": "0.63", "markup_usd": "0.01", "total_usd": "0.64",
                                   "metered_usd": "0.825", "budget_spent_usd": "0.825", "requests": 4,
                                   "total_tokens": 84}}


def test_invoice_sends_month_user_and_markup_and_prints_a_table(api, cli):  # noqa: F811
    api.on("GET", "/admin/invoice", INVOICE)
    code, out, err = cli("invoice", "--month", "2026-11", "--user", "alice", "--markup-pct", "2.5")
    assert code == 0, err
    assert api.last["query"] == {"month": ["2026-11"], "user": ["alice"], "markup_pct": ["2.5"]}
    header, first, second = out.splitlines()[:3]
    assert "PROVIDER COST" in header and "$0.63" in first and "$0.64" in first and " yes " in second
    assert "provider cost $0.63 + markup $0.01 = $0.64" in out


def test_invoice_csv_rows_are_the_json_lines(api, cli):  # noqa: F811
    api.on("GET", "/admin/invoice", INVOICE)
    _, out_csv, _ = cli("invoice", "--month", "2026-11", "--format", "csv")
    _, out_json, _ = cli("invoice", "--month", "2026-11", "--format", "json")
    rows = list(csv.DictReader(io.StringIO(out_csv)))
    assert rows == [{k: str(v) for k, v in line.items()} for line in json.loads(out_json)["lines"]]


@pytest.mark.parametrize("argv", [("invoice",), ("invoice", "--month", "2026-13"),
                                  ("invoice", "--month", "2026-11", "--markup-pct", "-1"),
                                  ("invoice", "--month", "2026-11", "--format", "xml")])
def test_bad_arguments_exit_2_without_calling_the_api(api, cli, argv):  # noqa: F811
    code, _, _ = cli(*argv)
    assert code == 2 and not api.requests


RECONCILED = {"day": "2026-11-30", "threshold_pct": "3", "providers": [
    {"provider": "anthropic", "estimated_usd": "1.00", "actual_usd": None, "drift_usd": None, "drift_pct": None,
     "status": "missing", "reason": "no bucket for the day", "models": []},
    {"provider": "openai", "estimated_usd": "2.00", "actual_usd": "2.10", "drift_usd": "0.10", "drift_pct": "5",
     "status": "drift", "reason": None, "models": [
         {"model": "gpt-4o-mini", "estimated_usd": "2.00", "tokens": 10, "actual_usd": "2.10", "drift_usd": "0.10",
          "drift_pct": "5", "status": "drift"}]}]}


def test_reconcile_posts_the_day_and_shows_missing_as_missing(api, cli):  # noqa: F811
    api.on("POST", "/admin/reconcile", RECONCILED)
    code, out, err = cli("reconcile", "--day", "2026-11-30")
    assert code == 0, err
    assert api.last["body"] == {"day": "2026-11-30"}
    anthropic = next(line for line in out.splitlines() if line.startswith("anthropic"))
    assert "missing" in anthropic and "+0.00%" not in anthropic
    assert "+5.00%" in next(line for line in out.splitlines() if "gpt-4o-mini" in line)
