"""The agents a run may name (tollgate.runs.AGENTS lists the same names for the runs API)."""
from __future__ import annotations

from agents import contract
from agents.base import Agent
from agents.feedback import FeedbackAnalysisAgent
from agents.naive import NaiveFeedbackAgent

AGENTS: dict[str, type] = {
    contract.FEEDBACK_ANALYSIS: FeedbackAnalysisAgent,
    contract.NAIVE_FEEDBACK: NaiveFeedbackAgent,
}


def agent(name: str) -> Agent:
    return AGENTS[name]()
