"""Scaling curves: throughput of scenarios a, d and f as the number of producer/consumer pairs grows,
and of scenario a as the message size grows, for our broker, RabbitMQ and garagemq side by side.

    python -m interop.bench.curves [--perf PATH] [--duration S] [--pairs 1,4,16,64,256]
                                   [--sizes 16,256,4096,65536,1048576] [--png curves.png] [--json out.json]

Drives the C generator of ../shared/bench (`amqp-perf`: a thread per producer/consumer, so 256 pairs
are 512 threads, not 512 processes as the Python generator would need). Brokers alternate at every
point, so a slow phase of the machine hits all of them. The PNG needs matplotlib
(`pip install matplotlib`); without it the table and the JSON are still written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from . import brokers as B
from .__main__ import settle

# curve -> (title, x label, options per point)
PAIRS = [1, 4, 16, 64, 256]
SIZES = [16, 256, 4096, 65536, 1 << 20]


def pair_points(kind: str, n: int) -> list[str]:
    if kind == "a":
        return ["-s", "16", "-p", str(n), "-c", str(n), "--queues", str(n)]
    if kind == "d":
        return ["-s", "16", "-p", str(n), "-c", str(n), "--queues", str(n), "--ack", "manual",
                "--prefetch", "100"]
    # f: n publishers into one fanout exchange bound to 10 queues, one consumer each
    return ["-s", "16", "-p", str(n), "-c", "10", "--queues", "10", "--exchange-type", "fanout"]


CURVES = {
    "a-pairs": ("a: 16 B no-ack, N producer/consumer pairs on N queues", "pairs", lambda n: pair_points("a", n)),
    "d-pairs": ("d: manual ack (prefetch 100), N pairs on N queues", "pairs", lambda n: pair_points("d", n)),
    "f-producers": ("f: N producers into a fanout to 10 queues", "producers", lambda n: pair_points("f", n)),
    "a-size": ("a: 1 producer, 1 consumer, message size", "bytes", lambda s: ["-s", str(s)]),
}


def find_perf(given: str | None) -> str | None:
    for cand in (given, shutil.which("amqp-perf"),
                 os.path.join(B.ROOT, "..", "shared", "bench", "amqp-perf", "build", "amqp-perf")):
        if cand and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return None


def measure(perf: str, b: B.Broker, label: str, opts: list[str], duration: float) -> dict:
    cmd = [perf, "--host", b.host, "--port", str(b.port), "--broker", b.name, "--label", label,
           "-d", str(duration), "--max-backlog", "auto", *opts]
    if b.pid:
        cmd += ["--broker-pid", str(b.pid)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration * 4 + 120)
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
        r = json.loads(line)
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
        r = {"exit_code": 1, "error_messages": [f"generator: {e}"]}
    r.setdefault("exit_code", 0)
    return r


def plot(results: dict, names: list[str], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for ax, (curve, (title, xlabel, _)) in zip(axes.flat, CURVES.items()):
        pts = results.get(curve, {})
        for n in names:
            xs = [x for x in pts if pts[x].get(n, {}).get("cons_rate")]
            ys = [pts[x][n]["cons_rate"] for x in xs]
            if xs:
                ax.plot(xs, ys, marker="o", label=n)
        ax.set_xscale("log", base=2 if curve != "a-size" else 4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("delivered msg/s")
        if curve == "a-size":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Scaling ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m interop.bench.curves", description=__doc__.splitlines()[0])
    ap.add_argument("--perf", help="amqp-perf binary (default: on PATH, else ../shared/bench/amqp-perf/build)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per point (5)")
    ap.add_argument("--pairs", default=",".join(map(str, PAIRS)), help="connection counts (1,4,16,64,256)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="message sizes in bytes")
    ap.add_argument("--curves", default=",".join(CURVES), help=f"subset of {','.join(CURVES)}")
    ap.add_argument("--rabbit", metavar="HOST:PORT", help="RabbitMQ to compare with (as python -m interop.bench)")
    ap.add_argument("--no-rabbit", action="store_true", help="leave RabbitMQ out")
    ap.add_argument("--garagemq", default="auto", metavar="auto|off|HOST:PORT", help="as python -m interop.bench")
    ap.add_argument("--png", default="curves.png", help="where the plot goes (curves.png)")
    ap.add_argument("--json", help="write every point here")
    a = ap.parse_args(argv)
    perf = find_perf(a.perf)
    if not perf:
        print("amqp-perf not found: build ../shared/bench/amqp-perf (build.sh) or pass --perf", file=sys.stderr)
        return 2
    ours = B.Ours()
    brokers = [ours.start()]
    rb = twin = garage = None
    if not a.no_rabbit:
        try:
            rb, twin, how = B.find_rabbit(a.rabbit)
        except RuntimeError as e:
            how = str(e)
        print(f"RabbitMQ: {how}", file=sys.stderr)
        if rb:
            brokers.append(rb)
    try:
        gb, garage, ghow = B.find_garagemq(a.garagemq)
    except RuntimeError as e:
        gb, ghow = None, str(e)
    print(f"garagemq: {ghow}", file=sys.stderr)
    if gb:
        brokers.append(gb)
    names = [b.name for b in brokers]
    pairs = [int(x) for x in a.pairs.split(",") if x]
    sizes = [int(x) for x in a.sizes.split(",") if x]
    results: dict = {}
    try:
        for curve in [c for c in a.curves.split(",") if c]:
            title, _, opts = CURVES[curve]
            for x in (sizes if curve == "a-size" else pairs):
                for b in brokers:
                    b = ours.ensure() if b.name == "ours" else b
                    settle(b.pid)
                    r = measure(perf, b, f"{curve}-{x}", opts(x), a.duration)
                    results.setdefault(curve, {}).setdefault(x, {})[b.name] = r
                    print(f"[curves] {curve} {x} {b.name}: {r.get('cons_rate', 0):,.0f} msg/s"
                          + (f" (exit {r['exit_code']})" if r.get("exit_code") else ""), file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; reporting what was measured", file=sys.stderr)
    finally:
        ours.stop()
        if twin:
            B.stop_twin(rb, twin)
        if garage:
            garage.stop()
    lines = [f"| curve | x | {' | '.join(names)} | " + " | ".join(f"ours/{n}" for n in names[1:]) + " |",
             "|---|---|" + "---|" * (2 * len(names) - 1)]
    for curve, pts in results.items():
        for x, by in pts.items():
            rates = [by.get(n, {}).get("cons_rate") for n in names]
            cells = [f"{v:,.0f}" if v else "–" for v in rates]
            ratios = [f"{rates[0] / v:.2f}×" if rates[0] and v else "–" for v in rates[1:]]
            lines.append(f"| {curve} | {x} | " + " | ".join(cells + ratios) + " |")
    print("\n".join(lines))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"brokers": names, "duration": a.duration, "results": results}, f, indent=1)
    if plot(results, names, a.png):
        print(f"plot: {a.png}", file=sys.stderr)
    else:
        print("matplotlib not installed: no plot (pip install matplotlib)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
