"""STOMP SEND throughput, measured with raw sockets (no client library in the way).

Each of ``--publishers`` connections pipelines ``--messages`` SEND frames of ``--size`` bytes to
one durable queue (``/queue/...``), in writes of ``--batch`` frames, and ends with a SEND asking
for a RECEIPT: the receipt is a publisher confirm, so when it arrives every message of that
connection is enqueued. The rate is messages over the time from the first byte to the last
receipt. The queue is deleted afterwards over AMQP (pika).

    python interop/bench/stomp_bench.py --stomp 127.0.0.1:61613 --amqp 5672
    python interop/bench/stomp_bench.py --ours          # starts our broker as a subprocess

Start a STOMP-enabled RabbitMQ to compare with interop/bench/rabbitmq-stomp-twin.sh.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pika


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")
    _read_until(sock, b"CONNECTED")
    return sock


def _read_until(sock: socket.socket, marker: bytes, buf: bytearray | None = None) -> None:
    buf = bytearray() if buf is None else buf
    while marker not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before {marker!r}: {bytes(buf)[-300:]!r}")
        if b"ERROR" in data:
            raise RuntimeError(data.decode(errors="replace"))
        buf += data


def _publisher(host, port, queue, messages, size, batch, ready, go, done_at, index):
    sock = _connect(host, port)
    body = b"x" * size
    frame = (f"SEND\ndestination:/queue/{queue}\ncontent-length:{size}\n\n".encode() + body + b"\x00")
    chunk = frame * batch
    ready.release()
    go.wait()
    sent = 0
    while sent + batch <= messages - 1:
        sock.sendall(chunk)
        sent += batch
    if messages - 1 - sent:
        sock.sendall(frame * (messages - 1 - sent))
    sock.sendall(f"SEND\ndestination:/queue/{queue}\ncontent-length:{size}\nreceipt:end\n\n".encode()
                 + body + b"\x00")
    _read_until(sock, b"receipt-id:end")
    done_at[index] = time.perf_counter()
    sock.sendall(b"DISCONNECT\n\n\x00")
    sock.close()


def run(host: str, stomp_port: int, amqp_port: int, publishers: int, messages: int, size: int,
        batch: int) -> float:
    queue = f"stomp-bench-{uuid.uuid4().hex[:8]}"
    ready = threading.Semaphore(0)
    go = threading.Event()
    done_at = [0.0] * publishers
    threads = [threading.Thread(target=_publisher, args=(host, stomp_port, queue, messages, size,
                                                         batch, ready, go, done_at, i))
               for i in range(publishers)]
    for thread in threads:
        thread.start()
    for _ in threads:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    elapsed = max(done_at) - started
    amqp = pika.BlockingConnection(pika.ConnectionParameters(host, amqp_port))
    channel = amqp.channel()
    count = channel.queue_declare(queue, passive=True).method.message_count
    channel.queue_delete(queue)
    amqp.close()
    total = publishers * messages
    if count != total:
        print(f"warning: {count} of {total} messages in the queue", file=sys.stderr)
    return total / elapsed


def consume(host: str, stomp_port: int, amqp_port: int, messages: int, size: int, batch: int,
            prefetch: int) -> float:
    """Deliveries per second to one SUBSCRIBE (ack auto, or client-individual with ``prefetch``
    unacked at most when ``prefetch`` > 0) of a queue filled beforehand."""
    queue = f"stomp-bench-{uuid.uuid4().hex[:8]}"
    go = threading.Event()
    go.set()
    _publisher(host, stomp_port, queue, messages, size, batch, threading.Semaphore(0), go, [0.0], 0)
    sock = _connect(host, stomp_port)
    ack = f"ack:client-individual\nprefetch-count:{prefetch}\n" if prefetch else ""
    started = time.perf_counter()
    sock.sendall(f"SUBSCRIBE\nid:1\ndestination:/queue/{queue}\n{ack}\n".encode() + b"\x00")
    seen, tail = 0, b""
    while seen < messages:
        data = tail + sock.recv(1 << 18)
        frames = data.split(b"\x00\n")
        tail = frames.pop()
        seen += len(frames)
        if prefetch:
            acks = [f.split(b"\nack:", 1)[1].split(b"\n", 1)[0] for f in frames]
            sock.sendall(b"".join(b"ACK\nid:" + a + b"\n\n\x00" for a in acks))
    elapsed = time.perf_counter() - started
    sock.close()
    amqp = pika.BlockingConnection(pika.ConnectionParameters(host, amqp_port))
    amqp.channel().queue_delete(queue)
    amqp.close()
    return messages / elapsed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_ours() -> tuple[subprocess.Popen, int, int, tempfile.TemporaryDirectory]:
    data = tempfile.TemporaryDirectory(prefix="stomp-bench-")
    amqp_port, stomp_port = _free_port(), _free_port()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", str(amqp_port),
         "--stomp-port", str(stomp_port), "--management-port", "0", "--prometheus-port", "0",
         "--data-dir", data.name, "--log-level", "warning"],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr:
        if "startup complete" in line:
            break
    else:
        raise RuntimeError("our broker did not start")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, stomp_port, amqp_port, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stomp", default="127.0.0.1:61613", help="HOST:PORT of the STOMP listener")
    parser.add_argument("--amqp", type=int, default=5672, help="AMQP port of the same broker (cleanup)")
    parser.add_argument("--ours", action="store_true", help="start our broker as a subprocess and use it")
    parser.add_argument("--publishers", type=int, default=1, help="concurrent connections (default 1)")
    parser.add_argument("--messages", type=int, default=50000, help="SENDs per connection (default 50000)")
    parser.add_argument("--size", type=int, default=16, help="body bytes (default 16)")
    parser.add_argument("--batch", type=int, default=100, help="frames per socket write (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the best is reported (default 3)")
    parser.add_argument("--consume", action="store_true",
                        help="measure deliveries to one SUBSCRIBE instead of SENDs")
    parser.add_argument("--prefetch", type=int, default=0,
                        help="with --consume: ack client-individual with this prefetch-count "
                        "(default 0: ack auto)")
    args = parser.parse_args()
    proc = data = None
    if args.ours:
        proc, stomp_port, amqp_port, data = _spawn_ours()
        host = "127.0.0.1"
    else:
        host, _, port = args.stomp.rpartition(":")
        stomp_port, amqp_port = int(port), args.amqp
    try:
        if args.consume:
            rates = [consume(host, stomp_port, amqp_port, args.messages, args.size, args.batch,
                             args.prefetch) for _ in range(args.runs)]
        else:
            rates = [run(host, stomp_port, amqp_port, args.publishers, args.messages, args.size,
                         args.batch) for _ in range(args.runs)]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
            data.cleanup()
    what = (f"1 SUBSCRIBE ({f'prefetch {args.prefetch}' if args.prefetch else 'ack auto'}) receiving "
            f"{args.messages} MESSAGEs" if args.consume
            else f"{args.publishers} publisher(s) x {args.messages} SENDs")
    print(f"{what} of {args.size} B: best {max(rates):,.0f} msg/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
