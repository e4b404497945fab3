"""Each fault against pika, showing what pika does about it."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

def connect(broker, **params):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port, **params))


def test_close_channel_after_third_publish(broker, faults):
    fault = faults.close_channel(code=406, text="PRECONDITION_FAILED - injected", on="basic.publish",
                                 after=3)
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare("fault-q1", auto_delete=True)
    channel.confirm_delivery()
    for _ in range(2):
        channel.basic_publish("", "fault-q1", b"x")
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.basic_publish("", "fault-q1", b"x")
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - injected")
    assert connection.is_open
    assert faults.get(fault["id"])["state"] == "fired"
    connection.close()
