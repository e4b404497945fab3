"""Candidates for strict rules that are not rules: RabbitMQ 3.10.8 already refuses them, so our
broker must too, in every strict mode, with RabbitMQ's close."""

from __future__ import annotations

import struct

from strict_client import Client, frame, header, method, sstr


def _open(c: Client) -> Client:
    return c.open()


def heartbeat_on_a_channel(c: Client):
    _open(c).sock.sendall(frame(8, 1, b""))
    return c.observe()


def heartbeat_with_a_payload(c: Client):
    _open(c).sock.sendall(frame(8, 0, b"xy"))
    return c.observe()


def _publish_method(routing_key: bytes = b"strict.nowhere", bits: int = 0) -> bytes:
    return method(1, 60, 40, b"\x00\x00" + sstr(b"") + sstr(routing_key) + bytes((bits,)))


def header_weight(c: Client):
    _open(c).sock.sendall(_publish_method()
                          + frame(2, 1, struct.pack(">HHQ", 60, 3, 1) + b"\x00\x00") + frame(3, 1, b"z"))
    return c.observe()


def header_class_mismatch(c: Client):
    _open(c).sock.sendall(_publish_method()
                          + frame(2, 1, struct.pack(">HHQ", 50, 0, 1) + b"\x00\x00") + frame(3, 1, b"z"))
    return c.observe()


def prefetch_size(c: Client):
    _open(c).sock.sendall(method(1, 60, 10, struct.pack(">IHB", 10, 0, 0)))
    return c.observe()


def immediate(c: Client):
    _open(c).sock.sendall(_publish_method(bits=2) + header(1, 1, b"\x00\x00") + frame(3, 1, b"z"))
    return c.observe()


def flow_inactive(c: Client):
    _open(c).sock.sendall(method(1, 20, 20, b"\x00"))
    return c.observe()


def unsolicited_close_ok(c: Client):
    _open(c).sock.sendall(method(1, 20, 41, b""))
    return c.observe()


def unsolicited_flow_ok(c: Client):
    _open(c).sock.sendall(method(1, 20, 21, b"\x01"))
    return c.observe()


def client_connection_blocked(c: Client):
    _open(c).sock.sendall(method(0, 10, 60, sstr(b"busy")))
    return c.observe()


REFUSED = {
    "heartbeat on a channel": heartbeat_on_a_channel,
    "heartbeat with a payload": heartbeat_with_a_payload,
    "content header weight": header_weight,
    "content header class": header_class_mismatch,
    "basic.qos prefetch_size": prefetch_size,
    "basic.publish immediate": immediate,
    "channel.flow active=false": flow_inactive,
    "unsolicited channel.close-ok": unsolicited_close_ok,
    "unsolicited channel.flow-ok": unsolicited_flow_ok,
    "connection.blocked from a client": client_connection_blocked,
}
