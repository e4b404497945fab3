"""Benchmark runner: our broker vs RabbitMQ and garagemq on the standard scenario set a-k + startup.

    python -m interop.bench [--scenarios a,b,...] [--duration S] [--rounds N] [--quick]
                            [--ours-port P] [--rabbit HOST:PORT | --no-rabbit]
                            [--garagemq auto|off|HOST:PORT] [--json out.json]
    python -m interop.bench --sink [--duration S] [--rounds N]     # the generator's own ceiling

See interop/bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace

from . import brokers as B
from . import procstat
from .perf import Config, idle_conns, run, wait_ready

# k runs before j: a broker returns the memory of j's million messages lazily (RabbitMQ: GBs over
# tens of seconds), which would make k's RSS-per-connection figure meaningless
ALL = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "k", "j", "startup"]

# scenario -> (label, Config overrides); throughput runs cap the backlog (auto)
TP = dict(max_backlog=-1)
SCENARIOS = {
    "a": ("a-16B", dict(TP, size=16)),
    "b": ("b-1KiB", dict(TP, size=1024)),
    "c": ("c-64KiB", dict(TP, size=65536)),
    # d and e ack every delivery, as the reference amqp-perf does (and as most clients do).
    "d": ("d-manual-ack", dict(TP, size=16, ack="manual", prefetch=100, ack_mode="single")),
    "e": ("e-durable-confirm", dict(TP, size=16, durable=True, confirm=256, ack="manual", prefetch=100,
                                    ack_mode="single")),
    "f": ("f-fanout-10", dict(TP, size=16, exchange_type="fanout", queues=10, consumers=10)),
    "g": ("g-topic-10k", dict(TP, size=16, exchange_type="topic", bindings=10000)),
    "h": ("h-4p4c4q", dict(TP, size=16, producers=4, consumers=4, queues=4)),
    "i": ("i-latency-1k", dict(size=256, rate=1000)),
    "j": ("j-fill-drain", {}),
    "k": ("k-idle-conns", {}),
    "startup": ("startup", {}),
}
# garagemq fails these (seen with its Debian package): in e it leaves the last confirm window
# unanswered (the run exits 3, "unconfirmed 256"); in g its 10,000 wildcard bindings bring routing
# down to ~700 msg/s and the queue's clean-up times out
GARAGEMQ_CANNOT = {"e", "g"}

THROUGHPUT = [
    ("delivered msg/s", "cons_rate", "rate", True),
    ("published msg/s", "pub_rate", "rate", True),
    ("broker CPU µs/msg", "broker_us_per_msg", "f1", False),
]
METRICS = {
    "a-16B": THROUGHPUT, "b-1KiB": THROUGHPUT, "c-64KiB": THROUGHPUT, "d-manual-ack": THROUGHPUT,
    "e-durable-confirm": THROUGHPUT + [("confirm latency p50 ms", "confirm_lat_p50_us", "ms", False)],
    "f-fanout-10": THROUGHPUT,
    "g-topic-10k": THROUGHPUT + [("bind 10k + set-up s", "setup_s", "f2", False)],
    "h-4p4c4q": THROUGHPUT,
    "i-latency-1k": [("latency p50 ms", "lat_p50_us", "ms", False),
                     ("latency p99 ms", "lat_p99_us", "ms", False),
                     ("latency max ms", "lat_max_us", "ms", False)],
    "j-fill-drain": [("fill: enqueued msg/s", "fill.enqueue_rate", "rate", True),
                     ("drain msg/s", "drain.cons_rate", "rate", True),
                     ("RSS before fill MiB", "fill.broker_rss_kb_start", "mib", False),
                     ("RSS after fill MiB", "fill.broker_rss_kb_end", "mib", False),
                     ("RSS after drain MiB", "drain.broker_rss_kb_end", "mib", False)],
    "k-idle-conns": [("connections opened", "opened", "int", True),
                     ("time to open s", "open_s", "f2", False),
                     ("open p50 ms", "open_lat_p50_us", "ms", False),
                     ("RSS delta MiB", "broker_rss_delta_kb", "mib1", False),
                     ("RSS per conn KiB", "broker_rss_per_conn_kb", "f1", False)],
    "startup": [("exec → handshake s", "startup_s", "f2", False),
                ("idle RSS MiB", "listener_rss_kb", "mib1", False),
                ("idle RSS, process tree MiB", "tree_rss_kb", "mib1", False)],
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def settle(pid: int | None, max_wait: float = 30.0, busy_pct: float = 25.0) -> float:
    """wait until the broker is quiet (under busy_pct of a core over 0.5 s, e.g. after freeing a
    million messages), at most max_wait s; seconds waited"""
    t0 = time.monotonic()
    if not pid:
        return 0.0
    while time.monotonic() - t0 < max_wait:
        c0 = procstat.cpu_s(pid)
        time.sleep(0.5)
        c1 = procstat.cpu_s(pid)
        if c0 is None or c1 is None or (c1 - c0) / 0.5 * 100 < busy_pct:
            break
    return time.monotonic() - t0


def base_config(b: B.Broker, duration: float) -> Config:
    return Config(host=b.host, port=b.port, broker_pid=b.pid, broker=b.name, duration=duration)


def run_scenario(s: str, b: B.Broker, a) -> dict:
    label, over = SCENARIOS[s]
    cfg = replace(base_config(b, a.duration), label=label, **over)
    if s in "abcdefghi":
        return run(cfg)
    if s == "j":
        q = f"amqp-bench-fill-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        fill = run(replace(cfg, label="j-fill", producers=1, consumers=0, count=a.fill_count, size=100,
                           queue=q, keep=True, drain_max=600, drain_timeout=30))
        drain = run(replace(cfg, label="j-drain", producers=0, consumers=1, count=a.fill_count, size=100,
                            queue=q, drain_max=600, drain_timeout=30))
        code = max(fill.get("exit_code", 1), drain.get("exit_code", 1))
        return {"tool": "interop.bench", "label": label, "broker": b.name, "exit_code": code,
                "fill": fill, "drain": drain}
    if s == "k":
        return idle_conns(cfg, a.idle_conns, hold=3.0)
    raise ValueError(s)


def run_startup(name: str, a) -> dict | None:
    if name == "ours":
        import tempfile
        d = tempfile.mkdtemp(prefix="bench-startup-")
        port = B.free_port()
        r = B.measure_startup(B.ours_command(port, d), None, port, cwd=B.ROOT)
        import shutil
        shutil.rmtree(d, ignore_errors=True)
    elif name == "garagemq":
        if not B.GarageMQ.available():
            return None
        g = B.GarageMQ()
        r = B.measure_startup(["garagemq", "--config", g.config(), "--log-level", "warning"], None, g.port)
        g.stop()
    else:
        if not B.rabbit_script() or a.no_rabbit_startup:
            return None
        twin = B.RabbitTwin()
        cmd, env = twin.command_env()
        r = B.measure_startup(cmd, env, twin.port)
        twin.cleanup()
    r.update(label="startup", broker=name)
    return r


# ---------------------------------------------------------------- tables


def get(d, dotted):
    for part in dotted.split("."):
        if not isinstance(d, dict) or d.get(part) is None:
            return None
        d = d[part]
    return d


def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "rate":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v / 1000:.2f}"
    if kind == "mib":
        return f"{v / 1024:,.0f}"
    if kind == "mib1":
        return f"{v / 1024:,.1f}"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "f1":
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(vals, kind):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–", None
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med, kind), med
    return f"{fmt(med, kind)} ({fmt(min(vals), kind)}–{fmt(max(vals), kind)})", med


def table(runs: list[dict], names: list[str]) -> tuple[str, dict]:
    by: dict = {}
    for r in runs:
        by.setdefault((r.get("label"), r.get("broker")), []).append(r)
    labels = [l for l in METRICS if any((l, n) in by for n in names)]
    others = names[1:]
    head = ["scenario", "metric"] + names + [f"{names[0]}/{n}" for n in others]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summary: dict = {}
    for label in labels:
        for i, (title, path, kind, higher) in enumerate(METRICS[label]):
            row = [label if i == 0 else "", title]
            meds = []
            for n in names:
                rs = by.get((label, n), [])
                text, med = cell([get(r, path) for r in rs], kind)
                fails = sum(1 for r in rs if r.get("exit_code"))
                if i == 0 and fails:
                    text += f" ⚠{fails}/{len(rs)}"
                row.append(text)
                meds.append(med)
                summary.setdefault(label, {}).setdefault(title, {})[n] = med
            for j, n in enumerate(others, 1):
                ratio = meds[0] / meds[j] if meds[0] is not None and meds[j] else None
                row.append(f"{ratio:.2f}×" if ratio is not None else "–")
                # "ratio" stays ours/RabbitMQ (the first comparison) for readers of older JSON
                summary[label][title]["ratio" if j == 1 else f"ratio_{n}"] = ratio
                summary[label][title]["higher_is_better"] = higher
            out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Cells: median (min–max) over the rounds; ⚠k/n: k of n runs exited non-zero. "
               "Ratios ours/other: > 1 is better for rates, < 1 for times, latencies and memory.")
    out.append("")
    out.append("| scenario | broker | runs | generator CPU % of one core | generator µs/op "
               "| broker CPU % of one core | host busy % | other processes CPU s |")
    out.append("|---|---|---|---|---|---|---|---|")
    for label in labels:
        for n in names:
            rs = by.get((label, n), [])
            parts = [x for r in rs for x in ((r.get("fill"), r.get("drain")) if label == "j-fill-drain" else (r,)) if x]

            def med(k):
                v = [p.get(k) for p in parts if p.get(k) is not None]
                return statistics.median(v) if v else None
            cols = [med("gen_cpu_pct"), med("gen_us_per_op"), med("broker_cpu_pct"), med("host_busy_pct"),
                    med("other_cpu_s")]
            if all(c is None for c in cols):
                continue
            out.append(f"| {label} | {n} | {len(rs)} | " + " | ".join(
                "–" if c is None else (f"{c:.2f}" if j == 1 else f"{c:.1f}") for j, c in enumerate(cols)) + " |")
    out.append("")
    problems: dict = {}
    for r in runs:
        msgs = []
        for part in (r, r.get("fill") or {}, r.get("drain") or {}):
            msgs += part.get("error_messages") or []
            msgs += ["warning: " + w for w in part.get("warning_messages") or []]
            if part.get("missing"):
                msgs.append(f"missing {part['missing']}")
            if part.get("unconfirmed"):
                msgs.append(f"unconfirmed {part['unconfirmed']}")
            if part.get("undrained"):
                msgs.append(f"undrained {part['undrained']} (drain cut off)")
        if msgs or r.get("exit_code"):
            k = (r.get("label"), r.get("broker"), r.get("exit_code"), "; ".join(dict.fromkeys(msgs)) or "no message")
            problems[k] = problems.get(k, 0) + 1
    if problems:
        out.append("Runs with errors or warnings:")
        out.append("")
        for (label, broker, code, text), n in problems.items():
            out.append(f"- {label} / {broker}: {n}× exit {code}: {text}")
        out.append("")
    return "\n".join(out), summary


# ---------------------------------------------------------------- sink mode

SINK_RUNS = [
    # (name, sink body size, Config overrides)
    ("publish 16 B, 1 producer", 16, dict(producers=1, consumers=0, size=16)),
    ("publish 16 B, 2 producers", 16, dict(producers=2, consumers=0, size=16)),
    ("publish 16 B, 4 producers", 16, dict(producers=4, consumers=0, size=16)),
    ("publish 16 B, confirms (window 256)", 16, dict(producers=1, consumers=0, size=16, confirm=256)),
    ("publish 1 KiB", 1024, dict(producers=1, consumers=0, size=1024)),
    ("publish 64 KiB", 65536, dict(producers=1, consumers=0, size=65536)),
    ("consume 16 B, auto-ack, 1 consumer", 16, dict(producers=0, consumers=1, size=16)),
    ("consume 16 B, auto-ack, 2 consumers", 16, dict(producers=0, consumers=2, queues=2, size=16)),
    ("consume 16 B, manual ack, prefetch 100", 16, dict(producers=0, consumers=1, size=16, ack="manual",
                                                        prefetch=100)),
    ("consume 16 B, one ack per delivery, prefetch 100 (shape of d)", 16,
     dict(producers=0, consumers=1, size=16, ack="manual", prefetch=100, ack_mode="single")),
    ("consume 64 KiB, auto-ack", 65536, dict(producers=0, consumers=1, size=65536)),
    ("publish + consume 16 B, 1p/1c (shape of scenario a)", 16, dict(producers=1, consumers=1, size=16,
                                                                     max_backlog=-1)),
]


def sink_mode(a) -> int:
    import subprocess

    results = []
    procs = {}
    try:
        for size in sorted({s for _, s, _ in SINK_RUNS}):
            port = B.free_port()
            p = subprocess.Popen([sys.executable, "-m", "interop.bench.sink", "--port", str(port),
                                  "--size", str(size)], cwd=B.ROOT, stdin=subprocess.DEVNULL)
            procs[size] = (p, port)
        for size, (p, port) in procs.items():
            if wait_ready("127.0.0.1", port, 20) is None:
                raise RuntimeError("sink did not start")
        for rnd in range(a.rounds):
            for name, size, over in SINK_RUNS:
                p, port = procs[size]
                cfg = replace(Config(host="127.0.0.1", port=port, broker="sink", broker_pid=p.pid,
                                     duration=a.duration, broker_tree=True), label=name, **over)
                log(f"sink round {rnd + 1}: {name}")
                r = run(cfg)
                r["round"] = rnd + 1
                results.append(r)
    finally:
        for p, _ in procs.values():
            B.stop_pids(p, [], 10)
    lines = ["| generator run against the null broker | msg/s (median, min–max) | MB/s | generator CPU % "
             "(of one core) | generator µs/msg | sink CPU % | host busy % |", "|---|---|---|---|---|---|---|"]
    summary = {}
    for name, size, over in SINK_RUNS:
        rs = [r for r in results if r["label"] == name]
        key = "cons_rate" if over.get("producers") == 0 else "pub_rate"
        vals = [r.get(key) for r in rs if not r.get("exit_code")]
        text, med = cell(vals, "rate")
        if over.get("producers") and over.get("consumers"):
            c_text, c_med = cell([r.get("cons_rate") for r in rs], "rate")
            text = f"publish {text} / consume {c_text}"
        fails = sum(1 for r in rs if r.get("exit_code"))
        if fails:
            text += f" ⚠{fails}/{len(rs)}"
        mbs = f"{med * (size + 80) / 1e6:,.0f}" if med else "–"

        def m(k):
            v = [r.get(k) for r in rs if r.get(k) is not None]
            return statistics.median(v) if v else None
        g, us, bc, hb = m("gen_cpu_pct"), m("gen_us_per_op"), m("broker_cpu_pct"), m("host_busy_pct")
        lines.append(f"| {name} | {text} | {mbs} | {fmt(g, 'f1')} | {fmt(us, 'f2')} | {fmt(bc, 'f1')} | "
                     f"{fmt(hb, 'f1')} |")
        summary[name] = {"rate": med, "gen_cpu_pct": g, "gen_us_per_op": us}
    lines.append("")
    pub = [summary[n]["rate"] for n, _, o in SINK_RUNS if o.get("consumers") == 0 and o.get("size") == 16
           and not o.get("confirm") and summary[n]["rate"]]
    best = max(pub) if pub else 0
    lines.append(f"Best 16 B publish rate against the sink: {best:,.0f} msg/s "
                 f"({'≥' if best >= a.sink_target else '<'} the {a.sink_target:,.0f} msg/s target = 3× the "
                 f"broker's best rate).")
    text = "\n".join(lines)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"mode": "sink", "runs": results, "summary": summary, "table": text}, f, indent=1)
    return 0 if best >= a.sink_target else 1


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m interop.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(ALL),
                    help="comma-separated subset of a,b,c,d,e,f,g,h,i,j,k,startup (default: all)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per timed run (10)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per scenario (3; j, k, startup: at most 2)")
    ap.add_argument("--quick", action="store_true", help="3 s x 1 round")
    ap.add_argument("--ours-port", type=int, default=None, help="port for our broker (default: a free one)")
    ap.add_argument("--ours", metavar="HOST:PORT", default=None,
                    help="use an already running broker of ours instead of starting one")
    ap.add_argument("--rabbit", metavar="HOST:PORT", default=None,
                    help="RabbitMQ to compare with (default: 127.0.0.1:5672 if it answers, else a throw-away "
                         "node when rabbitmq-server is installed)")
    ap.add_argument("--no-rabbit", action="store_true", help="measure our broker only")
    ap.add_argument("--garagemq", metavar="auto|off|HOST:PORT", default="auto",
                    help="garagemq to compare with: auto (default) starts a throw-away one when the Debian "
                         "package is installed, off skips it, HOST:PORT uses a running one")
    ap.add_argument("--no-rabbit-startup", action="store_true",
                    help="skip starting a throw-away RabbitMQ node for the startup scenario")
    ap.add_argument("--fill-count", type=int, default=1_000_000, help="messages for scenario j")
    ap.add_argument("--idle-conns", type=int, default=1000, help="connections for scenario k")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between runs")
    ap.add_argument("--json", default=None, help="write all runs and the medians here")
    ap.add_argument("--sink", action="store_true", help="measure the generator against a null broker")
    ap.add_argument("--sink-target", type=float, default=550_000,
                    help="publish rate the generator must reach against the sink (msg/s)")
    a = ap.parse_args(argv)
    if a.duration is None:
        a.duration = 3.0 if a.quick else 10.0
    if a.rounds is None:
        a.rounds = 1 if a.quick else 3
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.sink:
        return sink_mode(a)
    scen = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = [s for s in scen if s not in SCENARIOS]
    if bad:
        print(f"unknown scenarios: {bad}; choose from {ALL}", file=sys.stderr)
        return 2
    ours = None
    if a.ours:
        host, _, port = a.ours.rpartition(":")
        ob = B.Broker("ours", host or "127.0.0.1", int(port))
        ob.pid = procstat.listener_pid(int(port))
    else:
        ours = B.Ours(port=a.ours_port)
        ob = ours.start()
        log(f"our broker: pid {ob.pid} on 127.0.0.1:{ob.port}, log {ob.log_path}")
    rb = twin = None
    how = "disabled (--no-rabbit)"
    if not a.no_rabbit:
        try:
            rb, twin, how = B.find_rabbit(a.rabbit)
        except RuntimeError as e:
            how = str(e)
    log(f"RabbitMQ: {how}" + (f" (pid {rb.pid})" if rb and rb.pid else ""))
    gb = garage = None
    try:
        gb, garage, ghow = B.find_garagemq(a.garagemq)
    except RuntimeError as e:
        ghow = str(e)
    log(f"garagemq: {ghow}" + (f" (pid {gb.pid})" if gb and gb.pid else ""))
    names = ["ours"] + (["rabbitmq"] if rb else []) + (["garagemq"] if gb else [])
    runs: list[dict] = []
    t_start = time.time()
    try:
        for s in scen:
            rounds = min(a.rounds, 2) if s in ("j", "k", "startup") else a.rounds
            for rnd in range(rounds):
                for bname in names:
                    if bname == "garagemq" and s in GARAGEMQ_CANNOT:
                        continue
                    if s == "startup":
                        log(f"scenario startup, round {rnd + 1}, {bname}")
                        r = run_startup(bname, a)
                        if r is None:
                            continue
                    else:
                        b = (ours.ensure() if ours else ob) if bname == "ours" else rb if bname == "rabbitmq" else gb
                        waited = settle(b.pid)
                        log(f"scenario {s}, round {rnd + 1}, {bname}"
                            + (f" (waited {waited:.1f} s for the broker to go idle)" if waited > 1 else ""))
                        r = run_scenario(s, b, a)
                    r["round"] = rnd + 1
                    runs.append(r)
                    brief = {k: r.get(k) for k in ("cons_rate", "pub_rate", "lat_p50_us", "lat_p99_us",
                                                    "open_s", "startup_s", "exit_code") if r.get(k) is not None}
                    if "fill" in r:
                        brief.update(fill=get(r, "fill.enqueue_rate"), drain=get(r, "drain.cons_rate"))
                    log(f"  -> {brief}" + (f" errors: {r.get('error_messages')}" if r.get("error_messages") else ""))
                    time.sleep(a.pause)
    except KeyboardInterrupt:
        log("interrupted; reporting what was measured")
    finally:
        if ours:
            ours.stop()
        if twin:
            B.stop_twin(rb, twin)
        if garage:
            garage.stop()
    text, summary = table(runs, names)
    notes = []
    if ours:
        lp = ours.log_problems()
        if any(lp["counts"].values()):
            notes.append(f"Our broker's log: {lp['counts']}; first lines:")
            notes += [f"    {line}" for line in lp["first_lines"]]
        if ob.restarts:
            notes.append(f"Our broker was restarted {ob.restarts}×: {ob.notes}")
    header = (f"# Broker benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()})\n\n"
              f"duration {a.duration:g} s, rounds {a.rounds}; ours = amqp_broker on port {ob.port}; "
              f"RabbitMQ: {how}; garagemq: {ghow}\n")
    print(header)
    print(text)
    if notes:
        print("\n".join(notes))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": {"started": t_start, "duration": a.duration, "rounds": a.rounds,
                                "scenarios": scen, "rabbitmq": how, "garagemq": ghow, "ours_port": ob.port,
                                "cpus": os.cpu_count()},
                       "runs": runs, "summary": summary, "table": text, "notes": notes}, f, indent=1)
    return 0 if all(not r.get("exit_code") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
