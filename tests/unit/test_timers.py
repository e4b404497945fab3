"""The core's timer heap, driven by a fake clock."""

from amqp_broker.broker.timers import Timers


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_timers_run_in_deadline_order_and_only_when_due():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.call_later(5, lambda: ran.append("b"))
    timers.call_later(1, lambda: ran.append("a"))
    timers.call_later(5, lambda: ran.append("c"))  # same deadline as b: scheduling order wins
    assert timers.next_deadline() == 101.0
    assert timers.run_due() == 0 and ran == []
    clock.now = 101.0
    assert timers.run_due() == 1 and ran == ["a"]
    clock.now = 200.0
    assert timers.run_due() == 2 and ran == ["a", "b", "c"]
    assert timers.next_deadline() is None


def test_cancelled_timers_never_run_and_do_not_count():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    first = timers.call_later(1, lambda: ran.append(1))
    timers.call_later(2, lambda: ran.append(2))
    first.cancel()
    assert len(timers) == 1
    assert timers.next_deadline() == 102.0
    clock.now = 500
    timers.run_due()
    assert ran == [2]


def test_on_change_fires_only_for_a_new_earliest_deadline():
    clock = Clock()
    timers = Timers(clock)
    changes = []
    timers.on_change = lambda: changes.append(timers.next_deadline())
    timers.call_later(10, lambda: None)
    timers.call_later(20, lambda: None)
    timers.call_later(5, lambda: None)
    assert changes == [110.0, 105.0]


def test_a_failing_callback_does_not_stop_the_others():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.call_later(1, lambda: 1 / 0)
    timers.call_later(1, lambda: ran.append("ok"))
    clock.now = 102
    assert timers.run_due() == 2
    assert ran == ["ok"]
