"""The load of a crash trial: confirming publishers and acking consumers, one process each.

    python -m interop.crash.clients publish --port P --exchange X --queues q1,q2 --id-prefix T0.L0.P0 \
        --log pub.log [--window 64] [--transient-ratio 0.1] [--seed N]
    python -m interop.crash.clients consume --port P --queues q1,q2 --log cons.log \
        [--prefetch 20] [--requeue-ratio 0.03] [--multiple-ratio 0.2] [--seed N]

Every observation is appended to the client's log file and flushed at once (one line per event),
so whatever the client saw before the broker (or the client itself) died is on file:

    READY <time>                                   connected, set up, load starts
    P <queue> <id> <persistent 0|1> <time>         about to publish message <id>
    C <id> <time>                                  the broker confirmed <id> (basic.ack)
    N <id> <time>                                  the broker nacked <id>
    D <queue> <id> <redelivered 0|1> <time>        a delivery of <id> arrived
    A <queue> <id> <time>                          about to ack it (logged *before* the ack is sent)
    R <queue> <id> <time>                          about to nack it with requeue=true
    BAD <queue> <id> <why> <time>                  the body or properties did not match the id
    END <why> <time>                               the connection closed / failed (<why> has no
                                                   spaces: the exception and, when the broker
                                                   closed it, its reply code and text)

The publisher pipelines: it keeps up to ``--window`` unconfirmed messages in flight and tracks
confirms by delivery tag (``multiple`` included), so it knows exactly which messages were
confirmed. Bodies carry the id and a padding length so consumers check they arrived intact.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Callable

import pika
from pika import spec

PAD_SIZES = [0, 0, 16, 100, 1000, 4000, 20000]


def _open_log(path: str) -> Callable[[str], None]:
    log = open(path, "a", buffering=1 << 16)

    def emit(line: str) -> None:
        log.write(line)
        log.flush()

    return emit


def why(exc: object) -> str:
    """An exception as one space-free word: ``ConnectionClosedByBroker:541:INTERNAL_ERROR...``."""
    text = type(exc).__name__
    code = getattr(exc, "reply_code", None)
    if code is not None:
        text += f":{code}:{getattr(exc, 'reply_text', '')}"
    return "".join(ch if ch.isprintable() and not ch.isspace() else "_" for ch in text)[:300]


def make_body(mid: str, pad: int) -> bytes:
    return f"{mid}|{pad}|".encode() + b"x" * pad


def check_body(mid: str | None, body: bytes) -> str | None:
    """None when ``body`` is the intact body of message ``mid``, else what is wrong."""
    try:
        head_id, pad, rest = body.split(b"|", 2)
    except ValueError:
        return "malformed"
    if mid is None:
        return "no-message-id"
    if head_id.decode() != mid:
        return "id-mismatch"
    if len(rest) != int(pad) or rest.strip(b"x"):
        return "body-corrupt"
    return None


def _params(port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        "127.0.0.1", port, heartbeat=0, connection_attempts=1, socket_timeout=5,
        blocked_connection_timeout=None,
    )


# -- publisher ------------------------------------------------------------------------------------


def publish(args: argparse.Namespace) -> int:
    emit = _open_log(args.log)
    rng = random.Random(args.seed)
    queues = args.queues.split(",")
    outstanding: dict[int, str] = {}  # delivery tag -> id, in tag order
    state = {"tag": 0, "n": 0, "channel": None}

    def fill() -> None:
        channel = state["channel"]
        while len(outstanding) < args.window and channel is not None and channel.is_open:
            state["n"] += 1
            mid = f"{args.id_prefix}.{state['n']}"
            queue = rng.choice(queues)
            persistent = rng.random() >= args.transient_ratio
            emit(f"P {queue} {mid} {int(persistent)} {time.time():.6f}\n")
            channel.basic_publish(
                args.exchange, queue, make_body(mid, rng.choice(PAD_SIZES)),
                pika.BasicProperties(delivery_mode=2 if persistent else 1, message_id=mid),
            )
            state["tag"] += 1
            outstanding[state["tag"]] = mid

    def on_confirm(frame) -> None:
        method = frame.method
        kind = "C" if isinstance(method, spec.Basic.Ack) else "N"
        if method.multiple:
            tags = []
            for tag in outstanding:
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag] if method.delivery_tag in outstanding else []
        now = f"{time.time():.6f}"
        emit("".join(f"{kind} {outstanding.pop(tag)} {now}\n" for tag in tags))
        fill()

    def on_confirm_ok(_frame) -> None:
        emit(f"READY {time.time():.6f}\n")
        fill()

    def on_channel(channel) -> None:
        state["channel"] = channel
        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=on_confirm_ok)

    def on_open(connection) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_closed(connection, reason) -> None:
        emit(f"END closed:{why(reason)} {time.time():.6f}\n")
        connection.ioloop.stop()

    def on_open_error(connection, error) -> None:
        emit(f"END open-error:{why(error)} {time.time():.6f}\n")
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        _params(args.port), on_open_callback=on_open, on_open_error_callback=on_open_error,
        on_close_callback=on_closed,
    )
    try:
        connection.ioloop.start()
    except Exception as exc:  # the broker vanished mid-write, etc.
        emit(f"END error:{why(exc)} {time.time():.6f}\n")
    return 0


# -- consumer -------------------------------------------------------------------------------------


def consume(args: argparse.Namespace) -> int:
    emit = _open_log(args.log)
    rng = random.Random(args.seed)
    try:
        connection = pika.BlockingConnection(_params(args.port))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=args.prefetch)
        # Deliveries whose ack is held back, to be acked together with multiple=true.
        held: list[tuple[str, str, int]] = []

        def ack_held() -> None:
            if held and channel.is_open:
                now = f"{time.time():.6f}"
                emit("".join(f"A {queue} {mid} {now}\n" for queue, mid, _tag in held))
                last = held[-1][2]
                held.clear()
                channel.basic_ack(last, multiple=True)

        def on_message(ch, method, props, body) -> None:
            queue = method.routing_key
            mid = props.message_id
            now = f"{time.time():.6f}"
            lines = f"D {queue} {mid} {int(method.redelivered)} {now}\n"
            problem = check_body(mid, body)
            if problem:
                lines += f"BAD {queue} {mid} {problem} {now}\n"
            draw = rng.random()
            if draw < args.requeue_ratio:
                # Requeue: a nack covers only this tag, so held acks go first (tag order).
                emit(lines)
                ack_held()
                emit(f"R {queue} {mid} {time.time():.6f}\n")
                ch.basic_nack(method.delivery_tag, requeue=True)
            elif draw < args.requeue_ratio + args.multiple_ratio and len(held) + 1 < args.prefetch:
                emit(lines)
                held.append((queue, mid, method.delivery_tag))
                if len(held) == 1:
                    connection.call_later(0.02, ack_held)
            else:
                held.append((queue, mid, method.delivery_tag))
                emit(lines)
                ack_held()
            if args.delay:
                time.sleep(rng.random() * args.delay)

        for queue in args.queues.split(","):
            channel.basic_consume(queue, on_message)
        emit(f"READY {time.time():.6f}\n")
        channel.start_consuming()
        emit(f"END stopped {time.time():.6f}\n")
    except Exception as exc:  # the broker was killed: the expected way out
        emit(f"END error:{why(exc)} {time.time():.6f}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--exchange", default="")
    p.add_argument("--queues", required=True)
    p.add_argument("--id-prefix", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--transient-ratio", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=None)
    c = sub.add_parser("consume")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--queues", required=True)
    c.add_argument("--log", required=True)
    c.add_argument("--prefetch", type=int, default=20)
    c.add_argument("--requeue-ratio", type=float, default=0.03)
    c.add_argument("--multiple-ratio", type=float, default=0.2)
    c.add_argument("--delay", type=float, default=0.0, help="max random sleep per message (s)")
    c.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    return publish(args) if args.role == "publish" else consume(args)


if __name__ == "__main__":
    sys.exit(main())
