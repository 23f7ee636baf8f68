"""The cut-stream rule (tollgate.streaming.charged_usage), each branch, and the provider stream meters."""
from __future__ import annotations

from tollgate import streaming
from tollgate.estimate import Bound
from tollgate.providers._common import ProviderStream
from tollgate.providers.anthropic_provider import MessagesStreamMeter
from tollgate.providers.base import Usage
from tollgate.providers.openai_provider import ChatStreamMeter

BOUND = Bound(input_tokens=500, output_tokens=1000, max_tokens=1000, max_tokens_field="max_tokens", defaulted=False)
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _chat_event(delta=None, usage=None, choices=True):
    import json

    chunk = {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta or {}}] if choices else []}
    if usage:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _stream(meter, raw_chunks, fail_after=None):
    def chunks():
        for i, chunk in enumerate(raw_chunks):
            if fail_after is not None and i == fail_after:
                raise ConnectionResetError("provider dropped")
            yield chunk

    return ProviderStream(200, chunks(), meter, lambda: None, (ConnectionResetError,))


def test_a_stream_with_the_providers_final_usage_is_charged_exactly_that():
    meter = ChatStreamMeter("k", keep_usage_chunk=False)
    usage = {"prompt_tokens": 7, "completion_tokens": 3}
    stream = _stream(meter, [_chat_event({"content": "hey"}), _chat_event(usage=usage, choices=False),
                             b"data: [DONE]\n\n"])
    forwarded = list(stream)
    assert len(forwarded) == 2 and b"usage" not in b"".join(forwarded)  # the client did not ask for it
    assert meter.complete and not stream.dropped
    assert streaming.charged_usage(meter, BOUND, CHAT) == (Usage(input_tokens=7, output_tokens=3),
                                                           streaming.PROVIDER_USAGE)


def test_a_stream_cut_after_some_text_is_charged_the_input_bound_and_its_generated_bytes():
    meter = ChatStreamMeter("k", keep_usage_chunk=False)
    stream = _stream(meter, [_chat_event({"content": "héllo"}), _chat_event({"content": " world"}),
                             _chat_event({"content": "never"})], fail_after=2)
    assert len(list(stream)) == 2 and stream.dropped and not meter.complete
    usage, basis = streaming.charged_usage(meter, BOUND, CHAT)
    assert basis == streaming.GENERATED_BOUND
    assert usage.input_tokens == BOUND.input_tokens
    # more than the text's UTF-8 bytes (a token is at least one byte), never above max_tokens
    assert len("héllo world".encode()) <= usage.output_tokens == meter.generated_bytes < BOUND.output_tokens


def test_the_generated_bound_never_exceeds_what_was_reserved():
    meter = ChatStreamMeter("k", keep_usage_chunk=False)
    list(_stream(meter, [_chat_event({"content": "x" * 5000})]))
    usage, basis = streaming.charged_usage(meter, BOUND, CHAT)
    assert (usage.output_tokens, basis) == (BOUND.output_tokens, streaming.GENERATED_BOUND)


def test_a_stream_cut_before_anything_was_generated_is_charged_the_reserved_worst_case():
    meter = ChatStreamMeter("k", keep_usage_chunk=False)
    stream = _stream(meter, [_chat_event({"content": "never"})], fail_after=0)
    assert list(stream) == [] and stream.dropped
    assert streaming.charged_usage(meter, BOUND, CHAT) == (
        Usage(input_tokens=BOUND.input_tokens, output_tokens=BOUND.output_tokens), streaming.RESERVED_WORST_CASE)


def test_hidden_reasoning_is_charged_the_worst_case_whatever_text_arrived():
    meter = ChatStreamMeter("k", keep_usage_chunk=False)
    list(_stream(meter, [_chat_event({"content": "short"})]))
    usage, basis = streaming.charged_usage(meter, BOUND, {**CHAT, "reasoning_effort": "high"})
    assert basis == streaming.RESERVED_WORST_CASE and usage.output_tokens == BOUND.output_tokens


def test_anthropic_cut_after_message_start_keeps_the_reported_input_and_bounds_the_output():
    meter = MessagesStreamMeter("k")
    events = [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-haiku-4-5",'
        b'"usage":{"input_tokens":40,"cache_read_input_tokens":10,"output_tokens":1}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"abc"}}\n\n',
    ]
    stream = _stream(meter, [events[0][:30], events[0][30:] + events[1]])  # events split across reads
    assert b"".join(stream) == b"".join(events)
    usage, basis = streaming.charged_usage(meter, BOUND, {"model": "claude-haiku-4-5"})
    assert basis == streaming.GENERATED_BOUND
    assert (usage.input_tokens, usage.cached_input_tokens) == (50, 10)  # as the provider reported it
    assert usage.output_tokens == meter.generated_bytes >= len("abc")


def test_anthropic_message_delta_is_the_final_usage():
    meter = MessagesStreamMeter("k")
    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":5,'
           b'"output_tokens":1}}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":9}}\n\n'
           b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    list(_stream(meter, [raw]))
    assert meter.complete
    assert streaming.charged_usage(meter, BOUND, {}) == (Usage(input_tokens=5, output_tokens=9),
                                                         streaming.PROVIDER_USAGE)
