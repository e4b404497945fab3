"""Queue buffers: FIFO with requeue-in-place, and priority levels."""

from amqp_broker.broker.buffer import ClassicBuffer, PriorityBuffer
from amqp_broker.broker.message import Message, QueueEntry


def entry(seq, priority=None, body=b"x"):
    return QueueEntry(Message("", "q", b"\x00\x00", body, priority=priority), None, seq)


def drain(buffer):
    out = []
    while (e := buffer.pop()) is not None:
        out.append(e.seq)
    return out


def test_classic_requeue_goes_back_to_its_position():
    buffer = ClassicBuffer()
    entries = [entry(i, body=b"ab") for i in range(1, 6)]
    for e in entries:
        buffer.append(e)
    assert buffer.bytes == 10
    first, second = buffer.pop(), buffer.pop()
    buffer.append(entry(6))
    buffer.requeue(second)
    buffer.requeue(first)
    assert len(buffer) == 6 and buffer.peek().seq == 1
    assert drain(buffer) == [1, 2, 3, 4, 5, 6]
    assert buffer.bytes == 0 and not buffer


def test_classic_clear_returns_everything():
    buffer = ClassicBuffer()
    for i in range(1, 4):
        buffer.append(entry(i))
    buffer.requeue(buffer.pop())
    assert sorted(e.seq for e in buffer.clear()) == [1, 2, 3]
    assert len(buffer) == 0 and buffer.pop() is None and buffer.peek() is None


def test_priority_levels_highest_first_fifo_within_a_level():
    buffer = PriorityBuffer(5)
    for seq, priority in [(1, None), (2, 3), (3, 9), (4, 3), (5, 0), (6, 5)]:
        buffer.append(entry(seq, priority))
    # 9 counts as the maximum (5): after 6? no - same level, FIFO by arrival: 3 then 6.
    assert drain(buffer) == [3, 6, 2, 4, 1, 5]


def test_priority_requeue_keeps_position_within_level():
    buffer = PriorityBuffer(2)
    for seq in (1, 2, 3):
        buffer.append(entry(seq, 2))
    buffer.append(entry(4, 1))
    taken = buffer.pop()
    assert taken.seq == 1
    buffer.requeue(taken)
    assert drain(buffer) == [1, 2, 3, 4]


# -- take: a consumer's free prefetch in one step ------------------------------------------------------


def test_take_returns_up_to_count_in_order():
    buffer = ClassicBuffer()
    for i in range(1, 8):
        buffer.append(entry(i, body=b"abc"))
    assert [e.seq for e in buffer.take(3, 1 << 20)] == [1, 2, 3]
    assert len(buffer) == 4 and buffer.bytes == 12
    assert [e.seq for e in buffer.take(10, 1 << 20)] == [4, 5, 6, 7]
    assert not buffer and buffer.bytes == 0
    assert buffer.take(5, 1 << 20) == []


def test_take_stops_at_the_message_that_reaches_the_byte_budget():
    buffer = ClassicBuffer()
    for i in range(1, 6):
        buffer.append(entry(i, body=b"x" * 10))
    # 25 bytes: the third body crosses it and is the last one taken (as a per-message
    # writability check would let it through); the rest stays, in order.
    assert [e.seq for e in buffer.take(5, 25)] == [1, 2, 3]
    assert [e.seq for e in buffer.take(5, 1)] == [4]  # always at least one
    assert buffer.bytes == 10 and drain(buffer) == [5]


def test_take_serves_requeued_entries_in_their_positions():
    buffer = ClassicBuffer()
    for i in range(1, 5):
        buffer.append(entry(i))
    first, second = buffer.pop(), buffer.pop()
    buffer.requeue(second)
    buffer.requeue(first)
    taken = []
    while buffer:
        taken.extend(e.seq for e in buffer.take(10, 1 << 20))
    assert taken == [1, 2, 3, 4]


def test_priority_take_serves_the_highest_level_first():
    buffer = PriorityBuffer(3)
    for seq, priority in [(1, 0), (2, 3), (3, 3), (4, 1)]:
        buffer.append(entry(seq, priority))
    assert [e.seq for e in buffer.take(10, 1 << 20)] == [2, 3]
    assert [e.seq for e in buffer.take(10, 1 << 20)] == [4]
    assert [e.seq for e in buffer.take(10, 1 << 20)] == [1]
    assert buffer.take(10, 1 << 20) == []
