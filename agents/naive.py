"""The article's agent, bug included: it retries an empty classification forever.

    2024-01-15 14:23:15 - Agent: Classifying review text...
    2024-01-15 14:23:18 - Tool: Classification failed - no result
    2024-01-15 14:23:19 - Agent: Let me try classifying again...
    ... (repeats 891 times)

It has no guards of its own on purpose: no iteration cap, no repeated-call check, no wall clock, no
budget check. It exists to replay the incident against the gateway, which must stop it: the loop guard
refuses the same request sent too often, and the run's budget refuses the call that cannot be paid.
Each attempt is the same large request (the article: 4,000 tokens of GPT-4 per retry).

The one thing it honours is the worker's stop request (SIGTERM): that is the worker's contract, not a
guard. It keeps no checkpoint: an interrupted run starts again, with what is left of its budget.
"""
from __future__ import annotations

from agents import contract
from agents.base import Interrupted, Outcome, RunContext, reviews_of

CATEGORIES = ("billing", "bug", "performance", "usability", "feature_request", "praise", "other")
_EXAMPLES = (
    ("I was charged twice for my subscription this month.", "billing"),
    ("The app crashes every time I upload a photo.", "bug"),
    ("Search takes ten seconds to return anything.", "performance"),
    ("I cannot find the export button anywhere.", "usability"),
    ("Please add a dark mode.", "feature_request"),
    ("Support solved my problem in five minutes, thank you!", "praise"),
    ("The refund never arrived after I cancelled.", "billing"),
    ("Notifications arrive hours late.", "performance"),
)


def classification_prompt() -> str:
    """Instructions and worked examples: about 16 KB, so 4,000 tokens or so per call, as in the article."""
    lines = ["You are an expert customer-feedback analyst. Classify the main issue of the review into exactly "
             "one category: " + ", ".join(CATEGORIES) + ". Think about the customer's intent, the product area, "
             "and the severity. Answer with the category only.", "", "Examples:"]
    n = 0
    while sum(len(line) + 1 for line in lines) < 16_000:
        text, label = _EXAMPLES[n % len(_EXAMPLES)]
        n += 1
        lines.append(f"Example {n}: review: {text!r} -> category: {label}")
    return "\n".join(lines)


class NaiveFeedbackAgent:
    name = contract.NAIVE_FEEDBACK

    def run(self, ctx: RunContext) -> Outcome:
        prompt = classification_prompt()
        labels: dict[str, str] = {}
        attempts = 0
        for review in reviews_of(ctx.input):
            ctx.log.info("Agent: Classifying review text...", extra={"review": review["id"]})
            while True:  # the bug: an empty result is taken for a failure, and retried, forever
                if ctx.should_stop():
                    raise Interrupted(None, attempts)
                attempts += 1
                ctx.iterations = attempts
                reply = ctx.llm.chat([{"role": "system", "content": prompt},
                                      {"role": "user", "content": f"Review:\n{review['text']}"}],
                                     max_tokens=256)
                if reply.text.strip():
                    labels[review["id"]] = reply.text.strip().split()[0].lower()
                    break
                ctx.log.info("Tool: Classification failed - no result", extra={"review": review["id"]})
                ctx.log.info("Agent: Let me try classifying again...", extra={"review": review["id"]})
        return Outcome(contract.SUCCEEDED, contract.COMPLETED, "Classified every review.",
                       {"labels": labels}, attempts)
