"""The worker loop: take a run from SQS, run its agent, record the outcome, delete the message.

One run at a time per worker. While it runs, a heartbeat keeps the message hidden and the run's lease
alive. On SIGTERM (ECS stopping the task: scale-in, deployment) the worker takes no new message,
lets the agent finish the step it is in, then marks the run `interrupted` with its checkpoint and
makes the message visible again (ChangeMessageVisibility 0), so another worker resumes it from that
checkpoint with what is left of its budget. The budget lives on the run's budget item, which only the
gateway moves: no attempt starts with a fresh budget, and no finished step is paid for twice.

Outcomes: the agent's own (succeeded, or failed with a guard's or the gateway's stop reason); a
gateway refusal the agent did not catch (the naive agent: budget_exhausted, loop_detected); or any
other exception (agent_error). A failed run is final: it is not retried, since a retry would repeat
what failed and pay for it again.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from agents import contract, registry
from agents.base import Interrupted, Outcome, RunContext
from agents.config import WorkerConfig
from agents.gateway import GatewayClient, GatewayError, Transport
from agents.guards import GuardTripped
from agents.runs import LostRun, WorkerRunStore

log = logging.getLogger("agents.worker")

INTERRUPTED_REASON = "The worker was stopped (SIGTERM); the run resumes from its last checkpoint."


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class Worker:
    def __init__(self, config: WorkerConfig, *, sqs: Any, dynamodb: Any, transport: Transport,
                 clock: Callable[[], datetime] = _utc_now, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.sqs = sqs
        self.store = WorkerRunStore(config.runs_table, config.budgets_table, dynamodb, config.worker_id)
        self.transport = transport
        self.clock = clock
        self.sleep = sleep
        self.stopping = threading.Event()
        self.current_run: str | None = None

    def request_stop(self) -> None:
        """From the SIGTERM handler: take nothing new; hand back the run in hand at its next step."""
        if not self.stopping.is_set():
            log.info("stop requested", extra={"run_id": self.current_run})
        self.stopping.set()

    # -- the loop ---------------------------------------------------------------------------------------
    def run_forever(self) -> None:
        log.info("worker started", extra={"worker": self.config.worker_id})
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - one bad message or a blip must not end the worker
                log.exception("poll failed")
                self.stopping.wait(5)
        log.info("worker stopped", extra={"worker": self.config.worker_id})

    def poll_once(self, wait_s: int | None = None) -> str | None:
        """Take at most one message and process it; the run id, if a message came."""
        response = self.sqs.receive_message(
            QueueUrl=self.config.queue_url, MaxNumberOfMessages=1,
            WaitTimeSeconds=self.config.wait_s if wait_s is None else wait_s,
            VisibilityTimeout=self.config.visibility_s, MessageSystemAttributeNames=["ApproximateReceiveCount"])
        for message in response.get("Messages", []):
            return self.process(message)
        return None

    def process(self, message: dict[str, Any]) -> str | None:
        try:
            run_id = str(json.loads(message["Body"])["run_id"])
        except (ValueError, KeyError, TypeError):
            log.error("malformed message deleted", extra={"message_id": message.get("MessageId")})
            self._delete(message)
            return None
        if self.stopping.is_set():  # received while stopping: give it straight back
            self._release(message)
            return run_id
        now = self.clock()
        item = self.store.claim(run_id, iso(now), iso(now + timedelta(seconds=self.config.visibility_s)))
        if item is None:
            self._not_claimed(run_id, message)
            return run_id
        self.current_run = run_id
        try:
            self._run(run_id, item, message)
        finally:
            self.current_run = None
        return run_id

    # -- one run ----------------------------------------------------------------------------------------
    def _run(self, run_id: str, item: dict[str, Any], message: dict[str, Any]) -> None:
        checkpoint = json.loads(item["checkpointJson"]) if item.get("checkpointJson") else None
        calls = int((checkpoint or {}).get("calls", item.get("calls", 0)))
        heartbeat = _Heartbeat(self, run_id, message)

        def should_stop() -> bool:  # told to stop (SIGTERM), or another worker holds the run now
            return self.stopping.is_set() or heartbeat.lost.is_set()

        llm = GatewayClient(self.transport, user=item["user"], run_id=run_id, model=item["model"], first_call=calls,
                            sleep=self.sleep, should_stop=should_stop)
        ctx = RunContext(run_id=run_id, user=item["user"], input=json.loads(item["inputJson"]), llm=llm,
                         limits=self.config.limits, checkpoint=checkpoint, should_stop=should_stop,
                         log=logging.getLogger(f"agents.run.{item['agent']}"),
                         iterations=int(item.get("iterations", 0)))

        def save(state: dict[str, Any], iterations: int) -> None:
            ctx.iterations = iterations
            self.store.checkpoint(run_id, iso(self.clock()), state, iterations, llm.calls)

        ctx.save = save
        log.info("run started", extra={"run_id": run_id, "agent": item["agent"], "attempt": int(item.get("attempts", 1)),
                                       "resumed": checkpoint is not None})
        heartbeat.start()
        try:
            outcome = self._outcome(run_id, item, ctx)
        except Interrupted as stop:
            heartbeat.stop()
            if heartbeat.lost.is_set():
                log.warning("run lost to another worker; stopped here", extra={"run_id": run_id})
                return
            self.store.interrupt(run_id, iso(self.clock()), stop.checkpoint, stop.iterations, llm.calls,
                                 INTERRUPTED_REASON)
            self._release(message)
            log.info("run interrupted", extra={"run_id": run_id, "calls": llm.calls})
            return
        except LostRun:
            log.warning("run lost to another worker; its outcome here is dropped", extra={"run_id": run_id})
            return
        finally:
            heartbeat.stop()
        budget = self.store.budget(run_id) or {}
        cost = Decimal(budget.get("spentUsd", 0)) if budget else None
        try:
            self.store.finish(run_id, iso(self.clock()), status=outcome.status, stop_reason=outcome.stop_reason,
                              reason=outcome.reason, result=outcome.result, iterations=outcome.iterations,
                              calls=llm.calls, cost_usd=cost)
        except LostRun:
            log.warning("run lost to another worker before it was recorded", extra={"run_id": run_id})
            return
        self._delete(message)
        log.info("run finished", extra={"run_id": run_id, "status": outcome.status, "stop_reason": outcome.stop_reason,
                                        "calls": llm.calls, "cost_usd": str(cost)})

    def _outcome(self, run_id: str, item: dict[str, Any], ctx: RunContext) -> Outcome:
        budget = self.store.budget(run_id)
        if budget is None:
            return Outcome(contract.FAILED, contract.AGENT_ERROR, "The run has no budget item.", None, ctx.iterations)
        if Decimal(budget.get("remainingUsd", 0)) <= 0:
            return Outcome(contract.FAILED, contract.BUDGET_EXHAUSTED, "The run's budget is spent.", None,
                           ctx.iterations)
        if item.get("agent") not in registry.AGENTS:
            return Outcome(contract.FAILED, contract.AGENT_ERROR, f"Unknown agent {item.get('agent')!r}.", None, 0)
        try:
            return registry.agent(item["agent"]).run(ctx)
        except (Interrupted, LostRun):
            raise
        except GatewayError as e:  # a refusal the agent did not handle (the naive agent handles none)
            return Outcome(contract.FAILED, e.stop_reason, f"The gateway refused a call: {e.message}", None,
                           ctx.iterations)
        except GuardTripped as e:
            return Outcome(contract.FAILED, e.stop_reason, e.message, None, ctx.iterations)
        except Exception as e:  # noqa: BLE001 - recorded on the run; the worker carries on
            log.exception("agent failed", extra={"run_id": run_id})
            return Outcome(contract.FAILED, contract.AGENT_ERROR, f"The agent failed: {type(e).__name__}.", None,
                           ctx.iterations)

    def _not_claimed(self, run_id: str, message: dict[str, Any]) -> None:
        current = self.store.get(run_id)
        if current is None or current.get("status") in contract.TERMINAL:
            log.info("message for a missing or finished run deleted", extra={"run_id": run_id})
            self._delete(message)
            return
        # Held by another worker under a live lease (a duplicate delivery): look again when it ends.
        lease = current.get("leaseUntil")
        try:
            left = (datetime.fromisoformat(str(lease).replace("Z", "+00:00")) - self.clock()).total_seconds()
        except ValueError:
            left = self.config.visibility_s
        self._visibility(message, int(min(self.config.visibility_s, max(1, left + 5))))

    # -- SQS --------------------------------------------------------------------------------------------
    def _delete(self, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _release(self, message: dict[str, Any]) -> None:
        self._visibility(message, 0)

    def _visibility(self, message: dict[str, Any], seconds: int) -> None:
        self.sqs.change_message_visibility(QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                           VisibilityTimeout=seconds)


class _Heartbeat:
    """Keeps the message hidden and the lease alive while a run is in hand."""

    def __init__(self, worker: Worker, run_id: str, message: dict[str, Any]):
        self.worker = worker
        self.run_id = run_id
        self.message = message
        self._done = threading.Event()
        self.lost = threading.Event()  # the lease went to another worker: this one must stop calling
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        cfg = self.worker.config
        while not self._done.wait(cfg.heartbeat_s):
            try:
                self.worker._visibility(self.message, cfg.visibility_s)
                now = self.worker.clock()
                self.worker.store.renew(self.run_id, iso(now), iso(now + timedelta(seconds=cfg.visibility_s)))
            except LostRun:
                log.warning("lease lost", extra={"run_id": self.run_id})
                self.lost.set()
                return
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.exception("heartbeat failed", extra={"run_id": self.run_id})
