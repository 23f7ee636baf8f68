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
