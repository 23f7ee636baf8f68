"""Per-user limits the operator set (the per-key ones live on the key item), and the budget items'
current state for operators. Budget counters themselves are written only by the ledger."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tollgate.errors import Conflict
from tollgate.store import counters as budgets, escrow
from tollgate.store.dynamo import from_item, to_item, values
from tollgate.money import text as usd

LIMITS_SK = "LIMITS"


def user_limits_pk(user: str) -> str:
    return f"LIMITS#USER#{user}"


class LimitsStore:
    def __init__(self, budgets_table: str, client: Any):
        self.table = budgets_table
        self.client = client

    def user_limits(self, user: str) -> dict[str, Any]:
        item = self.client.get_item(TableName=self.table,
                                    Key=to_item({"pk": user_limits_pk(user), "sk": LIMITS_SK})).get("Item")
        return from_item(item) if item else {}

    def user_monthly_usd(self, user: str) -> Decimal | None:
        value = self.user_limits(user).get("monthlyUsd")
        return Decimal(value) if value is not None else None

    def set_user_monthly_usd(self, user: str, limit: Decimal) -> None:
        self._set_user_field(user, "monthlyUsd", limit)

    def set_byok_budget_exempt(self, user: str, exempt: bool) -> None:
        self._set_user_field(user, "byokBudgetExempt", exempt)

    def set_log_prompts(self, user: str, enabled: bool) -> None:
        self._set_user_field(user, "logPrompts", enabled)

    def set_cache_ttl_s(self, user: str, seconds: int) -> None:
        """The response cache's TTL for this user's answers (tollgate.response_cache); 0: off."""
        self._set_user_field(user, "cacheTtlS", seconds)

    def _set_user_field(self, user: str, name: str, value: Any) -> None:
        self.client.update_item(TableName=self.table, Key=to_item({"pk": user_limits_pk(user), "sk": LIMITS_SK}),
                                UpdateExpression="SET #f = :v", ExpressionAttributeNames={"#f": name},
                                ExpressionAttributeValues=values(v=value))

    def counter(self, pk: str, sk: str) -> dict[str, Any] | None:
        """A budget item as operators see it: with spentUsd, reservedUsd and remainingUsd summed over the
        escrow slices of a hot key's counter (tollgate.store.escrow); None if it was never written."""
        snap = escrow.read_counter(self.client, self.table, pk, sk)
        if snap.pool is None and not snap.slices:
            return None
        item = dict(snap.pool or {"pk": pk, "sk": sk})
        for name in ("spentUsd", "reservedUsd", "remainingUsd"):
            if name in item or any(name in s for s in snap.slices.values()):
                item[name] = snap.sum(name)
        return item

    def _pool(self, pk: str, sk: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table, Key=to_item({"pk": pk, "sk": sk}),
                                    ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def set_counter_limit(self, pk: str, sk: str, limit: Decimal, expires: int | None = None) -> None:
        """Change a period's limit (USD) now: remaining moves by the difference, so the next request sees it.
        `expires`: the item's TTL (epoch seconds) when this creates it (an hour's item; None: kept).

        Optimistic: read the old limit, write with a condition on it, retry if a request moved it. A lowered
        limit on a hot key's counter (tollgate.store.escrow) is written only while its slices hold nothing
        (escrow.lower), so no slice spends what the new limit took away; a raised one clears its `warned`
        mark (escrow.WARNED), so the new limit's warning is sent when due.
        Raises Conflict (409) when the limit kept changing, or the slices kept borrowing (limit unchanged).
        """
        for _ in range(5):
            old = self._pool(pk, sk)  # the limit lives on the pool; remaining moves there
            if old is None or "limitUsd" not in old:
                # No budget written yet: the item is absent, or holds only a key's minute windows (a key-hour
                # item a count_tokens request created: tollgate.store.windows); those are kept.
                try:
                    update, vals, names = "SET limitUsd = :l, remainingUsd = :l, reservedUsd = :z, spentUsd = :z", \
                        {"l": limit, "z": Decimal(0)}, {}
                    if expires:  # as the ledger writes it (a minute window may have set it already)
                        update, vals["ttl"], names = update + ", #ttl = if_not_exists(#ttl, :ttl)", expires, {"#ttl": "ttl"}
                    self.client.update_item(
                        TableName=self.table, Key=to_item({"pk": pk, "sk": sk}), UpdateExpression=update,
                        ConditionExpression="attribute_not_exists(limitUsd) AND attribute_not_exists(remainingUsd)",
                        ExpressionAttributeValues=values(**vals), **({"ExpressionAttributeNames": names} if names else {}))
                    return
                except self.client.exceptions.ConditionalCheckFailedException:
                    continue
            old_limit = Decimal(old.get("limitUsd", limit))
            # A raised limit clears a hot counter's warned mark: the ledger marks it again when a read finds
            # it inside the new limit's warning zone (and that request sends the warning).
            clear = f" REMOVE {escrow.WARNED}" if limit > old_limit and old.get(escrow.WARNED) else ""
            update = {"UpdateExpression": "SET limitUsd = :new, remainingUsd = remainingUsd + :delta" + clear,
                      "ConditionExpression": "limitUsd = :old",
                      "ExpressionAttributeValues": values(new=limit, delta=limit - old_limit, old=old_limit)}
            if old.get(escrow.SHARDED) and limit < old_limit:
                if escrow.lower(self.client, self.table, pk, sk, update):
                    return
                continue
            try:
                self.client.update_item(TableName=self.table, Key=to_item({"pk": pk, "sk": sk}), **update)
                return
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
        raise Conflict("The budget limit kept changing; try again.", code="limit_change_conflict")


def summary(item: dict[str, Any] | None, limit: Decimal, period: str) -> dict[str, Any]:
    item = item or {}
    spent = Decimal(item.get("spentUsd", 0))
    reserved = Decimal(item.get("reservedUsd", 0))
    limit = Decimal(item.get("limitUsd", limit))
    return {"period": period, "limit_usd": usd(limit), "spent_usd": usd(spent), "reserved_usd": usd(reserved),
            "remaining_usd": usd(Decimal(item.get("remainingUsd", limit - spent - reserved)))}


def month_of(now: datetime) -> str:
    return budgets.month_sk(now).split("#", 1)[1]
