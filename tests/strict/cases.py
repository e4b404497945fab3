"""One case per strict-mode rule: the bytes that break it, sent the same way to any broker, and
the close strict=close answers them with."""

from __future__ import annotations

import struct
import uuid

from pamqp import commands as C

from strict_client import ACCEPTED, Client, frame, method, publish, sstr


def _name() -> bytes:
    return f"strict.case.{uuid.uuid4().hex[:8]}".encode()


def _x_headers() -> bytes:
    table = b"\x03bin" + b"x" + struct.pack(">I", 3) + b"abc"
    return b"\x20\x00" + struct.pack(">I", len(table)) + table


def reserved_ticket(c: Client):
    c.open()
    # queue.declare of a server-named exclusive queue (gone with the connection), ticket 7.
    c.sock.sendall(method(1, 50, 10, struct.pack(">H", 7) + sstr(b"") + b"\x04" + b"\x00" * 4))
    return c.observe()


def reserved_open_field(c: Client):
    c.open()
    c.sock.sendall(method(2, 20, 10, sstr(b"oob")))
    return c.observe(2)


def exchange_reserved_bit(c: Client):
    c.open()
    name = _name()
    c.sock.sendall(method(1, 40, 10, b"\x00\x00" + sstr(name) + sstr(b"direct") + b"\x04" + b"\x00" * 4))
    seen = c.observe()
    if seen == ACCEPTED:
        c.sock.sendall(method(1, 40, 20, b"\x00\x00" + sstr(name) + b"\x00"))
        assert isinstance(c.next(), C.Exchange.DeleteOk)
    return seen


def name_syntax(c: Client):
    c.open()
    name = "strict case \u00e9 ".encode() + _name()  # a space and a letter outside [a-zA-Z]
    c.sock.sendall(method(1, 50, 10, b"\x00\x00" + sstr(name) + b"\x04" + b"\x00" * 4))  # exclusive
    return c.observe()


def channel_max(c: Client):
    c.open(channel_max=10, channel=False)
    c.sock.sendall(method(11, 20, 10, sstr(b"")))
    return c.observe(11)


def frame_max(c: Client):
    c.open(frame_max=4096)
    body = b"y" * 4093  # 4101 octets with header and frame-end: over 4096, within RabbitMQ's 4096 + 8
    c.sock.sendall(method(1, 60, 40, b"\x00\x00" + sstr(b"") + sstr(_name()) + b"\x00")
                   + frame(2, 1, struct.pack(">HHQ", 60, 0, len(body)) + b"\x00\x00")
                   + frame(3, 1, body))
    return c.observe()


def property_flag_reserved(c: Client):
    c.open()
    c.sock.sendall(publish(1, _name(), b"\x00\x02"))
    return c.observe()


def reserved_property(c: Client):
    c.open()
    c.sock.sendall(publish(1, _name(), b"\x00\x04" + sstr(b"cluster-a")))
    return c.observe()


def priority_range(c: Client):
    c.open()
    c.sock.sendall(publish(1, _name(), b"\x08\x00" + bytes((200,))))
    return c.observe()


def field_type(c: Client):
    c.open()
    c.sock.sendall(publish(1, _name(), _x_headers()))
    return c.observe()


def locale(c: Client):
    c.sock.sendall(b"AMQP\x00\x00\x09\x01")
    assert isinstance(c.next(), C.Connection.Start)
    c.send(0, C.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                   response="\0guest\0guest", locale="xx_XX"))
    number, reply = c.next_frame()
    if isinstance(reply, C.Connection.Tune):
        c.send(0, C.Connection.TuneOk(channel_max=reply.channel_max, frame_max=reply.frame_max, heartbeat=0))
        c.send(0, C.Connection.Open(virtual_host="/"))
        assert isinstance(c.next(), C.Connection.OpenOk)
        return ACCEPTED
    if isinstance(reply, C.Connection.Close):
        return ("connection.close", reply.reply_code, reply.class_id, reply.method_id, reply.reply_text)
    return ("socket closed",) if reply is None else (type(reply).__name__,)


# rule -> (case, the close strict=close sends: kind, reply code, class id, method id)
CASES = {
    "reserved-ticket": (reserved_ticket, ("connection.close", 502, 50, 10)),
    "reserved-open-field": (reserved_open_field, ("connection.close", 502, 20, 10)),
    "exchange-reserved-bit": (exchange_reserved_bit, ("connection.close", 502, 40, 10)),
    "name-syntax": (name_syntax, ("channel.close", 406, 50, 10)),
    "channel-max": (channel_max, ("connection.close", 530, 20, 10)),
    "frame-max": (frame_max, ("connection.close", 501, 0, 0)),
    "property-flag-reserved": (property_flag_reserved, ("connection.close", 502, 60, 40)),
    "reserved-property": (reserved_property, ("connection.close", 502, 60, 40)),
    "priority-range": (priority_range, ("connection.close", 502, 60, 40)),
    "field-type": (field_type, ("connection.close", 502, 60, 40)),
    "locale": (locale, ("connection.close", 502, 10, 11)),
}


def run(case, host: str, port: int):
    client = Client(host, port)
    try:
        return case(client)
    finally:
        client.close()


def shortstr(c: Client):
    c.open()
    c.sock.sendall(publish(1, b"strict\x00" + _name(), b"\x00\x00"))
    return c.observe()


CASES["shortstr"] = (shortstr, ("connection.close", 502, 60, 40))
