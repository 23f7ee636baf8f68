#!/bin/sh
# The gateway function's handler behind the AWS Lambda Web Adapter (stacks/web_adapter.py): the adapter's
# /opt/bootstrap runs this script instead of the Python runtime, then forwards every invocation to the ASGI
# app it starts, on 127.0.0.1:$AWS_LWA_PORT. Dependencies are in the layer (/opt/python).
PYTHONPATH="$LAMBDA_TASK_ROOT:/opt/python${PYTHONPATH:+:$PYTHONPATH}" exec python -m uvicorn handlers.gateway:app \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" --http h11 --loop asyncio --lifespan on \
    --no-server-header --no-date-header --no-access-log --log-level warning
