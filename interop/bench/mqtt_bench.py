"""MQTT publish throughput: one publisher and (optionally) one subscriber on raw sockets, each in
its own process, against one or more brokers' MQTT listeners.

    .venv/bin/python -m interop.bench.mqtt_bench --target ours=127.0.0.1:1883 \\
        --target rabbit=127.0.0.1:1884 --qos 0 --qos 1 --duration 5

For each target and QoS it runs "publish only" (no subscriber: the broker's ingest rate) and
"pub -> sub" (a subscriber at the same QoS on the same topic: the delivered rate). Packets are
pre-encoded, so the generator costs little per message: with QoS 0 the publisher writes batches
and stays at most ``--backlog`` messages ahead of the subscriber; with QoS 1 it keeps
``--window`` publishes awaiting their PUBACK, and the subscriber PUBACKs every delivery.
Messages are ``--size`` bytes on one topic. Prints a markdown table (and ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import struct
import time

TOPIC = "bench/mqtt/t"


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    length = len(body)
    encoded = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(((kind << 4) | flags,)) + bytes(encoded) + body


def _connect(host: str, port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _string("MQTT") + bytes((4, 0x02)) + struct.pack(">H", 0) + _string(client_id)
    sock.sendall(_packet(1, 0, body))
    _read_exact(sock, 4)  # CONNACK
    return sock


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def _publish_packet(qos: int, size: int, packet_id: int) -> bytes:
    body = _string(TOPIC) + (struct.pack(">H", packet_id) if qos else b"") + b"x" * size
    return _packet(3, qos << 1, body)


def subscriber(host: str, port: int, qos: int, size: int, ready, stop, received) -> None:
    sock = _connect(host, port, f"bench-sub-{qos}")
    sock.sendall(_packet(8, 2, struct.pack(">H", 1) + _string(TOPIC) + bytes((qos,))))
    _read_exact(sock, 5)  # SUBACK
    ready.set()
    # Every delivery has the same length (one topic, one size), so counting is division and the
    # packet ids sit at a fixed offset.
    length = len(_publish_packet(qos, size, 1))
    id_offset = length - size - 2
    buffer = b""
    count = 0
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not data:
            break
        buffer += data
        whole = len(buffer) // length
        if not whole:
            continue
        if qos:
            acks = b"".join(
                b"\x40\x02" + buffer[i * length + id_offset:i * length + id_offset + 2] for i in range(whole)
            )
            sock.sendall(acks)
        buffer = buffer[whole * length:]
        count += whole
        received.value = count
    sock.close()


def publisher(host: str, port: int, qos: int, size: int, duration: float, window: int, backlog: int,
              watch_backlog: bool, received, result) -> None:
    sock = _connect(host, port, f"bench-pub-{qos}")
    sent = acked = 0
    started = time.monotonic()
    deadline = started + duration
    if qos == 0:
        batch = _publish_packet(0, size, 0) * 100
        while time.monotonic() < deadline:
            if watch_backlog and sent - received.value > backlog:
                time.sleep(0.0005)
                continue
            sock.sendall(batch)
            sent += 100
        # A PINGRESP after the last publish: the broker has read (and routed) them all.
        sock.sendall(_packet(12, 0, b""))
        _read_exact(sock, 2)
        acked = sent
    else:
        packets = [_publish_packet(1, size, i) for i in range(1, 65536)]
        next_id = 0
        pending = b""
        sock.settimeout(30)  # a broker that stops answering fails the run, never hangs it
        while True:
            now = time.monotonic()
            in_flight = sent - acked
            behind = watch_backlog and sent - received.value > backlog
            if now < deadline and in_flight < window and not behind:
                room = min(window - in_flight, 64)
                chunk = []
                for _ in range(room):
                    chunk.append(packets[next_id])
                    next_id = (next_id + 1) % 65535
                sock.sendall(b"".join(chunk))
                sent += room
                continue
            if now >= deadline and sent == acked:
                break
            if not in_flight:
                time.sleep(0.0005)  # only the subscriber's progress can let us go on
                continue
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError("broker closed the connection")
            pending += data
            acked += len(pending) // 4  # every packet coming back is a 4-byte PUBACK
            pending = pending[len(pending) // 4 * 4:]
    elapsed = time.monotonic() - started
    result.update({"published": acked, "seconds": elapsed})
    sock.close()


def run(host: str, port: int, qos: int, size: int, duration: float, window: int, backlog: int,
        with_subscriber: bool) -> dict:
    ctx = mp.get_context("fork")
    manager = ctx.Manager()
    result = manager.dict()
    received = ctx.Value("q", 0, lock=False)
    ready, stop = ctx.Event(), ctx.Event()
    sub = None
    if with_subscriber:
        sub = ctx.Process(target=subscriber, args=(host, port, qos, size, ready, stop, received))
        sub.start()
        if not ready.wait(10):
            raise RuntimeError("subscriber did not subscribe")
    pub = ctx.Process(target=publisher, args=(host, port, qos, size, duration, window, backlog,
                                              with_subscriber, received, result))
    started = time.monotonic()
    pub.start()
    pub.join(duration + 60)
    if pub.is_alive():
        pub.kill()
    out = dict(result)
    if not out:
        out = {"published": 0, "seconds": 0, "failed": True}
    if sub is not None:
        # Deliveries still on their way once publishing stopped are counted too.
        target = out.get("published", 0)
        deadline = time.monotonic() + 10
        while received.value < target and time.monotonic() < deadline:
            time.sleep(0.001)
        # From the publisher's start to the last delivery (its process start-up included).
        elapsed = time.monotonic() - started
        stop.set()
        sub.join(10)
        if sub.is_alive():
            sub.kill()
        out["delivered"] = received.value
        out["delivered_per_s"] = received.value / elapsed
    manager.shutdown()
    if out.get("seconds"):
        out["published_per_s"] = out["published"] / out["seconds"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="MQTT publish throughput against MQTT listeners")
    parser.add_argument("--target", action="append", required=True,
                        help="NAME=HOST:PORT of an MQTT listener (repeatable)")
    parser.add_argument("--qos", action="append", type=int, choices=(0, 1),
                        help="QoS to measure (repeatable; default: 0 and 1)")
    parser.add_argument("--size", type=int, default=16, help="payload bytes (default: 16)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default: 5)")
    parser.add_argument("--window", type=int, default=256,
                        help="QoS 1 publishes awaiting PUBACK at once (default: 256)")
    parser.add_argument("--backlog", type=int, default=20000,
                        help="most messages the publisher may be ahead of the subscriber (default: 20000)")
    parser.add_argument("--json", help="write the results to this file too")
    args = parser.parse_args()
    rows = []
    for qos in args.qos or [0, 1]:
        for with_subscriber in (False, True):
            for spec in args.target:
                name, _, address = spec.partition("=")
                host, _, port = address.rpartition(":")
                out = run(host, int(port), qos, args.size, args.duration, args.window, args.backlog,
                          with_subscriber)
                rows.append({"target": name, "qos": qos, "subscriber": with_subscriber, **out})
                time.sleep(1)
    print("| broker | QoS | run | published msg/s | delivered msg/s |")
    print("|---|---|---|---|---|")
    for row in rows:
        if row.get("failed"):
            print(f"| {row['target']} | {row['qos']} | {'pub -> sub' if row['subscriber'] else 'publish only'} "
                  "| failed | failed |")
            continue
        delivered = f"{row['delivered_per_s']:,.0f}" if row["subscriber"] else "-"
        print(f"| {row['target']} | {row['qos']} | {'pub -> sub' if row['subscriber'] else 'publish only'} "
              f"| {row.get('published_per_s', 0):,.0f} | {delivered} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
