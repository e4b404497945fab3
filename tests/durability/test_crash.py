"""Crash trials in CI: kill -9 the broker under confirmed load, twice per trial, and check that no
confirmed message is lost and none is delivered twice without the redelivered flag.

The trials are interop/crash/crash_trials.py's (run it by hand for longer ones); here they are
short (<= 1 s of load before each kill) so 20 of them fit in about two minutes.
"""

from __future__ import annotations

import pytest

from interop.crash import crash_trials

TRIALS = 20


def _report(title: str, results) -> dict:
    total = crash_trials.totals(results)
    print(f"\n{title}\n{crash_trials.format_table(results)}")
    print(f"{total['trials']} trials, {total['crashes']} kill -9, {total['published']} published, "
          f"{total['confirmed']} confirmed ({total['confirmed_persistent']} persistent), "
          f"{total['acked_before_crash']} acked before a crash, {total['recovered']} recovered, "
          f"lost {total['lost']}, unflagged duplicates {total['unflagged_duplicates']}")
    for r in results:
        for line in r.errors + r.examples:
            print(f"  trial {r.trial}: {line}")
    return total


def _check(total: dict, results) -> None:
    assert total["confirmed_persistent"] > 0, "no load: the trials measured nothing"
    assert total["lost"] == 0, f"{total['lost']} confirmed message(s) lost"
    assert total["unflagged_duplicates"] == 0, f"{total['unflagged_duplicates']} unflagged duplicate(s)"
    failed = [r for r in results if r.failed]
    assert not failed, "failed trials (see output): " + "; ".join(
        f"trial {r.trial}: {(r.errors + r.examples)[:3]}" for r in failed)


@pytest.mark.timeout(400)
def test_crash_trials(tmp_path):
    cfg = crash_trials.Config(seconds=1.0, publishers=2, consumers=2, queues=2, crashes=2)
    results = crash_trials.run(TRIALS, cfg, workdir=str(tmp_path))
    _check(_report(f"crash trials: {TRIALS} x 2 kill -9", results), results)


@pytest.mark.timeout(200)
def test_crash_trials_with_a_clean_restart_before_the_drain(tmp_path):
    """The same, with a clean stop and start after the last crash: the redelivered flags the
    crash recovery gave must survive it (a message delivered before the crash stays flagged)."""
    cfg = crash_trials.Config(seconds=1.0, publishers=2, consumers=2, queues=2, crashes=2,
                              clean_restart=True)
    results = crash_trials.run(5, cfg, workdir=str(tmp_path))
    _check(_report("crash trials: 5 x (2 kill -9 + clean restart)", results), results)
