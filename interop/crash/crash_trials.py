#!/usr/bin/env python3
"""Crash trials: kill -9 the broker under confirmed load, restart it, and check nothing was lost.

    python interop/crash/crash_trials.py N [--seconds S] [--publishers P] [--consumers C]
                                           [--queues Q] [--crashes K] [--clean-restart]
                                           [--json out.json] [--keep] [--seed SEED]

Each trial, on a fresh data directory:

1. start the broker (a subprocess, ``--port 0``), declare a durable direct exchange and Q durable
   queues bound to it by name;
2. run P confirming publishers and C acking consumers, each its own process (interop/crash/
   clients.py): publishers pipeline uniquely numbered messages (10% non-persistent) and track
   confirms by delivery tag; consumers ack manually (some with multiple=true, some nacked with
   requeue) and log every delivery with its redelivered flag. Every observation is appended and
   flushed to the client's log file as it happens;
3. once every client is running, wait a random time (0..S s) and SIGKILL the broker, mid-load;
4. restart it on the same data directory (it must open with no repair) and repeat 2-3, K crashes
   in all (default 2);
5. after the last crash restart it once more (with ``--clean-restart``: restart it, stop it
   cleanly and start it again first), drain every queue, stop it cleanly, start it again and check
   every queue is still there and empty (anything that comes back is drained again and counted:
   an acked message delivered again without the redelivered flag is an unflagged duplicate).

Then, from the client logs (see ``analyse``), per trial: messages published, confirmed, acked
before a crash, recovered (ready messages found at each restart), **lost** (confirmed persistent,
never acked, not recovered) and **unflagged duplicates** (a message delivered again with
redelivered=false). A message acked before a crash may come back once per crash, flagged
redelivered (its ack may not have been on disk): allowed. Also failures: a redelivery of an acked
message within one broker lifetime, a non-persistent message surviving a crash, a message with a
wrong redelivered flag on its first delivery, a corrupted body, an unknown message, a restart that
fails or loses definitions, a restart that finds fewer messages than confirmed-and-unacked ones.

Prints a table; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pika  # noqa: E402

from interop.crash.broker_proc import ROOT, BrokerError, BrokerProcess  # noqa: E402
from interop.crash.clients import check_body  # noqa: E402

EXCHANGE = "crash.x"


@dataclass
class Config:
    seconds: float = 2.0
    publishers: int = 2
    consumers: int = 2
    queues: int = 2
    crashes: int = 2
    window: int = 64
    transient_ratio: float = 0.1
    requeue_ratio: float = 0.03
    clean_restart: bool = False
    min_delay: float = 0.05


@dataclass
class TrialResult:
    trial: int
    published: int = 0
    persistent: int = 0
    confirmed: int = 0
    confirmed_persistent: int = 0
    nacked: int = 0
    delivered: int = 0
    acked_before_crash: int = 0
    recovered: int = 0
    recovered_per_restart: list = field(default_factory=list)
    drained: int = 0
    redelivered_after_ack: int = 0
    lost: int = 0
    unflagged_duplicates: int = 0
    duplicates_same_life: int = 0
    flag_errors: int = 0
    resurrected_transient: int = 0
    phantoms: int = 0
    corrupt: int = 0
    errors: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    kill_delays: list = field(default_factory=list)
    seconds: float = 0.0
    dir: str = ""

    @property
    def failed(self) -> bool:
        return bool(
            self.lost or self.unflagged_duplicates or self.duplicates_same_life or self.flag_errors
            or self.resurrected_transient or self.phantoms or self.corrupt or self.errors
        )


# -- running ------------------------------------------------------------------------------------


def _client_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _spawn(args: list[str], out_path: str) -> subprocess.Popen:
    with open(out_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "interop.crash.clients", *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=ROOT, env=_client_env(),
        )


def _wait_ready(procs: list[tuple[subprocess.Popen, str, str]], timeout: float = 30.0) -> str | None:
    """Wait until every client logged READY; an error text when one failed instead."""
    deadline = time.monotonic() + timeout
    waiting = list(procs)
    while waiting:
        for item in list(waiting):
            proc, log, out = item
            try:
                with open(log) as f:
                    text = f.read()
            except OSError:
                text = ""
            if "READY" in text:
                waiting.remove(item)
            elif proc.poll() is not None or "END" in text:
                with open(out, errors="replace") as f:
                    return f"client {' '.join(proc.args[3:5])} failed to start: {text[-500:]} {f.read()[-2000:]}"
        if time.monotonic() > deadline:
            return f"{len(waiting)} client(s) not ready within {timeout} s"
        time.sleep(0.01)
    return None


def _reap(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, heartbeat=0, connection_attempts=3, retry_delay=0.2,
        blocked_connection_timeout=30,
    ))


def _queues(cfg: Config) -> list[str]:
    return [f"crash.q{i}" for i in range(cfg.queues)]


def _declare(port: int, cfg: Config) -> None:
    conn = _connect(port)
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, "direct", durable=True)
    for q in _queues(cfg):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, EXCHANGE, routing_key=q)
    conn.close()


def _counts(port: int, cfg: Config) -> dict[str, int] | str:
    """Ready messages per queue (passive declares); an error text when something is missing."""
    conn = _connect(port)
    try:
        ch = conn.channel()
        try:
            ch.exchange_declare(EXCHANGE, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            return f"durable exchange {EXCHANGE} missing after restart: {exc}"
        counts = {}
        for q in _queues(cfg):
            if not ch.is_open:
                ch = conn.channel()
            try:
                counts[q] = ch.queue_declare(q, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker as exc:
                return f"durable queue {q} missing after restart: {exc}"
        return counts
    finally:
        if conn.is_open:
            conn.close()


def _drain(port: int, cfg: Config, log_path: str) -> tuple[int, str | None]:
    """Get and ack every message left (logged like a consumer); (count, error text or None)."""
    conn = _connect(port)
    ch = conn.channel()
    count = 0
    with open(log_path, "a") as log:
        log.write(f"READY {time.time():.6f}\n")
        for q in _queues(cfg):
            while True:
                method, props, body = ch.basic_get(q, auto_ack=False)
                if method is None:
                    break
                now = f"{time.time():.6f}"
                mid = props.message_id
                line = f"D {q} {mid} {int(method.redelivered)} {now}\n"
                problem = check_body(mid, body)
                if problem:
                    line += f"BAD {q} {mid} {problem} {now}\n"
                line += f"A {q} {mid} {now}\n"
                log.write(line)
                log.flush()
                ch.basic_ack(method.delivery_tag)
                count += 1
        left = {q: ch.queue_declare(q, passive=True).method.message_count for q in _queues(cfg)}
    conn.close()
    if any(left.values()):
        return count, f"queues not empty after the drain: {left}"
    return count, None


def run_trial(index: int, cfg: Config, workdir: str, rng: random.Random) -> TrialResult:
    started = time.monotonic()
    tdir = os.path.join(workdir, f"trial-{index:03d}")
    os.makedirs(tdir, exist_ok=True)
    result = TrialResult(trial=index, dir=tdir)
    broker = BrokerProcess(os.path.join(tdir, "data"), log_path=os.path.join(tdir, "broker.log"))
    queues = ",".join(_queues(cfg))
    restart_counts: list[dict[str, int]] = []
    clients: list[subprocess.Popen] = []
    try:
        for life in range(cfg.crashes + 1):
            ldir = os.path.join(tdir, f"life{life}")
            os.makedirs(ldir, exist_ok=True)
            try:
                broker.start()
            except BrokerError as exc:
                result.errors.append(f"start #{life + 1} failed (store did not reopen?): {exc}")
                break
            if life == 0:
                _declare(broker.port, cfg)
            else:
                counts = _counts(broker.port, cfg)
                if isinstance(counts, str):
                    result.errors.append(f"after crash {life}: {counts}")
                    break
                restart_counts.append(counts)
            if life < cfg.crashes:
                procs = []
                for c in range(cfg.consumers):
                    log = os.path.join(ldir, f"cons{c}.log")
                    out = os.path.join(ldir, f"cons{c}.out")
                    prefetch = rng.choice([1, 5, 20, 50, 200])
                    delay = rng.choice([0.0, 0.0, 0.002])
                    procs.append((_spawn(["consume", "--port", str(broker.port), "--queues", queues,
                                          "--log", log, "--prefetch", str(prefetch),
                                          "--requeue-ratio", str(cfg.requeue_ratio),
                                          "--delay", str(delay), "--seed", str(rng.getrandbits(32))],
                                         out), log, out))
                for p in range(cfg.publishers):
                    log = os.path.join(ldir, f"pub{p}.log")
                    out = os.path.join(ldir, f"pub{p}.out")
                    procs.append((_spawn(["publish", "--port", str(broker.port), "--exchange", EXCHANGE,
                                          "--queues", queues, "--id-prefix", f"t{index}.l{life}.p{p}",
                                          "--log", log, "--window", str(rng.choice([1, 8, cfg.window])),
                                          "--transient-ratio", str(cfg.transient_ratio),
                                          "--seed", str(rng.getrandbits(32))], out), log, out))
                clients = [proc for proc, _, _ in procs]
                problem = _wait_ready(procs)
                if problem:
                    result.errors.append(f"life {life}: {problem}")
                    broker.kill9()
                    _reap(clients, 0)
                    break
                delay = rng.uniform(cfg.min_delay, max(cfg.min_delay, cfg.seconds))
                result.kill_delays.append(round(delay, 3))
                time.sleep(delay)
                broker.kill9()
                _reap(clients)
                clients = []
            else:
                if cfg.clean_restart:
                    try:
                        broker.restart(clean=True)
                    except BrokerError as exc:
                        result.errors.append(f"clean restart after the last crash failed: {exc}")
                        break
                result.drained, problem = _drain(broker.port, cfg, os.path.join(ldir, "drain.log"))
                if problem:
                    result.errors.append(problem)
                status = broker.stop()
                if status != 0:
                    result.errors.append(f"clean stop exited with status {status}")
                try:
                    broker.start()
                    counts = _counts(broker.port, cfg)
                    if isinstance(counts, str):
                        result.errors.append(f"after drain + clean restart: {counts}")
                    elif any(counts.values()):
                        # Acked (drained) messages came back: drain them again, as a consumer
                        # would see them, so the analysis classifies them (flags included).
                        result.errors.append(f"after drain + clean stop + start, acked messages "
                                             f"came back: {counts}")
                        extra = os.path.join(tdir, f"life{life + 1}")
                        os.makedirs(extra, exist_ok=True)
                        _drain(broker.port, cfg, os.path.join(extra, "drain.log"))
                    broker.stop()
                except BrokerError as exc:
                    result.errors.append(f"start after a clean stop failed: {exc}")
    except Exception as exc:  # report, do not abort the other trials
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if clients:
            for proc in clients:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
            _reap(clients, 5)
        if broker.running:
            broker.kill9()
    analyse(tdir, cfg, result, restart_counts)
    result.seconds = round(time.monotonic() - started, 2)
    return result


# -- checking -----------------------------------------------------------------------------------

_ORDER = {"D": 0, "A": 1, "R": 2}


def _read_logs(tdir: str):
    """Everything the clients wrote, as (life, kind, fields) per line, in file order."""
    for name in sorted(os.listdir(tdir)):
        if not name.startswith("life"):
            continue
        life = int(name[4:])
        ldir = os.path.join(tdir, name)
        for fname in sorted(os.listdir(ldir)):
            if not fname.endswith(".log"):
                continue
            with open(os.path.join(ldir, fname), errors="replace") as f:
                for line in f:
                    if not line.endswith("\n"):
                        continue  # a torn last line (the writer was killed mid-write)
                    parts = line.split()
                    if parts:
                        yield life, parts[0], parts[1:]


def analyse(tdir: str, cfg: Config, result: TrialResult, restart_counts: list[dict[str, int]]) -> None:
    """Fill ``result``'s figures and failures from the client logs of trial directory ``tdir``."""
    published: dict[str, tuple[str, int, bool]] = {}  # id -> (queue, life, persistent)
    confirmed: set[str] = set()
    nacked: set[str] = set()
    events: dict[str, list[tuple]] = defaultdict(list)  # id -> [(life, time, order, kind, flag)]
    for life, kind, f in _read_logs(tdir):
        if kind == "P":
            published[f[1]] = (f[0], life, f[2] == "1")
        elif kind == "C":
            confirmed.add(f[0])
        elif kind == "N":
            nacked.add(f[0])
        elif kind == "D":
            events[f[1]].append((life, float(f[3]), _ORDER["D"], "D", f[2] == "1", f[0]))
        elif kind in ("A", "R"):
            events[f[1]].append((life, float(f[2]), _ORDER[kind], kind, False, f[0]))
        elif kind == "BAD":
            result.corrupt += 1
            _example(result, f"corrupt delivery of {f[1]}: {f[2]}")
        elif kind == "END" and f and "ClosedByBroker" in f[0]:
            # Clients only lose their connection when the broker is killed (a reset, EOF):
            # a close *by the broker* mid-load is an error of its own (its acks in flight are
            # lost too, so their messages come back, flagged).
            result.errors.append(f"life {life}: the broker closed a client: {f[0]}")

    final_life = cfg.crashes
    result.published = len(published)
    result.persistent = sum(1 for _q, _l, p in published.values() if p)
    result.confirmed = len(confirmed)
    result.confirmed_persistent = sum(1 for m in confirmed if published.get(m, (0, 0, False))[2])
    result.nacked = len(nacked)
    result.recovered_per_restart = [sum(c.values()) for c in restart_counts]
    result.recovered = sum(result.recovered_per_restart)

    acked_by_crash = [set() for _ in range(final_life)]  # ids acked (logged) in lives <= k
    for mid, evs in events.items():
        evs.sort()
        if mid not in published:
            result.phantoms += 1
            _example(result, f"delivery of a message never published: {mid}")
            continue
        queue, pub_life, persistent = published[mid]
        seen = False
        acked_lives: set[int] = set()
        for life, _t, _o, kind, flag, ev_queue in evs:
            if kind == "D":
                result.delivered += 1
                if ev_queue != queue:
                    result.phantoms += 1
                    _example(result, f"{mid} published to {queue} but delivered from {ev_queue}")
                if life in acked_lives:
                    result.duplicates_same_life += 1
                    _example(result, f"{mid} delivered again after its ack, in the same broker lifetime {life}")
                elif acked_lives:
                    result.redelivered_after_ack += 1
                if seen and not flag:
                    result.unflagged_duplicates += 1
                    _example(result, f"{mid} delivered again with redelivered=false (life {life})")
                if not seen:
                    if life > pub_life and not flag:
                        result.flag_errors += 1
                        _example(result, f"{mid} recovered after a crash but first delivered "
                                         f"with redelivered=false (life {life})")
                    if life == pub_life and flag:
                        result.flag_errors += 1
                        _example(result, f"{mid} first delivered with redelivered=true (life {life})")
                if life > pub_life and not persistent:
                    result.resurrected_transient += 1
                    _example(result, f"non-persistent {mid} survived a crash (life {pub_life} -> {life})")
                seen = True
            elif kind == "A":
                acked_lives.add(life)
        for k in range(final_life):
            if any(life <= k for life in acked_lives):
                acked_by_crash[k].add(mid)

    acked_ever = {m for m, evs in events.items() if any(e[3] == "A" for e in evs)}
    result.acked_before_crash = len(set().union(*acked_by_crash)) if acked_by_crash else 0
    for mid in sorted(confirmed):
        queue, pub_life, persistent = published.get(mid, ("?", 0, False))
        if persistent and mid not in acked_ever:
            result.lost += 1
            _example(result, f"confirmed persistent {mid} (to {queue}, life {pub_life}) was lost")
    # At restart k+1, every message confirmed before crash k and not acked by then must be there.
    for k, counts in enumerate(restart_counts):
        must = sum(
            1 for mid in confirmed
            if published.get(mid, ("?", 99, False))[1] <= k and published[mid][2] and mid not in acked_by_crash[k]
        )
        if sum(counts.values()) < must:
            result.errors.append(
                f"restart after crash {k + 1} found {sum(counts.values())} message(s); "
                f"{must} confirmed persistent ones were not acked before it"
            )


def _example(result: TrialResult, text: str) -> None:
    if len(result.examples) < 10:
        result.examples.append(text)


# -- reporting ----------------------------------------------------------------------------------

COLUMNS = [
    ("trial", "trial"), ("published", "published"), ("confirmed", "confirmed"),
    ("conf.pers", "confirmed_persistent"), ("acked<crash", "acked_before_crash"),
    ("recovered", "recovered"), ("drained", "drained"), ("lost", "lost"),
    ("dup(unflagged)", "unflagged_duplicates"), ("other", None), ("s", "seconds"),
]


def _other(r: TrialResult) -> int:
    return (r.duplicates_same_life + r.flag_errors + r.resurrected_transient + r.phantoms
            + r.corrupt + len(r.errors))


def format_table(results: list[TrialResult]) -> str:
    rows = [[name for name, _ in COLUMNS] + ["status"]]
    for r in results:
        rows.append([str(_other(r) if attr is None else getattr(r, attr)) for _, attr in COLUMNS]
                    + ["FAIL" if r.failed else "ok"])
    total = totals(results)
    rows.append(["total"] + [str(total[attr] if attr else total["other"]) for _, attr in COLUMNS[1:]]
                + [f"{total['failed_trials']} failed"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def totals(results: list[TrialResult]) -> dict:
    keys = ["published", "persistent", "confirmed", "confirmed_persistent", "nacked", "delivered",
            "acked_before_crash", "recovered", "drained", "redelivered_after_ack", "lost",
            "unflagged_duplicates", "duplicates_same_life", "flag_errors", "resurrected_transient",
            "phantoms", "corrupt", "seconds"]
    total = {k: round(sum(getattr(r, k) for r in results), 2) for k in keys}
    total["trials"] = len(results)
    total["crashes"] = sum(len(r.kill_delays) for r in results)
    total["errors"] = sum(len(r.errors) for r in results)
    total["other"] = sum(_other(r) for r in results)
    total["failed_trials"] = sum(1 for r in results if r.failed)
    return total


def run(n: int, cfg: Config, workdir: str | None = None, keep: bool = False, seed: int | None = None,
        progress=None) -> list[TrialResult]:
    """Run ``n`` trials; trial directories of passing trials are removed unless ``keep``."""
    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="crash-trials-")
    rng = random.Random(seed)
    results = []
    for i in range(n):
        result = run_trial(i, cfg, workdir, random.Random(rng.getrandbits(64)))
        results.append(result)
        if not result.failed and not keep:
            shutil.rmtree(result.dir, ignore_errors=True)
            result.dir = ""
        if progress:
            progress(result)
    if own_dir and not keep and not any(r.failed for r in results):
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trials", type=int, help="number of trials")
    parser.add_argument("--seconds", type=float, default=2.0, help="max load time before each kill")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--queues", type=int, default=2)
    parser.add_argument("--crashes", type=int, default=2, help="kill -9 per trial")
    parser.add_argument("--clean-restart", action="store_true",
                        help="after the last crash, restart, stop cleanly and restart before draining")
    parser.add_argument("--transient-ratio", type=float, default=0.1)
    parser.add_argument("--json", help="write the per-trial figures here")
    parser.add_argument("--workdir", help="where trial directories go (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep passing trials' directories")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    cfg = Config(seconds=args.seconds, publishers=args.publishers, consumers=args.consumers,
                 queues=args.queues, crashes=args.crashes, clean_restart=args.clean_restart,
                 transient_ratio=args.transient_ratio)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"crash trials: {args.trials} x {cfg.crashes} crash(es), {cfg.publishers} publisher(s), "
          f"{cfg.consumers} consumer(s), {cfg.queues} queue(s), <= {cfg.seconds} s load per crash, "
          f"seed {seed}", flush=True)

    def progress(r: TrialResult) -> None:
        status = "FAIL" if r.failed else "ok"
        print(f"  trial {r.trial}: {status}  published {r.published} confirmed {r.confirmed} "
              f"lost {r.lost} dup {r.unflagged_duplicates} ({r.seconds} s)", flush=True)
        for line in r.errors + r.examples:
            print(f"    {line}", flush=True)

    results = run(args.trials, cfg, args.workdir, args.keep, seed, progress)
    print()
    print(format_table(results))
    total = totals(results)
    failed = [r for r in results if r.failed]
    if failed:
        print(f"\nFAILED: {len(failed)} trial(s); their directories: "
              + ", ".join(r.dir for r in failed if r.dir))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": asdict(cfg), "seed": seed, "totals": total,
                       "trials": [asdict(r) | {"failed": r.failed} for r in results]}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
