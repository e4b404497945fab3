"""Differential test of the management HTTP API: the scenario (scenario.py) on our broker and on
RabbitMQ, compared request by request: status, key paths, and the values tools read.

    python -m interop.management.diff --ours http://127.0.0.1:15673 --amqp-ours 5673
    python -m interop.management.diff --ours http://127.0.0.1:15673 --amqp-ours 5673 \\
        --expect interop/management/rabbitmq_expectations.json       # RabbitMQ as recorded
    python -m interop.management.diff --record interop/management/rabbitmq_expectations.json

Prints one row per request. Exit status: 0 when every difference is listed in
known_differences.py, 1 otherwise, 2 when a broker cannot be reached.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import fnmatch
import json
import os
import sys
from typing import Any

from . import scenario
from .api import Api
from .known_differences import KNOWN_DIFFERENCES

EXPECTATIONS_FILE = os.path.join(os.path.dirname(__file__), "rabbitmq_expectations.json")
_ABSENT = "<absent>"


@dataclasses.dataclass
class Difference:
    label: str        # the request (Observation.label)
    what: str         # "status", "key-missing:PATH", "key-extra:PATH", "value:PATH", "step", "run"
    rabbit: Any
    ours: Any
    known: str | None = None   # the reason, when listed in known_differences.py

    def line(self) -> str:
        tag = "KNOWN " if self.known else ""
        return f"{tag}{self.label} | {self.what}: rabbit={_short(self.rabbit)} ours={_short(self.ours)}"


def _short(v: Any, limit: int = 160) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=repr)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def known_reason(label: str, what: str) -> str | None:
    for (label_pat, what_pat), reason in KNOWN_DIFFERENCES.items():
        if fnmatch.fnmatchcase(label, label_pat) and fnmatch.fnmatchcase(what, what_pat):
            return reason
    return None


def compare(rabbit: list[dict], ours: list[dict], ours_errors: list[str] = (),
            rabbit_errors: list[str] = ()) -> list[Difference]:
    """Every difference between two runs' observations (as_json dicts), in RabbitMQ's order."""
    out: list[Difference] = []
    mine = {o["label"]: o for o in ours}
    for err in rabbit_errors:
        out.append(Difference("(run)", "run", err, None))
    for err in ours_errors:
        out.append(Difference("(run)", "run", None, err))
    for r in rabbit:
        label = r["label"]
        o = mine.pop(label, None)
        if o is None:
            out.append(Difference(label, "step", "ran", "did not run"))
            continue
        if r["status"] != o["status"]:
            out.append(Difference(label, "status", r["status"], o["status"]))
        rk, ok = set(r["keys"]), set(o["keys"])
        for k in sorted(rk - ok):
            out.append(Difference(label, f"key-missing:{k}", "present", _ABSENT))
        for k in sorted(ok - rk):
            out.append(Difference(label, f"key-extra:{k}", _ABSENT, "present"))
        rv, ov = r["values"], o["values"]
        for k in list(rv) + [k for k in ov if k not in rv]:
            a, b = rv.get(k, _ABSENT), ov.get(k, _ABSENT)
            if _canon(a) != _canon(b):
                # A key missing/extra is reported once, as a key difference.
                if (a is _ABSENT and k in ok - rk) or (b is _ABSENT and k in rk - ok):
                    continue
                out.append(Difference(label, f"value:{k}", a, b))
    for label in mine:
        out.append(Difference(label, "step", "did not run", "ran"))
    for d in out:
        d.known = known_reason(d.label, d.what)
    return out


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=repr)


def table(rabbit: list[dict], ours: list[dict], diffs: list[Difference]) -> str:
    by_label: dict[str, list[Difference]] = {}
    for d in diffs:
        by_label.setdefault(d.label, []).append(d)
    mine = {o["label"]: o for o in ours}
    rows = [("request", "method path", "rabbit", "ours", "result")]
    for r in rabbit:
        ds = by_label.get(r["label"], [])
        o = mine.get(r["label"], {})
        unknown = [d for d in ds if not d.known]
        result = ("ok" if not ds else f"{len(unknown)} diff(s)" if unknown
                  else f"known ({len(ds)})")
        rows.append((r["label"], f"{r['method']} {r['path']}", str(r["status"]),
                     str(o.get("status", "-")), result))
    for label, ds in by_label.items():
        if label == "(run)" or label not in {r["label"] for r in rabbit}:
            rows.append((label, "", "", "", f"{len([d for d in ds if not d.known])} diff(s)"))
    widths = [min(max(len(row[i]) for row in rows), cap) for i, cap in
              enumerate((60, 62, 6, 4, 14))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c[:w].ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_one(mgmt: str, amqp: str, **kw) -> scenario.Ctx:
    host, _, port = amqp.rpartition(":")
    return scenario.run(mgmt, host or "127.0.0.1", int(port), **kw)


def run_both(rabbit: tuple[str, str], ours: tuple[str, str]) -> tuple[scenario.Ctx, scenario.Ctx]:
    """Both runs at once: each waits mostly on RabbitMQ's statistics interval."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        fr = pool.submit(run_one, *rabbit)
        fo = pool.submit(run_one, *ours)
        return fr.result(), fo.result()


def load_expectations(path: str = EXPECTATIONS_FILE) -> dict:
    with open(path) as f:
        return json.load(f)


def record(ctx: scenario.Ctx, path: str) -> None:
    ov = ctx.api.request("GET", "/api/overview", auth=ctx.auth).json or {}
    data = {"recorded": datetime.date.today().isoformat(),
            "server": {"product": ov.get("product_name"), "version": ov.get("rabbitmq_version")},
            "errors": ctx.errors,
            "observations": [o.as_json() for o in ctx.observations]}
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")


def report(rabbit: list[dict], ours: list[dict], diffs: list[Difference], out=sys.stdout,
           limit: int = 400) -> int:
    print(table(rabbit, ours, diffs), file=out)
    unknown = [d for d in diffs if not d.known]
    known = [d for d in diffs if d.known]
    if diffs:
        print("\ndifferences:", file=out)
        for d in (unknown + known)[:limit]:
            print("  " + d.line(), file=out)
        if len(diffs) > limit:
            print(f"  ... {len(diffs) - limit} more", file=out)
    print(f"\n{len(rabbit)} requests, {len(unknown)} difference(s), {len(known)} known", file=out)
    return 1 if unknown else 0


def _amqp(value: str) -> str:
    return value if ":" in value else f"127.0.0.1:{value}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}" if __spec__ else None,
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--ours", help="management API base URL of our broker, e.g. "
                    "http://127.0.0.1:15673")
    ap.add_argument("--amqp-ours", help="AMQP port (or host:port) of our broker")
    ap.add_argument("--rabbit", default="http://127.0.0.1:15672",
                    help="management API base URL of RabbitMQ (default: %(default)s)")
    ap.add_argument("--amqp-rabbit", default="127.0.0.1:5672",
                    help="AMQP port (or host:port) of RabbitMQ (default: %(default)s)")
    ap.add_argument("--expect", metavar="FILE",
                    help="compare against RabbitMQ's recorded observations instead of a live "
                         "RabbitMQ")
    ap.add_argument("--record", metavar="FILE",
                    help="write RabbitMQ's observations to FILE (for --expect)")
    ap.add_argument("--json", metavar="FILE", help="also write the differences as JSON")
    args = ap.parse_args(argv)
    if args.ours and not args.amqp_ours:
        ap.error("--ours needs --amqp-ours")
    if not args.ours and not args.record:
        ap.error("give --ours (to compare) or --record (to record RabbitMQ)")
    if args.ours and args.expect and args.record:
        ap.error("--expect and --record exclude each other")
    needs_rabbit = args.record or not args.expect
    for url, what in ((args.ours, "our broker"), (args.rabbit if needs_rabbit else None, "RabbitMQ")):
        if url and not Api(url).reachable():
            print(f"error: {what}'s management API does not answer at {url}", file=sys.stderr)
            return 2
    rabbit_ctx = ours_ctx = None
    if args.ours and needs_rabbit:
        rabbit_ctx, ours_ctx = run_both((args.rabbit, _amqp(args.amqp_rabbit)),
                                        (args.ours, _amqp(args.amqp_ours)))
    elif args.ours:
        ours_ctx = run_one(args.ours, _amqp(args.amqp_ours))
    else:
        rabbit_ctx = run_one(args.rabbit, _amqp(args.amqp_rabbit))
    if args.record and rabbit_ctx is not None:
        record(rabbit_ctx, args.record)
        print(f"recorded {len(rabbit_ctx.observations)} observations to {args.record}")
        if rabbit_ctx.errors:
            print("error: RabbitMQ's run did not go through: " + "; ".join(rabbit_ctx.errors),
                  file=sys.stderr)
            return 1
    if ours_ctx is None:
        return 0
    if rabbit_ctx is not None:
        rabbit_obs = [o.as_json() for o in rabbit_ctx.observations]
        rabbit_errors = rabbit_ctx.errors
    else:
        data = load_expectations(args.expect)
        rabbit_obs, rabbit_errors = data["observations"], data.get("errors", [])
        print(f"RabbitMQ as recorded in {args.expect} ({data.get('recorded')}, "
              f"{(data.get('server') or {}).get('version')})")
    ours_obs = [o.as_json() for o in ours_ctx.observations]
    diffs = compare(rabbit_obs, ours_obs, ours_ctx.errors, rabbit_errors)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dataclasses.asdict(d) for d in diffs], f, indent=1)
    return report(rabbit_obs, ours_obs, diffs)


if __name__ == "__main__":
    sys.exit(main())
