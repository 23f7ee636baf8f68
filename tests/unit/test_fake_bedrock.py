"""The fake provider's Bedrock section: its event-stream frames decode with botocore's own decoder."""
from __future__ import annotations

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from local.fake_provider import event_stream_frame


def test_frames_decode_with_botocore_and_a_corrupt_one_is_refused():
    frame = event_stream_frame({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"assistant"}')
    buffer = EventStreamBuffer()
    buffer.add_data(frame + frame)
    messages = list(buffer)
    assert len(messages) == 2
    assert messages[0].headers == {":event-type": "messageStart", ":message-type": "event"}
    assert messages[0].payload == b'{"role":"assistant"}'

    corrupt = EventStreamBuffer()
    corrupt.add_data(frame[:-5] + b"X" + frame[-4:])
    with pytest.raises(ChecksumMismatch):
        list(corrupt)


# --- the in-band controls, through boto3's own bedrock-runtime client (issue 13 item 6) ---------------------

NOVA = "us.amazon.nova-lite-v1:0"


@pytest.fixture
def runtime(fake_provider):
    import boto3
    from botocore.config import Config

    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake_provider.url,
                        aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake",
                        config=Config(retries={"total_max_attempts": 1}))


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"text": text}]}]


def test_throttling_and_access_denied_arrive_as_bedrocks_exceptions(runtime):
    from botocore.exceptions import ClientError

    for control, code in (("[[fake:status=429]]", "ThrottlingException"),
                          ("[[fake:status=403]]", "AccessDeniedException"),
                          ("[[fake:bedrock_status=503]]", "ServiceUnavailableException")):
        with pytest.raises(ClientError) as caught:
            runtime.converse(modelId=NOVA, messages=_ask(f"hi {control}"))
        assert caught.value.response["Error"]["Code"] == code


def test_empty_and_completion_tokens(runtime):
    empty = runtime.converse(modelId=NOVA, messages=_ask("hi [[fake:empty]]"))
    assert empty["output"]["message"]["content"] in ([], [{"text": ""}]) and empty["usage"]["outputTokens"] == 0
    sized = runtime.converse(modelId=NOVA, messages=_ask("hi [[fake:completion_tokens=5]]"),
                             inferenceConfig={"maxTokens": 3})
    assert sized["usage"]["outputTokens"] == 3 and sized["stopReason"] == "max_tokens"


def test_a_tool_call_when_asked_and_offered(runtime):
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}}]}
    answer = runtime.converse(modelId=NOVA, messages=_ask("weather? [[fake:tool_call]]"), toolConfig=tools)
    [use] = [b["toolUse"] for b in answer["output"]["message"]["content"] if "toolUse" in b]
    assert (use["name"], use["input"], answer["stopReason"]) == ("get_weather", {"city": "lorem"}, "tool_use")


def test_a_stream_dropped_mid_answer_has_no_final_usage(runtime):
    whole = [e for e in runtime.converse_stream(modelId=NOVA, messages=_ask("hi"))["stream"]]
    assert "metadata" in whole[-1] and whole[-1]["metadata"]["usage"]["outputTokens"] > 0
    from urllib3.exceptions import ProtocolError

    cut = []
    with pytest.raises(ProtocolError):  # the connection ends mid-stream (what the gateway's stream path sees)
        for event in runtime.converse_stream(modelId=NOVA, messages=_ask("hi [[fake:drop_after=2]]"))["stream"]:
            cut.append(event)
    assert 0 < len(cut) <= 2 and not any("metadata" in e for e in cut)
