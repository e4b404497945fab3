"""The ``strict`` setting: flag forms, environment, TOML, and a bad value at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amqp_broker.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args,environ,expected", [
    ([], {}, "off"),
    (["--strict"], {}, "report"),
    (["--strict=close"], {}, "close"),
    (["--strict", "report"], {}, "report"),
    ([], {"AMQP_BROKER_STRICT": "Close"}, "close"),
])
def test_flag_and_environment_forms(args, environ, expected):
    assert load_settings(args, environ=environ).strict == expected


def test_toml_key(tmp_path):
    config = tmp_path / "broker.toml"
    config.write_text('strict = "report"\n')
    assert load_settings(["--config", str(config)], environ={}).strict == "report"


def test_an_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match="strict must be one of off, report, close, got 'loud'"):
        load_settings(["--strict=loud"], environ={})


def test_an_unknown_mode_stops_the_broker_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "amqp_broker", "--strict=loud", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "amqp-broker: configuration error: --strict: strict must be one of off, report, close, got 'loud'"]
