"""Queue arguments and queue types as data (broker/arguments.py, broker/queue_types.py)."""

from __future__ import annotations

import datetime
import decimal
import subprocess
import sys

import pytest

from amqp_broker.broker.arguments import (
    ARGUMENTS,
    NEEDS_EXTENSIONS,
    check_dead_letter_exchange,
    check_queue_arguments_equivalent,
    inequivalent,
    queue_type,
    setting,
    validate_queue_arguments,
)
from amqp_broker.broker.fields import TypedTable, field_type_name
from amqp_broker.broker.queue import Queue
from amqp_broker.broker.queue_types import QUEUE_TYPES, queue_type_of
from amqp_broker.broker.stream import StreamQueue
from amqp_broker.errors import ChannelError

OWNER = "queue 'q' in vhost '/'"


def refused(call) -> str:
    with pytest.raises(ChannelError) as info:
        call()
    assert info.value.reply_code == 406
    return info.value.reply_text


@pytest.mark.parametrize("value,name", [
    (None, "void"), (True, "bool"), (1, "signedint"), (2**31, "long"), (1.5, "double"),
    (decimal.Decimal("1.5"), "decimal"), (datetime.datetime(2020, 1, 1), "timestamp"),
    (bytearray(b"x"), "binary"), ("x", "longstr"), (b"\xff", "longstr"), ({}, "table"),
    (TypedTable(), "table"), ([], "array"),
])
def test_field_type_names_are_rabbitmqs(value, name):
    assert field_type_name(value) == name


def test_validation_reports_the_first_bad_argument_in_rabbitmq_order():
    arguments = {"x-overflow": "nope", "x-message-ttl": bytearray(b"1")}
    assert refused(lambda: validate_queue_arguments("q", "/", arguments)) == (
        "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': "
        '"expected integer, got binary"'
    )


def test_dead_letter_routing_key_needs_an_exchange():
    assert refused(lambda: validate_queue_arguments("q", "/", {"x-dead-letter-routing-key": "k"})).endswith(
        "'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"
    )


def test_dead_letter_exchange_must_be_a_longstr():
    check_dead_letter_exchange(OWNER, {"x-dead-letter-exchange": b"dlx"})
    assert refused(lambda: check_dead_letter_exchange(OWNER, {"x-dead-letter-exchange": None})) == (
        "PRECONDITION_FAILED - invalid type 'void' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
    )


def test_an_omitted_queue_type_is_classic_on_redeclaration():
    check_queue_arguments_equivalent(OWNER, {}, {"x-queue-type": "classic"})
    check_queue_arguments_equivalent(OWNER, {"x-queue-type": b"classic"}, {})
    assert refused(lambda: check_queue_arguments_equivalent(OWNER, {}, {"x-queue-type": "quorum"})) == (
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': "
        "received none but current is the value 'quorum' of type 'longstr'"
    )


def test_redeclaration_compares_integers_of_any_width_and_ignores_unknown_arguments():
    check_queue_arguments_equivalent(OWNER, {"x-max-length": 2**31, "x-foo": 1}, {"x-max-length": 2**31})
    assert refused(lambda: check_queue_arguments_equivalent(OWNER, {"x-max-length": 1}, {"x-max-length": 2**31})) == (
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': "
        "received '1' but current is '2147483648'"
    )
    assert "received the value '1' of type 'signedint' but current is the value '1' of type 'longstr'" in (
        refused(lambda: check_queue_arguments_equivalent(OWNER, {"x-max-length": 1}, {"x-max-length": "1"}))
    )


def test_inequivalent_prints_booleans_as_erlang_does():
    assert inequivalent("durable", OWNER, True, False).reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': "
        "received 'true' but current is 'false'"
    )


def test_settings_read_what_the_queue_acts_on():
    arguments = {"x-message-ttl": 5, "x-dead-letter-exchange": b"dlx", "x-single-active-consumer": True,
                 "x-queue-type": bytearray(b"quorum"), "x-max-priority": True}
    assert setting(arguments, "x-message-ttl") == 5
    assert setting(arguments, "x-dead-letter-exchange") == "dlx"
    assert setting(arguments, "x-single-active-consumer") is True
    assert setting(arguments, "x-max-priority") is None  # a bool is no integer
    assert setting(arguments, "x-expires") is None
    assert queue_type(arguments) == "quorum"
    assert queue_type({}) == "classic"
    assert set(NEEDS_EXTENSIONS) == {
        "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-max-length", "x-max-length-bytes",
    }


def test_every_queue_type_has_a_class_and_a_row_of_accepted_arguments():
    assert queue_type_of({}).queue_class is Queue
    assert queue_type_of({"x-queue-type": "quorum"}).queue_class is Queue
    assert queue_type_of({"x-queue-type": b"stream"}).queue_class is StreamQueue
    for row in ARGUMENTS.values():
        assert row.types <= set(QUEUE_TYPES)


def test_a_type_refuses_the_arguments_it_does_not_accept_in_declare_order():
    stream = QUEUE_TYPES["stream"]
    arguments = {"x-foo": 1, "x-max-age": "1D", "x-message-ttl": 5, "x-max-priority": 3}
    assert refused(lambda: stream.check_new_queue(OWNER, True, False, False, arguments)) == (
        "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/' "
        "of queue type rabbit_stream_queue"
    )
    assert refused(lambda: QUEUE_TYPES["quorum"].check_new_queue(OWNER, False, False, False, {})) == (
        "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q' in vhost '/'"
    )
    QUEUE_TYPES["classic"].check_new_queue(OWNER, False, True, True, {"x-max-priority": 3})


def test_only_classic_queues_may_be_server_named():
    QUEUE_TYPES["classic"].check_server_named()
    assert refused(QUEUE_TYPES["quorum"].check_server_named) == (
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"
    )


@pytest.mark.parametrize("module", ["arguments", "queue_types", "queue", "extensions", "stream", "vhost"])
def test_each_queue_module_imports_first_without_a_cycle(module):
    # Module-level imports only: importing any of them first in a fresh interpreter must work.
    subprocess.run([sys.executable, "-c", f"import amqp_broker.broker.{module}"], check=True)
