"""Run any number of fuzzed inputs against the sans-IO connection and report what broke.

    python -m interop.fuzz --inputs 10000000 --seed 0     # the long run
    python -m interop.fuzz --inputs 100000                # what CI runs (tests/fuzz)
    python -m interop.fuzz --replay 1234                  # one input, its reads printed

Exit status 0 when nothing broke, 1 otherwise; each kind of failure is reported once with the
seed that replays it.
"""

from __future__ import annotations

import argparse
import sys
import time

from .generator import fuzz_input
from .harness import Findings, Harness

PROGRESS_EVERY = 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="how many inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="first input's seed; input i uses seed+i")
    parser.add_argument("--replay", type=int, metavar="SEED", help="run only the input of SEED, verbosely")
    args = parser.parse_args(argv)
    harness = Harness()
    findings = Findings()
    if args.replay is not None:
        reads = fuzz_input(args.replay)
        for data in reads:
            print(data.hex())
        harness.run(args.replay, reads, findings)
        return _report(findings, 0.0)
    started = time.monotonic()
    for i in range(args.inputs):
        seed = args.seed + i
        harness.run(seed, fuzz_input(seed), findings)
        if (i + 1) % PROGRESS_EVERY == 0:
            print(f"{i + 1} inputs, {len(findings.failures)} kinds of failure, "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    harness.check_still_serving(findings)
    return _report(findings, time.monotonic() - started)


def _report(findings: Findings, seconds: float) -> int:
    print(f"inputs: {findings.inputs}, channel closes: {findings.channel_closes}, "
          f"connection closes: {findings.closed_by_connection_close}, "
          f"failures: {len(findings.failures)} kinds, {seconds:.1f} s")
    for kind, (seed, detail) in sorted(findings.failures.items()):
        lines = detail.strip().splitlines()
        shown = "\n".join(lines[:3] + (["..."] if len(lines) > 8 else []) + lines[3:][-5:])
        print(f"FAIL {kind} (replay: --replay {seed})\n{shown}")
    return 1 if findings.failures else 0


if __name__ == "__main__":
    sys.exit(main())
