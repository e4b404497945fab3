"""A null AMQP broker to measure the load generator itself.

    python -m interop.bench.sink --port 5699 [--size 16]

It accepts the handshake (any user), answers every set-up method with its -ok, swallows publishes
(counted by the same frame scanner as the consumers: strided checks, no per-message Python work) and
confirms them when asked (one multiple-ack per read batch), and streams pre-encoded deliveries of
``--size`` bytes to every consumer as fast as the socket takes them, honouring basic.qos prefetch
for manual-ack consumers. A passive queue.declare reports as message count everything published to
the sink so far, so producer-only runs (``-c 0``) finish. Each connection is served by its own
forked process (so several generator processes are not funnelled through one sink core). No
routing, no storage: a delivery has nothing to do with a publish.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import select
import signal
import socket
import struct
import sys

from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader

from . import wire

MP = mp.get_context("fork")


def _send(sock, method, channel=0):
    sock.sendall(pframe.marshal(method, channel))


def _decode(ch: int, m: int, payload: bytes):
    raw = wire.frame(wire.FRAME_METHOD, ch, m.to_bytes(4, "big") + payload)
    return pframe.unmarshal(raw)[2]


def _deliveries(size: int, ctag: str, frame_max: int, count: int):
    """a Batch of count basic.deliver messages on channel 1; tag offset within one message"""
    body = wire.make_body(size)
    head = pframe.marshal(C.Basic.Deliver(consumer_tag=ctag, delivery_tag=1, redelivered=False,
                                          exchange="", routing_key="sink"), 1)
    head += pframe.marshal(pheader.ContentHeader(0, size, C.Basic.Properties()), 1)
    msg = head + wire.body_frames(1, body, frame_max)
    tag_off = 7 + 4 + 1 + len(ctag.encode())
    return wire.Batch([(msg, len(head) + 7 if size else -1)], count), tag_off


def serve(conn: socket.socket, size: int, published_total) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hdr = b""
    while len(hdr) < 8:
        d = conn.recv(8 - len(hdr))
        if not d:
            return
        hdr += d
    if hdr != wire.PROTOCOL_HEADER:
        conn.sendall(wire.PROTOCOL_HEADER)
        return
    _send(conn, C.Connection.Start(server_properties={"product": "interop.bench.sink",
                                                      "capabilities": {"publisher_confirms": True,
                                                                       "basic.nack": True}},
                                   mechanisms="PLAIN AMQPLAIN", locales="en_US"))
    sc = wire.Scanner(wire.BASIC_PUBLISH)
    frame_max = 131072
    confirm = False
    published = 0
    consuming = False
    manual = False
    prefetch = 0
    sent = 0       # deliveries sent (tags 1..sent)
    acked = 0
    batch = None
    tag_off = 0
    out = memoryview(b"")  # pending part of the current delivery batch
    pending_ctl = bytearray()
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    mask = select.POLLIN
    conn.setblocking(False)
    mono_ns = __import__("time").monotonic_ns
    while True:
        want_write = bool(pending_ctl) or len(out) > 0 or (
            consuming and (not manual or not prefetch or sent - acked < prefetch))
        m = select.POLLIN | (select.POLLOUT if want_write else 0)
        if m != mask:
            poller.modify(conn, m)
            mask = m
        for _fd, ev in poller.poll(-1 if not want_write else 1000):
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    n = sc.recv(conn)
                except BlockingIOError:
                    n = -1
                except OSError:
                    return
                if n == 0:
                    return
                if n > 0:
                    got = sc.feed()
                    if got:
                        published += got
                        with published_total.get_lock():
                            published_total.value += got
                        if confirm:
                            pending_ctl += wire.frame(wire.FRAME_METHOD, 1,
                                                      b"\x00<\x00P" + published.to_bytes(8, "big") + b"\x01")
                    for ch, m, payload in sc.others:
                        if m == wire.BASIC_ACK:
                            tag, multiple = wire.parse_ack(payload)
                            acked = max(acked, tag) if multiple else max(acked, min(tag, acked + 1))
                            continue
                        if m == 0:  # heartbeat
                            continue
                        meth = _decode(ch, m, payload)
                        reply = None
                        if isinstance(meth, C.Connection.StartOk):
                            reply = (C.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=0), 0)
                        elif isinstance(meth, C.Connection.TuneOk):
                            frame_max = meth.frame_max or 131072
                        elif isinstance(meth, C.Connection.Open):
                            reply = (C.Connection.OpenOk(), 0)
                        elif isinstance(meth, C.Connection.Close):
                            conn.setblocking(True)
                            conn.sendall(bytes(pending_ctl))
                            _send(conn, C.Connection.CloseOk())
                            return
                        elif isinstance(meth, C.Channel.Open):
                            reply = (C.Channel.OpenOk(), ch)
                        elif isinstance(meth, C.Channel.Close):
                            consuming = False
                            out = memoryview(b"")
                            reply = (C.Channel.CloseOk(), ch)
                        elif isinstance(meth, C.Queue.Declare):
                            if meth.passive:
                                cnt = published_total.value
                            else:  # a run's set-up: count its publishes from here
                                cnt = 0
                                with published_total.get_lock():
                                    published_total.value = 0
                            reply = (C.Queue.DeclareOk(queue=meth.queue or "amq.gen-sink",
                                                       message_count=cnt, consumer_count=0), ch)
                        elif isinstance(meth, C.Queue.Bind):
                            reply = (C.Queue.BindOk(), ch)
                        elif isinstance(meth, C.Queue.Delete):
                            reply = (C.Queue.DeleteOk(message_count=0), ch)
                        elif isinstance(meth, C.Queue.Purge):
                            reply = (C.Queue.PurgeOk(message_count=0), ch)
                        elif isinstance(meth, C.Exchange.Declare):
                            reply = (C.Exchange.DeclareOk(), ch)
                        elif isinstance(meth, C.Exchange.Delete):
                            reply = (C.Exchange.DeleteOk(), ch)
                        elif isinstance(meth, C.Basic.Qos):
                            prefetch = meth.prefetch_count
                            reply = (C.Basic.QosOk(), ch)
                        elif isinstance(meth, C.Confirm.Select):
                            confirm = True
                            reply = (C.Confirm.SelectOk(), ch)
                        elif isinstance(meth, C.Basic.Consume):
                            ctag = meth.consumer_tag or "sink-ctag"
                            manual = not meth.no_ack
                            per = max(1, 65536 // (size + 100))
                            if manual and prefetch:
                                per = min(per, prefetch)
                            batch, tag_off = _deliveries(size, ctag, frame_max, per)
                            reply = (C.Basic.ConsumeOk(consumer_tag=ctag), ch)
                            consuming = True
                        elif isinstance(meth, C.Basic.Cancel):
                            consuming = False
                            reply = (C.Basic.CancelOk(consumer_tag=meth.consumer_tag), ch)
                        if reply is not None:
                            pending_ctl += pframe.marshal(reply[0], reply[1])
                    sc.others.clear()
            if ev & select.POLLOUT or want_write:
                try:
                    if pending_ctl and not len(out):
                        k = conn.send(pending_ctl)
                        del pending_ctl[:k]
                    if not len(out) and consuming and not pending_ctl:
                        k = batch.count
                        if manual and prefetch:
                            k = min(k, prefetch - (sent - acked))
                        if k > 0:
                            buf = batch.stamp(mono_ns())
                            if manual:
                                st = batch.stride
                                for i in range(k):
                                    struct.pack_into(">Q", buf, i * st + tag_off, sent + 1 + i)
                            sent += k
                            out = batch.view(k)
                    if len(out):
                        k = conn.send(out)
                        out = out[k:]
                except BlockingIOError:
                    pass
                except OSError:
                    return


def _child(conn: socket.socket, size: int, counter) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        serve(conn, size, counter)
    except (OSError, wire.FrameError):
        pass
    finally:
        conn.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m interop.bench.sink", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5699)
    ap.add_argument("--size", type=int, default=16, help="body size of the deliveries it streams")
    a = ap.parse_args(argv)
    counter = MP.Value("Q", 0)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(512)
    print(f"sink listening on {a.host}:{ls.getsockname()[1]}", file=sys.stderr, flush=True)
    children = []

    def stop(*_):
        for p in children:
            if p.is_alive():
                p.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        conn, _ = ls.accept()
        p = MP.Process(target=_child, args=(conn, a.size, counter), daemon=True)
        p.start()
        conn.close()
        children = [c for c in children if c.is_alive()]
        children.append(p)


if __name__ == "__main__":
    sys.exit(main())
