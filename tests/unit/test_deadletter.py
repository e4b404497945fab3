"""x-death construction, cycle detection and expiration parsing (broker/deadletter.py, expiry.py),
pinned to what RabbitMQ 3.10.8 produced for the same histories (see the integration tests)."""

from __future__ import annotations

import datetime

import pytest

from amqp_broker.broker import deadletter
from amqp_broker.broker import properties as basic_properties
from amqp_broker.broker.deadletter import dead_letter_properties, is_cycle, make_dead_letter
from amqp_broker.broker.expiry import parse_expiration
from amqp_broker.broker.fields import TypedArray, TypedTable
from amqp_broker.broker.message import Message
from amqp_broker.errors import AMQPError

NOW = 1_700_000_000
TIME = datetime.datetime.fromtimestamp(NOW, tz=datetime.timezone.utc)


def show(value):
    if isinstance(value, TypedTable):
        return [(k, t, show(v)) for k, t, v in value.entries()]
    if isinstance(value, TypedArray):
        return [(t, show(v)) for t, v in value.items_typed()]
    return value


def die(properties, reason="rejected", queue="q", exchange="", routing_key="q", dlrk=None, now=NOW):
    return dead_letter_properties(properties, reason, queue, exchange, routing_key, dlrk, now)


FIRST_Q = [("count", "l", 1), ("reason", "S", "rejected"), ("queue", "S", "q"), ("time", "T", TIME),
           ("exchange", "S", ""), ("routing-keys", "A", [("S", "q")])]


def test_first_death_builds_entry_in_rabbitmq_order_and_first_death_headers():
    props = die({"content_type": "text/plain", "expiration": "60000"})
    assert "expiration" not in props and props["content_type"] == "text/plain"
    assert show(props["headers"]) == [
        ("x-death", "A", [("F", FIRST_Q + [("original-expiration", "S", "60000")])]),
        ("x-first-death-exchange", "S", ""),
        ("x-first-death-queue", "S", "q"),
        ("x-first-death-reason", "S", "rejected"),
    ]


def test_user_headers_keep_types_and_the_table_is_sorted():
    headers = TypedTable([("z", "I", 1), ("a", "S", "s"), ("big", "l", 5)])
    props = die({"headers": headers})
    assert [k for k in props["headers"]] == ["a", "big", "x-death", "x-first-death-exchange",
                                             "x-first-death-queue", "x-first-death-reason", "z"]
    assert props["headers"].types["z"] == "I" and props["headers"].types["big"] == "l"
    assert [k for k in headers] == ["z", "a", "big"]  # the input is not modified


def test_cc_is_listed_in_routing_keys_and_removed_with_a_dead_letter_routing_key():
    cc = TypedArray([("S", "foo"), ("S", "bar")])
    headers = TypedTable([("CC", "A", cc)])
    kept = die({"headers": headers})
    assert "CC" in kept["headers"]
    assert show(kept["headers"]["x-death"][0]["routing-keys"]) == [("S", "q"), ("S", "foo"), ("S", "bar")]
    removed = die({"headers": headers}, dlrk="target")
    assert "CC" not in removed["headers"]


def test_repeat_increments_count_sorts_entry_and_moves_it_first():
    props = die({})
    props = die(props, queue="b", routing_key="b", now=NOW + 1)
    props = die(props, queue="q", now=NOW + 2)
    deaths = props["headers"]["x-death"]
    assert [(d["queue"], d["count"]) for d in deaths] == [("q", 2), ("b", 1)]
    assert list(deaths[0]) == ["count", "exchange", "queue", "reason", "routing-keys", "time"]
    assert deaths[0]["time"] == TIME  # only the count changes on a repeat
    assert deaths[0].types["count"] == "l"


def test_three_entries_come_back_reversed_as_in_rabbitmq():
    props = {}
    for queue in ("a", "b", "c"):
        props = die(props, queue=queue, routing_key=queue)
    assert [d["queue"] for d in props["headers"]["x-death"]] == ["c", "a", "b"]
    props = die(props, queue="a", routing_key="a")
    assert [(d["queue"], d["count"]) for d in props["headers"]["x-death"]] == [("a", 2), ("b", 1), ("c", 1)]


def test_duplicate_entries_from_old_brokers_are_merged_with_their_count():
    old = TypedTable([("reason", "S", "expired"), ("queue", "S", "q")])
    headers = TypedTable([("x-death", "A", TypedArray([("F", old), ("F", old.copy())]))])
    props = die({"headers": headers}, reason="rejected")
    deaths = props["headers"]["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [("q", "rejected", 1), ("q", "expired", 2)]


def test_x_death_of_another_type_is_reset_without_first_death_headers():
    headers = TypedTable([("x-death", "S", "garbage")])
    props = die({"headers": headers})
    assert show(props["headers"]) == [("x-death", "A", [("F", FIRST_Q)])]


def test_is_cycle_follows_rabbitmq():
    def d(queue, reason):
        return TypedTable([("queue", "S", queue), ("reason", "S", reason)])

    assert is_cycle("a", [d("a", "expired")])
    assert not is_cycle("a", [d("a", "rejected")])
    assert is_cycle("a", [d("b", "expired"), d("a", "maxlen")])
    assert not is_cycle("a", [d("b", "rejected"), d("a", "expired")])
    assert not is_cycle("c", [d("b", "expired"), d("a", "expired")])
    assert not is_cycle("a", ["not a table", d("a", "expired")])
    assert not is_cycle("a", None)


def test_make_dead_letter_sets_exchange_key_and_encodes_types():
    raw = basic_properties.properties_from_dict({"headers": {"x-delivery-count": 3, "h": 1}, "expiration": "5",
                                      "delivery_mode": 2})
    message = Message("ex", "rk", raw, b"body", 2, None, "5")
    copy = make_dead_letter(message, deadletter.EXPIRED, "q", "dlx", None, now=NOW, strip=("x-delivery-count",))
    assert (copy.exchange, copy.routing_key, copy.expiration, copy.delivery_mode, copy.body) == ("dlx", "rk", None, 2, b"body")
    headers = basic_properties.properties_to_dict(copy.properties_raw)["headers"]
    assert "x-delivery-count" not in headers and headers.types["h"] == "b"
    entry = headers["x-death"][0]
    assert entry.types["count"] == "l" and entry.types["time"] == "T"
    assert entry["original-expiration"] == "5" and entry["exchange"] == "ex"
    keyed = make_dead_letter(message, deadletter.REJECTED, "q", "dlx", "other", now=NOW)
    assert keyed.routing_key == "other"


@pytest.mark.parametrize(
    "value, problem",
    [("abc", "no_integer"), ("", "no_integer"), ("-1", "{value_negative,-1}"),
     ("1.5", '{leftover_string,".5"}'), ("５", "no_integer"), ("1_000", '{leftover_string,"_000"}'),
     ("315360000001", "{value_too_large,315360000001}")],
)
def test_parse_expiration_refuses_as_rabbitmq(value, problem):
    with pytest.raises(AMQPError) as info:
        parse_expiration(value)
    assert info.value.reply_code == 406
    assert info.value.text == f"invalid expiration '{value}': {problem}"


@pytest.mark.parametrize("value, ms", [("0", 0), ("+5", 5), ("-0", 0), ("007", 7), ("315360000000", 315360000000)])
def test_parse_expiration_accepts(value, ms):
    assert parse_expiration(value) == ms


def test_typed_headers_round_trip_byte_for_byte():
    """properties_to_dict/properties_from_dict keep every field type and the key order, so a
    re-encoded message differs from the original only where the broker changed it."""
    import decimal

    import pika

    props = pika.BasicProperties(
        content_type="t", expiration="100",
        headers={"z": 1, "a": "s", "big": 2**40, "n": {"x": [1, "a"]}, "d": decimal.Decimal("1.25"),
                 "t": datetime.datetime(2020, 1, 1), "b": True, "v": None, "by": b"\xff\x00"},
    )
    raw = b"".join(props.encode())
    decoded = basic_properties.properties_to_dict(raw)
    assert decoded["headers"] == basic_properties.peek_headers(raw)
    assert basic_properties.properties_from_dict(decoded) == raw
