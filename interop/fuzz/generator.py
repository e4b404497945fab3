"""Structure-aware AMQP 0-9-1 inputs: whole sessions of every method with random field values,
content in and out of order, then byte mutations (truncation, wrong lengths, wrong frame ends,
wrong channels, oversized and deeply nested tables).

Names come mostly from a small pool, so the methods of one input meet each other (a queue is
declared, bound, published to, consumed from, deleted) and reach the broker's deeper paths rather
than bouncing off 404s. Everything is drawn from one ``random.Random``: a seed replays an input.
"""

from __future__ import annotations

import random
import struct
from typing import Any

from pamqp import commands as C
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
QUEUES = ("q0", "q1", "amq.gen-x", "amq.rabbitmq.reply-to", "")
EXCHANGES = ("", "x0", "x1", "amq.direct", "amq.topic", "amq.fanout", "amq.headers", "missing")
KEYS = ("q0", "q1", "a.b", "#", "*.b", "", "k")
ARGUMENT_KEYS = (
    "x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
    "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-queue-type",
    "x-single-active-consumer", "x-queue-mode", "x-match", "x-priority", "x-cancel-on-ha-failover",
    "alternate-exchange", "x-delivery-limit", "x-stream-offset", "x-consumer-timeout",
)
EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers", "x-nope", "")
# The methods a client sends on an open connection, drawn most of the time...
CLIENT_METHODS = (
    C.Channel.Flow, C.Channel.FlowOk, C.Channel.Close, C.Channel.CloseOk,
    C.Exchange.Declare, C.Exchange.Delete, C.Exchange.Bind, C.Exchange.Unbind,
    C.Queue.Declare, C.Queue.Bind, C.Queue.Purge, C.Queue.Delete, C.Queue.Unbind,
    C.Basic.Qos, C.Basic.Consume, C.Basic.Cancel, C.Basic.Get, C.Basic.Ack, C.Basic.Reject,
    C.Basic.Recover, C.Basic.RecoverAsync, C.Basic.Nack, C.Tx.Select, C.Tx.Commit, C.Tx.Rollback,
    C.Confirm.Select, C.Connection.UpdateSecret, C.Connection.Blocked,
)
# ... and now and then any method at all (server-only and handshake ones too: all refused).
ALL_METHODS = tuple(C.INDEX_MAPPING.values())
_FRAME_HEADER = struct.Struct(">BHI")


def handshake(rng: random.Random) -> list[bytes]:
    """Protocol header, start-ok, tune-ok and open, each a frame of its own (so mutations can hit
    one of them), with a random frame_max and heartbeat now and then."""
    frame_max = rng.choice((131072, 131072, 4096, 0))
    return [
        PROTOCOL_HEADER,
        pframe.marshal(C.Connection.StartOk(
            client_properties={"capabilities": {"publisher_confirms": True, "basic.nack": True,
                                                "connection.blocked": rng.random() < 0.5,
                                                "consumer_cancel_notify": True}},
            mechanism="PLAIN", response="\0guest\0guest", locale="en_US"), 0),
        pframe.marshal(C.Connection.TuneOk(channel_max=2047, frame_max=frame_max, heartbeat=0), 0),
        pframe.marshal(C.Connection.Open(virtual_host=rng.choice(("/", "/", "/", "nope"))), 0),
    ]


def session(rng: random.Random, actions: int | None = None) -> list[bytes]:
    """One client's input as a list of frames (byte strings), before mutation."""
    frames = handshake(rng)
    channels = [1]
    frames.append(pframe.marshal(C.Channel.Open(), 1))
    for _ in range(actions if actions is not None else rng.randint(1, 24)):
        roll = rng.random()
        channel = rng.choice(channels)
        if roll < 0.08:
            channel = rng.randint(2, 6)
            channels.append(channel)
            frames.append(pframe.marshal(C.Channel.Open(), channel))
        elif roll < 0.40:
            frames.extend(publish(rng, channel))
        elif roll < 0.45:
            frames.extend(content_out_of_order(rng, channel))
        else:
            frames.append(method_frame(rng, channel))
    if rng.random() < 0.5:
        frames.append(pframe.marshal(C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 0))
    return frames


def method_frame(rng: random.Random, channel: int) -> bytes:
    """A random method with random (mostly meaningful) fields."""
    cls = rng.choice(CLIENT_METHODS if rng.random() < 0.9 else ALL_METHODS)
    kwargs = {name: field_value(rng, cls, name) for name in cls.__slots__}
    try:
        method = cls(**kwargs)
        return pframe.marshal(method, 0 if cls.name.startswith("Connection.") else channel)
    except Exception:  # pamqp refused a value (e.g. a too long shortstr): send it raw instead
        index = next(i for i, c in C.INDEX_MAPPING.items() if c is cls)
        payload = struct.pack(">I", index) + rng.randbytes(rng.randint(0, 40))
        return _FRAME_HEADER.pack(1, channel, len(payload)) + payload + b"\xce"


def field_value(rng: random.Random, cls: Any, name: str) -> Any:
    kind = cls.amqp_type(name)
    if name in ("queue",):
        return rng.choice(QUEUES) if rng.random() < 0.9 else short_string(rng)
    if name in ("exchange", "destination", "source"):
        return rng.choice(EXCHANGES) if rng.random() < 0.9 else short_string(rng)
    if name == "routing_key":
        return rng.choice(KEYS)
    if name == "exchange_type":
        return rng.choice(EXCHANGE_TYPES)
    if name == "arguments":
        return arguments(rng)
    if name == "delivery_tag":
        return rng.choice((0, 1, 2, 3, 5, 1 << 40))
    if name == "reply_code":
        return rng.choice((200, 320, 404, 406, 0, 999))
    if kind == "bit":
        return rng.random() < 0.3
    if kind == "octet":
        return rng.randint(0, 255)
    if kind == "short":
        return rng.choice((0, 1, 10, 65535, rng.randint(0, 65535)))
    if kind == "long":
        return rng.choice((0, 1, 100, 2**32 - 1, rng.randint(0, 2**32 - 1)))
    if kind in ("longlong", "timestamp"):
        return rng.choice((0, 1, 2**63, rng.randint(0, 2**64 - 1)))
    if kind == "shortstr":
        return short_string(rng)
    if kind == "longstr":
        return short_string(rng) * rng.randint(0, 3)
    if kind == "table":
        return table(rng, 2)
    return None


def short_string(rng: random.Random) -> str:
    alphabet = "abcxyz.-_#*\n\t\x00\x1b é/"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 0 and roll < 0.1:
        return table(rng, depth - 1)
    if depth > 0 and roll < 0.2:
        return [value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return rng.choice((0, 1, -1, 2**31 - 1, 10_000, "s", "", "reject-publish", "quorum", "stream",
                       "classic", "lazy", "all", "any", True, False, 1.5, None, b"\x00\xff"))


def table(rng: random.Random, depth: int) -> dict:
    return {short_string(rng) or "k": value(rng, depth) for _ in range(rng.randint(0, 3))}


def arguments(rng: random.Random) -> dict:
    return {rng.choice(ARGUMENT_KEYS): value(rng, 1) for _ in range(rng.randint(0, 3))}


def properties(rng: random.Random) -> C.Basic.Properties:
    fields: dict[str, Any] = {}
    if rng.random() < 0.4:
        fields["delivery_mode"] = rng.choice((1, 2))
    if rng.random() < 0.2:
        fields["expiration"] = rng.choice(("0", "100", "-1", "x", "99999999999999999999"))
    if rng.random() < 0.2:
        fields["priority"] = rng.randint(0, 255)
    if rng.random() < 0.2:
        fields["headers"] = table(rng, 2)
    if rng.random() < 0.1:
        fields["reply_to"] = rng.choice(("amq.rabbitmq.reply-to", "q0", ""))
    if rng.random() < 0.1:
        fields["user_id"] = rng.choice(("guest", "other"))
    return C.Basic.Properties(**fields)


def publish(rng: random.Random, channel: int) -> list[bytes]:
    body = rng.randbytes(rng.choice((0, 1, 16, 200, 5000)))
    method = C.Basic.Publish(exchange=rng.choice(EXCHANGES), routing_key=rng.choice(KEYS),
                             mandatory=rng.random() < 0.3, immediate=rng.random() < 0.02)
    try:
        header = pframe.marshal(ContentHeader(0, len(body), properties(rng)), channel)
    except Exception:  # a value pamqp will not encode: the publish goes without properties
        header = pframe.marshal(ContentHeader(0, len(body), C.Basic.Properties()), channel)
    frames = [pframe.marshal(method, channel), header]
    step = rng.choice((len(body) or 1, 1000, 7))
    frames.extend(pframe.marshal(ContentBody(body[i:i + step]), channel) for i in range(0, len(body), step))
    return frames


def content_out_of_order(rng: random.Random, channel: int) -> list[bytes]:
    header = pframe.marshal(ContentHeader(0, 10, C.Basic.Properties()), channel)
    body = pframe.marshal(ContentBody(b"0123456789"), channel)
    return rng.choice(([body], [header], [header, header], [body, header],
                       [pframe.marshal(C.Basic.Publish(exchange="", routing_key="q0"), channel), body]))


def deep_table_frame(rng: random.Random, channel: int, depth: int) -> bytes:
    """queue.declare whose arguments nest ``depth`` tables deep (built by hand: encoders recurse)."""
    inner = b""
    for _ in range(depth):
        entry = b"\x01k" + b"F" + struct.pack(">I", len(inner)) + inner
        inner = entry
    arguments_bytes = struct.pack(">I", len(inner)) + inner
    payload = (struct.pack(">HHH", 50, 10, 0) + b"\x02q0" + b"\x00" + arguments_bytes)
    return _FRAME_HEADER.pack(1, channel, len(payload)) + payload + b"\xce"


def mutate(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    """Apply 0-3 mutations, each to a random frame (rarely to the handshake)."""
    frames = list(frames)
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        low = 1 if rng.random() < 0.1 else min(4, len(frames) - 1)
        i = rng.randint(low, len(frames) - 1)
        frame = bytearray(frames[i])
        kind = rng.randrange(9)
        if kind == 0 and frame:  # truncate
            frames[i] = bytes(frame[: rng.randrange(len(frame))])
        elif kind == 1 and frame:  # flip a byte
            frame[rng.randrange(len(frame))] = rng.randrange(256)
            frames[i] = bytes(frame)
        elif kind == 2 and len(frame) >= 7:  # wrong length
            frame[3:7] = struct.pack(">I", rng.choice((0, 1, len(frame), 2**31, 2**32 - 1)))
            frames[i] = bytes(frame)
        elif kind == 3 and frame:  # wrong frame end
            frame[-1] = rng.choice((0, 0xCD, 0xFF))
            frames[i] = bytes(frame)
        elif kind == 4 and len(frame) >= 3:  # wrong channel
            frame[1:3] = struct.pack(">H", rng.choice((0, 7, 65535)))
            frames[i] = bytes(frame)
        elif kind == 5:  # drop a frame
            del frames[i]
        elif kind == 6:  # duplicate a frame
            frames.insert(i, bytes(frame))
        elif kind == 7:  # a table nested far too deep
            frames.insert(i, deep_table_frame(rng, 1, rng.choice((65, 100, 1000, 3000))))
        else:  # garbage
            frames.insert(i, rng.randbytes(rng.randint(1, 64)))
        if len(frames) < 2:
            break
    return frames


def chunks(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    """The input cut into reads at random places (frames split across reads, several per read)."""
    data = b"".join(frames)
    out = []
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 7, 64, 500, 4096, len(data)))
        out.append(data[pos:pos + step])
        pos += step
    return out


def fuzz_input(seed: int) -> list[bytes]:
    """The reads of input number ``seed``."""
    rng = random.Random(seed)
    return chunks(rng, mutate(rng, session(rng)))
