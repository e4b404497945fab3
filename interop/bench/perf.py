"""One load-generator run: producers and consumers in their own processes, one JSON-able dict out.

    python -m interop.bench.perf --port 5690 -d 10 -s 16            # 1 -> 1, auto-ack, 10 s
    python -m interop.bench.perf --port 5690 -p 4 -c 4 --queues 4    # scenario h
    python -m interop.bench.perf --port 5690 --idle-conns 1000       # scenario k

Every producer and every consumer is a process (fork) with its own connection and channel 1, set up
with pamqp over a blocking socket, then driven on the raw socket:

* producers send pre-encoded publish+header+body batches (~64 KiB) with one ``sendall``; the
  bodies' first 8 bytes carry a CLOCK_MONOTONIC stamp (per batch; per message at a fixed --rate,
  where it is the *scheduled* send time);
* consumers ``recv_into`` a 4 MiB buffer and count basic.deliver frames by their headers (strided
  slice checks once the message layout is known); manual ack sends one multiple-ack per read batch
  (``--ack-mode single``: one basic.ack per delivery, as many clients do);
* a shared-memory array holds every worker's count; producers pause while the unconsumed backlog is
  above ``--max-backlog`` (auto: 64 MiB worth, 500..10,000 deliveries) so that every run ends in
  bounded time.

Result fields follow the reference generator (cons_rate, pub_rate, lat_p50_us, broker_cpu_pct,
gen_cpu_pct, ...); ``cons_rate`` is steady state: delivered while producers ran / that time.
"""

from __future__ import annotations

import argparse
import array
import json
import multiprocessing as mp
import os
import random
import resource
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field

from pamqp import commands as C
from pamqp import frame as pframe

from . import procstat, wire
from .amqp import AMQPError, Conn, raw_close

MP = mp.get_context("fork")

# shared flags
GO, STOP_PUB, STOP_CONS, CLOSE_PROD, ABORT = range(5)


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: str = "guest"
    vhost: str = "/"
    frame_max: int = 131072
    producers: int = 1
    consumers: int = 1
    queues: int = 1
    size: int = 16
    duration: float = 10.0
    count: int = 0
    rate: float = 0.0
    max_backlog: int = 0  # -1 = auto
    exchange_type: str = "default"
    bindings: int = 1000
    durable: bool = False
    confirm: int = 0
    ack: str = "auto"
    prefetch: int = 0
    ack_mode: str = "multiple"
    queue: str = ""
    keep: bool = False
    drain_timeout: float = 5.0
    drain_max: float = 30.0
    stuck_timeout: float = 60.0
    broker_pid: int | None = None
    label: str = ""
    broker: str = ""
    batch_bytes: int = 65536
    coalesce_us: int = -1  # consumer pause after a small read (-1 = auto: 500 auto-ack, 200 manual, 0 at --rate)
    verbose: bool = False
    broker_tree: bool = False  # broker CPU includes its child processes (the sink forks per connection)


@dataclass
class Shared:
    n: int
    counts: object = field(init=False)
    times: object = field(init=False)
    flags: object = field(init=False)
    done: object = field(init=False)
    t0: object = field(init=False)

    def __post_init__(self):
        self.counts = MP.RawArray("Q", self.n)
        self.times = MP.RawArray("d", 2 * self.n)  # producer: t_end; consumer: first, last
        self.done = MP.RawArray("b", self.n)
        self.flags = MP.RawArray("i", 8)
        self.t0 = MP.RawValue("d", 0.0)


def auto_backlog(size: int) -> int:
    n = (64 << 20) // max(size, 1)
    return max(500, min(10000, n))


# ---------------------------------------------------------------- workers


def _connect(cfg: Config, name: str) -> Conn:
    return Conn(cfg.host, cfg.port, cfg.user, cfg.password, cfg.vhost, cfg.frame_max, name=name)


def _wait_go(sh: Shared) -> bool:
    while not sh.flags[GO]:
        if sh.flags[ABORT]:
            return False
        time.sleep(0.0005)
    return True


def _percentiles(vals, prefix: str) -> dict:
    if not vals:
        return {}
    s = sorted(vals)
    n = len(s)

    def q(p):
        return s[min(n - 1, int(p * n))] / 1000.0

    return {
        f"{prefix}_p50_us": q(0.50), f"{prefix}_p90_us": q(0.90), f"{prefix}_p99_us": q(0.99),
        f"{prefix}_p999_us": q(0.999), f"{prefix}_max_us": s[-1] / 1000.0,
        f"{prefix}_mean_us": sum(s) / n / 1000.0, f"{prefix}_n": n,
    }


def _guard(fn):
    """a worker never dies silently: an unexpected exception becomes an error message"""
    def wrapper(cfg, idx, wid, sh, pipe, *args):
        try:
            fn(cfg, idx, wid, sh, pipe, *args)
        except BaseException as e:  # noqa: BLE001 - reported to the coordinator
            sh.flags[ABORT] = 1
            try:
                pipe.send(("error", f"{fn.__name__} {idx}: {type(e).__name__}: {e}"))
            except OSError:
                pass
    wrapper.__name__ = fn.__name__
    return wrapper


@_guard
def producer_main(cfg: Config, idx: int, wid: int, sh: Shared, pipe, exchange: str, keys: list[str],
                  factor: int, cap: int, prod_ids: list[int], cons_ids: list[int], target: int):
    err = None
    res = {"published": 0, "confirmed": 0, "nacked": 0, "returned": 0, "blocked_s": 0.0,
           "throttled_s": 0.0, "clat": b"", "warning": None}
    try:
        c = _connect(cfg, f"bench producer {idx}")
        c.channel_open(1)
        if cfg.confirm:
            c.confirm_select(1)
    except (OSError, AMQPError) as e:
        pipe.send(("error", f"producer {idx}: set-up: {e}"))
        sh.flags[ABORT] = 1
        return
    sock = c.sock
    sock.settimeout(None)
    sc = wire.Scanner(wire.BASIC_RETURN, size=1 << 20)
    sc.push(c.leftover())
    body = wire.make_body(cfg.size)
    rng = random.Random(idx * 7919 + os.getpid())
    if len(keys) > 1:
        # topic: random keys, cycled. Enough of them that about 80% of the bindings come up, as with
        # the reference generator's fresh random key per message: a broker that caches routing
        # results per key (ours keeps 4,096) must miss as often as it would there.
        nmsg = max(4096, 16 * len(keys) // 10)
        templates = [wire.publish_message(1, exchange, rng.choice(keys), body, c.frame_max, cfg.durable)
                     for _ in range(nmsg)]
    else:
        templates = [wire.publish_message(1, exchange, keys[0], body, c.frame_max, cfg.durable)]
    L = len(templates[0][0])
    per = max(1, cfg.batch_bytes // L)
    if cap:
        per = min(per, max(1, cap // (4 * factor * max(1, len(prod_ids)))))
    if cfg.confirm:
        per = min(per, cfg.confirm)
    if len(templates) > 1:
        batches = [wire.Batch(templates[i:i + per], per) for i in range(0, len(templates) - per + 1, per)]
    else:
        batches = [wire.Batch(templates, per)]
    single = bytearray(templates[0][0])
    stamp_off = templates[0][1]
    pipe.send(("ready",))
    if not _wait_go(sh):
        raw_close(sock, sc)
        return

    flags, counts = sh.flags, sh.counts
    t0 = sh.t0.value
    mono, mono_ns = time.monotonic, time.monotonic_ns
    end_t = t0 + cfg.duration if not target else float("inf")
    published = 0
    conf_upto = 0
    singles: set[int] = set()
    confirmed = nacked = returned = 0
    pending: deque = deque()
    clat = array.array("q")
    blocked_since = None
    blocked_s = 0.0
    throttled = 0.0
    bi = 0
    it = 0
    DONTWAIT = socket.MSG_DONTWAIT
    release = cap - cap // 4

    def handle(block: bool):
        nonlocal conf_upto, confirmed, nacked, returned, blocked_since, blocked_s, err
        try:
            if block:
                sock.settimeout(0.1)
                try:
                    n = sc.recv(sock)
                except socket.timeout:
                    return
                finally:
                    sock.settimeout(None)
            else:
                n = _recv_nb(sock, sc, DONTWAIT)
                if n is None:
                    return
            if n == 0:
                raise AMQPError("connection closed by the broker")
            got = sc.feed()
            returned += got
            for ch, m, payload in sc.others:
                if m == wire.BASIC_ACK or m == wire.BASIC_NACK:
                    tag, multiple = wire.parse_ack(payload)
                    if m == wire.BASIC_NACK:
                        nacked += 1 if not multiple else max(0, tag - conf_upto - len(singles))
                    if multiple:
                        if tag > conf_upto:
                            below = [s for s in singles if s <= tag]
                            for s in below:
                                singles.discard(s)
                            confirmed += tag - conf_upto - len(below)
                            conf_upto = tag
                    elif tag > conf_upto and tag not in singles:
                        singles.add(tag)
                        confirmed += 1
                        while conf_upto + 1 in singles:
                            conf_upto += 1
                            singles.discard(conf_upto)
                    now = mono_ns()
                    while pending and pending[0][0] <= conf_upto:
                        seq, t, k = pending.popleft()
                        clat.extend([now - t] * k)
                elif m == wire.CONNECTION_BLOCKED:
                    blocked_since = mono()
                elif m == wire.CONNECTION_UNBLOCKED:
                    if blocked_since is not None:
                        blocked_s += mono() - blocked_since
                        blocked_since = None
                elif m == wire.CONNECTION_CLOSE:
                    raise AMQPError("connection.close %d %s" % wire.parse_close(payload))
                elif m == wire.CHANNEL_CLOSE:
                    raise AMQPError("channel.close %d %s" % wire.parse_close(payload))
            sc.others.clear()
        except (OSError, AMQPError, wire.FrameError) as e:
            if err is None:
                err = str(e)
            flags[ABORT] = 1

    last_progress = mono()
    try:
        if cfg.rate > 0:
            interval = 1e9 * max(1, len(prod_ids)) / cfg.rate
            due = int(t0 * 1e9 + interval * idx / max(1, len(prod_ids)))
            while not flags[ABORT] and not flags[STOP_PUB]:
                now = mono_ns()
                if now / 1e9 >= end_t or (target and published >= target):
                    break
                if now < due:
                    time.sleep((due - now) / 1e9)
                    now = mono_ns()
                parts = []
                while due <= now and len(parts) < 1000 and (not target or published + len(parts) < target):
                    struct.pack_into(">Q", single, stamp_off, due)
                    parts.append(bytes(single))
                    due += interval
                    due = int(due)
                if parts:
                    sock.sendall(b"".join(parts))
                    published += len(parts)
                    counts[wid] = published
                handle(False)
        else:
            while not flags[ABORT] and not flags[STOP_PUB]:
                now = mono()
                if now >= end_t:
                    break
                k = per
                if target:
                    if published >= target:
                        break
                    k = min(k, target - published)
                if cap:
                    exp = 0
                    for p in prod_ids:
                        exp += counts[p]
                    exp *= factor
                    for q in cons_ids:
                        exp -= counts[q]
                    if exp + k * factor > cap:
                        tp = now
                        while exp > release and not flags[ABORT] and now < end_t:
                            time.sleep(0.0005)
                            now = mono()
                            exp = 0
                            for p in prod_ids:
                                exp += counts[p]
                            exp *= factor
                            for q in cons_ids:
                                exp -= counts[q]
                            if now - tp > cfg.stuck_timeout:
                                raise AMQPError(f"no consumer progress for {cfg.stuck_timeout:.0f} s")
                        handle(False)
                        throttled += now - tp
                        continue
                if cfg.confirm:
                    room = cfg.confirm - (published - confirmed - nacked)
                    if room <= 0:
                        handle(True)
                        if mono() - last_progress > cfg.stuck_timeout:
                            raise AMQPError(f"no confirm for {cfg.stuck_timeout:.0f} s")
                        continue
                    k = min(k, room)
                b = batches[bi]
                bi += 1
                if bi == len(batches):
                    bi = 0
                t = mono_ns()
                b.stamp(t)
                sock.sendall(b.view(k))
                published += k
                counts[wid] = published
                last_progress = now
                if cfg.confirm:
                    pending.append((published, t, k))
                    handle(False)
                else:
                    it += 1
                    if not it & 15:
                        handle(False)
    except (OSError, AMQPError) as e:
        if err is None:
            err = str(e)
        flags[ABORT] = 1
    sh.times[2 * wid] = mono()
    sh.done[wid] = 1
    # publishing over: keep reading (confirms, errors) until told to close
    while not flags[CLOSE_PROD] and not flags[ABORT] and err is None:
        if cfg.confirm and confirmed + nacked < published:
            handle(True)
        else:
            handle(False)
            time.sleep(0.01)
    if blocked_since is not None:
        blocked_s += mono() - blocked_since
    res.update(published=published, confirmed=confirmed, nacked=nacked, returned=returned,
               blocked_s=blocked_s, throttled_s=throttled, clat=clat.tobytes(), per_batch=per)
    if err is None:
        res["warning"] = raw_close(sock, sc)
    else:
        try:
            sock.close()
        except OSError:
            pass
    if err:
        pipe.send(("error", f"producer {idx}: {err}"))
    pipe.send(("result", res))


def _recv_nb(sock, sc, flags):
    try:
        n = sock.recv_into(sc.room(), 0, flags)
    except BlockingIOError:
        return None
    sc.end += n
    return n


@_guard
def consumer_main(cfg: Config, idx: int, wid: int, sh: Shared, pipe, queue: str):
    manual = cfg.ack == "manual"
    try:
        c = _connect(cfg, f"bench consumer {idx}")
        c.channel_open(1)
        if manual and cfg.prefetch:
            c.basic_qos(1, cfg.prefetch)
        c.basic_consume(1, queue, f"bench-c{idx}", no_ack=not manual)
    except (OSError, AMQPError) as e:
        pipe.send(("error", f"consumer {idx}: set-up: {e}"))
        sh.flags[ABORT] = 1
        return
    sock = c.sock
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50000))
    want = cfg.rate > 0
    sc = wire.Scanner(wire.BASIC_DELIVER, want_stamps=want)
    sc.push(c.leftover())
    pipe.send(("ready",))
    flags, counts, times = sh.flags, sh.counts, sh.times
    mono_ns = time.monotonic_ns
    lat = array.array("q")
    err = None
    first = last = 0.0
    acked = 0
    single = cfg.ack_mode == "single"
    feed, recv = sc.feed, sc.recv
    pending = sc.end > sc.pos  # deliveries that came with consume-ok
    # A consumer faster than its broker wakes up for a few messages per read, which costs more CPU
    # than the messages themselves; after a small read it naps briefly so that the next read takes
    # a batch. The broker keeps writing into the socket buffer meanwhile (auto-ack), or has enough
    # prefetch credit for the nap (manual ack: 200 us x 200k msg/s = 40 < 100; no nap after a read
    # that brought a quarter of the prefetch window or more).
    nap = cfg.coalesce_us if cfg.coalesce_us >= 0 else (0 if cfg.rate > 0 else 200 if manual else 500)
    nap_s = nap / 1e6
    small = 32768
    sleep = time.sleep
    napping = False
    few = max(1, cfg.prefetch // 4) if cfg.prefetch else 1 << 30
    try:
        while True:
            if pending:
                pending = False
            else:
                try:
                    n = recv(sock)
                except BlockingIOError:
                    if flags[STOP_CONS] or flags[ABORT]:
                        break
                    continue
                if n == 0:
                    raise AMQPError("connection closed by the broker")
                if nap and n < small:
                    napping = True
            got = feed()
            if napping and manual and got >= few:
                napping = False  # a full prefetch window per read: the broker is waiting for acks
            if got:
                now = mono_ns()
                if not first:
                    first = now / 1e9
                    times[2 * wid] = first
                last = now / 1e9
                counts[wid] = sc.count
                times[2 * wid + 1] = last
                if want:
                    for s in sc.stamps:
                        lat.append(now - s)
                    sc.stamps.clear()
                else:
                    st = sc.body_stamp(sc.last_msg)
                    if st:
                        lat.append(now - st)
                if manual:
                    tag = sc.deliver_tag(sc.last_msg)
                    if tag > acked:
                        if single:
                            sock.sendall(wire.single_acks(acked + 1, tag))
                        else:
                            sock.sendall(wire.ack_frame(1, tag, True))
                        acked = tag
            if sc.others:
                for ch, m, payload in sc.others:
                    if m == wire.CONNECTION_CLOSE:
                        raise AMQPError("connection.close %d %s" % wire.parse_close(payload))
                    if m == wire.CHANNEL_CLOSE:
                        raise AMQPError("channel.close %d %s" % wire.parse_close(payload))
                    if m == wire.BASIC_CANCEL:
                        raise AMQPError("consumer cancelled by the broker")
                sc.others.clear()
            if flags[STOP_CONS]:
                break
            if napping:
                napping = False
                sleep(nap_s)
    except (OSError, AMQPError, wire.FrameError) as e:
        err = str(e)
        flags[ABORT] = 1
    warning = None
    if err is None:
        warning = raw_close(sock, sc)
    else:
        sock.close()
    if err:
        pipe.send(("error", f"consumer {idx}: {err}"))
    pipe.send(("result", {"consumed": counts[wid], "first": first, "last": last,
                          "lat": lat.tobytes(), "fast_msgs": sc.fast_msgs, "warning": warning}))


# ---------------------------------------------------------------- coordinator


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(cfg: Config) -> dict:
    res: dict = {"tool": "interop.bench", "label": cfg.label, "broker": cfg.broker, "mode": "run"}
    res.update({k: v for k, v in asdict(cfg).items()
                if k in ("producers", "consumers", "queues", "exchange_type", "size", "durable",
                         "confirm", "ack", "prefetch", "ack_mode", "rate", "duration", "count")})
    if cfg.exchange_type == "topic":
        res["bindings"] = cfg.bindings
    errors: list[str] = []
    warnings: list[str] = []
    pid = cfg.broker_pid
    rid = f"{os.getpid()}-{random.getrandbits(24):06x}"
    base = cfg.queue or f"amqp-bench-{rid}"
    Q = max(1, cfg.queues)
    qnames = [base] if (cfg.queue and Q == 1) else [f"{base}-q{i}" for i in range(Q)]
    exchange = "" if cfg.exchange_type == "default" else f"amqp-bench-{rid}-x"
    factor = Q if cfg.exchange_type == "fanout" else 1
    cap = 0
    if cfg.consumers > 0 and cfg.producers > 0:
        cap = auto_backlog(cfg.size) if cfg.max_backlog < 0 else cfg.max_backlog
    rss_start = procstat.rss_kb(pid)
    rss_peak = rss_start or 0
    t_setup = time.monotonic()
    try:
        ctl = _connect(cfg, "bench control")
        ctl.channel_open(1)
        if exchange:
            ctl.exchange_declare(1, exchange, cfg.exchange_type, durable=cfg.durable, auto_delete=True)
        for q in qnames:
            ctl.queue_declare(1, q, durable=cfg.durable)
        keys_for: list[list[str]] = []
        if cfg.exchange_type in ("default", "direct"):
            if exchange:
                for q in qnames:
                    ctl.queue_bind(1, q, exchange, q)
            keys_for = [[q] for q in qnames]
        elif cfg.exchange_type == "fanout":
            for q in qnames:
                ctl.queue_bind(1, q, exchange, "")
            keys_for = [[""]]
        elif cfg.exchange_type == "topic":
            for b in range(cfg.bindings):
                pat = f"perf.{b:05d}.*" if b % 2 == 0 else f"*.{b:05d}.#"
                ctl.queue_bind(1, qnames[b % Q], exchange, pat)
            keys_for = [[f"perf.{b:05d}.k" for b in range(cfg.bindings)]]
        else:
            raise ValueError(f"unknown exchange type {cfg.exchange_type}")
    except (OSError, AMQPError) as e:
        res.update(errors=1, error_messages=[f"set-up: {e}"], exit_code=1)
        return res

    n = cfg.consumers + cfg.producers
    sh = Shared(max(1, n))
    cons_ids = list(range(cfg.consumers))
    prod_ids = list(range(cfg.consumers, n))
    procs: list = []
    pipes: list = []
    results: dict[int, dict] = {}

    def poll_pipes(timeout: float = 0.0):
        for wid, p in enumerate(pipes):
            if p is None:
                continue
            while p.poll(timeout):
                try:
                    msg = p.recv()
                except EOFError:
                    pipes[wid] = None
                    break
                if msg[0] == "error":
                    errors.append(msg[1])
                elif msg[0] == "result":
                    results[wid] = msg[1]
                elif msg[0] == "ready":
                    ready.add(wid)
                timeout = 0.0

    ready: set[int] = set()
    started_ok = True
    for phase in (0, 1):
        ids = cons_ids if phase == 0 else prod_ids
        for wid in ids:
            a, b = MP.Pipe(duplex=False)
            if phase == 0:
                p = MP.Process(target=consumer_main, args=(cfg, wid, wid, sh, b, qnames[wid % Q]),
                               daemon=True)
            else:
                i = wid - cfg.consumers
                target = 0
                if cfg.count:
                    target = cfg.count // cfg.producers + (1 if i < cfg.count % cfg.producers else 0)
                keys = keys_for[i % len(keys_for)]
                p = MP.Process(target=producer_main,
                               args=(cfg, i, wid, sh, b, exchange, keys, factor, cap, prod_ids,
                                     cons_ids, target), daemon=True)
            while len(procs) <= wid:
                procs.append(None)
                pipes.append(None)
            p.start()
            b.close()
            procs[wid] = p
            pipes[wid] = a
        deadline = time.monotonic() + 60
        while not all(w in ready for w in ids):
            poll_pipes(0.05)
            if errors or sh.flags[ABORT] or time.monotonic() > deadline:
                started_ok = False
                if not errors:
                    errors.append("workers not ready within 60 s")
                break
            if any(not procs[w].is_alive() and w not in ready for w in ids):
                poll_pipes(0.1)
                if not all(w in ready for w in ids):
                    errors.append("a worker died during set-up")
                    started_ok = False
                    break
        if not started_ok:
            break
    setup_s = time.monotonic() - t_setup

    def gen_cpu():
        return _self_cpu() + sum(procstat.cpu_s(p.pid) or 0.0 for p in procs if p is not None)

    def broker_cpu():
        c = procstat.cpu_s(pid)
        if c is not None and cfg.broker_tree:
            c += procstat.children_cpu_s(pid)
        return c

    g0 = gen_cpu()
    b0 = broker_cpu()
    h0 = procstat.host_cpu()
    t0 = time.monotonic()
    sh.t0.value = t0
    if started_ok:
        sh.flags[GO] = 1
    else:
        sh.flags[ABORT] = 1

    def total(ids):
        return sum(sh.counts[i] for i in ids)

    last_sample = t0
    last_progress, last_count = t0, 0
    lp = lc = 0
    # publish phase
    while started_ok and prod_ids and not sh.flags[ABORT]:
        time.sleep(0.02)
        now = time.monotonic()
        poll_pipes()
        if all(sh.done[w] or not procs[w].is_alive() for w in prod_ids):
            break
        if now - last_sample >= 1.0:
            r = procstat.rss_kb(pid)
            if r and r > rss_peak:
                rss_peak = r
            if cfg.verbose:
                p, c = total(prod_ids), total(cons_ids)
                print(f"t={now - t0:.1f}s published/s={(p - lp) / (now - last_sample):.0f} "
                      f"consumed/s={(c - lc) / (now - last_sample):.0f} rss_kb={r}", file=sys.stderr)
                lp, lc = p, c
            last_sample = now
        pc = total(prod_ids)
        if pc != last_count:
            last_count, last_progress = pc, now
        if now - last_progress > cfg.stuck_timeout:
            errors.append(f"no publish progress for {cfg.stuck_timeout:.0f} s (broker blocked?)")
            sh.flags[ABORT] = 1
        if now - t0 > cfg.duration + cfg.stuck_timeout + 30 and not cfg.count:
            errors.append("producers did not stop")
            sh.flags[ABORT] = 1
    t1 = time.monotonic()
    consumed_at_t1 = total(cons_ids)
    published = total(prod_ids)
    expected = published * factor if cfg.producers else cfg.count
    drain_end = "complete"
    enqueued = None
    t_enq = None
    target_at = None
    if started_ok and cfg.consumers > 0 and not sh.flags[ABORT]:
        last, last_change = total(cons_ids), time.monotonic()
        end_by = t0 + cfg.duration if (cfg.producers == 0 and not cfg.count) else None
        while True:
            c = total(cons_ids)
            now = time.monotonic()
            poll_pipes()
            if sh.flags[ABORT]:
                drain_end = "aborted"
                break
            if end_by and now >= end_by:
                drain_end = "duration"
                break
            if not end_by and expected and c >= expected:
                if cfg.producers == 0:
                    target_at = now
                break
            if c != last:
                last, last_change = c, now
            if now - last_change > cfg.drain_timeout:
                drain_end = "idle"
                break
            if now - t1 > cfg.drain_max:
                drain_end = "max"
                break
            if now - last_sample >= 1.0:
                r = procstat.rss_kb(pid)
                if r and r > rss_peak:
                    rss_peak = r
                last_sample = now
            time.sleep(0.001 if cfg.producers == 0 else 0.005)
    elif started_ok and cfg.consumers == 0 and not sh.flags[ABORT]:
        last, last_change = -1, time.monotonic()
        while True:
            try:
                d = sum(ctl.queue_declare(1, q, passive=True).message_count for q in qnames)
            except (OSError, AMQPError) as e:
                errors.append(f"queue depth: {e}")
                break
            now = time.monotonic()
            if d != last:
                last, last_change = d, now
            if d >= expected:
                enqueued, t_enq = d, now
                break
            if now - last_change > cfg.drain_timeout:
                enqueued, drain_end = d, "idle"
                break
            if now - t1 > cfg.drain_max:
                enqueued, drain_end = d, "max"
                break
            r = procstat.rss_kb(pid)
            if r and r > rss_peak:
                rss_peak = r
            time.sleep(0.02)
    t2 = time.monotonic()
    g1 = gen_cpu()
    b1 = broker_cpu()
    h1 = procstat.host_cpu()
    rss_end = procstat.rss_kb(pid)
    if rss_end and rss_end > rss_peak:
        rss_peak = rss_end

    sh.flags[STOP_PUB] = 1
    sh.flags[STOP_CONS] = 1
    sh.flags[CLOSE_PROD] = 1
    deadline = time.monotonic() + 20
    while len(results) < sum(1 for p in procs if p is not None) and time.monotonic() < deadline:
        poll_pipes(0.05)
        if all(not p.is_alive() for p in procs if p is not None):
            poll_pipes(0.05)
            break
    for p in procs:
        if p is None:
            continue
        p.join(timeout=2)
        if p.is_alive():
            warnings.append(f"worker {p.pid} did not exit; terminated")
            p.terminate()
            p.join(timeout=2)
    if not cfg.keep:
        try:
            for q in qnames:
                ctl.queue_delete(1, q)
            if exchange:
                ctl.exchange_delete(1, exchange)
        except (OSError, AMQPError) as e:
            warnings.append(f"clean-up: {e}")
    w = ctl.close()
    if w:
        warnings.append(f"control connection: {w}")

    # ---- results
    confirmed = nacked = returned = 0
    blocked_s = throttled_s = 0.0
    pub_end = 0.0
    clat = array.array("q")
    lat = array.array("q")
    consumed = 0
    cons_last = 0.0
    cons_first = float("inf")
    fast_msgs = 0
    for wid in prod_ids:
        r = results.get(wid)
        if not r:
            continue
        confirmed += r["confirmed"]
        nacked += r["nacked"]
        returned += r["returned"]
        blocked_s += r["blocked_s"]
        throttled_s += r["throttled_s"]
        clat.frombytes(r["clat"])
        if r.get("warning"):
            warnings.append(f"producer {wid - cfg.consumers}: {r['warning']}")
        pub_end = max(pub_end, sh.times[2 * wid])
    for wid in cons_ids:
        r = results.get(wid)
        consumed += sh.counts[wid]
        if sh.times[2 * wid]:
            cons_first = min(cons_first, sh.times[2 * wid])
        cons_last = max(cons_last, sh.times[2 * wid + 1])
        if not r:
            continue
        lat.frombytes(r["lat"])
        fast_msgs += r["fast_msgs"]
        if r.get("warning"):
            warnings.append(f"consumer {wid}: {r['warning']}")
    pub_s = pub_end - t0 if pub_end > t0 else 0.0
    cons_rate = cons_s = 0.0
    if cfg.consumers:
        if cfg.producers and not cfg.count:
            cons_s = t1 - t0
            cons_rate = consumed_at_t1 / cons_s if cons_s > 0 else 0.0
        else:
            start = t0 if cfg.producers else cons_first
            end = target_at if target_at else cons_last
            nmsg = cfg.count if (cfg.producers == 0 and cfg.count and target_at) else consumed
            cons_s = end - start if end > start else 0.0
            cons_rate = nmsg / cons_s if cons_s > 0 else 0.0
    short_by = 0
    if cfg.consumers and expected > consumed:
        short_by = expected - consumed
    if not cfg.consumers and enqueued is not None and enqueued < expected:
        short_by = expected - enqueued
    missing = short_by if drain_end == "idle" else 0
    undrained = short_by if drain_end == "max" else 0
    unconfirmed = published - confirmed - nacked if cfg.confirm else 0
    run_s = t2 - t0
    gen = g1 - g0
    ops = published + consumed
    exit_code = 0
    if errors or sh.flags[ABORT]:
        exit_code = 1
        if not errors:
            errors.append("aborted")
    elif missing or nacked or unconfirmed:
        exit_code = 3
    res.update(
        published=published, pub_rate=round(published / pub_s, 1) if pub_s > 0 else 0.0,
        consumed=consumed, cons_rate=round(cons_rate, 1), expected=expected, missing=missing,
        undrained=undrained, drain_end=drain_end, returned=returned,
        max_backlog=cap, throttled_pct=round(100 * throttled_s / max(1, len(prod_ids)) / pub_s, 1)
        if pub_s > 0 and cap else 0.0,
        blocked_s=round(blocked_s, 3),
        setup_s=round(setup_s, 3), publish_s=round(pub_s, 3), consume_s=round(cons_s, 3),
        drain_s=round(t2 - t1, 3), run_s=round(run_s, 3),
        gen_cpu_s=round(gen, 3), gen_cpu_pct=round(100 * gen / run_s, 1) if run_s > 0 else None,
        gen_us_per_op=round(1e6 * gen / ops, 3) if ops else None,
        gen_fast_path_pct=min(100.0, round(100 * fast_msgs / consumed, 1)) if consumed else None,
    )
    if enqueued is not None:
        res["enqueued"] = enqueued
        res["enqueue_rate"] = round(enqueued / (t_enq - t0), 1) if t_enq and t_enq > t0 else None
    res.update(_percentiles(lat, "lat"))
    if cfg.confirm:
        res.update(confirmed=confirmed, nacked=nacked, unconfirmed=unconfirmed)
        res.update(_percentiles(clat, "confirm_lat"))
    if b0 is not None and b1 is not None:
        bc = b1 - b0
        res["broker_cpu_s"] = round(bc, 3)
        res["broker_cpu_pct"] = round(100 * bc / run_s, 1) if run_s > 0 else None
        per = consumed if cfg.consumers else published
        res["broker_us_per_msg"] = round(1e6 * bc / per, 2) if per else None
    else:
        bc = 0.0
    hb = h1[0] - h0[0]
    ht = h1[1] - h0[1]
    res["host_busy_pct"] = round(100 * hb / ht, 1) if ht > 0 else None
    res["other_cpu_s"] = round(max(0.0, hb - gen - bc), 3)
    if pid:
        res.update(broker_rss_kb_start=rss_start, broker_rss_kb_peak=rss_peak, broker_rss_kb_end=rss_end)
    res.update(errors=len(errors), error_messages=errors, warnings=len(warnings),
               warning_messages=warnings, exit_code=exit_code)
    return res


# ---------------------------------------------------------------- other modes


def idle_conns(cfg: Config, n: int, hold: float = 3.0) -> dict:
    """open n connections with one channel each, sequentially; broker RSS delta after hold s"""
    pid = cfg.broker_pid
    res: dict = {"tool": "interop.bench", "label": cfg.label, "broker": cfg.broker, "mode": "idle-conns",
                 "connections": n}
    errors = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n + 100:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100) if hard != resource.RLIM_INFINITY
                                                        else n + 100, hard))
        except (ValueError, OSError):
            pass
    rss0 = procstat.rss_kb(pid)
    conns = []
    lat = []
    t0 = time.monotonic()
    for i in range(n):
        t = time.monotonic_ns()
        try:
            c = Conn(cfg.host, cfg.port, cfg.user, cfg.password, cfg.vhost, cfg.frame_max,
                     name=f"bench idle {i}", timeout=10.0)
            c.channel_open(1)
        except (OSError, AMQPError) as e:
            errors.append(f"idle connection {i}: {e}")
            break
        lat.append(time.monotonic_ns() - t)
        conns.append(c)
    open_s = time.monotonic() - t0
    rss1 = procstat.rss_kb(pid)
    time.sleep(hold)
    rss2 = procstat.rss_kb(pid)
    # close all: send every connection.close first, then collect the close-oks
    t_close = time.monotonic()
    close_frame = pframe.marshal(C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 0)
    for c in conns:
        try:
            c.sock.sendall(close_frame)
        except OSError:
            pass
    for c in conns:
        try:
            c.sock.settimeout(10)
            while c.sock.recv(4096):
                pass
        except OSError:
            pass
        c.sock.close()
    res.update(opened=len(conns), open_s=round(open_s, 3), close_s=round(time.monotonic() - t_close, 3))
    res.update(_percentiles(lat, "open_lat"))
    res.update(broker_rss_kb_before=rss0, broker_rss_kb_open=rss1, broker_rss_kb_after_hold=rss2)
    if rss0 and rss2:
        res["broker_rss_delta_kb"] = rss2 - rss0
        res["broker_rss_per_conn_kb"] = round((rss2 - rss0) / len(conns), 1) if conns else None
    res.update(errors=len(errors), error_messages=errors, exit_code=1 if errors else 0)
    return res


def wait_ready(host: str, port: int, timeout: float = 120.0, user="guest", password="guest") -> float | None:
    """retry a full handshake + channel.open every 5 ms; seconds waited, None on timeout"""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            c = Conn(host, port, user, password, timeout=2.0)
            c.channel_open(1)
            c.close()
            return time.monotonic() - t0
        except (OSError, AMQPError):
            time.sleep(0.005)
    return None


# ---------------------------------------------------------------- CLI


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m interop.bench.perf",
                                 description="AMQP 0-9-1 load generator: one run, one JSON line.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--user", default="guest")
    ap.add_argument("--pass", dest="password", default="guest")
    ap.add_argument("--vhost", default="/")
    ap.add_argument("--frame-max", type=int, default=131072)
    ap.add_argument("-p", "--producers", type=int, default=1)
    ap.add_argument("-c", "--consumers", type=int, default=1)
    ap.add_argument("--queues", type=int, default=1)
    ap.add_argument("-s", "--size", type=int, default=16)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    ap.add_argument("-n", "--count", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--max-backlog", default="0", help="N, 0 (no cap) or auto")
    ap.add_argument("--exchange-type", default="default", choices=["default", "direct", "fanout", "topic"])
    ap.add_argument("--bindings", type=int, default=1000)
    ap.add_argument("--durable", action="store_true")
    ap.add_argument("--confirm", type=int, default=0)
    ap.add_argument("--ack", default="auto", choices=["auto", "manual"])
    ap.add_argument("--prefetch", type=int, default=0)
    ap.add_argument("--ack-mode", default="multiple", choices=["multiple", "single"])
    ap.add_argument("--queue", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--drain-timeout", type=float, default=5.0)
    ap.add_argument("--drain-max", type=float, default=30.0)
    ap.add_argument("--stuck-timeout", type=float, default=60.0)
    ap.add_argument("--broker-pid", type=int, default=None)
    ap.add_argument("--label", default="")
    ap.add_argument("--broker", default="")
    ap.add_argument("--batch-bytes", type=int, default=65536)
    ap.add_argument("--coalesce-us", type=int, default=-1,
                    help="consumer nap after a read under 32 KiB (-1 auto: 500 auto-ack, 200 manual, 0 --rate)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--idle-conns", type=int, default=0)
    ap.add_argument("--hold", type=float, default=3.0)
    ap.add_argument("--wait-ready", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0)
    return ap.parse_args(argv)


def config_from(a) -> Config:
    mb = a.max_backlog
    return Config(host=a.host, port=a.port, user=a.user, password=a.password, vhost=a.vhost,
                  frame_max=a.frame_max, producers=a.producers, consumers=a.consumers, queues=a.queues,
                  size=a.size, duration=a.duration, count=a.count, rate=a.rate,
                  max_backlog=-1 if mb == "auto" else int(mb), exchange_type=a.exchange_type,
                  bindings=a.bindings, durable=a.durable, confirm=a.confirm, ack=a.ack,
                  prefetch=a.prefetch, ack_mode=a.ack_mode, queue=a.queue, keep=a.keep,
                  drain_timeout=a.drain_timeout, drain_max=a.drain_max, stuck_timeout=a.stuck_timeout,
                  broker_pid=a.broker_pid, label=a.label, broker=a.broker or f"{a.host}:{a.port}",
                  batch_bytes=a.batch_bytes, verbose=a.verbose, coalesce_us=a.coalesce_us)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.wait_ready:
        t = wait_ready(a.host, a.port, a.timeout, a.user, a.password)
        print(json.dumps({"ready": t is not None, "wait_s": t}))
        return 0 if t is not None else 1
    cfg = config_from(a)
    if cfg.broker_pid is None and cfg.host in ("127.0.0.1", "localhost", "::1"):
        cfg.broker_pid = procstat.listener_pid(cfg.port)
    if a.idle_conns:
        r = idle_conns(cfg, a.idle_conns, a.hold)
    else:
        r = run(cfg)
    print(json.dumps(r))
    return r.get("exit_code", 0)


if __name__ == "__main__":
    sys.exit(main())
