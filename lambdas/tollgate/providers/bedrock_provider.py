"""Amazon Bedrock adapter, through boto3's `bedrock-runtime` client and the Lambda's IAM role (no API key).

- chat completions (OpenAI wire format), on any Bedrock model: Converse (`call`) and ConverseStream
  (`open_stream`), translated by tollgate.translate.openai_converse. The client gets OpenAI JSON / SSE.
- messages (Anthropic wire format), on Bedrock's Claude models: InvokeModel and
  InvokeModelWithResponseStream with the Anthropic body (`anthropic_version: bedrock-2023-05-31`; the model
  is in the URL, not the body). Bedrock answers the Messages API's own JSON and events, passed on as they are.

Model ids are Bedrock's: a foundation model (`amazon.nova-lite-v1:0`) or a cross-region inference profile
(`us.`, `eu.`, `apac.`, `global.` + the model id). Region: Settings.bedrock_region (else boto3's own);
Settings.bedrock_endpoint_url points the client elsewhere (the local stack's fake provider).

Errors (Bedrock runtime API reference, "Errors" of Converse / InvokeModel), as the other adapters raise them:
ThrottlingException / ServiceQuotaExceededException -> ProviderRejected(429) (the service turns it into a
503 worth retrying); ValidationException -> ProviderRejected(400); ResourceNotFoundException ->
ProviderRejected(404); AccessDeniedException -> ProviderFailed(503, code bedrock_model_access) telling the
operator to enable model access; ModelNotReadyException / ServiceUnavailableException -> ProviderFailed(503);
InternalServerException, ModelTimeoutException, ModelErrorException, timeouts, connection errors ->
ProviderFailed(502).

boto3 is imported on first use, never at module import (cold start).
"""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any, Iterator

from tollgate import errors
from tollgate.providers import _common
from tollgate.providers.anthropic_provider import MessagesStreamMeter, usage_from as anthropic_usage
from tollgate.providers.base import CHAT, MESSAGES, ProviderResult
from tollgate.providers.openai_provider import ChatStreamMeter, usage_from as openai_usage
from tollgate.translate import openai_converse

ANTHROPIC_VERSION = "bedrock-2023-05-31"
CROSS_REGION_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")
# Messages body fields Bedrock takes in the URL or headers instead, or does not accept.
_NOT_IN_INVOKE_BODY = ("model", "stream")
_REJECTED = {"ValidationException": 400, "ResourceNotFoundException": 404, "ThrottlingException": 429,
             "ServiceQuotaExceededException": 429}
_UNAVAILABLE = ("ModelNotReadyException", "ServiceUnavailableException")


def foundation_model(model_id: str) -> str:
    """The foundation model id behind a cross-region inference profile id ("us.anthropic.x" -> "anthropic.x")."""
    for prefix in CROSS_REGION_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix):]
    return model_id


def is_claude(model_id: str) -> bool:
    """Whether a Bedrock model id is one of Anthropic's (served with the Anthropic body by InvokeModel)."""
    return foundation_model(model_id).startswith("anthropic.")


def translate_error(exc: Exception, model: str) -> errors.TollgateError:
    """A boto3 / botocore exception as our domain error (see the module docstring)."""
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, ParamValidationError
    from botocore.exceptions import ReadTimeoutError

    if isinstance(exc, ParamValidationError):  # botocore checked the request before sending it: the client's input
        return errors.InvalidRequest(f"Bedrock cannot take this request: {exc}", code="invalid_request_body")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message") or code or "Bedrock refused the request"
        if code == "AccessDeniedException":
            return errors.ProviderFailed(
                f"Bedrock denied access to '{model}': enable access to this model (and, for an inference profile, "
                "in every region it routes to) in the Bedrock console's Model access page, and allow the gateway "
                "role bedrock:InvokeModel on it. Tell the operator.", code="bedrock_model_access", status=503)
        if code in _REJECTED:
            return errors.ProviderRejected(message, status=_REJECTED[code], code=code)
        if code in _UNAVAILABLE:
            return errors.ProviderFailed(f"Bedrock: {message}", code="provider_unavailable", status=503)
        return errors.ProviderFailed(f"Bedrock error ({code or 'unknown'}): {message}")
    if isinstance(exc, ReadTimeoutError):
        return errors.ProviderFailed("Bedrock timed out")
    if isinstance(exc, BotoConnectionError):
        return errors.ProviderFailed("could not reach Bedrock")
    return errors.ProviderFailed(f"the Bedrock call failed ({type(exc).__name__})")


def _boto_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError

    return (BotoCoreError, ClientError, HTTPError, OSError)


def invoke_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages request body as InvokeModel takes it for Claude: without model and stream, with
    anthropic_version."""
    out = {k: v for k, v in body.items() if k not in _NOT_IN_INVOKE_BODY}
    out["anthropic_version"] = ANTHROPIC_VERSION
    return out


class BedrockProvider:
    """The `bedrock` provider (tollgate.providers.base.Provider). `api_key` is ignored: the IAM role signs."""

    name = "bedrock"

    def __init__(self, settings: Any):
        self._settings = settings
        self._lock = threading.Lock()
        self._runtime: Any = None
        self._regions: dict[str, BedrockProvider] = {}

    def in_region(self, region: str) -> "BedrockProvider":
        """This adapter calling Bedrock in another region (a deployment's `region`); built once per region."""
        if region == self._settings.bedrock_region:
            return self
        with self._lock:
            regional = self._regions.get(region)
            if regional is None:
                regional = self._regions[region] = BedrockProvider(replace(self._settings, bedrock_region=region))
            return regional

    @property
    def region(self) -> str | None:
        """The AWS region this adapter calls: the configured one (a deployment's, else Settings.bedrock_region),
        else boto3's own (the Lambda's AWS_REGION); None where boto3 has none either."""
        if self._settings.bedrock_region:
            return self._settings.bedrock_region
        from botocore.exceptions import NoRegionError

        try:
            return self._client().meta.region_name
        except NoRegionError:
            return None

    def _client(self) -> Any:
        with self._lock:
            if self._runtime is None:
                import boto3
                from botocore.config import Config

                s = self._settings
                config = Config(read_timeout=s.provider_timeout_s, connect_timeout=10,
                                retries={"mode": "standard", "total_max_attempts": s.provider_max_retries + 1})
                self._runtime = boto3.client("bedrock-runtime", region_name=s.bedrock_region,
                                             endpoint_url=s.bedrock_endpoint_url, config=config)
            return self._runtime

    def call(self, operation: str, body: dict[str, Any], *, api_key: str = "") -> ProviderResult:
        model = _model(body)
        _check(operation, model)
        try:
            if operation == CHAT:
                response = self._client().converse(**openai_converse.to_converse(body))
                doc = openai_converse.from_converse(response, model)
                return ProviderResult(200, json.dumps(doc).encode(), "application/json",
                                      openai_usage(doc["usage"]), model)
            response = self._client().invoke_model(modelId=model, body=json.dumps(invoke_body(body)),
                                                   contentType="application/json", accept="application/json")
            raw = response["body"].read()
        except _boto_errors() as exc:
            raise translate_error(exc, model) from None
        doc = _common.json_document(raw)
        return ProviderResult(200, raw, "application/json", anthropic_usage(doc.get("usage") or {}, body),
                              doc.get("model") or model)

    def open_stream(self, operation: str, body: dict[str, Any], *, api_key: str = "") -> _common.ProviderStream:
        """A streamed answer, open once Bedrock has answered its status. Chat: ConverseStream events become
        OpenAI chunks (the usage chunk is dropped unless the client asked for it); messages: the Anthropic
        events InvokeModelWithResponseStream carries, as SSE."""
        model = _model(body)
        _check(operation, model)
        try:
            if operation == CHAT:
                events = self._client().converse_stream(**openai_converse.to_converse(body))["stream"]
                keep = bool((body.get("stream_options") or {}).get("include_usage"))
                meter: _common.StreamMeter = ChatStreamMeter("", keep_usage_chunk=keep)
                chunks = _chat_sse(events, model)
            else:
                events = self._client().invoke_model_with_response_stream(
                    modelId=model, body=json.dumps(invoke_body(body)), contentType="application/json",
                    accept="application/json")["body"]
                meter = MessagesStreamMeter("", body)
                chunks = _messages_sse(events)
        except _boto_errors() as exc:
            raise translate_error(exc, model) from None
        return _common.ProviderStream(200, chunks, meter, events.close, _boto_errors())

    def list_models(self, *, api_key: str = "") -> list[dict[str, Any]]:
        """Bedrock's models are the priced ones (GET /v1/models lists the catalogue); nothing to ask AWS."""
        return []

    def validate_key(self, api_key: str, *, timeout_s: float) -> bool:
        raise errors.InvalidRequest("Bedrock takes no API key: the gateway calls it with its IAM role.",
                                    code="byok_not_supported")


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise errors.InvalidRequest("'model' is required.", param="model")
    return model


def _check(operation: str, model: str) -> None:
    if operation == MESSAGES and not is_claude(model):
        raise errors.InvalidRequest(f"'{model}' is not a Claude model; call it through /v1/chat/completions.",
                                    param="model")
    if operation not in (CHAT, MESSAGES):
        raise errors.InvalidRequest(f"operation {operation!r} is not served by the Bedrock adapter")


def _chat_sse(events: Any, model: str) -> Iterator[bytes]:
    translator = openai_converse.StreamTranslator(model)
    for event in events:
        for chunk in translator.feed(event):
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def _messages_sse(events: Any) -> Iterator[bytes]:
    for event in events:
        raw = (event.get("chunk") or {}).get("bytes")
        if raw:
            kind = (_common.json_or_none(raw) or {}).get("type", "message")
            yield b"event: " + str(kind).encode() + b"\ndata: " + raw + b"\n\n"
