"""STOMP scenarios run byte for byte against our listener and RabbitMQ's rabbitmq_stomp plugin,
and what each observes, normalised where the two may differ by design (session ids, server-named
queues, the server header).

A scenario is a list of steps:

- ``("stomp", n, wire, frames)``: send ``wire`` on STOMP connection ``n`` (opened on first use),
  then read ``frames`` frames (fewer when the connection ends: the end is observed as None);
- ``("closed", n)``: observe whether connection ``n`` is closed by the server (within 5 s);
- ``("declare", queue)``: declare a durable queue with pika;
- ``("publish", queue, body, properties)``: publish with pika to the default exchange;
- ``("get", queue)``: basic.get with pika and observe the message and its properties.

Every queue a scenario touches is named in its ``cleanup``, deleted before and after.

Run ``python tests/stomp/stomp_scenarios.py STOMP_PORT AMQP_PORT`` against a STOMP-enabled
RabbitMQ (interop/bench/rabbitmq-stomp-twin.sh starts one) to re-record
``rabbitmq_stomp_transcripts.json``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pika

from stomp_wire import RawStomp

TRANSCRIPTS = Path(__file__).with_name("rabbitmq_stomp_transcripts.json")


def _f(command: str, *headers: str, body: str = "") -> bytes:
    return (command + "\n" + "".join(h + "\n" for h in headers) + "\n" + body).encode() + b"\x00"


LOGIN = ("login:guest", "passcode:guest")
CONNECT = _f("CONNECT", "accept-version:1.2", "host:/", *LOGIN)

SCENARIOS: dict[str, dict] = {
    "connect_versions_and_heartbeats": {"steps": [
        ("stomp", 1, _f("CONNECT", *LOGIN), 1),
        ("stomp", 2, _f("CONNECT", "accept-version:1.1,1.0", "heart-beat:0,2500", *LOGIN), 1),
        ("stomp", 3, _f("STOMP", "accept-version:1.2", "heart-beat:500,12000", *LOGIN), 1),
        ("stomp", 4, _f("CONNECT", "accept-version:2.0", *LOGIN), 1),
        ("stomp", 5, _f("CONNECT", "accept-version:1.2", *LOGIN), 1),
    ]},
    "login_failures_keep_the_connection": {"steps": [
        ("stomp", 1, _f("CONNECT", "accept-version:1.2", "login:guest", "passcode:nope"), 1),
        ("stomp", 1, _f("CONNECT", "accept-version:1.2", "host:missing-vhost", *LOGIN), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/x", body="x"), 1),
        ("stomp", 1, CONNECT, 1),
    ]},
    "queue_send_subscribe_ack": {"cleanup": ["stomp-diff-q1"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-q1", "content-type:text/plain",
                        "x-a:b\\cc", "receipt:r1", body="one"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-q1", "persistent:true",
                        "receipt:r2", body="two"), 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/queue/stomp-diff-q1", "id:s1",
                        "ack:client-individual", "prefetch-count:1", "receipt:r3"), 2),
        ("stomp", 1, _f("NACK", "id:T_s1@@session@@1", "receipt:r4"), 2),
        ("stomp", 1, _f("ACK", "id:T_s1@@session@@2", "receipt:r5"), 2),
        ("stomp", 1, _f("ACK", "id:T_s1@@session@@3", "receipt:r6"), 1),
        ("stomp", 1, _f("UNSUBSCRIBE", "id:s1", "receipt:r7"), 1),
        ("stomp", 1, _f("ACK", "id:T_s1@@session@@4"), 1),
        ("get", "stomp-diff-q1"),
    ]},
    "unknown_delivery_tag_ends_the_session": {"cleanup": ["stomp-diff-q2"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/queue/stomp-diff-q2", "id:s", "ack:client",
                        "receipt:r"), 1),
        ("stomp", 1, _f("ACK", "id:T_s@@x@@99"), 1),
        ("closed", 1),
    ]},
    "topic_and_exchange_destinations": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/topic/diff.*", "id:t", "receipt:r1"), 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/exchange/amq.direct/diffkey", "id:e", "receipt:r2"), 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/exchange/amq.fanout", "id:f", "receipt:r3"), 1),
        ("stomp", 1, _f("SEND", "destination:/topic/diff.a", "receipt:s1", body="T"), 2),
        ("stomp", 1, _f("SEND", "destination:/exchange/amq.direct/diffkey", "receipt:s2", body="D"), 2),
        ("stomp", 1, _f("SEND", "destination:/exchange/amq.fanout/any%2Fkey", "receipt:s3", body="F"), 2),
        ("stomp", 1, _f("SEND", "destination:/exchange/missing-x/k", body="M"), 1),
        ("closed", 1),
    ]},
    "amq_queue_must_exist": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/amq/queue/stomp-diff-missing", "id:1"), 1),
        ("closed", 1),
    ]},
    "destination_errors": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SEND", body="x"), 1),
        ("stomp", 1, _f("SEND", "destination:/nowhere/x", body="x"), 1),
        ("stomp", 1, _f("SEND", "destination:/temp-queue/x", body="x"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/", body="x"), 1),
        ("stomp", 1, _f("SEND", "destination:/exchange", body="x"), 1),
        ("stomp", 1, _f("SEND", "destination:/exchange/a/b/c", body="x"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/x", "message-id:1", body="x"), 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/temp-queue/x", "id:1"), 1),
        ("stomp", 1, _f("BOGUS"), 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/topic/x", "durable:true"), 1),
    ]},
    "ack_and_unsubscribe_errors": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("ACK"), 1),
        ("stomp", 1, _f("ACK", "id:garbage"), 1),
        ("stomp", 1, _f("NACK", "id:T_x@@s@@1"), 1),
        ("stomp", 1, _f("UNSUBSCRIBE"), 1),
        ("stomp", 1, _f("UNSUBSCRIBE", "id:none"), 1),
        ("stomp", 1, _f("UNSUBSCRIBE", "destination:/queue/none"), 1),
        ("stomp", 1, _f("UNSUBSCRIBE", "id:/temp-queue/x"), 1),
    ]},
    "transactions": {"cleanup": ["stomp-diff-tx"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/queue/stomp-diff-tx", "id:s", "receipt:r0"), 1),
        ("stomp", 1, _f("BEGIN", "transaction:t1", "receipt:r1"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-tx", "transaction:t1", body="in tx"), 0),
        ("stomp", 1, _f("ABORT", "transaction:t1", "receipt:r2"), 1),
        ("stomp", 1, _f("BEGIN", "transaction:t2"), 0),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-tx", "transaction:t2", "receipt:s1",
                        body="committed"), 0),
        ("stomp", 1, _f("COMMIT", "transaction:t2", "receipt:r3"), 3),
        ("stomp", 1, _f("COMMIT", "transaction:t2"), 1),
        ("stomp", 1, _f("BEGIN"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-tx", "transaction:nope", body="x"), 1),
    ]},
    "stomp_to_amqp_properties": {"cleanup": ["stomp-diff-props"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-props", "content-type:application/json",
                        "content-encoding:gzip", "correlation-id:c1", "reply-to:/queue/back",
                        "persistent:true", "priority:4", "expiration:50000", "amqp-message-id:m1",
                        "timestamp:1700000000", "type:kind", "app-id:app", "user-id:guest",
                        "custom-one:1", "custom-two:two", "receipt:r", body="{}"), 1),
        ("get", "stomp-diff-props"),
    ]},
    "amqp_to_stomp_headers": {"cleanup": ["stomp-diff-amqp"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/queue/stomp-diff-amqp", "id:a", "receipt:r"), 1),
        ("publish", "stomp-diff-amqp", "payload", {
            "content_type": "text/plain", "correlation_id": "c2", "reply_to": "amq.gen-abc",
            "delivery_mode": 2, "priority": 2, "message_id": "m2", "timestamp": 1600000000,
            "type": "t", "app_id": "a", "headers": {"s": "text", "n": 7, "b": True, "colon:key": "x\ny"},
        }),
        ("stomp", 1, b"", 1),
    ]},
    "temp_queue_reply_to": {"cleanup": ["stomp-diff-rpc"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-rpc", "reply-to:/temp-queue/answers",
                        "receipt:r", body="ask"), 1),
        ("get", "stomp-diff-rpc"),
    ]},
    "duplicate_subscription_ends_the_session": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/topic/dup", "id:d", "receipt:r"), 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/topic/dup", "id:d"), 1),
        ("closed", 1),
    ]},
    "processing_errors_keep_the_session": {"cleanup": ["stomp-diff-pe"], "steps": [
        ("stomp", 1, _f("CONNECT", "accept-version:1.2", "heart-beat:x,1", *LOGIN), 1),
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/queue/stomp-diff-pe", "ack:weird"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-pe", "priority:abc", body="x"), 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/queue/stomp-diff-pe", "id:/temp-queue/x"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-pe", "reply-to:/bogus/x", body="x"), 1),
        ("stomp", 1, _f("SEND", "destination:/queue/stomp-diff-pe", "receipt:last", body="x"), 1),
    ]},
    "client_ack_and_subscription_without_id": {"cleanup": ["stomp-diff-ca"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("declare", "stomp-diff-ca"),
        ("publish", "stomp-diff-ca", "m1", {}), ("publish", "stomp-diff-ca", "m2", {}),
        ("publish", "stomp-diff-ca", "m3", {}),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/queue/stomp-diff-ca", "ack:client", "receipt:r"), 4),
        ("stomp", 1, _f("NACK", "id:Q_/queue/stomp-diff-ca@@session@@2", "requeue:false",
                        "receipt:n"), 1),
        ("stomp", 1, _f("UNSUBSCRIBE", "destination:/queue/stomp-diff-ca", "receipt:u"), 1),
        ("get", "stomp-diff-ca"),
    ]},
    "subscribe_to_a_missing_exchange_ends_the_session": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/exchange/stomp-diff-missing/k", "id:1"), 1),
        ("closed", 1),
    ]},
    "durable_topic_subscription": {"cleanup": ["stomp-diff-durable"], "steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("SUBSCRIBE", "destination:/topic/diff.durable", "id:d", "durable:true",
                        "auto-delete:false", "x-queue-name:stomp-diff-durable", "receipt:r"), 1),
        ("stomp", 1, _f("DISCONNECT", "receipt:bye"), 1),
        ("stomp", 2, CONNECT, 1),
        ("stomp", 2, _f("SEND", "destination:/topic/diff.durable", "receipt:s", body="kept"), 1),
        ("stomp", 2, _f("SUBSCRIBE", "destination:/topic/diff.durable", "id:d", "durable:true",
                        "auto-delete:false", "x-queue-name:stomp-diff-durable", "ack:client",
                        "receipt:r2"), 2),
        ("stomp", 2, _f("NACK", "id:T_d@@session@@1", "transaction:t", "receipt:n"), 1),
        ("stomp", 2, _f("BEGIN", "transaction:t", "receipt:b"), 1),
        ("stomp", 2, _f("NACK", "id:T_d@@session@@1", "requeue:false", "transaction:t", "receipt:n2"), 1),
        ("stomp", 2, _f("COMMIT", "transaction:t", "receipt:c"), 1),
        ("stomp", 2, _f("UNSUBSCRIBE", "id:d", "durable:true", "x-queue-name:stomp-diff-durable",
                        "receipt:u"), 1),
        ("get", "stomp-diff-durable"),
    ]},
    "second_connect_closes": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, CONNECT, 0),
        ("closed", 1),
    ]},
    "disconnect_with_receipt": {"steps": [
        ("stomp", 1, CONNECT, 1),
        ("stomp", 1, _f("DISCONNECT", "receipt:bye"), 1),
        ("closed", 1),
    ]},
}

_SESSION = re.compile(r"session-[A-Za-z0-9_-]{22}")
_GEN = re.compile(r"amq\.gen-[A-Za-z0-9_-]{22}")
_SUB = re.compile(r"stomp-subscription-[A-Za-z0-9_-]{22}")


def _norm(text: str) -> str:
    return _SUB.sub("<sub>", _GEN.sub("amq.gen-<gen>", _SESSION.sub("<session>", text)))


def _frame_obs(frame):
    if frame is None:
        return None
    command, headers, body = frame
    out = []
    for name, value in headers:
        out.append([name, "<server>" if name == "server" else _norm(value)])
    return [command, out, _norm(body.decode("utf-8", "replace"))]


def run(scenario: dict, stomp_port: int, amqp_port: int) -> list:
    """What ``scenario`` observes against the listener on ``stomp_port``."""
    amqp = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port, heartbeat=0))
    channel = amqp.channel()
    for queue in scenario.get("cleanup", []):
        channel.queue_delete(queue)
    conns: dict[int, RawStomp] = {}
    sessions: dict[int, str] = {}
    observed = []
    try:
        for step in scenario["steps"]:
            kind = step[0]
            if kind == "stomp":
                _, n, wire, count = step
                conn = conns.get(n) or conns.setdefault(n, RawStomp("127.0.0.1", stomp_port))
                if n in sessions:
                    # Acks name deliveries by the message id, which holds the session id.
                    wire = wire.replace(b"@@session@@", f"@@{sessions[n]}@@".encode())
                if wire:
                    conn.send(wire)
                frames = conn.frames(count) if count else []
                for frame in frames:
                    if frame and frame[0] == "CONNECTED":
                        sessions[n] = dict(frame[1]).get("session", "")
                observed.append(["stomp", n, [_frame_obs(f) for f in frames]])
            elif kind == "closed":
                conn = conns[step[1]]
                try:
                    rest = conn.wait_closed(5)
                    observed.append(["closed", step[1], True, _norm(rest.decode("utf-8", "replace"))])
                except TimeoutError:
                    observed.append(["closed", step[1], False])
            elif kind == "declare":
                channel.queue_declare(step[1], durable=True)
            elif kind == "publish":
                _, queue, body, props = step
                channel.basic_publish("", queue, body.encode(), pika.BasicProperties(**props))
            elif kind == "get":
                deadline = time.monotonic() + 1  # SENDs before it were receipted: enqueued
                try:
                    while True:
                        method, props, body = channel.basic_get(step[1], auto_ack=True)
                        if method is not None or time.monotonic() > deadline:
                            break
                        time.sleep(0.02)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    observed.append(["get", exc.reply_code, exc.reply_text])
                    channel = amqp.channel()
                    continue
                if method is None:
                    observed.append(["get", None])
                else:
                    values = {k: v for k, v in vars(props).items() if v is not None}
                    observed.append(["get", json.loads(_norm(json.dumps(
                        {"routing_key": method.routing_key, "exchange": method.exchange,
                         "redelivered": method.redelivered, "body": body.decode("utf-8", "replace"),
                         "properties": values}, sort_keys=True, default=str)))])
    finally:
        for conn in conns.values():
            conn.close()
        for queue in scenario.get("cleanup", []):
            channel.queue_delete(queue)
        amqp.close()
    return observed


if __name__ == "__main__":
    stomp_port, amqp_port = int(sys.argv[1]), int(sys.argv[2])
    recorded = {name: run(sc, stomp_port, amqp_port) for name, sc in SCENARIOS.items()}
    TRANSCRIPTS.write_text(json.dumps({"server": "RabbitMQ 3.10.8 with rabbitmq_stomp",
                                       "scenarios": recorded}, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(recorded)} scenarios into {TRANSCRIPTS}")
