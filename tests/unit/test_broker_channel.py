"""Unit tests for the broker core's Channel: acks, recover, close, confirms, transactions, consume
and publish checks. Driven by plain calls, with a recording sink standing in for the protocol layer.
Expected reply texts are RabbitMQ 3.10.8's (interop reference).
"""

from __future__ import annotations

import pytest

from amqp_broker.broker.broker import Broker
from amqp_broker.broker.message import Message
from amqp_broker.errors import (
    ACCESS_REFUSED,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionLevelError,
)

from sink_double import SinkDouble


def msg(body: str = "x", routing_key: str = "q", exchange: str = "", user_id: str | None = None) -> Message:
    return Message(exchange, routing_key, b"", body.encode(), headers=None, user_id=user_id)


class World:
    def __init__(self):
        self.broker = Broker()
        self.vhost = self.broker.vhosts["/"]
        self.user = self.broker.authenticate("guest", "guest")
        self.session = self.broker.open_session(
            self.user, "/", {"capabilities": {"consumer_cancel_notify": True}}, "peer"
        )
        self._next = 0

    def channel(self, session=None):
        self._next += 1
        sink = SinkDouble()
        return (session or self.session).open_channel(self._next, sink), sink

    def queue(self, name="q", **kwargs):
        return self.vhost.declare_queue(self.session, name, **kwargs)


@pytest.fixture
def world() -> World:
    return World()


def publish(ch, queue_name: str, *bodies: str, mandatory: bool = False) -> None:
    for body in bodies:
        ch.basic_publish("", queue_name, mandatory, False, msg(body, queue_name))


def consume(ch, queue_name: str, tag: str, no_ack: bool = False) -> str:
    tag = ch.basic_consume(queue_name, tag, no_ack, False, {})
    ch.start_consumer(tag)
    return tag


def five_unacked(world, name="q"):
    """A channel whose consumer 'A' holds m1..m5 unacked (tags 1..5)."""
    ch, sink = world.channel()
    queue = world.queue(name)
    consume(ch, name, "A")
    publish(ch, name, "m1", "m2", "m3", "m4", "m5")
    assert [d[1] for d in sink.deliveries] == [1, 2, 3, 4, 5]
    assert list(ch.unacked) == [1, 2, 3, 4, 5]
    sink.clear()
    return ch, sink, queue


def expect_channel_error(code: int, text: str, call) -> ChannelError:
    with pytest.raises(ChannelError) as info:
        call()
    assert info.value.reply_code == code
    assert info.value.reply_text == text
    return info.value


def expect_connection_error(code: int, text: str, call) -> ConnectionLevelError:
    with pytest.raises(ConnectionLevelError) as info:
        call()
    assert info.value.reply_code == code
    assert info.value.reply_text == text
    return info.value


# --- ack / nack / reject -------------------------------------------------------------------------


def test_ack_single(world):
    ch, sink, queue = five_unacked(world)
    ch.basic_ack(3, False)
    assert list(ch.unacked) == [1, 2, 4, 5]
    assert ch.consumers["A"].unacked == 4
    assert queue.message_count == 0
    assert sink.events == []


def test_ack_multiple(world):
    ch, _, queue = five_unacked(world)
    ch.basic_ack(3, True)
    assert list(ch.unacked) == [4, 5]
    assert ch.consumers["A"].unacked == 2
    ch.basic_ack(5, True)
    assert ch.unacked == {}
    assert ch.consumers["A"].unacked == 0
    assert queue.message_count == 0


def test_ack_multiple_with_gap(world):
    ch, _, _ = five_unacked(world)
    ch.basic_ack(2, False)
    ch.basic_ack(4, True)  # acks 1 and 3 (2 is gone already) and 4
    assert list(ch.unacked) == [5]
    assert ch.consumers["A"].unacked == 1


def test_ack_multiple_tag_zero_acks_all(world):
    ch, _, queue = five_unacked(world)
    ch.basic_ack(0, True)
    assert ch.unacked == {}
    assert ch.consumers["A"].unacked == 0
    assert queue.message_count == 0
    ch.basic_ack(0, True)  # nothing outstanding: still fine (RabbitMQ: ok)
    ch.basic_nack(0, True, True)


def test_ack_tag_zero_not_multiple_is_unknown(world):
    ch, _ = world.channel()
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag 0", lambda: ch.basic_ack(0, False))


@pytest.mark.parametrize(
    "call, tag",
    [
        (lambda ch: ch.basic_ack(99, False), 99),
        (lambda ch: ch.basic_reject(42, True), 42),
        (lambda ch: ch.basic_nack(42, False, True), 42),
        (lambda ch: ch.basic_ack(99, True), 99),
        (lambda ch: ch.basic_nack(7, True, False), 7),
    ],
)
def test_unknown_tag_nothing_outstanding(world, call, tag):
    ch, _ = world.channel()
    err = expect_channel_error(PRECONDITION_FAILED, f"PRECONDITION_FAILED - unknown delivery tag {tag}", lambda: call(ch))
    assert err.text == f"unknown delivery tag {tag}"


def test_ack_twice_is_unknown(world):
    ch, _ = world.channel()
    world.queue()
    publish(ch, "q", "a")
    tag = ch.basic_get("q", False)[0]
    ch.basic_ack(tag, False)
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag 1", lambda: ch.basic_ack(tag, False))


def test_ack_of_no_ack_get_is_unknown(world):
    ch, _ = world.channel()
    world.queue()
    publish(ch, "q", "a")
    tag = ch.basic_get("q", True)[0]
    assert tag == 1
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag 1", lambda: ch.basic_ack(1, False))


def test_ack_multiple_unknown_higher_tag(world):
    # RabbitMQ reference: get 2 (tags 1, 2), ack(5, multiple=True) -> 406 unknown delivery tag 5.
    ch, _ = world.channel()
    queue = world.queue()
    publish(ch, "q", "a", "b")
    ch.basic_get("q", False)
    ch.basic_get("q", False)
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag 5", lambda: ch.basic_ack(5, True))
    assert queue.message_count == 0


def test_ack_multiple_unknown_tag_between_outstanding(world):
    # rabbit_channel:collect_acks with multiple=true fails unless the named tag is outstanding.
    ch, _, _ = five_unacked(world)
    ch.basic_ack(3, False)
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag 3", lambda: ch.basic_ack(3, True))


def test_ack_multiple_tag_below_outstanding(world):
    ch, _, _ = five_unacked(world)
    ch.basic_ack(1, False)
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag 1", lambda: ch.basic_ack(1, True))
    assert list(ch.unacked) == [2, 3, 4, 5]


def test_reject_requeue_false_drops(world):
    ch, sink, queue = five_unacked(world)
    ch.basic_reject(2, False)
    assert 2 not in ch.unacked
    assert queue.message_count == 0
    assert sink.events == []


def test_reject_requeue_true_redelivers(world):
    ch, sink, queue = five_unacked(world)
    ch.basic_reject(2, True)
    assert sink.delivered == [("m2", True, 6)]
    assert list(ch.unacked) == [1, 3, 4, 5, 6]
    assert ch.consumers["A"].unacked == 5


def test_nack_multiple_requeue_in_order(world):
    ch, sink, queue = five_unacked(world)
    ch.basic_cancel("A")
    ch.basic_nack(4, True, True)
    assert list(ch.unacked) == [5]
    assert queue.message_count == 4
    got = [ch.basic_get("q", True)[1] for _ in range(4)]
    assert [(e.message.body, e.redelivered) for e in got] == [
        (b"m1", True), (b"m2", True), (b"m3", True), (b"m4", True)
    ]


def test_nack_multiple_drop(world):
    ch, _, queue = five_unacked(world)
    ch.basic_nack(0, True, False)
    assert ch.unacked == {}
    assert queue.message_count == 0
    assert ch.consumers["A"].unacked == 0


def test_nack_after_cancel_goes_to_next_consumer(world):
    # RabbitMQ reference "redelivery: nack m3 after cancel, ack others, second consumer".
    ch, _, _ = five_unacked(world)
    ch.basic_cancel("A")
    ch.basic_nack(3, False, True)
    for tag in (1, 2, 4, 5):
        ch.basic_ack(tag, False)
    ch_b, sink_b = world.channel()
    consume(ch_b, "q", "B")
    assert sink_b.delivered == [("m3", True, 1)]


def test_basic_get_unacked_then_reject_requeue(world):
    # RabbitMQ reference "basic.get-ok fields": tag 1 not redelivered, then tag 2 redelivered.
    ch, _ = world.channel()
    world.queue()
    publish(ch, "q", "a", "b")
    tag, entry, remaining = ch.basic_get("q", False)
    assert (tag, entry.redelivered, remaining, entry.message.body) == (1, False, 1, b"a")
    ch.basic_reject(tag, True)
    tag, entry, remaining = ch.basic_get("q", False)
    assert (tag, entry.redelivered, remaining, entry.message.body) == (2, True, 1, b"a")


# --- recover -------------------------------------------------------------------------------------


def test_recover_requeue_redelivers_in_order(world):
    # RabbitMQ reference "basic.recover requeue=true with active consumer".
    ch, sink, _ = five_unacked(world)
    ch.basic_recover(True)
    assert sink.delivered == [(f"m{i}", True, 5 + i) for i in range(1, 6)]
    assert list(ch.unacked) == [6, 7, 8, 9, 10]
    assert ch.consumers["A"].unacked == 5


def test_recover_requeue_after_some_acks(world):
    # RabbitMQ reference "basic.recover requeue=true after ack of some".
    ch, sink, _ = five_unacked(world)
    ch.basic_ack(2, False)
    ch.basic_ack(4, False)
    ch.basic_recover(True)
    assert sink.delivered == [("m1", True, 6), ("m3", True, 7), ("m5", True, 8)]


def test_recover_false_is_540(world):
    ch, sink, _ = five_unacked(world)
    expect_connection_error(NOT_IMPLEMENTED, "NOT_IMPLEMENTED - requeue=false", lambda: ch.basic_recover(False))
    assert list(ch.unacked) == [1, 2, 3, 4, 5]
    assert sink.events == []


def test_recover_with_nothing_outstanding(world):
    ch, sink = world.channel()
    ch.basic_recover(True)
    assert sink.events == []
    expect_connection_error(NOT_IMPLEMENTED, "NOT_IMPLEMENTED - requeue=false", lambda: ch.basic_recover(False))


# --- close ---------------------------------------------------------------------------------------


def test_close_requeues_unacked_in_tag_order_and_cancels_consumers(world):
    ch, sink, queue = five_unacked(world)
    ch.basic_ack(2, False)
    ch.close()
    assert not ch.open
    assert ch.unacked == {}
    assert ch.consumers == {}
    assert queue.consumer_count == 0
    assert queue.message_count == 4
    assert ch.number not in world.session.channels
    assert sink.events == []  # no server-sent cancel for a closing channel
    ch_b, sink_b = world.channel()
    consume(ch_b, "q", "B")
    assert sink_b.delivered == [("m1", True, 1), ("m3", True, 2), ("m4", True, 3), ("m5", True, 4)]
    ch.close()  # idempotent


def test_close_requeues_across_queues(world):
    ch, _ = world.channel()
    qa = world.queue("qa")
    qb = world.queue("qb")
    publish(ch, "qa", "a1", "a2")
    publish(ch, "qb", "b1")
    for name in ("qa", "qb", "qa"):
        ch.basic_get(name, False)
    ch.close()
    assert qa.message_count == 2 and qb.message_count == 1
    ch2, _ = world.channel()
    assert [ch2.basic_get("qa", True)[1].message.body for _ in range(2)] == [b"a1", b"a2"]
    entry = ch2.basic_get("qb", True)[1]
    assert entry.redelivered and entry.message.body == b"b1"


def test_close_does_not_deliver_to_its_own_consumers(world):
    ch, sink, queue = five_unacked(world)
    ch.close()
    assert sink.events == []
    assert queue.message_count == 5


def test_close_with_staged_tx_acks_requeues_them(world):
    ch, _, queue = five_unacked(world)
    ch.tx_select()
    ch.basic_ack(2, False)
    ch.basic_ack(4, True)  # stages 1, 3, 4
    assert list(ch.unacked) == [5]
    ch.close()
    assert queue.message_count == 5
    ch_b, sink_b = world.channel()
    consume(ch_b, "q", "B")
    assert sink_b.delivered == [(f"m{i}", True, i) for i in range(1, 6)]


def test_session_close_closes_channels(world):
    ch1, _ = world.channel()
    ch2, _ = world.channel()
    queue = world.queue()
    consume(ch1, "q", "c1")
    consume(ch2, "q", "c2")
    world.session.close()
    assert not ch1.open and not ch2.open
    assert world.session.channels == {}
    assert queue.consumer_count == 0
    assert world.session not in world.broker.sessions


# --- confirms ------------------------------------------------------------------------------------


def test_confirm_per_publish(world):
    ch, sink = world.channel()
    world.queue()
    ch.confirm_select()
    ch.confirm_select()  # idempotent
    publish(ch, "q", "a", "b", "c")
    assert sink.events == [("confirm", 1, True), ("confirm", 2, True), ("confirm", 3, True)]
    assert world.vhost.queues["q"].message_count == 3


def test_confirm_unroutable_not_mandatory_is_just_acked(world):
    ch, sink = world.channel()
    ch.confirm_select()
    publish(ch, "missing", "y")
    assert sink.events == [("confirm", 1, True)]


def test_confirm_mandatory_unroutable_returns_before_confirm(world):
    ch, sink = world.channel()
    ch.confirm_select()
    publish(ch, "probe.q", "x", mandatory=True)
    assert sink.events == [
        ("return", NO_ROUTE, "NO_ROUTE", "", "probe.q", b"x"),
        ("confirm", 1, True),
    ]


def test_confirm_sequence_continues_across_routable_and_unroutable(world):
    ch, sink = world.channel()
    world.queue()
    ch.confirm_select()
    publish(ch, "q", "a")
    publish(ch, "nowhere", "b", mandatory=True)
    publish(ch, "q", "c", mandatory=True)
    assert sink.events == [
        ("confirm", 1, True),
        ("return", NO_ROUTE, "NO_ROUTE", "", "nowhere", b"b"),
        ("confirm", 2, True),
        ("confirm", 3, True),
    ]


def test_mandatory_unroutable_without_confirm(world):
    ch, sink = world.channel()
    ch.basic_publish("amq.direct", "probe.nobody", True, False, msg("hello", "probe.nobody", "amq.direct"))
    assert sink.events == [("return", NO_ROUTE, "NO_ROUTE", "amq.direct", "probe.nobody", b"hello")]
    x = world.vhost.declare_exchange("probe.x", "fanout")
    ch.basic_publish("probe.x", "", True, False, msg("f", "", "probe.x"))
    assert sink.events[-1] == ("return", NO_ROUTE, "NO_ROUTE", "probe.x", "", b"f")
    assert x.bindings == {}


def test_no_confirms_without_confirm_mode(world):
    ch, sink = world.channel()
    world.queue()
    publish(ch, "q", "a")
    publish(ch, "none", "b")
    assert sink.events == []


# --- tx ------------------------------------------------------------------------------------------


def test_tx_publish_staged_until_commit(world):
    ch, sink = world.channel()
    queue = world.queue()
    ch.tx_select()
    ch.tx_select()  # idempotent
    publish(ch, "q", "a", "b")
    assert queue.message_count == 0
    ch.tx_commit()
    assert queue.message_count == 2
    assert [ch.basic_get("q", True)[1].message.body for _ in range(2)] == [b"a", b"b"]
    # Still transactional after commit.
    publish(ch, "q", "c")
    assert queue.message_count == 0
    ch.tx_commit()
    assert queue.message_count == 1


def test_tx_rollback_discards_publishes(world):
    ch, _ = world.channel()
    queue = world.queue()
    ch.tx_select()
    publish(ch, "q", "a")
    ch.tx_rollback()
    assert queue.message_count == 0
    ch.tx_commit()
    assert queue.message_count == 0
    publish(ch, "q", "b")
    ch.tx_commit()
    assert queue.message_count == 1


def test_tx_mandatory_return_happens_at_commit(world):
    ch, sink = world.channel()
    ch.tx_select()
    publish(ch, "nowhere", "a", mandatory=True)
    assert sink.events == []
    ch.tx_commit()
    assert sink.events == [("return", NO_ROUTE, "NO_ROUTE", "", "nowhere", b"a")]


def test_tx_ack_staged_until_commit(world):
    ch, sink, queue = five_unacked(world)
    ch.tx_select()
    ch.basic_ack(2, False)
    ch.basic_ack(4, True)
    assert list(ch.unacked) == [5]
    # Not yet settled: the consumer's count is unchanged until commit.
    assert ch.consumers["A"].unacked == 5
    ch.tx_commit()
    assert ch.consumers["A"].unacked == 1
    assert list(ch.unacked) == [5]
    assert queue.message_count == 0
    ch.close()
    assert queue.message_count == 1  # only m5 comes back


def test_tx_ack_restored_on_rollback(world):
    ch, sink, queue = five_unacked(world)
    ch.tx_select()
    ch.basic_ack(2, False)
    ch.basic_ack(4, True)
    ch.tx_rollback()
    assert list(ch.unacked) == [1, 2, 3, 4, 5]
    assert ch.consumers["A"].unacked == 5
    assert queue.message_count == 0
    # The restored tags can be acked (and committed) again.
    ch.basic_ack(3, False)
    ch.tx_commit()
    assert list(ch.unacked) == [1, 2, 4, 5]
    assert ch.consumers["A"].unacked == 4


def test_tx_nack_staged_and_applied_on_commit(world):
    ch, sink, queue = five_unacked(world)
    ch.basic_cancel("A")
    ch.tx_select()
    ch.basic_nack(2, False, True)
    ch.basic_reject(3, False)
    assert queue.message_count == 0
    ch.tx_commit()
    assert queue.message_count == 1
    entry = ch.basic_get("q", True)[1]
    assert entry.message.body == b"m2" and entry.redelivered


def test_tx_nack_restored_on_rollback(world):
    ch, sink, queue = five_unacked(world)
    ch.tx_select()
    ch.basic_nack(3, True, True)  # stages 1, 2, 3
    ch.basic_reject(5, False)
    assert list(ch.unacked) == [4]
    ch.tx_rollback()
    assert list(ch.unacked) == [1, 2, 3, 4, 5]
    assert queue.message_count == 0
    assert sink.events == []
    ch.tx_commit()  # nothing staged any more
    assert list(ch.unacked) == [1, 2, 3, 4, 5]


def test_tx_unknown_tag_rejected_immediately(world):
    ch, _, _ = five_unacked(world)
    ch.tx_select()
    ch.basic_ack(2, False)
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - unknown delivery tag 2", lambda: ch.basic_ack(2, False))


def test_tx_staged_ack_does_not_free_global_prefetch(world):
    # RabbitMQ notifies its limiter of tx acks only at commit (rabbit_channel keeps them in the
    # tx state), so a staged ack frees no prefetch room until tx.commit.
    ch, sink = world.channel()
    publisher, _ = world.channel()
    world.queue()
    ch.basic_qos(0, 1, True)
    consume(ch, "q", "c")
    publish(publisher, "q", "m1")
    assert sink.delivered == [("m1", False, 1)]
    ch.tx_select()
    ch.basic_ack(1, False)
    publish(publisher, "q", "m2")
    assert sink.delivered == [("m1", False, 1)]  # ack staged: limit still reached
    ch.tx_commit()
    assert sink.delivered == [("m1", False, 1), ("m2", False, 2)]


def test_tx_staged_ack_does_not_free_consumer_prefetch(world):
    ch, sink = world.channel()
    publisher, _ = world.channel()
    world.queue()
    ch.basic_qos(0, 1, False)
    consume(ch, "q", "c")
    publish(publisher, "q", "m1", "m2")
    assert sink.delivered == [("m1", False, 1)]
    ch.tx_select()
    ch.basic_ack(1, False)
    assert sink.delivered == [("m1", False, 1)]
    ch.tx_commit()
    assert sink.delivered == [("m1", False, 1), ("m2", False, 2)]
    ch.basic_ack(2, False)
    ch.tx_rollback()  # the ack is undone: m2 is unacked again, nothing more may be delivered
    publish(publisher, "q", "m3")
    assert sink.delivered == [("m1", False, 1), ("m2", False, 2)]
    assert list(ch.unacked) == [2]


def test_tx_commit_and_rollback_not_transactional(world):
    ch, _ = world.channel()
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional", ch.tx_commit)
    expect_channel_error(PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional", ch.tx_rollback)


def test_confirm_then_tx_select_is_406(world):
    ch, _ = world.channel()
    ch.confirm_select()
    expect_channel_error(
        PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from confirm to tx mode", ch.tx_select
    )
    assert ch.tx is None


def test_tx_then_confirm_select_is_406(world):
    ch, _ = world.channel()
    ch.tx_select()
    expect_channel_error(
        PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from tx to confirm mode", ch.confirm_select
    )
    assert ch.confirm_mode is False


# --- consume -------------------------------------------------------------------------------------


def test_consume_duplicate_tag_is_530(world):
    ch, _ = world.channel()
    queue = world.queue()
    consume(ch, "q", "ctag1")
    expect_connection_error(
        NOT_ALLOWED,
        "NOT_ALLOWED - attempt to reuse consumer tag 'ctag1'",
        lambda: ch.basic_consume("q", "ctag1", False, False, {}),
    )
    assert queue.consumer_count == 1
    # The same tag on another channel is fine.
    ch2, _ = world.channel()
    assert ch2.basic_consume("q", "ctag1", False, False, {}) == "ctag1"
    assert queue.consumer_count == 2


def test_consume_missing_queue_is_404(world):
    ch, _ = world.channel()
    expect_channel_error(
        NOT_FOUND,
        "NOT_FOUND - no queue 'probe.q' in vhost '/'",
        lambda: ch.basic_consume("probe.q", "c", False, False, {}),
    )
    assert ch.consumers == {}


def test_consume_tag_reusable_after_cancel(world):
    ch, _ = world.channel()
    queue = world.queue()
    consume(ch, "q", "t")
    ch.basic_cancel("t")
    assert queue.consumer_count == 0
    assert consume(ch, "q", "t") == "t"
    assert queue.consumer_count == 1


def test_cancelled_consumer_keeps_its_unacked(world):
    ch, sink, queue = five_unacked(world)
    ch.basic_cancel("A")
    assert list(ch.unacked) == [1, 2, 3, 4, 5]
    publish(ch, "q", "m6")
    assert sink.events == []
    assert queue.message_count == 1
    ch.basic_ack(0, True)
    assert ch.unacked == {}


def test_qos_prefetch_size_is_540(world):
    ch, _ = world.channel()
    expect_connection_error(
        NOT_IMPLEMENTED, "NOT_IMPLEMENTED - prefetch_size!=0 (1)", lambda: ch.basic_qos(1, 0, False)
    )


# --- get -----------------------------------------------------------------------------------------


def test_basic_get_returns_remaining_count(world):
    ch, _ = world.channel()
    queue = world.queue()
    assert ch.basic_get("q", False) is None
    publish(ch, "q", "a", "b", "c")
    results = [ch.basic_get("q", False) for _ in range(3)]
    assert [(t, e.message.body, n) for t, e, n in results] == [(1, b"a", 2), (2, b"b", 1), (3, b"c", 0)]
    assert ch.basic_get("q", False) is None
    assert list(ch.unacked) == [1, 2, 3]
    assert queue.message_count == 0
    # A get-empty does not consume a delivery tag.
    publish(ch, "q", "d")
    assert ch.basic_get("q", True)[0] == 4
    assert ch.basic_get("q", True) is None


def test_basic_get_missing_queue_is_404(world):
    ch, _ = world.channel()
    expect_channel_error(NOT_FOUND, "NOT_FOUND - no queue 'probe.q' in vhost '/'", lambda: ch.basic_get("probe.q", True))


def test_basic_get_remaining_excludes_unacked_and_counts_requeued(world):
    ch, _ = world.channel()
    world.queue()
    publish(ch, "q", "a", "b", "c")
    t1 = ch.basic_get("q", False)[0]
    ch.basic_reject(t1, True)
    tag, entry, remaining = ch.basic_get("q", False)
    assert (entry.message.body, entry.redelivered, remaining) == (b"a", True, 2)


# --- publish checks ------------------------------------------------------------------------------


def test_publish_user_id_mismatch_is_406(world):
    ch, _ = world.channel()
    queue = world.queue()
    expect_channel_error(
        PRECONDITION_FAILED,
        "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'",
        lambda: ch.basic_publish("", "q", False, False, msg("x", "q", user_id="bob")),
    )
    assert queue.message_count == 0
    ch.basic_publish("", "q", False, False, msg("x", "q", user_id="guest"))
    assert queue.message_count == 1


def test_publish_user_id_mismatch_in_tx_is_immediate(world):
    ch, _ = world.channel()
    ch.tx_select()
    expect_channel_error(
        PRECONDITION_FAILED,
        "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'",
        lambda: ch.basic_publish("", "q", False, False, msg("x", "q", user_id="bob")),
    )
    assert ch.tx == []


def test_publish_missing_exchange_is_404(world):
    ch, sink = world.channel()
    for mandatory in (False, True):
        expect_channel_error(
            NOT_FOUND,
            "NOT_FOUND - no exchange 'probe.x' in vhost '/'",
            lambda: ch.basic_publish("probe.x", "k", mandatory, False, msg("x", "k", "probe.x")),
        )
    assert sink.events == []


def test_publish_to_internal_exchange_is_403(world):
    ch, _ = world.channel()
    world.vhost.declare_exchange("ix", "fanout", internal=True)
    expect_channel_error(
        ACCESS_REFUSED,
        "ACCESS_REFUSED - cannot publish to internal exchange 'ix' in vhost '/'",
        lambda: ch.basic_publish("ix", "", False, False, msg("x", "", "ix")),
    )


def test_publish_immediate_is_540(world):
    ch, _ = world.channel()
    world.queue()
    expect_connection_error(
        NOT_IMPLEMENTED, "NOT_IMPLEMENTED - immediate=true", lambda: ch.basic_publish("", "q", False, True, msg())
    )


def test_confirm_publish_error_does_not_consume_sequence(world):
    ch, sink = world.channel()
    world.queue()
    ch.confirm_select()
    with pytest.raises(ChannelError):
        ch.basic_publish("", "q", False, False, msg("x", "q", user_id="bob"))
    assert sink.events == []
