"""Load and churn against a running broker, with figures printed:

    python -m interop.load hold  --port P --pid PID --connections 10000 --heartbeat 5 --seconds 300
    python -m interop.load slow  --port P --pid PID --connections 1000 --seconds 30
    python -m interop.load churn --port P --pid PID --clients 100 --seconds 300
    python -m interop.load bindings --port P --queues 100000 [--delete]

- ``hold``: N connections, each with a channel and a consumer, heartbeats of H seconds, held for
  S seconds; reports missed heartbeats (a connection the broker closed, or one that saw no frame
  for two intervals) and the broker's RSS per connection.
- ``slow``: N connections that send their handshake one byte a second, while a fast client keeps
  connecting, publishing and consuming; reports the fast client's round trips and worst latency.
- ``churn``: C clients opening a connection, declaring, publishing and closing as fast as they
  can; reports operations done, and the broker's descriptors and RSS before, during and after.
- ``bindings``: N durable queues, each bound to one durable exchange, declared in pipelined
  batches; reports the time, and the time per 10,000 (restart the broker to time its recovery);
  ``--delete`` deletes them again instead.

The broker is measured through /proc/PID (Linux). Exit status 1 when a check fails. Only
loopback addresses are accepted: this is a load generator for a broker on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import resource
import sys
import time

from pamqp import commands as C

from .client import AmqpClient, broker_fds, broker_rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop.load", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name, help_text in (("hold", "many connections with consumers and heartbeats"),
                            ("slow", "handshakes a byte a second beside a working client"),
                            ("churn", "connections opened and closed as fast as possible"),
                            ("bindings", "many durable queues bound to one exchange")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default="127.0.0.1", help="broker address, loopback only (default 127.0.0.1)")
        p.add_argument("--port", type=int, required=True, help="broker AMQP port")
        if name == "bindings":
            p.add_argument("--queues", type=int, default=100_000, help="durable queues (default 100000)")
            p.add_argument("--delete", action="store_true", help="delete the queues and the exchange")
            continue
        p.add_argument("--pid", type=int, required=True, help="broker process id (for RSS and descriptors)")
        p.add_argument("--seconds", type=float, default=30.0, help="how long to run (default 30)")
        if name == "hold":
            p.add_argument("--connections", type=int, default=1000, help="connections to hold (default 1000)")
            p.add_argument("--heartbeat", type=int, default=5, help="heartbeat seconds (default 5)")
        elif name == "slow":
            p.add_argument("--connections", type=int, default=1000, help="slow handshakes (default 1000)")
        else:
            p.add_argument("--clients", type=int, default=100, help="concurrent churning clients (default 100)")
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("--host must be a loopback address")
    _raise_fd_limit()
    runner = {"hold": hold, "slow": slow, "churn": churn, "bindings": bindings}[args.mode]
    ok = asyncio.run(runner(args))
    return 0 if ok else 1


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


async def hold(args) -> bool:
    baseline = broker_rss(args.pid)
    clients = [AmqpClient(args.host, args.port, heartbeat=args.heartbeat) for _ in range(args.connections)]
    started = time.monotonic()
    for batch in range(0, len(clients), 200):  # open in batches: the listen backlog is finite
        await asyncio.gather(*(c.open(consume_queue=f"load.hold.{i % 100}")
                               for i, c in enumerate(clients[batch:batch + 200], batch)))
    opened = time.monotonic() - started
    loaded = broker_rss(args.pid)
    print(f"opened {len(clients)} connections with a consumer each in {opened:.1f} s; "
          f"broker RSS {_mb(baseline)} -> {_mb(loaded)} "
          f"({(loaded - baseline) / len(clients) / 1024:.1f} KiB per connection)", flush=True)
    for c in clients:
        c.longest_silence = 0.0
        c.last_receive = time.monotonic()
    tasks = [asyncio.create_task(c.keep_alive()) for c in clients]
    lag = await _loop_lag(args.seconds)
    end_rss = broker_rss(args.pid)
    closed = sum(1 for c in clients if c.closed)
    silent = sum(1 for c in clients if not c.closed and c.longest_silence > 2 * args.heartbeat)
    longest = max(c.longest_silence for c in clients)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    per_conn = (end_rss - baseline) / len(clients)
    print(f"held {args.seconds:.0f} s: {closed} connections closed by the broker, {silent} silent for "
          f"over two heartbeat intervals (longest silence {longest:.1f} s, interval "
          f"{args.heartbeat} s; this client's own event loop lagged up to {lag:.1f} s); broker RSS "
          f"{_mb(end_rss)}, {per_conn / 1024:.1f} KiB per connection", flush=True)
    return closed == 0 and silent == 0 and per_conn <= 30 * 1024


async def _loop_lag(seconds: float) -> float:
    """Sleep ``seconds`` in small steps; return the longest delay of this process's own loop (a
    starved client would otherwise blame the broker for the silences it did not read)."""
    worst = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = time.monotonic()
        await asyncio.sleep(0.1)
        worst = max(worst, time.monotonic() - before - 0.1)
    return worst


async def slow(args) -> bool:
    slow_clients = []
    for _ in range(args.connections):
        reader, writer = await asyncio.open_connection(args.host, args.port)
        slow_clients.append(writer)
    handshake = b"AMQP\x00\x00\x09\x01"

    async def dribble(writer, offset):
        for i in range(len(handshake)):
            await asyncio.sleep(1.0)
            writer.write(handshake[(i + offset) % 8:(i + offset) % 8 + 1])

    dribblers = [asyncio.create_task(dribble(w, 0)) for w in slow_clients]
    rounds = 0
    worst = 0.0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        began = time.monotonic()
        client = AmqpClient(args.host, args.port, heartbeat=0)
        await asyncio.wait_for(client.open(consume_queue="load.slow"), 10)
        await asyncio.wait_for(client.publish_and_receive("load.slow", b"ping"), 10)
        await client.close()
        worst = max(worst, time.monotonic() - began)
        rounds += 1
    for task in dribblers:
        task.cancel()
    for writer in slow_clients:
        writer.close()
    print(f"{args.connections} handshakes a byte a second; meanwhile a fast client connected, "
          f"published and consumed {rounds} times, the slowest round {worst * 1000:.0f} ms", flush=True)
    return rounds > 0 and worst < 5.0


async def churn(args) -> bool:
    fds_before, rss_before = broker_fds(args.pid), broker_rss(args.pid)
    done = 0
    deadline = time.monotonic() + args.seconds

    async def one(worker: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            client = AmqpClient(args.host, args.port, heartbeat=0)
            await client.open(consume_queue=None)
            await client.declare_and_publish(f"load.churn.{worker}", b"x" * 100)
            await client.close()
            done += 1

    await asyncio.gather(*(one(i) for i in range(args.clients)))
    fds_during, rss_during = broker_fds(args.pid), broker_rss(args.pid)
    settled = time.monotonic() + 10
    while time.monotonic() < settled and broker_fds(args.pid) > fds_before:
        await asyncio.sleep(0.1)
    fds_after, rss_after = broker_fds(args.pid), broker_rss(args.pid)
    print(f"{done} connections opened, declared, published and closed by {args.clients} clients in "
          f"{args.seconds:.0f} s ({done / args.seconds:.0f}/s); broker descriptors {fds_before} -> "
          f"{fds_during} -> {fds_after}, RSS {_mb(rss_before)} -> {_mb(rss_during)} -> {_mb(rss_after)}",
          flush=True)
    return done > 0 and fds_after <= fds_before and rss_after <= rss_before + 20e6


async def bindings(args) -> bool:
    client = AmqpClient(args.host, args.port, heartbeat=0)
    await client.open(consume_queue=None)
    started = time.monotonic()
    last = started
    batch = 500
    if args.delete:
        for first in range(0, args.queues, batch):
            await client.pipelined(C.Queue.Delete(queue=f"load.bound.{i}", nowait=True)
                                   for i in range(first, min(first + batch, args.queues)))
        await client.pipelined([C.Exchange.Delete(exchange="load.bound", nowait=True)])
        print(f"deleted {args.queues} queues in {time.monotonic() - started:.1f} s", flush=True)
        await client.close()
        return True
    await client.pipelined([C.Exchange.Declare(exchange="load.bound", exchange_type="direct", durable=True,
                                               nowait=True)])
    for first in range(0, args.queues, batch):
        methods = []
        for i in range(first, min(first + batch, args.queues)):
            methods.append(C.Queue.Declare(queue=f"load.bound.{i}", durable=True, nowait=True))
            methods.append(C.Queue.Bind(queue=f"load.bound.{i}", exchange="load.bound",
                                        routing_key=f"k{i}", nowait=True))
        await client.pipelined(methods)
        if (first + batch) % 10_000 == 0:
            now = time.monotonic()
            print(f"{first + batch} queues: the last 10,000 in {now - last:.1f} s", flush=True)
            last = now
    print(f"declared and bound {args.queues} durable queues in {time.monotonic() - started:.1f} s",
          flush=True)
    await client.close()
    return True


if __name__ == "__main__":
    sys.exit(main())
