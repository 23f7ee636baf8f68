"""The worker's side of the runs table: claim a run, checkpoint it, finish or interrupt it.

A run is held by one worker at a time: claiming is a conditional write (queued or interrupted, or
running under a lease that has expired, e.g. its worker was killed without a chance to say so), and
every later write is conditional on still holding it. SQS may deliver a message twice; only one
delivery gets the run. The run's budget item is read, never written: only the gateway moves it.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from agents import contract

_ser = TypeSerializer()
_de = TypeDeserializer()


def _values(**kwargs: Any) -> dict[str, Any]:
    return {f":{k}": _ser.serialize(v) for k, v in kwargs.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _key(run_id: str) -> dict[str, Any]:
    return {contract.RUNS_KEY: {"S": run_id}}


class LostRun(Exception):
    """Another worker holds the run now (this one's lease expired)."""


class WorkerRunStore:
    def __init__(self, runs_table: str, budgets_table: str, client: Any, worker_id: str):
        self.runs = runs_table
        self.budgets = budgets_table
        self.client = client
        self.worker_id = worker_id

    def get(self, run_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.runs, Key=_key(run_id), ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def budget(self, run_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.budgets, ConsistentRead=True,
            Key={"pk": {"S": contract.run_budget_pk(run_id)}, "sk": {"S": contract.RUN_BUDGET_SK}}).get("Item")
        return _plain(item) if item else None

    def claim(self, run_id: str, now: str, lease_until: str) -> dict[str, Any] | None:
        """Take the run; the item as it is now, or None if it is not ours to take."""
        try:
            item = self.client.update_item(
                TableName=self.runs, Key=_key(run_id),
                UpdateExpression="SET #s = :running, workerId = :me, leaseUntil = :lease, updatedAt = :now, "
                                 "startedAt = if_not_exists(startedAt, :now), attempts = if_not_exists(attempts, :zero) + :one",
                ConditionExpression="attribute_exists(runId) AND (#s IN (:queued, :interrupted) OR "
                                    "(#s = :running AND leaseUntil < :now))",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_values(running=contract.RUNNING, me=self.worker_id, lease=lease_until,
                                                  now=now, zero=0, one=1, queued=contract.QUEUED,
                                                  interrupted=contract.INTERRUPTED),
                ReturnValues="ALL_NEW")["Attributes"]
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return _plain(item)

    def renew(self, run_id: str, now: str, lease_until: str) -> None:
        self._held(run_id, "SET leaseUntil = :lease, updatedAt = :now", lease=lease_until, now=now)

    def checkpoint(self, run_id: str, now: str, checkpoint: dict[str, Any], iterations: int, calls: int) -> None:
        self._held(run_id, "SET checkpointJson = :cp, iterations = :it, calls = :calls, updatedAt = :now",
                   cp=json.dumps(checkpoint, ensure_ascii=False, separators=(",", ":")), it=iterations, calls=calls,
                   now=now)

    def interrupt(self, run_id: str, now: str, checkpoint: dict[str, Any] | None, iterations: int, calls: int,
                  reason: str) -> None:
        names = {"#s": "status"}
        update = "SET #s = :interrupted, reason = :reason, iterations = :it, calls = :calls, updatedAt = :now REMOVE workerId, leaseUntil"
        vals = dict(interrupted=contract.INTERRUPTED, reason=reason, it=iterations, calls=calls, now=now)
        if checkpoint is not None:
            update = update.replace(", updatedAt = :now", ", updatedAt = :now, checkpointJson = :cp")
            vals["cp"] = json.dumps(checkpoint, ensure_ascii=False, separators=(",", ":"))
        self._held(run_id, update, names=names, **vals)

    def finish(self, run_id: str, now: str, *, status: str, stop_reason: str, reason: str,
               result: dict[str, Any] | None, iterations: int, calls: int, cost_usd: Decimal | None) -> None:
        update = ("SET #s = :status, stopReason = :why, reason = :reason, iterations = :it, calls = :calls, "
                  "updatedAt = :now, finishedAt = :now")
        vals: dict[str, Any] = dict(status=status, why=stop_reason, reason=reason, it=iterations, calls=calls,
                                    now=now)
        if result is not None:
            update += ", resultJson = :result"
            vals["result"] = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        if cost_usd is not None:
            update += ", costUsd = :cost"
            vals["cost"] = cost_usd
        self._held(run_id, update + " REMOVE workerId, leaseUntil, checkpointJson", names={"#s": "status"}, **vals)

    def _held(self, run_id: str, update: str, names: dict[str, str] | None = None, **vals: Any) -> None:
        try:
            self.client.update_item(
                TableName=self.runs, Key=_key(run_id), UpdateExpression=update,
                ConditionExpression="workerId = :me AND #held = :running",
                ExpressionAttributeNames={**(names or {}), "#held": "status"},
                ExpressionAttributeValues=_values(me=self.worker_id, running=contract.RUNNING, **vals))
        except self.client.exceptions.ConditionalCheckFailedException:
            raise LostRun(f"run {run_id} is no longer held by worker {self.worker_id}") from None
