"""The limit commands through the real ``rabbitmqctl`` against the live RabbitMQ and through
``amqp-broker ctl`` against ours, in the same order: exit codes, output and error texts must
match (set/clear/list_vhost_limits, set/clear/list_user_limits, their errors and formats).

The run's vhost and user are its own on both sides and are deleted at the end. Without a
rabbitmqctl that can manage the local RabbitMQ the module skips, as tests/ctl's differential does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from amqp_broker.testing import BrokerThread

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ctl"))
from ctl_helpers import SHORT_HOST, ctl, unique_node  # noqa: E402

RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
TAG = uuid.uuid4().hex[:8]
V = f"lim-ctl-{TAG}"
U = f"lim-ctl-user-{TAG}"


def _theirs(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([RABBITMQCTL, *args], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def pair():
    if not shutil.which(RABBITMQCTL):
        pytest.skip(f"{RABBITMQCTL} is not installed")
    ping = _theirs("-q", "ping")
    if ping[0] != 0:
        pytest.skip(f"rabbitmqctl cannot reach RabbitMQ: {ping[2].strip()[:200]}")
    node = unique_node("lim-ctl")
    with BrokerThread(node_name=node) as broker:

        def ours(*args: str) -> tuple[int, str, str]:
            result = ctl("-n", node, *args)
            return result.code, result.out.replace(node, "<node>"), result.err

        def theirs(*args: str) -> tuple[int, str, str]:
            code, out, err = _theirs(*args)
            return code, out.replace(f"rabbit@{SHORT_HOST}", "<node>"), err

        sides = (ours, theirs)
        try:
            for side in sides:
                assert side("add_vhost", V)[0] == 0
                assert side("add_user", U, "pw")[0] == 0
            yield sides
        finally:
            for side in sides:
                side("delete_vhost", V)
                side("delete_user", U)
            leftovers = _theirs("-q", "list_vhosts")[1] + _theirs("-q", "list_users")[1]
            assert V not in leftovers and U not in leftovers


def _this_run(output: str) -> str:
    """A --global listing's lines that are not another vhost's or user's (RabbitMQ may have more)."""
    return "".join(line for line in output.splitlines(keepends=True)
                   if "\t" not in line or line.startswith(("vhost\t", "user\t")) or V in line or U in line)


STEPS = [
    ("set_vhost_limits", "-p", V, '{"max-connections": 1, "max-queues": 1}'),
    ("list_vhost_limits", "-p", V),
    ("list_vhost_limits", "-p", V, "--formatter", "json"),
    ("list_vhost_limits", "--global"),
    ("set_vhost_limits", "-p", V, '{"max-queues": 4}'),       # replaces: max-connections goes
    ("set_vhost_limits", "-q", "-p", V, '{"max-connections": -1}'),
    ("list_vhost_limits", "-p", V),
    ("set_vhost_limits", "-p", V, '{"max-queues": "x"}'),
    ("set_vhost_limits", "-p", V, '{"max-bogus": 1}'),
    ("set_vhost_limits", "-p", V, "notjson"),
    ("set_vhost_limits", "-p", f"{V}-missing", '{"max-queues": 1}'),
    ("list_vhost_limits", "-p", f"{V}-missing"),
    ("clear_vhost_limits", "-p", V),
    ("list_vhost_limits", "-p", V),
    ("list_vhost_limits", "--global"),
    ("clear_vhost_limits", "-p", V),
    ("clear_vhost_limits", "-p", f"{V}-missing"),
    ("set_user_limits", U, '{"max-connections": 3, "max-channels": 2}'),
    ("list_user_limits", "--user", U),
    ("set_user_limits", U, '{"max-channels": 5}'),            # merges: max-connections stays
    ("list_user_limits", "--user", U),
    ("set_user_limits", "-q", U, '{"max-connections": -1}'),
    ("list_user_limits", "-q", "--user", U),
    ("list_user_limits", "--user", U, "--formatter", "json"),
    ("list_user_limits", "--global"),
    ("clear_user_limits", U, "max-connections"),
    ("list_user_limits", "--user", U),
    ("clear_user_limits", U, "bogus"),
    ("clear_user_limits", U, "all"),
    ("list_user_limits",),                                     # guest's
    ("set_user_limits", f"{U}-missing", '{"max-channels": 1}'),
    ("clear_user_limits", f"{U}-missing", "all"),
    ("list_user_limits", "--user", f"{U}-missing"),
    ("set_user_limits", U, '{"max-bogus": 1}'),
    ("set_user_limits", U, '{"max-channels": "x"}'),
]


def test_limit_commands_match_rabbitmqctl(pair):
    ours, theirs = pair
    for args in STEPS:
        mine, rabbit = ours(*args), theirs(*args)
        if "--global" in args:
            mine, rabbit = (mine[0], _this_run(mine[1]), mine[2]), (rabbit[0], _this_run(rabbit[1]), rabbit[2])
        assert mine == rabbit, args
