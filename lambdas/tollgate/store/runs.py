"""The runs table, and the run's budget item in the budgets table, as the runs API uses them.

A run and its budget are created together in ONE TransactWriteItems: the gateway refuses calls for a
run whose budget item does not exist (budgets.Level.must_exist), and a budget item without a run
would be money nobody can see. The agent workers update the run item (agents/runs.py).
"""
from __future__ import annotations

from typing import Any

from tollgate.store import counters as budgets
from tollgate.store.dynamo import from_item, to_item, values


class RunStore:
    def __init__(self, runs_table: str, budgets_table: str, client: Any):
        self.runs = runs_table
        self.budgets = budgets_table
        self.client = client

    def create(self, run: dict[str, Any], budget: dict[str, Any]) -> bool:
        """Write both items, or neither. False if a run with this id exists already."""
        try:
            self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.runs, "Item": to_item(run),
                         "ConditionExpression": "attribute_not_exists(runId)"}},
                {"Put": {"TableName": self.budgets, "Item": to_item(budget),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        except self.client.exceptions.TransactionCanceledException as e:
            codes = [r.get("Code") for r in e.response.get("CancellationReasons") or []]
            if "ConditionalCheckFailed" in codes:
                return False
            raise
        return True

    def get(self, run_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.runs, Key=to_item({"runId": run_id}),
                                    ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def budget(self, run_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.budgets,
                                    Key=to_item({"pk": budgets.run_pk(run_id), "sk": budgets.RUN_SK}),
                                    ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def fail_unqueued(self, run_id: str, now: str, reason: str, *, queued: str, failed: str,
                      stop_reason: str) -> None:
        """A run that could not be queued will never run: say so on the item (it cost nothing)."""
        try:
            self.client.update_item(
                TableName=self.runs, Key=to_item({"runId": run_id}),
                UpdateExpression="SET #s = :failed, stopReason = :why, reason = :reason, updatedAt = :now, "
                                 "finishedAt = :now",
                ConditionExpression="#s = :queued",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(failed=failed, why=stop_reason, reason=reason, now=now,
                                                 queued=queued))
        except self.client.exceptions.ConditionalCheckFailedException:
            pass  # a worker took it meanwhile (the message went out after all)
