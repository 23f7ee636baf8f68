"""The feedback-analysis agent from the article, with the guards its original lacked.

For a batch of customer reviews: extract each review's sentiment, classify its main issue, and write a
summary report, as a ReAct loop over three tools. What changed from the article's agent:

- an empty tool result is an answer, not a failure: a classification that comes back empty (in the
  article: every non-English review) is recorded as "unclassified" with the reason, and the agent
  moves on instead of asking again;
- guards of its own: max iterations, consecutive identical tool calls, consecutive failures, wall
  clock (agents/guards.py);
- the gateway's refusals (run budget spent, loop detected) end the run with what was done so far;
- progress is checkpointed after every step, so a run interrupted by a stopping worker resumes where
  it was and does not pay again for the steps it had finished.

Prompts carry the review text only in the two per-review tools; the controller and the report see ids
and labels. Under the fake provider a review containing `[[fake:empty]]` (the test data's non-English
reviews) makes both per-review calls answer empty.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from agents import contract
from agents.base import Outcome, RunContext, reviews_of
from agents.gateway import GatewayError
from agents.guards import Guards, GuardState, GuardTripped
from agents.react import Decision, Observation, ReActLoop

SENTIMENTS = ("positive", "negative", "neutral", "mixed")
CATEGORIES = ("billing", "bug", "performance", "usability", "feature_request", "praise", "other")
UNKNOWN = "unknown"
UNCLASSIFIED = "unclassified"
EMPTY_REASON = "The classifier returned no result (in the article's incident: reviews not in English)."

TASK = ("You are a feedback-analysis agent. For a batch of customer reviews you extract each review's "
        "sentiment, classify its main issue, then write one summary report.")
SENTIMENT_PROMPT = ("Label the sentiment of the customer review. Answer with exactly one word: "
                    + ", ".join(SENTIMENTS) + ".")
CLASSIFY_PROMPT = ("Classify the main issue raised in the customer review. Answer with exactly one of: "
                   + ", ".join(CATEGORIES) + ".")
REPORT_PROMPT = ("Write a short summary report of customer feedback for a product team, from the analysed "
                 "results below: the overall sentiment, the main issues, and which reviews could not be "
                 "classified and why. Plain text, at most 200 words.")

EXTRACT_SENTIMENT = "extract_sentiment"
CLASSIFY_ISSUE = "classify_issue"
WRITE_REPORT = "write_report"


def _label(text: str, labels: tuple[str, ...]) -> str | None:
    lowered = text.lower().replace("-", "_")
    found = [(m.start(), label) for label in labels
             for m in [re.search(rf"\b{re.escape(label)}\b", lowered)] if m]
    return min(found)[1] if found else None


@dataclass
class _Tool:
    name: str
    description: str
    fn: Any

    def __call__(self, argument: str | None) -> Observation:
        return self.fn(argument)


class FeedbackAnalysisAgent:
    name = contract.FEEDBACK_ANALYSIS

    def run(self, ctx: RunContext) -> Outcome:
        reviews = reviews_of(ctx.input)
        state = _State.restore(ctx.checkpoint, reviews)
        # A batch needs two steps per review and one report; the rest is slack for a wandering model.
        limits = replace(ctx.limits, max_iterations=min(ctx.limits.max_iterations, 2 * len(reviews) + 1 + 10))
        guards = Guards(limits, GuardState.from_json(state.guards))
        agent = _Run(ctx, reviews, state, guards)
        try:
            agent.loop().run()
        except GuardTripped as stop:
            return agent.outcome(contract.FAILED, stop.stop_reason, stop.message)
        except GatewayError as refused:
            if not refused.fatal:
                raise
            return agent.outcome(contract.FAILED, refused.stop_reason, f"The gateway refused a call: {refused.message}")
        return agent.outcome(contract.SUCCEEDED, contract.COMPLETED,
                             f"Analysed {len(reviews)} reviews and wrote the report.")


@dataclass
class _State:
    results: dict[str, dict[str, str]]  # review id -> {"sentiment", "category", "reason"?}
    report: str | None
    trace: list[str]
    guards: dict[str, Any] | None
    model_decisions: int = 0
    plan_decisions: int = 0

    @classmethod
    def restore(cls, checkpoint: dict[str, Any] | None, reviews: list[dict[str, str]]) -> "_State":
        cp = checkpoint or {}
        results = {r["id"]: dict((cp.get("results") or {}).get(r["id"]) or {}) for r in reviews}
        return cls(results=results, report=cp.get("report"), trace=list(cp.get("trace") or []),
                   guards=cp.get("guards"), model_decisions=int(cp.get("model_decisions", 0)),
                   plan_decisions=int(cp.get("plan_decisions", 0)))


class _Run:
    def __init__(self, ctx: RunContext, reviews: list[dict[str, str]], state: _State, guards: Guards):
        self.ctx = ctx
        self.reviews = reviews
        self.text = {r["id"]: r["text"] for r in reviews}
        self.state = state
        self.guards = guards
        self.tools = {t.name: t for t in (
            _Tool(EXTRACT_SENTIMENT, "the sentiment of one review (argument: its id)", self.extract_sentiment),
            _Tool(CLASSIFY_ISSUE, "the main issue of one review (argument: its id)", self.classify_issue),
            _Tool(WRITE_REPORT, "the summary report, once every review is analysed (no argument)", self.write_report),
        )}

    def loop(self) -> ReActLoop:
        return ReActLoop(self.ctx, self.guards, self.tools, task=TASK, progress=self.progress, plan=self.plan,
                         valid=self.valid, checkpoint=self.checkpoint, trace=self.state.trace,
                         on_decision=self._count)

    def _count(self, decision: Decision) -> None:
        if decision.source == "model":
            self.state.model_decisions += 1
        else:
            self.state.plan_decisions += 1

    # -- the plan, and what the model may choose ------------------------------------------------------
    def plan(self) -> Decision | None:
        for review in self.reviews:
            done = self.state.results[review["id"]]
            if "sentiment" not in done:
                return Decision(EXTRACT_SENTIMENT, review["id"], "plan")
            if "category" not in done:
                return Decision(CLASSIFY_ISSUE, review["id"], "plan")
        if self.state.report is None:
            return Decision(WRITE_REPORT, None, "plan")
        return None

    def valid(self, tool: str, argument: str | None) -> bool:
        if tool == WRITE_REPORT:
            return all("sentiment" in r and "category" in r for r in self.state.results.values())
        return argument in self.text

    def progress(self) -> str:
        results = self.state.results
        sentiment = [i for i, r in results.items() if "sentiment" in r]
        classified = [i for i, r in results.items() if "category" in r]
        return (f"Reviews: {len(self.reviews)} (ids: {', '.join(results)}).\n"
                f"Sentiment done for: {', '.join(sentiment) or 'none'}.\n"
                f"Classified: {', '.join(classified) or 'none'}.\n"
                f"Report: {'written' if self.state.report is not None else 'not written'}.")

    def checkpoint(self) -> dict[str, Any]:
        return {"results": self.state.results, "report": self.state.report, "trace": self.state.trace,
                "guards": self.guards.snapshot(), "calls": self.ctx.llm.calls,
                "model_decisions": self.state.model_decisions, "plan_decisions": self.state.plan_decisions}

    # -- tools ----------------------------------------------------------------------------------------
    def _ask(self, system: str, review_id: str, max_tokens: int) -> str:
        return self.ctx.llm.chat([{"role": "system", "content": system},
                                  {"role": "user", "content": f"Review:\n{self.text[review_id]}"}],
                                 max_tokens=max_tokens).text.strip()

    def extract_sentiment(self, review_id: str | None) -> Observation:
        try:
            answer = self._ask(SENTIMENT_PROMPT, review_id, max_tokens=5)
        except GatewayError as e:
            if e.fatal:
                raise
            return Observation(False, f"failed: {e.message[:80]}")
        label = _label(answer, SENTIMENTS) or UNKNOWN
        self.state.results[review_id]["sentiment"] = label
        return Observation(True, label if answer else f"{UNKNOWN} (empty answer)")

    def classify_issue(self, review_id: str | None) -> Observation:
        try:
            answer = self._ask(CLASSIFY_PROMPT, review_id, max_tokens=10)
        except GatewayError as e:
            if e.fatal:
                raise
            return Observation(False, f"failed: {e.message[:80]}")
        result = self.state.results[review_id]
        if not answer:  # an empty result is an answer: recorded, never retried
            result["category"], result["reason"] = UNCLASSIFIED, EMPTY_REASON
            return Observation(True, f"{UNCLASSIFIED} (empty result, not retried)")
        label = _label(answer, CATEGORIES)
        result["category"] = label or "other"
        if label is None:
            result["reason"] = "The model answered outside the categories."
        return Observation(True, result["category"])

    def write_report(self, argument: str | None) -> Observation:
        findings = [{"id": i, **r} for i, r in self.state.results.items()]
        try:
            text = self.ctx.llm.chat([{"role": "system", "content": REPORT_PROMPT},
                                      {"role": "user", "content": json.dumps(findings, ensure_ascii=False)}],
                                     max_tokens=400).text.strip()
        except GatewayError as e:
            if e.fatal:
                raise
            return Observation(False, f"failed: {e.message[:80]}")
        self.state.report = text or _plain_report(self.summary())
        return Observation(True, "report written" if text else "report written (model answered empty: plain summary)")

    # -- the result -----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        results = self.state.results
        return {
            "reviews": len(results),
            "analysed": sum(1 for r in results.values() if "sentiment" in r and "category" in r),
            "by_sentiment": dict(Counter(r["sentiment"] for r in results.values() if "sentiment" in r)),
            "by_category": dict(Counter(r["category"] for r in results.values() if "category" in r)),
            "unclassified": [{"id": i, "reason": r.get("reason", "")} for i, r in results.items()
                             if r.get("category") == UNCLASSIFIED],
        }

    def outcome(self, status: str, stop_reason: str, reason: str) -> Outcome:
        result = {
            "complete": self.state.report is not None,
            "reviews": [{"id": i, **r} for i, r in self.state.results.items()],
            "summary": self.summary(),
            "report": self.state.report,
            "steps": self.state.trace,
            "decisions": {"model": self.state.model_decisions, "plan": self.state.plan_decisions},
        }
        return Outcome(status, stop_reason, reason, result, self.guards.state.iterations)


def _plain_report(summary: dict[str, Any]) -> str:
    lines = [f"{summary['analysed']} of {summary['reviews']} reviews analysed.",
             "Sentiment: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["by_sentiment"].items())) + ".",
             "Issues: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["by_category"].items())) + "."]
    if summary["unclassified"]:
        lines.append("Unclassified: " + ", ".join(u["id"] for u in summary["unclassified"]) + ".")
    return "\n".join(lines)
