"""Protocol violations a connection notes: counted per rule, logged once, handed to listeners.

Strict mode (:mod:`.strict`) is what finds them; anything else that watches a connection (the
frame trace) hooks in through ``violation_listeners``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable
from ..compiled import mypyc_attr

log = logging.getLogger("amqp_broker.strict")

_LISTENER = Callable[[Any, str, str, int], None]


# Bases of Connection, which strict.py subclasses interpreted.
@mypyc_attr(allow_interpreted_subclasses=True)
class ViolationReporter:
    """What a connection does with a strict-mode violation: counts, logs, tells listeners.

    A base of :class:`~amqp_broker.protocol.connection.Connection`, so any layer holding a
    connection can note one (the rules themselves run only in :class:`.strict.StrictConnection`).
    ``violations`` (rule -> count) and ``violation_listeners`` are set per connection by
    Connection.__init__; a listener is called as ``listener(connection, rule, detail, channel)``.
    """

    peer: str
    broker: Any
    violations: dict[str, int]
    violation_listeners: list[_LISTENER]

    def note_violation(self, rule: str, detail: str, channel: int = 0) -> None:
        """Count, log (the first time on this connection) and announce one violation of
        ``rule`` (a name in :data:`.strict.RULES`, or another reporter's own), on ``channel`` (0: the connection)."""
        count = self.violations.get(rule, 0) + 1
        self.violations[rule] = count
        totals = self.broker.counters.strict_violations
        totals[rule] = totals.get(rule, 0) + 1
        if count == 1:
            log.warning("%s: strict: %s on channel %d: %s (further ones are counted)",
                        self.peer, rule, channel, detail)
        for listener in self.violation_listeners:
            listener(self, rule, detail, channel)

    def violation_summary(self) -> str:
        """"rule x3, rule x1", for the line logged when the connection ends."""
        return ", ".join(f"{rule} x{count}" for rule, count in sorted(self.violations.items()))
