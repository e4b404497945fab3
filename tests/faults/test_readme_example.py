"""README's fault injection example, as it is written there, run by pytest with the plugin (the
``amqp_faults`` fixture from a user's test suite), and the fixture's release after it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import amqp_broker

pytest_plugins = ["pytester"]

REPO = Path(amqp_broker.__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Fault injection"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    after = "\n\ndef test_after_it(amqp_broker):\n    assert amqp_broker.faults.list() == []  # released\n"
    pytester.makepyfile(test_example=readme_example() + after)
    result = pytester.runpytest_subprocess("-p", "amqp_broker.pytest_plugin", "-q")
    result.assert_outcomes(passed=2)
