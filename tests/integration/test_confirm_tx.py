"""Publisher confirms and transactions: pika end to end, plus a raw pamqp client on a socket where
frame order and coalescing matter (pika hides both).
"""

from __future__ import annotations

import pytest
from pamqp import commands as C
from pika.exceptions import UnroutableError

from pika_helpers import channel_error, get_soon, ready_count, settle, SETTLE, wait_for
from raw_amqp import Raw


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def raw(broker):
    client = Raw(broker.port)
    assert isinstance(client.call(1, C.Channel.Open()), C.Channel.OpenOk)
    yield client
    client.close()


# -- confirms -----------------------------------------------------------------------------------


def test_confirm_select_is_idempotent(raw):
    assert isinstance(raw.call(1, C.Confirm.Select()), C.Confirm.SelectOk)
    assert isinstance(raw.call(1, C.Confirm.Select()), C.Confirm.SelectOk)


def test_every_publish_is_confirmed(channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    for i in range(50):
        channel.basic_publish("", q, b"m%d" % i)  # raises if nacked or not confirmed
    assert ready_count(channel, q) == 50


def test_pipelined_publishes_get_coalesced_acks(raw, unique):
    q = unique()
    raw.call(1, C.Queue.Declare(queue=q, auto_delete=False))
    raw.call(1, C.Confirm.Select())
    n = 500
    raw.sock.sendall(b"".join(Raw.publish_frames(1, "", q, b"m%d" % i) for i in range(n)))
    acks = []
    covered = 0
    while covered < n:
        frame = raw.method()
        assert isinstance(frame, C.Basic.Ack), frame
        acks.append((frame.delivery_tag, frame.multiple))
        # Each ack covers exactly the tags after the previous one: none twice, none skipped.
        assert frame.delivery_tag > covered
        if not frame.multiple:
            assert frame.delivery_tag == covered + 1
        covered = frame.delivery_tag
    assert covered == n
    assert any(multiple for _, multiple in acks), "no coalesced (multiple=True) ack"
    assert len(acks) < n
    assert raw.method(timeout=SETTLE) is None  # nothing more: no duplicate or stray confirms
    ok = raw.call(1, C.Queue.Delete(queue=q))
    assert ok.message_count == n


def test_unroutable_without_mandatory_is_acked(raw, unique):
    raw.call(1, C.Confirm.Select())
    raw.publish(1, "", unique("nobody"), b"y")
    ack = raw.method()
    assert isinstance(ack, C.Basic.Ack) and (ack.delivery_tag, ack.multiple) == (1, False)
    assert raw.method(timeout=SETTLE) is None  # no basic.return


def test_mandatory_unroutable_is_returned_before_its_ack(raw, unique):
    q, nobody = unique(), unique("nobody")
    raw.call(1, C.Queue.Declare(queue=q))
    raw.call(1, C.Confirm.Select())
    raw.publish(1, "", nobody, b"x", mandatory=True)
    frames = [raw.method() for _ in range(4)]
    assert [f.name for f in frames] == ["Basic.Return", "ContentHeader", "ContentBody", "Basic.Ack"]
    ret, header, body, ack = frames
    assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == (312, "NO_ROUTE", "", nobody)
    assert (header.body_size, body.value) == (1, b"x")
    assert (ack.delivery_tag, ack.multiple) == (1, False)
    # A routable mandatory publish then is just acked, with the next tag.
    raw.publish(1, "", q, b"ok", mandatory=True)
    ack = raw.method()
    assert isinstance(ack, C.Basic.Ack) and (ack.delivery_tag, ack.multiple) == (2, False)
    raw.call(1, C.Queue.Delete(queue=q))


def test_pika_confirm_mandatory_unroutable_raises(channel, unique):
    channel.confirm_delivery()
    with pytest.raises(UnroutableError) as info:
        channel.basic_publish("", unique("nobody"), b"r", mandatory=True)
    (returned,) = info.value.messages
    assert (returned.method.reply_code, returned.method.reply_text, returned.body) == (312, "NO_ROUTE", b"r")
    q = unique()
    channel.queue_declare(q)
    channel.basic_publish("", q, b"fine", mandatory=True)


def test_confirm_then_tx_select_is_refused(connection):
    ch = connection.channel()
    ch.confirm_delivery()
    channel_error(connection, ch.tx_select, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")


def test_tx_then_confirm_select_is_refused(connection):
    ch = connection.channel()
    ch.tx_select()
    channel_error(connection, ch.confirm_delivery, 406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")


# -- transactions -------------------------------------------------------------------------------


def test_commit_and_rollback_without_select(connection):
    ch = connection.channel()
    channel_error(connection, ch.tx_commit, 406, "PRECONDITION_FAILED - channel is not transactional")
    ch = connection.channel()
    channel_error(connection, ch.tx_rollback, 406, "PRECONDITION_FAILED - channel is not transactional")


def test_tx_select_is_idempotent(raw):
    assert isinstance(raw.call(1, C.Tx.Select()), C.Tx.SelectOk)
    assert isinstance(raw.call(1, C.Tx.Select()), C.Tx.SelectOk)


def test_publish_then_rollback_then_commit(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    tx = connection.channel()
    tx.tx_select()
    tx.basic_publish("", q, b"rolled-back")
    assert ready_count(channel, q) == 0  # nothing before the commit
    tx.tx_rollback()
    assert ready_count(channel, q) == 0
    tx.basic_publish("", q, b"a")
    tx.basic_publish("", q, b"b")
    assert ready_count(channel, q) == 0
    tx.tx_commit()
    assert ready_count(channel, q) == 2
    assert [channel.basic_get(q, auto_ack=True)[2] for _ in range(2)] == [b"a", b"b"]
    tx.tx_commit()  # an empty commit is fine, and the channel stays transactional
    tx.basic_publish("", q, b"c")
    assert ready_count(channel, q) == 0
    tx.tx_commit()
    assert ready_count(channel, q) == 1


def test_tx_publish_is_routed_at_publish_time(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.queue_bind(q, "amq.direct", q)
    tx = connection.channel()
    tx.tx_select()
    tx.basic_publish("amq.direct", q, b"routed-before-unbind")
    channel.queue_unbind(q, "amq.direct", q)
    tx.basic_publish("amq.direct", q, b"unroutable")
    tx.tx_commit()
    assert channel.basic_get(q, auto_ack=True)[2] == b"routed-before-unbind"
    assert ready_count(channel, q) == 0


def test_tx_mandatory_return_comes_at_commit(connection, unique):
    tx = connection.channel()
    returned = []
    tx.add_on_return_callback(lambda _ch, method, _p, body: returned.append((method.reply_code, body)))
    tx.tx_select()
    tx.basic_publish("", unique("nobody"), b"r", mandatory=True)
    settle(connection)
    assert returned == []
    tx.tx_commit()
    wait_for(connection, lambda: returned)
    assert returned == [(312, b"r")]


def test_tx_mandatory_to_queue_deleted_before_commit_is_returned(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    tx = connection.channel()
    returned = []
    tx.add_on_return_callback(lambda _ch, method, _p, body: returned.append((method.reply_code, body)))
    tx.tx_select()
    tx.basic_publish("", q, b"gone", mandatory=True)
    channel.queue_delete(q)
    tx.tx_commit()
    wait_for(connection, lambda: returned)
    assert returned == [(312, b"gone")]


def test_ack_in_tx_takes_effect_on_commit(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"m")
    tx = connection.channel()
    tx.tx_select()
    method, _, _ = tx.basic_get(q)
    tx.basic_ack(method.delivery_tag)
    tx.tx_commit()
    tx.close()
    assert ready_count(channel, q) == 0


def test_uncommitted_ack_is_undone_by_close(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"m")
    tx = connection.channel()
    tx.tx_select()
    method, _, _ = tx.basic_get(q)
    tx.basic_ack(method.delivery_tag)
    tx.close()
    method, _, body = get_soon(channel, q)
    assert (body, method.redelivered) == (b"m", True)


def test_rolled_back_ack_leaves_message_unacked(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"m1")
    channel.basic_publish("", q, b"m2")
    tx = connection.channel()
    tx.tx_select()
    first, _, _ = tx.basic_get(q)
    second, _, _ = tx.basic_get(q)
    tx.basic_ack(second.delivery_tag, multiple=True)
    tx.tx_rollback()
    assert ready_count(channel, q) == 0  # still unacked, not requeued by the rollback
    # Both tags are unacked again: acking one of them now (committed) works.
    tx.basic_ack(first.delivery_tag)
    tx.tx_commit()
    tx.close()  # the other is requeued on close
    method, _, body = get_soon(channel, q)
    assert (body, method.redelivered, method.message_count) == (b"m2", True, 0)


def test_reject_requeue_in_tx_takes_effect_on_commit(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"m")
    tx = connection.channel()
    tx.tx_select()
    method, _, _ = tx.basic_get(q)
    tx.basic_reject(method.delivery_tag, requeue=True)
    assert ready_count(channel, q) == 0
    tx.tx_commit()
    assert ready_count(channel, q) == 1
    method, _, body = channel.basic_get(q, auto_ack=True)
    assert (body, method.redelivered) == (b"m", True)


def test_ack_in_tx_frees_prefetch_only_on_commit(connection, channel, unique):
    q = unique()
    channel.queue_declare(q)
    channel.confirm_delivery()
    for i in range(3):
        channel.basic_publish("", q, b"m%d" % i)
    tx = connection.channel()
    tx.tx_select()
    tx.basic_qos(prefetch_count=1)
    box = []
    tx.basic_consume(q, lambda _c, m, _p, body: box.append((body, m.delivery_tag)))
    wait_for(connection, lambda: box)
    tx.basic_ack(box[0][1])
    settle(connection)
    assert box == [(b"m0", 1)]
    tx.tx_commit()
    wait_for(connection, lambda: len(box) == 2)
    assert box == [(b"m0", 1), (b"m1", 2)]
    tx.basic_ack(2)
    tx.tx_rollback()
    settle(connection)
    assert len(box) == 2
