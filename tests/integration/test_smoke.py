"""The basic publish/get/consume loop through a real pika client."""

import pika


def test_publish_get_consume(channel, unique):
    queue = unique()
    channel.queue_declare(queue)
    channel.confirm_delivery()
    props = pika.BasicProperties(content_type="text/plain", headers={"a": 1}, delivery_mode=2)
    for i in range(5):
        channel.basic_publish("", queue, b"m%d" % i, props)
    assert channel.queue_declare(queue, passive=True).method.message_count == 5
    method, got_props, body = channel.basic_get(queue)
    assert body == b"m0" and method.message_count == 4 and not method.redelivered
    assert got_props.headers == {"a": 1} and got_props.content_type == "text/plain"
    channel.basic_ack(method.delivery_tag)
    got = []

    def on_message(ch, meth, _props, body):
        got.append(body)
        ch.basic_ack(meth.delivery_tag)
        if len(got) == 4:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    assert got == [b"m1", b"m2", b"m3", b"m4"]
