"""Chargeback and reconciliation through the CLI and the SDKs, against the local stack (fake provider)."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import anthropic
import openai

from tests.e2e.test_sdks import tollgate


def _csv(local_stack, *args) -> list[dict]:
    done = subprocess.run([str(Path(sys.executable).parent / "tollgate"), *args], env=local_stack.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_invoice_reconciles_with_usage_and_budget_and_csv_agrees(local_stack):
    user = "e2e-invoice"
    keys = [tollgate(local_stack, "keys", "create", "--user", user)["key"] for _ in range(2)]
    openai.OpenAI(base_url=f"{local_stack.url}/v1", api_key=keys[0], max_retries=0).chat.completions.create(
        model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": "invoice me"}])
    anthropic.Anthropic(base_url=local_stack.url, api_key=keys[1], max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "and me"}])
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    invoice = tollgate(local_stack, "invoice", "--month", month, "--user", user)
    usage = tollgate(local_stack, "usage", "--user", user)
    budget = tollgate(local_stack, "budgets", "show", "--user", user)
    assert len(invoice["lines"]) == 2 and invoice["totals"]["requests"] == 2
    assert Decimal(invoice["totals"]["metered_usd"]) == Decimal(usage["total_cost_usd"]) == Decimal(budget["spent_usd"])
    assert Decimal(invoice["totals"]["total_usd"]) == sum(Decimal(x["total_usd"]) for x in invoice["lines"])
    rows = _csv(local_stack, "invoice", "--month", month, "--user", user, "--format", "csv")
    assert rows == [{k: str(v) for k, v in line.items()} for line in invoice["lines"]]


def test_reconcile_runs_against_the_fakes_admin_apis(local_stack):
    report = tollgate(local_stack, "reconcile", "--day", datetime.now(timezone.utc).date().isoformat())
    providers = {p["provider"]: p for p in report["providers"]}
    assert {"openai", "anthropic"} <= set(providers)
    for name in ("openai", "anthropic"):  # the fake has today's bill: a figure on both sides, never "not configured"
        assert providers[name]["reason"] != "not configured"
    if "bedrock" in providers:  # Cost Explorer is off by default: Bedrock's bill is missing, never zero drift
        assert providers["bedrock"]["status"] == "missing" and providers["bedrock"].get("drift_pct") is None
