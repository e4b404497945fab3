"""celery smoke scenario: python interop/clients/celery_smoke.py --host H --port P

Against any AMQP 0-9-1 broker (ours or RabbitMQ), with guest/guest on vhost "/":
- starts a real celery worker subprocess on celery_app.py (solo pool, one process, no gossip,
  mingle or worker heartbeat) consuming a task queue unique to this run, and waits for "ready";
- sends add.delay(2, 3) and checks .get(timeout=30) == 5, with the result coming back over AMQP
  through the rpc:// backend; then five more adds in flight at once, and a task that reports the
  request properties the worker saw (task id as correlation_id, reply_to = the client's queue);
- pings the worker through celery's remote control (pidbox fanout exchange, replies on
  reply.celery.pidbox), then stops it with a remote-control shutdown (warm shutdown) and requires
  a clean exit (status 0);
- deletes the task queue and its exchange.
Prints PASS and exits 0, or prints the failure (and the worker's log) and exits 1.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def start_worker(env: dict, queue: str, name: str, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
           "--pool=solo", "--concurrency=1", "--without-heartbeat", "--without-gossip",
           "--without-mingle", "--loglevel=INFO", "-Q", queue, "-n", name]
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(cmd, cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    finally:
        log.close()


def wait_ready(worker: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if " ready." in text:
            return
        if worker.poll() is not None:
            raise AssertionError(f"celery worker exited with {worker.returncode} before ready")
        time.sleep(0.1)
    raise AssertionError(f"celery worker not ready within {READY_TIMEOUT}s")


def stop_worker(app, worker: subprocess.Popen, name: str) -> int:
    """Warm shutdown through celery's remote control (a broadcast over the celery.pidbox fanout
    exchange; a ping first checks the round trip), which the worker acts on at once. A SIGTERM is acted on too, but only when the
    worker's event loop next wakes up (up to ~10 s later, with any broker)."""
    pongs = app.control.ping(destination=[name], timeout=5)
    assert pongs == [{name: {"ok": "pong"}}], f"remote-control ping: {pongs!r}"
    app.control.shutdown(destination=[name])  # celery sends no reply to this one
    try:
        worker.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        raise AssertionError(f"celery worker did not stop within {STOP_TIMEOUT}s of the "
                             "shutdown broadcast") from None
    return worker.returncode


def scenario(host: str, port: int, log_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    queue = f"smoke.celery.{tag}"
    env = dict(os.environ)
    env["SMOKE_CELERY_BROKER_URL"] = f"amqp://guest:guest@{host}:{port}//"
    env["SMOKE_CELERY_QUEUE"] = queue
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    os.environ.update({k: env[k] for k in ("SMOKE_CELERY_BROKER_URL", "SMOKE_CELERY_QUEUE")})
    sys.path.insert(0, str(HERE))
    import celery_app  # noqa: E402 - configured by the environment set just above

    name = f"{queue}@smoke"
    worker = start_worker(env, queue, name, log_path)
    try:
        wait_ready(worker, log_path)

        result = celery_app.add.delay(2, 3)
        value = result.get(timeout=30)
        assert value == 5, f"add(2, 3) returned {value!r}"
        assert result.successful() and result.state == "SUCCESS", result.state

        many = [celery_app.add.delay(i, 10 * i) for i in range(5)]
        values = [r.get(timeout=30) for r in many]
        assert values == [11 * i for i in range(5)], values

        seen = celery_app.echo_headers.delay("héllo").get(timeout=30)
        assert seen["value"] == "héllo", seen
        assert seen["correlation_id"] == seen["id"], seen
        assert seen["reply_to"] == celery_app.app.thread_oid, (seen, celery_app.app.thread_oid)
        info = seen["delivery_info"]
        assert info.get("routing_key") == queue and info.get("redelivered") is False, info

        code = stop_worker(celery_app.app, worker, name)
        assert code == 0, f"celery worker exited with status {code} after a warm shutdown"
        log = log_path.read_text(errors="replace")
        assert "Traceback" not in log, "the worker logged a traceback"
        assert "succeeded in" in log, "the worker log shows no succeeded task"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(5)
        with celery_app.app.connection_for_write() as conn:
            ch = conn.default_channel
            ch.queue_delete(queue)
            ch.exchange_delete(queue)
        celery_app.app.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    args = ap.parse_args(argv)
    import celery
    with tempfile.TemporaryDirectory(prefix="celery-smoke-") as tmp:
        log_path = Path(tmp) / "worker.log"
        try:
            scenario(args.host, args.port, log_path)
        except Exception as e:  # noqa: BLE001 - report anything as a failure
            traceback.print_exc()
            if log_path.exists():
                print("---- celery worker log ----\n" + log_path.read_text(errors="replace")
                      + "---- end of worker log ----", flush=True)
            print(f"FAIL celery {celery.__version__}: {type(e).__name__}: {e}", flush=True)
            return 1
    print(f"PASS celery {celery.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
