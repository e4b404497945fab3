"""Make a skipped ctl differential run impossible to miss: repeat why in the terminal summary."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    module = next((m for n, m in sys.modules.items() if n.endswith("test_ctl_differential")), None)
    unavailable = getattr(module, "UNAVAILABLE", {}) if module else {}
    if unavailable.get("message"):
        terminalreporter.write_sep("!", "rabbitmqctl differential tests not run", red=True, bold=True)
        terminalreporter.write_line("WARNING: " + unavailable["message"], red=True, bold=True)
