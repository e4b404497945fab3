"""Unit tests for queues in the broker core: FIFO, requeue order, dispatch, prefetch, flow, purge,
auto-delete and exclusivity. Driven by plain calls through Broker/Session/Channel, with a recording
sink standing in for the protocol layer.
"""

from __future__ import annotations

import pytest

from amqp_broker.broker.broker import Broker
from amqp_broker.broker.message import Message
from amqp_broker.errors import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    ChannelError,
)

from sink_double import SinkDouble

LOCKED_TEXT = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'probe.excl' in vhost '/'. "
    "It could be originally declared on another connection or the exclusive property value does "
    "not match that of the original declaration."
)
EXCLUSIVE_USE_TEXT = "ACCESS_REFUSED - queue 'probe.q' in vhost '/' in exclusive use"


def msg(body: bytes | str, routing_key: str = "q") -> Message:
    if isinstance(body, str):
        body = body.encode()
    return Message("", routing_key, b"", body, headers=None)


class World:
    """A broker with one session per 'connection' and helpers to open channels."""

    def __init__(self):
        self.broker = Broker()
        self.vhost = self.broker.vhosts["/"]
        self.user = self.broker.authenticate("guest", "guest")
        assert self.user is not None

    def session(self, cancel_notify: bool = True):
        props = {"capabilities": {"consumer_cancel_notify": cancel_notify}}
        return self.broker.open_session(self.user, "/", props, "127.0.0.1:1")

    def channel(self, session=None, number: int = 1, sink=None):
        session = session or self.session()
        sink = sink if sink is not None else SinkDouble()
        return session.open_channel(number, sink), sink


@pytest.fixture
def world() -> World:
    return World()


def publish(channel, queue_name: str, *bodies: str) -> None:
    for body in bodies:
        channel.basic_publish("", queue_name, False, False, msg(body, queue_name))


def consume(channel, queue_name: str, tag: str, no_ack: bool = False, exclusive: bool = False) -> str:
    tag = channel.basic_consume(queue_name, tag, no_ack, exclusive, {})
    channel.start_consumer(tag)
    return tag


# --- FIFO ----------------------------------------------------------------------------------------


def test_fifo_basic_get(world):
    ch, _ = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    publish(ch, "q", "m1", "m2", "m3")
    assert queue.message_count == 3
    got = []
    while (result := ch.basic_get("q", True)) is not None:
        tag, entry, remaining = result
        got.append((entry.message.body, remaining, entry.redelivered))
    assert got == [(b"m1", 2, False), (b"m2", 1, False), (b"m3", 0, False)]
    assert queue.message_count == 0


def test_fifo_consumer(world):
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "q")
    publish(ch, "q", *[f"m{i}" for i in range(1, 11)])
    consume(ch, "q", "c", no_ack=True)
    assert sink.bodies == [f"m{i}".encode() for i in range(1, 11)]
    assert [d[1] for d in sink.deliveries] == list(range(1, 11))
    assert all(d[0] == "c" and d[2] is False for d in sink.deliveries)


def test_consume_does_not_deliver_before_start_consumer(world):
    ch, sink = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    publish(ch, "q", "m1")
    tag = ch.basic_consume("q", "c", False, False, {})
    assert tag == "c"
    assert sink.events == []
    assert queue.consumer_count == 1
    ch.start_consumer("c")
    assert sink.deliveries == [("c", 1, False, b"m1")]
    ch.start_consumer("unknown")  # harmless


def test_server_generated_consumer_tag(world):
    ch, _ = world.channel()
    world.vhost.declare_queue(ch.session, "q")
    tag1 = ch.basic_consume("q", "", False, False, {})
    tag2 = ch.basic_consume("q", "", False, False, {})
    assert tag1.startswith("amq.ctag-") and len(tag1) == 31
    assert tag1 != tag2
    assert set(ch.consumers) == {tag1, tag2}


# --- requeue position ----------------------------------------------------------------------------


def test_requeue_goes_back_to_original_position(world):
    ch, sink = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    publish(ch, "q", "m1", "m2", "m3", "m4", "m5")
    tags = [ch.basic_get("q", False)[0] for _ in range(3)]  # m1..m3 unacked, m4, m5 ready
    assert tags == [1, 2, 3]
    assert queue.message_count == 2
    ch.basic_reject(2, True)  # m2 back before m4
    assert queue.message_count == 3
    ch.basic_nack(3, False, True)  # m3 back between m2 and m4
    ch.basic_reject(1, True)  # m1 back first
    got = []
    while (r := ch.basic_get("q", True)) is not None:
        got.append((r[1].message.body, r[1].redelivered, r[2]))
    assert got == [
        (b"m1", True, 4),
        (b"m2", True, 3),
        (b"m3", True, 2),
        (b"m4", False, 1),
        (b"m5", False, 0),
    ]


def test_requeue_merges_with_later_published(world):
    # RabbitMQ reference "redelivery: publish more then requeue": B gets m2(redelivered), m4, m5.
    ch_a, sink_a = world.channel()
    world.vhost.declare_queue(ch_a.session, "q")
    ch_a.basic_qos(0, 3, False)
    consume(ch_a, "q", "A")
    publish(ch_a, "q", "m1", "m2", "m3", "m4", "m5")
    assert sink_a.deliveries == [("A", 1, False, b"m1"), ("A", 2, False, b"m2"), ("A", 3, False, b"m3")]
    ch_a.basic_cancel("A")
    ch_a.basic_nack(2, False, True)
    ch_a.basic_ack(1, False)
    ch_a.basic_ack(3, False)
    ch_b, sink_b = world.channel(number=2)
    consume(ch_b, "q", "B")
    assert sink_b.deliveries == [("B", 1, True, b"m2"), ("B", 2, False, b"m4"), ("B", 3, False, b"m5")]


def test_requeue_while_consumer_active_redelivers_to_it(world):
    # RabbitMQ reference "redelivery: nack(requeue) while consumer active".
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "q")
    consume(ch, "q", "A")
    publish(ch, "q", "m1", "m2", "m3", "m4", "m5")
    sink.clear()
    ch.basic_nack(3, False, True)
    assert sink.deliveries == [("A", 6, True, b"m3")]


def test_requeue_on_cancelled_then_new_consumer_order(world):
    # RabbitMQ reference "redelivery: nack 2 and 4 then channel close": all five, in order.
    ch_a, sink_a = world.channel()
    world.vhost.declare_queue(ch_a.session, "q")
    consume(ch_a, "q", "A")
    publish(ch_a, "q", "m1", "m2", "m3", "m4", "m5")
    ch_a.basic_cancel("A")
    ch_a.basic_nack(4, False, True)
    ch_a.basic_nack(2, False, True)
    ch_a.close()
    ch_b, sink_b = world.channel(number=2)
    consume(ch_b, "q", "B")
    assert sink_b.deliveries == [("B", i, True, f"m{i}".encode()) for i in range(1, 6)]


def test_requeue_to_deleted_queue_drops(world):
    ch, _ = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    publish(ch, "q", "m1")
    tag = ch.basic_get("q", False)[0]
    world.vhost.delete_queue(queue)
    ch.basic_reject(tag, True)
    assert queue.message_count == 0
    assert ch.unacked == {}


# --- round-robin and prefetch --------------------------------------------------------------------


def test_round_robin_across_consumers(world):
    s = world.session()
    ch1, sink1 = world.channel(s, 1)
    ch2, sink2 = world.channel(s, 2)
    world.vhost.declare_queue(s, "q")
    consume(ch1, "q", "c1", no_ack=True)
    consume(ch2, "q", "c2", no_ack=True)
    consume(ch1, "q", "c3", no_ack=True)
    publish(ch1, "q", *[f"m{i}" for i in range(1, 10)])
    by_tag: dict[str, list[bytes]] = {}
    for tag, _dtag, _red, body in sink1.deliveries + sink2.deliveries:
        by_tag.setdefault(tag, []).append(body)
    assert by_tag == {
        "c1": [b"m1", b"m4", b"m7"],
        "c2": [b"m2", b"m5", b"m8"],
        "c3": [b"m3", b"m6", b"m9"],
    }
    # Tags are per channel and shared by its consumers.
    assert [d[1] for d in sink1.deliveries] == [1, 2, 3, 4, 5, 6]
    assert [d[1] for d in sink2.deliveries] == [1, 2, 3]


def test_delivery_tags_shared_across_consumers_of_a_channel(world):
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "qa")
    world.vhost.declare_queue(ch.session, "qb")
    consume(ch, "qa", "cA")
    consume(ch, "qb", "cB")
    publish(ch, "qa", "a1")
    publish(ch, "qb", "b1")
    publish(ch, "qa", "a2")
    assert sink.deliveries == [("cA", 1, False, b"a1"), ("cB", 2, False, b"b1"), ("cA", 3, False, b"a2")]


def test_round_robin_skips_full_consumer(world):
    s = world.session()
    ch1, sink1 = world.channel(s, 1)
    ch2, sink2 = world.channel(s, 2)
    world.vhost.declare_queue(s, "q")
    ch1.basic_qos(0, 1, False)
    consume(ch1, "q", "slow")
    consume(ch2, "q", "fast", no_ack=True)
    publish(ch1, "q", "m1", "m2", "m3", "m4")
    assert sink1.bodies == [b"m1"]
    assert sink2.bodies == [b"m2", b"m3", b"m4"]


def test_prefetch_per_consumer(world):
    ch, sink = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    ch.basic_qos(0, 2, False)
    consume(ch, "q", "c1")
    consume(ch, "q", "c2")
    publish(ch, "q", *[f"m{i}" for i in range(1, 8)])
    per = {"c1": [], "c2": []}
    for tag, dtag, _r, body in sink.deliveries:
        per[tag].append(dtag)
    assert len(per["c1"]) == 2 and len(per["c2"]) == 2
    assert queue.message_count == 3
    assert ch.consumers["c1"].unacked == 2
    assert ch.consumers["c2"].unacked == 2
    # Acking one of c1's frees exactly one slot for c1.
    sink.clear()
    ch.basic_ack(per["c1"][0], False)
    assert [d[0] for d in sink.deliveries] == ["c1"]
    assert sink.bodies == [b"m5"]
    assert queue.message_count == 2
    assert ch.consumers["c1"].unacked == 2


def test_prefetch_applies_to_consumers_created_after_qos(world):
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "q")
    consume(ch, "q", "unlimited")
    ch.basic_qos(0, 1, False)
    assert ch.consumers["unlimited"].prefetch == 0
    consume(ch, "q", "limited")
    assert ch.consumers["limited"].prefetch == 1
    publish(ch, "q", *[f"m{i}" for i in range(6)])
    counts = {"unlimited": 0, "limited": 0}
    for tag, *_ in sink.deliveries:
        counts[tag] += 1
    assert counts == {"unlimited": 5, "limited": 1}


def test_prefetch_does_not_limit_no_ack_consumers(world):
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "q")
    ch.basic_qos(0, 1, False)
    ch.basic_qos(0, 1, True)
    consume(ch, "q", "c", no_ack=True)
    publish(ch, "q", "a", "b", "c")
    assert sink.bodies == [b"a", b"b", b"c"]
    assert ch.unacked == {}


def test_global_prefetch_limits_the_channel(world):
    ch, sink = world.channel()
    qa = world.vhost.declare_queue(ch.session, "qa")
    qb = world.vhost.declare_queue(ch.session, "qb")
    ch.basic_qos(0, 3, True)
    consume(ch, "qa", "cA")
    consume(ch, "qb", "cB")
    publish(ch, "qa", "a1", "a2")
    publish(ch, "qb", "b1", "b2")
    assert sink.bodies == [b"a1", b"a2", b"b1"]
    assert len(ch.unacked) == 3
    assert qa.message_count == 0 and qb.message_count == 1
    sink.clear()
    ch.basic_ack(1, False)  # a1: frees one channel-wide slot, used by qb
    assert sink.bodies == [b"b2"]
    assert qb.message_count == 0
    assert len(ch.unacked) == 3


def test_global_prefetch_raise_dispatches_immediately(world):
    ch, sink = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    ch.basic_qos(0, 1, True)
    consume(ch, "q", "c")
    publish(ch, "q", "m1", "m2", "m3")
    assert sink.bodies == [b"m1"]
    ch.basic_qos(0, 3, True)
    assert sink.bodies == [b"m1", b"m2", b"m3"]
    assert queue.message_count == 0


def test_global_and_consumer_prefetch_combine(world):
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "q")
    ch.basic_qos(0, 1, False)  # per consumer 1
    ch.basic_qos(0, 3, True)  # channel 3
    for tag in ("c1", "c2", "c3", "c4"):
        consume(ch, "q", tag)
    publish(ch, "q", *[f"m{i}" for i in range(8)])
    tags = [d[0] for d in sink.deliveries]
    assert len(tags) == 3
    assert len(set(tags)) == 3  # one each, never two to the same consumer


def test_global_prefetch_ignores_basic_get_messages(world):
    # RabbitMQ's limiter counts only consumer deliveries (rabbit_channel:notify_limiter skips
    # unacked entries whose consumer tag is 'none', i.e. basic.get); a basic.get does not use up
    # the channel's global prefetch.
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "g")
    world.vhost.declare_queue(ch.session, "q")
    publish(ch, "g", "got")
    ch.basic_qos(0, 1, True)
    get_tag = ch.basic_get("g", False)[0]
    consume(ch, "q", "c")
    publish(ch, "q", "m1")
    assert sink.bodies == [b"m1"]
    ch.basic_ack(get_tag, False)


def test_global_prefetch_ack_of_get_message_resumes_delivery(world):
    # Whatever counts against the global limit, acking it must let held-back messages flow.
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "g")
    world.vhost.declare_queue(ch.session, "q")
    publish(ch, "g", "got")
    ch.basic_qos(0, 2, True)
    get_tag = ch.basic_get("g", False)[0]
    consume(ch, "q", "c")
    publish(ch, "q", "m1", "m2")
    assert b"m1" in sink.bodies
    ch.basic_ack(get_tag, False)
    assert sink.bodies == [b"m1", b"m2"]


# --- flow control (writable) ---------------------------------------------------------------------


def test_unwritable_sink_holds_deliveries_until_resume(world):
    ch, sink = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    consume(ch, "q", "c")
    sink.blocked = True
    publish(ch, "q", "m1", "m2", "m3")
    assert sink.events == []
    assert queue.message_count == 3
    sink.blocked = False
    ch.resume()
    assert sink.bodies == [b"m1", b"m2", b"m3"]
    assert [d[1] for d in sink.deliveries] == [1, 2, 3]
    assert queue.message_count == 0


def test_sink_becoming_unwritable_mid_dispatch_stops_delivery(world):
    ch, sink = world.channel(sink=SinkDouble(capacity=4))  # room for two 2-byte bodies
    queue = world.vhost.declare_queue(ch.session, "q")
    publish(ch, "q", *[f"m{i}" for i in range(1, 6)])
    consume(ch, "q", "c")
    assert sink.bodies == [b"m1", b"m2"]
    assert queue.message_count == 3
    sink.capacity = 4
    ch.resume()
    assert sink.bodies == [b"m1", b"m2", b"m3", b"m4"]
    sink.capacity = None
    ch.resume()
    assert sink.bodies == [f"m{i}".encode() for i in range(1, 6)]
    assert queue.message_count == 0


def test_unwritable_channel_skipped_other_consumer_served(world):
    s = world.session()
    ch1, sink1 = world.channel(s, 1)
    ch2, sink2 = world.channel(s, 2)
    world.vhost.declare_queue(s, "q")
    consume(ch1, "q", "c1")
    consume(ch2, "q", "c2")
    sink1.blocked = True
    publish(ch1, "q", "m1", "m2", "m3")
    assert sink1.events == []
    assert sink2.bodies == [b"m1", b"m2", b"m3"]


def test_resume_on_closed_channel_does_nothing(world):
    ch, sink = world.channel()
    world.vhost.declare_queue(ch.session, "q")
    consume(ch, "q", "c")
    ch.close()
    publish(world.channel(number=2)[0], "q", "m")
    ch.resume()
    assert sink.events == []


# --- purge ---------------------------------------------------------------------------------------


def test_purge_counts_ready_only_and_keeps_unacked(world):
    ch, sink = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    ch.basic_qos(0, 1, False)
    consume(ch, "q", "c")
    publish(ch, "q", "m1", "m2", "m3")
    assert sink.bodies == [b"m1"]
    assert queue.message_count == 2
    assert queue.purge() == 2
    assert queue.message_count == 0
    assert queue.purge() == 0
    # The unacked message survives the purge and can be requeued and redelivered.
    sink.clear()
    ch.basic_reject(1, True)
    assert sink.deliveries == [("c", 2, True, b"m1")]


def test_purge_includes_requeued_entries(world):
    ch, _ = world.channel()
    queue = world.vhost.declare_queue(ch.session, "q")
    publish(ch, "q", "m1", "m2")
    tag = ch.basic_get("q", False)[0]
    ch.basic_reject(tag, True)
    assert queue.message_count == 2
    assert queue.purge() == 2
    assert ch.basic_get("q", True) is None


# --- auto-delete ---------------------------------------------------------------------------------


def test_auto_delete_queue_not_deleted_before_any_consumer(world):
    ch, _ = world.channel()
    world.vhost.declare_queue(ch.session, "q", auto_delete=True)
    publish(ch, "q", "m")
    assert "q" in world.vhost.queues
    ch.basic_get("q", True)
    ch.close()
    assert "q" in world.vhost.queues


def test_auto_delete_queue_deleted_with_last_consumer(world):
    s = world.session()
    ch, sink = world.channel(s, 1)
    queue = world.vhost.declare_queue(s, "q", auto_delete=True)
    world.vhost.bind_queue(queue, world.vhost.exchanges["amq.fanout"], "", {})
    consume(ch, "q", "c1")
    consume(ch, "q", "c2")
    ch.basic_cancel("c1")
    assert "q" in world.vhost.queues
    ch.basic_cancel("c2")
    assert "q" not in world.vhost.queues
    assert queue.deleted
    assert world.vhost.exchanges["amq.fanout"].bindings == {}
    # Its own consumer's cancel needs no server-sent cancel.
    assert ("cancel", "c1") not in sink.events and ("cancel", "c2") not in sink.events
    with pytest.raises(ChannelError) as info:
        world.vhost.declare_queue(s, "q", passive=True)
    assert info.value.reply_code == NOT_FOUND
    assert info.value.reply_text == "NOT_FOUND - no queue 'q' in vhost '/'"


def test_auto_delete_queue_deleted_when_consumer_channel_closes(world):
    ch, _ = world.channel()
    world.vhost.declare_queue(ch.session, "q", auto_delete=True)
    consume(ch, "q", "c")
    ch.close()
    assert "q" not in world.vhost.queues


def test_cancel_of_unknown_tag_is_fine(world):
    ch, _ = world.channel()
    world.vhost.declare_queue(ch.session, "q", auto_delete=True)
    ch.basic_cancel("nope")
    assert "q" in world.vhost.queues


def test_queue_delete_notifies_consumers_with_capability(world):
    s_notify = world.session(cancel_notify=True)
    s_plain = world.session(cancel_notify=False)
    ch1, sink1 = world.channel(s_notify, 1)
    ch2, sink2 = world.channel(s_plain, 1)
    queue = world.vhost.declare_queue(s_notify, "q")
    consume(ch1, "q", "ctag-x")
    consume(ch2, "q", "ctag-y")
    assert world.vhost.delete_queue(queue) == 0
    assert sink1.events == [("cancel", "ctag-x")]
    assert sink2.events == []
    assert ch1.consumers == {} and ch2.consumers == {}
    ch1.basic_cancel("ctag-x")  # the client's own cancel afterwards is fine


# --- delete if-unused / if-empty -----------------------------------------------------------------


def test_check_delete_texts(world):
    ch, _ = world.channel()
    queue = world.vhost.declare_queue(ch.session, "probe.q")
    queue.check_delete(True, True)
    publish(ch, "probe.q", "m")
    with pytest.raises(ChannelError) as info:
        queue.check_delete(False, True)
    assert info.value.reply_code == PRECONDITION_FAILED
    assert info.value.reply_text == "PRECONDITION_FAILED - queue 'probe.q' in vhost '/' not empty"
    consume(ch, "probe.q", "c")
    with pytest.raises(ChannelError) as info:
        queue.check_delete(True, False)
    assert info.value.reply_text == "PRECONDITION_FAILED - queue 'probe.q' in vhost '/' in use"
    # Only unacked left: if-empty holds (RabbitMQ counts ready messages only).
    queue.check_delete(False, True)


# --- exclusive queues (405) ----------------------------------------------------------------------


def test_exclusive_queue_other_connection_is_locked(world):
    owner = world.session()
    other = world.session()
    queue = world.vhost.declare_queue(owner, "probe.excl", exclusive=True)
    assert queue.exclusive and queue.exclusive_owner is owner
    assert queue in owner.exclusive_queues
    ch_other, _ = world.channel(other)
    calls = {
        "passive declare": lambda: world.vhost.declare_queue(other, "probe.excl", passive=True),
        "declare exclusive": lambda: world.vhost.declare_queue(other, "probe.excl", exclusive=True),
        "declare plain": lambda: world.vhost.declare_queue(other, "probe.excl"),
        "get_queue": lambda: world.vhost.get_queue("probe.excl", other),
        "consume": lambda: ch_other.basic_consume("probe.excl", "c", False, False, {}),
        "get": lambda: ch_other.basic_get("probe.excl", False),
    }
    for name, call in calls.items():
        with pytest.raises(ChannelError) as info:
            call()
        assert info.value.reply_code == RESOURCE_LOCKED, name
        assert info.value.reply_text == LOCKED_TEXT, name
    assert ch_other.consumers == {}
    assert queue.consumer_count == 0
    # The owner may use it.
    assert world.vhost.get_queue("probe.excl", owner) is queue
    assert world.vhost.declare_queue(owner, "probe.excl", exclusive=True) is queue
    ch_owner, _ = world.channel(owner)
    assert ch_owner.basic_consume("probe.excl", "c", False, False, {}) == "c"


def test_exclusive_flag_mismatch_same_connection_is_locked(world):
    s = world.session()
    world.vhost.declare_queue(s, "probe.excl", exclusive=True)
    with pytest.raises(ChannelError) as info:
        world.vhost.declare_queue(s, "probe.excl", exclusive=False)
    assert info.value.reply_text == LOCKED_TEXT
    world.vhost.declare_queue(s, "probe.q2")
    with pytest.raises(ChannelError) as info:
        world.vhost.declare_queue(s, "probe.q2", exclusive=True)
    assert info.value.reply_code == RESOURCE_LOCKED
    assert "locked queue 'probe.q2'" in info.value.text


def test_exclusive_queue_deleted_with_its_session(world):
    owner = world.session()
    ch, _ = world.channel(owner)
    queue = world.vhost.declare_queue(owner, "probe.excl", exclusive=True)
    world.vhost.bind_queue(queue, world.vhost.exchanges["amq.direct"], "k", {})
    publish(ch, "probe.excl", "m")
    owner.close()
    assert "probe.excl" not in world.vhost.queues
    assert world.vhost.exchanges["amq.direct"].bindings == {}
    assert owner.exclusive_queues == set()
    assert owner not in world.broker.sessions
    # Another connection may now declare it.
    other = world.session()
    assert world.vhost.declare_queue(other, "probe.excl", exclusive=True).exclusive_owner is other


# --- exclusive consumers (403) -------------------------------------------------------------------


def test_exclusive_consumer_refused_when_queue_has_consumers(world):
    s = world.session()
    ch1, _ = world.channel(s, 1)
    ch2, _ = world.channel(s, 2)
    queue = world.vhost.declare_queue(s, "probe.q")
    consume(ch1, "probe.q", "plain")
    with pytest.raises(ChannelError) as info:
        ch2.basic_consume("probe.q", "excl", False, True, {})
    assert info.value.reply_code == ACCESS_REFUSED
    assert info.value.reply_text == EXCLUSIVE_USE_TEXT
    assert "excl" not in ch2.consumers
    assert queue.consumer_count == 1


def test_consume_refused_when_queue_has_exclusive_consumer(world):
    s = world.session()
    ch1, sink1 = world.channel(s, 1)
    ch2, _ = world.channel(s, 2)
    queue = world.vhost.declare_queue(s, "probe.q")
    consume(ch1, "probe.q", "excl", exclusive=True)
    for exclusive in (False, True):
        with pytest.raises(ChannelError) as info:
            ch2.basic_consume("probe.q", "other", False, exclusive, {})
        assert info.value.reply_code == ACCESS_REFUSED
        assert info.value.reply_text == EXCLUSIVE_USE_TEXT
    assert ch2.consumers == {}
    assert queue.consumer_count == 1
    # basic.get is still allowed (RabbitMQ answers get-empty / get-ok).
    assert ch2.basic_get("probe.q", True) is None
    # Once the exclusive consumer cancels, others may consume.
    ch1.basic_cancel("excl")
    assert consume(ch2, "probe.q", "other") == "other"
    assert queue.consumer_count == 1
