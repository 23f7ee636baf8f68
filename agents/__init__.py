"""The Tollgate agent service: a long-running worker (ECS Fargate) that takes agent runs from SQS and
runs them, calling the LLM only through the gateway's /internal/v1 routes, signed with SigV4.

Deployed as its own image (agents/Dockerfile, built from this directory alone), so it imports nothing
from lambdas/: the few facts it shares with the runs API are in agents/contract.py, pinned by a test.
"""
