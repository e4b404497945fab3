"""python -m interop.tutorials --host H --port P [--only N]

Runs the six RabbitMQ tutorial scenarios, prints PASS/FAIL per tutorial and
exits non-zero if any failed. Each tutorial is bounded by --timeout seconds
(SIGALRM watchdog) on top of its own internal timeouts.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import traceback

from . import TUTORIALS


class _Watchdog(Exception):
    pass


def _alarm(signum, frame):
    raise _Watchdog("tutorial exceeded its time budget")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m interop.tutorials")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--only", action="append", default=[],
                    help="run only tutorials whose name contains this (repeatable)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-tutorial budget, seconds")
    ap.add_argument("-v", "--verbose", action="store_true", help="print tracebacks")
    args = ap.parse_args(argv)
    logging.getLogger("pika").setLevel(logging.CRITICAL)

    failures = 0
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        signal.signal(signal.SIGALRM, _alarm)
    for name, run in TUTORIALS:
        if args.only and not any(o in name for o in args.only):
            continue
        t0 = time.monotonic()
        try:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, args.timeout)
            run(args.host, args.port)
            status, detail = "PASS", ""
        except BaseException as e:  # noqa: BLE001 - report everything, incl. watchdog
            if isinstance(e, KeyboardInterrupt):
                raise
            failures += 1
            status, detail = "FAIL", f"{type(e).__name__}: {e}"
            if args.verbose:
                traceback.print_exc()
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
        print(f"{status} {name} ({time.monotonic() - t0:.2f}s){' - ' + detail if detail else ''}",
              flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
