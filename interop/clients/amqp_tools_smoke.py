"""amqp-tools (rabbitmq-c's command-line tools) smoke scenario:
python interop/clients/amqp_tools_smoke.py --host H --port P

Drives Debian's `amqp-tools` (amqp-declare-queue, amqp-publish, amqp-consume, amqp-get,
amqp-delete-queue: C programs on librabbitmq) against any AMQP 0-9-1 broker (ours or RabbitMQ),
with guest/guest on vhost "/". pika checks what the C client sent and feeds what it consumes:
- amqp-declare-queue declares a named queue and a server-named one (amq.gen-...);
- amqp-publish sends messages with content type/encoding, reply-to, persistent mode and headers;
  pika gets them and checks bodies, properties and header values;
- amqp-publish -l sends one message per line; amqp-consume -c N -p 2 pipes each body to a command
  and acks it: the bodies come out in order and the queue is left empty;
- amqp-consume -e amq.direct -r KEY declares an exclusive server-named queue, binds it and
  consumes what pika publishes there;
- amqp-get fetches a single message, and a 500 KB one published from stdin;
  amqp-delete-queue deletes the queues.
Prints PASS and exits 0, or prints the failure and exits 1. Every command has a timeout.
Install the tools with `apt-get install amqp-tools`.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import pika

TOOLS = ("amqp-declare-queue", "amqp-publish", "amqp-consume", "amqp-get", "amqp-delete-queue")
TIMEOUT = 15.0


class Tools:
    def __init__(self, host: str, port: int):
        self.conn_args = ["--server", host, "--port", str(port), "--username", "guest",
                          "--password", "guest", "--vhost", "/"]

    def run(self, tool: str, *args: str, input: bytes | None = None) -> str:
        cmd = [tool, *self.conn_args, *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, timeout=TIMEOUT)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited with {proc.returncode}: "
                                 f"{proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout.decode()

    def popen(self, tool: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([tool, *self.conn_args, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def pika_connection(host: str, port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host, port, credentials=pika.PlainCredentials("guest", "guest"), heartbeat=0,
        connection_attempts=1, socket_timeout=5, stack_timeout=10, blocked_connection_timeout=10))


def scenario(host: str, port: int) -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise AssertionError(f"missing {', '.join(missing)}: install with `apt-get install amqp-tools`")
    tools = Tools(host, port)
    tag = uuid.uuid4().hex[:8]
    qname = f"smoke.amqp-tools.{tag}"
    conn = pika_connection(host, port)
    ch = conn.channel()
    try:
        # -- declare: named and server-named
        out = tools.run("amqp-declare-queue", "-q", qname).strip()
        assert out == qname, f"amqp-declare-queue printed {out!r}"
        ok = ch.queue_declare(qname, passive=True)
        assert ok.method.message_count == 0 and not ok.method.consumer_count, ok.method
        gen = tools.run("amqp-declare-queue", "-q", "").strip()
        assert gen.startswith("amq.gen-") and len(gen) > len("amq.gen-"), gen
        ch.queue_declare(gen, passive=True)
        tools.run("amqp-delete-queue", "-q", gen)

        # -- publish with properties and headers; pika checks them
        for i in range(3):
            tools.run("amqp-publish", "-r", qname, "-p", "-C", "text/plain", "-E", "utf-8",
                      "-t", f"reply.{tag}", "-H", f"x-index: {i}", "-H", "x-client: amqp-tools",
                      "-b", f"amqp-tools message {i}")
        for i in range(3):
            method, props, body = ch.basic_get(qname, auto_ack=False)
            assert method is not None, f"message {i} missing"
            assert body == f"amqp-tools message {i}".encode(), f"message {i}: body {body!r}"
            assert (props.content_type, props.content_encoding, props.reply_to,
                    props.delivery_mode) == ("text/plain", "utf-8", f"reply.{tag}", 2), \
                f"message {i}: properties {props}"
            headers = {k: v.decode() if isinstance(v, bytes) else v
                       for k, v in (props.headers or {}).items()}
            assert headers == {"x-index": str(i), "x-client": "amqp-tools"}, \
                f"message {i}: headers {props.headers!r}"
            assert method.exchange == "" and method.routing_key == qname \
                and not method.redelivered, method
            ch.basic_ack(method.delivery_tag)

        # -- publish one message per line, consume them with acks through a command
        bodies = [f"line {i} {tag}\n" for i in range(5)]  # -l keeps each line's newline
        tools.run("amqp-publish", "-r", qname, "-l", input="".join(bodies).encode())
        assert ch.queue_declare(qname, passive=True).method.message_count == 5
        with tempfile.TemporaryDirectory(prefix="amqp-tools-") as tmp:
            sink = Path(tmp) / "consumed"
            # Each body goes to the command's stdin; the command appends it and a separator.
            tools.run("amqp-consume", "-q", qname, "-c", "5", "-p", "2", "--",
                      "sh", "-c", f"cat >> '{sink}'; printf '|' >> '{sink}'")
            consumed = sink.read_text().split("|")[:-1]
        assert consumed == bodies, f"amqp-consume got {consumed!r}, expected {bodies!r}"
        ok = ch.queue_declare(qname, passive=True)
        assert ok.method.message_count == 0, f"{ok.method.message_count} left: acks not settled"

        # -- amqp-get: one message
        ch.basic_publish("", qname, b"fetched by amqp-get")
        out = tools.run("amqp-get", "-q", qname)
        assert out == "fetched by amqp-get", f"amqp-get printed {out!r}"
        assert ch.queue_declare(qname, passive=True).method.message_count == 0

        # -- a 500 KB body from stdin (several frames each way) and back through amqp-get
        big = "".join(chr(33 + (i * 31) % 94) for i in range(500 * 1024 + 3))
        tools.run("amqp-publish", "-r", qname, "-C", "text/plain", input=big.encode())
        out = tools.run("amqp-get", "-q", qname)
        assert out == big, f"amqp-get: large body of {len(out)} characters differs"

        # -- amqp-consume on an exclusive server-named queue bound to amq.direct
        key = f"smoke.amqp-tools.key.{tag}"
        consumer = tools.popen("amqp-consume", "-e", "amq.direct", "-r", key, "-x", "-c", "2",
                               "cat")
        try:
            ch.confirm_delivery()
            deadline = time.monotonic() + TIMEOUT
            while True:  # the binding exists once a mandatory publish is no longer returned
                try:
                    ch.basic_publish("amq.direct", key, b"first;", mandatory=True)
                    break
                except pika.exceptions.UnroutableError:
                    if consumer.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError("amqp-consume never bound its queue to amq.direct")
                    time.sleep(0.05)
            ch.basic_publish("amq.direct", key, b"second;", mandatory=True)
            out, err = consumer.communicate(timeout=TIMEOUT)
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait(5)
        assert consumer.returncode == 0, f"amqp-consume exited {consumer.returncode}: {err!r}"
        assert out == b"first;second;", f"amqp-consume printed {out!r}"

        out = tools.run("amqp-delete-queue", "-q", qname)
        try:
            ch.queue_declare(qname, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404, e
        else:
            raise AssertionError("amqp-delete-queue left the queue in place")
    finally:
        if conn.is_open:
            try:
                cleanup = conn.channel()
                cleanup.queue_delete(qname)
            except Exception:  # noqa: BLE001 - best effort
                pass
            conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    args = ap.parse_args(argv)
    try:
        scenario(args.host, args.port)
    except Exception as e:  # noqa: BLE001 - report anything as a failure
        traceback.print_exc()
        print(f"FAIL amqp-tools: {type(e).__name__}: {e}", flush=True)
        return 1
    print("PASS amqp-tools", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
