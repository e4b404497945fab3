"""Run scenarios on two brokers (or one broker and a recording) and report every difference.

    python -m interop.diff --ours 127.0.0.1:5673 --rabbit 127.0.0.1:5672
    python -m interop.diff --ours 5673 --rabbit 5672 --record interop/diff/rabbitmq_expectations.json
    python -m interop.diff --ours 5673 --expect interop/diff/rabbitmq_expectations.json
    python -m interop.diff --rabbit 5672 --record FILE          # record RabbitMQ only

``-k PATTERN`` (repeatable) selects scenarios whose name contains PATTERN or that carry the tag.
Exit status: 0 when the only differences are in ``known_differences.py``, 1 otherwise, 2 on usage
errors.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import logging
import os
import socket
import sys
from typing import Any, Iterable

from . import harness
from .harness import Outcome, Scenario

EXPECTATIONS_FILE = os.path.join(os.path.dirname(__file__), "rabbitmq_expectations.json")
_MISSING = object()


# ---------------------------------------------------------------------------------------------
# Diffing
# ---------------------------------------------------------------------------------------------

def canonical(obs: dict) -> dict:
    """The JSON round trip of an observation dict, so live and recorded compare alike."""
    return json.loads(json.dumps(obs, sort_keys=False, default=repr))


@dataclasses.dataclass
class Difference:
    path: str
    rabbit: Any
    ours: Any


def diff(rabbit: dict, ours: dict) -> list[Difference]:
    """Every place where the two observation dicts differ, in RabbitMQ's order.

    Dicts with keys in common are compared key by key and lists of structures element by
    element; anything else (scalars, lists of scalars, values whose type differs, dicts with no
    key in common such as a declare-ok against a channel.close) is compared whole and reported as
    one difference."""
    out: list[Difference] = []
    _diff(canonical(rabbit), canonical(ours), "", out)
    return out


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _diff(a: Any, b: Any, path: str, out: list[Difference]) -> None:
    if isinstance(a, dict) and isinstance(b, dict) and (a.keys() & b.keys() or not (a and b)):
        for k in list(a) + [k for k in b if k not in a]:
            _diff(a.get(k, _MISSING), b.get(k, _MISSING), f"{path}.{k}" if path else str(k), out)
    elif (isinstance(a, list) and isinstance(b, list)
          and any(isinstance(x, (dict, list)) for x in a + b)):
        for i in range(max(len(a), len(b))):
            _diff(a[i] if i < len(a) else _MISSING, b[i] if i < len(b) else _MISSING,
                  f"{path}[{i}]", out)
    elif not _same(a, b):
        out.append(Difference(path, a, b))


def _fmt(v: Any, width: int = 600) -> str:
    if v is _MISSING:
        return "(absent)"
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= width else text[:width] + " …"


def format_diff(diffs: list[Difference], indent: str = "    ", limit: int = 40) -> str:
    lines = []
    for d in diffs[:limit]:
        lines.append(f"{indent}{d.path}:")
        lines.append(f"{indent}    rabbit: {_fmt(d.rabbit)}")
        lines.append(f"{indent}    ours:   {_fmt(d.ours)}")
    if len(diffs) > limit:
        lines.append(f"{indent}... and {len(diffs) - limit} more")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Targets and recordings
# ---------------------------------------------------------------------------------------------

def parse_target(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``PORT``, or ``amqp://user:pass@HOST:PORT/`` (credentials ignored)."""
    if "://" in text:
        from urllib.parse import urlparse
        u = urlparse(text)
        return u.hostname or default_host, u.port or 5672
    if ":" in text:
        host, port = text.rsplit(":", 1)
        return host or default_host, int(port)
    return default_host, int(text)


def reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def server_product(host: str, port: int, timeout: float = 5.0, attempts: int = 3) -> dict | None:
    """connection.start's server_properties (product, version), or None if no AMQP broker."""
    import pika
    import time
    conn = None
    for i in range(attempts):
        try:
            conn = pika.BlockingConnection(pika.ConnectionParameters(
                host, port, connection_attempts=1, socket_timeout=timeout, stack_timeout=timeout,
                heartbeat=0))
            break
        except Exception:  # noqa: BLE001
            if i + 1 < attempts:
                time.sleep(1)
    if conn is None:
        return None
    try:
        sp = conn._impl.server_properties or {}
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in sp.items()
                if k in ("product", "version", "platform")}
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass


def load_expectations(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data


def write_expectations(path: str, outcomes: dict[str, Outcome], server: dict | None,
                       all_names: Iterable[str]) -> None:
    """Write (or update: scenarios not run keep their recording) RabbitMQ's observations."""
    data: dict[str, Any] = {"scenarios": {}}
    if os.path.exists(path):
        try:
            data = load_expectations(path)
        except (OSError, ValueError):
            pass
    known = set(all_names)
    scen = {k: v for k, v in data.get("scenarios", {}).items() if k in known}
    for name, out in outcomes.items():
        scen[name] = canonical(out.observations)
    data = {
        "comment": "RabbitMQ's observations for interop/diff scenarios; regenerate with "
                   "python -m interop.diff --rabbit HOST:PORT --record FILE",
        "server": server or data.get("server"),
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scenarios": {k: scen[k] for k in sorted(scen)},
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    scenario: Scenario
    status: str                      # PASS, DIFF, KNOWN, KNOWN-PASS, MISSING, RECORDED
    diffs: list[Difference]
    ours: Outcome | None
    rabbit: Outcome | None
    rabbit_obs: dict | None
    reason: str | None = None


def select(scenarios: dict[str, Scenario], patterns: list[str]) -> list[Scenario]:
    chosen = [s for s in scenarios.values() if not patterns or any(s.matches(p) for p in patterns)]
    return chosen


def compare(sc: Scenario, ours: Outcome | None, rabbit_obs: dict | None,
            rabbit: Outcome | None, known: dict[str, str]) -> Result:
    reason = known.get(sc.name)
    if ours is None:
        return Result(sc, "RECORDED", [], None, rabbit, rabbit_obs, reason)
    if rabbit_obs is None:
        return Result(sc, "MISSING", [], ours, rabbit, None, reason)
    diffs = diff(rabbit_obs, ours.observations)
    if diffs:
        status = "KNOWN" if reason else "DIFF"
    else:
        status = "KNOWN-PASS" if reason else "PASS"
    return Result(sc, status, diffs, ours, rabbit, rabbit_obs, reason)


def run_pair(sc: Scenario, ours: tuple[str, int] | None, rabbit: tuple[str, int] | None,
             pool: concurrent.futures.Executor | None = None) -> tuple[Outcome | None, Outcome | None]:
    """Run one scenario on both brokers, concurrently if a pool is given."""
    def go(target, label):
        return harness.run_one(sc, target[0], target[1], label) if target else None
    if pool is not None and ours and rabbit:
        fo = pool.submit(go, ours, "ours")
        fr = pool.submit(go, rabbit, "rabbit")
        return fo.result(), fr.result()
    return go(ours, "ours"), go(rabbit, "rabbit")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m interop.diff", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", metavar="HOST:PORT", help="our broker")
    ap.add_argument("--rabbit", metavar="HOST:PORT", help="a real RabbitMQ (the oracle)")
    ap.add_argument("-k", dest="patterns", action="append", default=[], metavar="PATTERN",
                    help="run scenarios whose name contains PATTERN or tagged PATTERN (repeatable)")
    ap.add_argument("--record", metavar="FILE", help="write RabbitMQ's observations to FILE")
    ap.add_argument("--expect", metavar="FILE",
                    help="compare ours against FILE (a --record output) instead of a live RabbitMQ")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print both observation dicts of every scenario and tracebacks")
    ap.add_argument("--serial", action="store_true",
                    help="run the two brokers one after the other instead of side by side")
    args = ap.parse_args(argv)
    logging.getLogger("pika").setLevel(logging.CRITICAL)

    scenarios = harness.load_all()
    from .known_differences import KNOWN_DIFFERENCES
    chosen = select(scenarios, args.patterns)
    if args.list:
        for s in chosen:
            known = "  [known difference]" if s.name in KNOWN_DIFFERENCES else ""
            print(f"{s.name:60s} {','.join(s.tags)}{known}")
        print(f"{len(chosen)} scenarios")
        return 0
    if not chosen:
        print("no scenario matches", file=sys.stderr)
        return 2
    if not args.ours and not args.rabbit:
        ap.error("give --ours and/or --rabbit")
    if args.record and not args.rabbit:
        ap.error("--record needs --rabbit")
    ours = parse_target(args.ours) if args.ours else None
    rabbit = parse_target(args.rabbit) if args.rabbit else None
    recorded: dict | None = None
    server = None
    if rabbit:
        server = server_product(*rabbit)
        if server is None:
            print(f"RabbitMQ not reachable at {rabbit[0]}:{rabbit[1]}", file=sys.stderr)
            if not (args.expect and ours):
                return 2
            print("WARNING: falling back to the recorded expectations", file=sys.stderr)
            rabbit = None
        elif server.get("product") != "RabbitMQ":
            print(f"WARNING: --rabbit {args.rabbit} answers as {server.get('product')!r}, "
                  "not RabbitMQ", file=sys.stderr)
        else:
            print(f"rabbit: {server.get('product')} {server.get('version')} at {rabbit[0]}:{rabbit[1]}")
    if not rabbit:
        if not args.expect:
            ap.error("without --rabbit, give --expect FILE")
        recorded = load_expectations(args.expect).get("scenarios", {})
        print(f"rabbit: recorded expectations {args.expect}")
    if ours:
        if not reachable(*ours):
            print(f"our broker not reachable at {ours[0]}:{ours[1]}", file=sys.stderr)
            return 2
        print(f"ours:   {ours[0]}:{ours[1]}")

    results: list[Result] = []
    rabbit_outcomes: dict[str, Outcome] = {}
    pool = None if args.serial else concurrent.futures.ThreadPoolExecutor(2)
    try:
        for sc in chosen:
            o, r = run_pair(sc, ours, rabbit, pool)
            if r is not None:
                rabbit_outcomes[sc.name] = r
                robs = r.observations
            else:
                robs = (recorded or {}).get(sc.name)
            res = compare(sc, o, robs, r, KNOWN_DIFFERENCES)
            results.append(res)
            report(res, args.verbose)
    finally:
        if pool is not None:
            pool.shutdown(wait=False)

    if args.record and rabbit_outcomes:
        write_expectations(args.record, rabbit_outcomes, server, scenarios)
        print(f"recorded RabbitMQ's observations of {len(rabbit_outcomes)} scenarios to {args.record}")

    return summary(results)


def report(res: Result, verbose: bool) -> None:
    sc = res.scenario
    secs = []
    if res.ours:
        secs.append(f"ours {res.ours.seconds:.1f}s")
    if res.rabbit:
        secs.append(f"rabbit {res.rabbit.seconds:.1f}s")
    timing = f"  ({', '.join(secs)})" if secs else ""
    print(f"{res.status:10s} {sc.name}{timing}", flush=True)
    if res.status in ("DIFF", "KNOWN"):
        if res.reason:
            print(f"    known difference: {res.reason}")
        print(format_diff(res.diffs))
    if res.status == "KNOWN-PASS":
        print(f"    listed in known_differences.py but now matches: {res.reason}")
    if res.status == "MISSING":
        print("    no recorded RabbitMQ observations for this scenario; re-record")
    for out in (res.ours, res.rabbit):
        if out is None:
            continue
        if out.cleanup_problems:
            print(f"    cleanup on {out.label}: " + "; ".join(out.cleanup_problems))
        if verbose and out.traceback:
            print(f"    traceback on {out.label}:\n" + "".join("      " + ln for ln in out.traceback.splitlines(True)))
    if verbose:
        if res.rabbit_obs is not None:
            print("    rabbit observations: " + json.dumps(res.rabbit_obs, ensure_ascii=False))
        if res.ours:
            print("    ours observations:   " + json.dumps(canonical(res.ours.observations), ensure_ascii=False))


def summary(results: list[Result]) -> int:
    n = len(results)
    by = {s: [r for r in results if r.status == s]
          for s in ("PASS", "DIFF", "KNOWN", "KNOWN-PASS", "MISSING", "RECORDED")}
    ndiff = len(by["DIFF"]) + len(by["KNOWN"]) + len(by["MISSING"])
    print()
    print(f"{n} scenarios, {ndiff} differences "
          f"({len(by['PASS']) + len(by['KNOWN-PASS'])} pass, {len(by['DIFF'])} unexpected, "
          f"{len(by['KNOWN'])} known, {len(by['MISSING'])} unrecorded"
          + (f", {len(by['RECORDED'])} recorded only" if by["RECORDED"] else "") + ")")
    for status in ("DIFF", "MISSING"):
        if by[status]:
            print(f"{status}: " + ", ".join(r.scenario.name for r in by[status]))
    return 1 if by["DIFF"] or by["MISSING"] else 0
