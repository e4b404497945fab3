"""Limits through the management HTTP API and definitions, this broker against RabbitMQ.

The same requests go to RabbitMQ's management API (127.0.0.1:15672, guest/guest) and to ours,
on a vhost and users of this run's own, and the answers (status and JSON body) must be the same:
``/api/vhost-limits``, ``/api/user-limits``, their PUT/DELETE per limit, their errors and who may
use them. Then definitions travel both ways: RabbitMQ's export, with limits set there, imports
into this broker with the same limits, and ours imports into RabbitMQ with the same limits.
Without a RabbitMQ management API the module skips (the scenario tests have a recording; these
compare whole answers, which a recording would only freeze).
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from amqp_broker.testing import BrokerThread

sys.path.insert(0, os.path.dirname(__file__))
from limit_scenarios import RabbitHttp, q, rabbitmq_problem  # noqa: E402

TAG = uuid.uuid4().hex[:8]
V = f"lim-http-{TAG}"
U = f"lim-http-user-{TAG}"
M = f"lim-http-mgmt-{TAG}"


def _setup(http: RabbitHttp) -> None:
    http.ok("PUT", f"/api/vhosts/{q(V)}")
    http.ok("PUT", f"/api/users/{q(U)}", {"password": "pw", "tags": ""})
    http.ok("PUT", f"/api/users/{q(M)}", {"password": "pw", "tags": "management"})
    http.ok("PUT", f"/api/permissions/{q(V)}/{q(M)}", {"configure": ".*", "write": ".*", "read": ".*"})


def _teardown(http: RabbitHttp) -> list[str]:
    problems = []
    for path in (f"/api/vhosts/{q(V)}", f"/api/users/{q(U)}", f"/api/users/{q(M)}"):
        status, value = http.request("DELETE", path)
        if status >= 300:
            problems.append(f"{path}: {status} {value}")
    return problems


@pytest.fixture(scope="module")
def sides():
    theirs = RabbitHttp()
    why = rabbitmq_problem(theirs)
    if why is not None:
        pytest.skip(f"RabbitMQ's management API is not usable: {why}")
    with BrokerThread(management=True) as broker:
        mine = RabbitHttp(f"http://127.0.0.1:{broker.management_port}")
        _setup(theirs)
        try:
            _setup(mine)
            yield mine, theirs
        finally:
            problems = _teardown(theirs)
            assert not problems, problems


def _mine(rows: object, key: str, name: str) -> object:
    """The rows of a whole-node listing that are this run's (RabbitMQ may hold others)."""
    return [r for r in rows if r.get(key) == name] if isinstance(rows, list) else rows


def _both(sides, method: str, path: str, body=None, *, as_user: str | None = None, only: tuple | None = None):
    mine, theirs = sides
    if as_user is not None:
        mine = RabbitHttp(mine.base, as_user, "pw")
        theirs = RabbitHttp(theirs.base, as_user, "pw")
    results = []
    for side in (mine, theirs):
        status, value = side.request(method, path, body)
        if only is not None:
            value = _mine(value, *only)
        results.append((status, value))
    return results


VHOST_STEPS = [
    ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 5}),
    ("GET", f"/api/vhost-limits/{q(V)}", None),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-connections", {"value": 3}),
    ("GET", f"/api/vhost-limits/{q(V)}", None),          # the newest limit first, as RabbitMQ
    ("GET", "/api/vhost-limits", None),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 7}),
    ("GET", f"/api/vhost-limits/{q(V)}", None),
    ("DELETE", f"/api/vhost-limits/{q(V)}/max-queues", None),
    ("DELETE", f"/api/vhost-limits/{q(V)}/max-queues", None),
    ("GET", f"/api/vhost-limits/{q(V)}", None),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": "x"}),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 1.5}),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": -5}),
    ("GET", f"/api/vhost-limits/{q(V)}", None),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-bogus", {"value": 3}),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {}),
    ("PUT", f"/api/vhost-limits/{q(V)}-missing/max-queues", {"value": 3}),
    ("GET", f"/api/vhost-limits/{q(V)}-missing", None),
    ("GET", f"/api/vhost-limits/{q(V)}/max-queues", None),
    ("DELETE", f"/api/vhost-limits/{q(V)}/max-queues", None),
    ("DELETE", f"/api/vhost-limits/{q(V)}/max-connections", None),
    ("GET", f"/api/vhost-limits/{q(V)}", None),
    ("GET", "/api/vhost-limits", None),                  # an emptied limits parameter: "value": []
    ("GET", f"/api/parameters/vhost-limits/{q(V)}", None),
    ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 8}),
    ("GET", "/api/parameters", None),                    # vhost limits are runtime parameters too
    ("GET", "/api/parameters/vhost-limits", None),
    ("GET", f"/api/parameters/vhost-limits/{q(V)}", None),
    ("GET", f"/api/parameters/vhost-limits/{q(V)}/limits", None),
    ("GET", f"/api/parameters/federation-upstream/{q(V)}", None),
    ("DELETE", f"/api/vhost-limits/{q(V)}/max-queues", None),
]

USER_STEPS = [
    ("PUT", f"/api/user-limits/{q(U)}/max-channels", {"value": 7}),
    ("PUT", f"/api/user-limits/{q(U)}/max-connections", {"value": 2}),
    ("GET", f"/api/user-limits/{q(U)}", None),
    ("GET", "/api/user-limits", None),
    ("DELETE", f"/api/user-limits/{q(U)}/max-channels", None),
    ("DELETE", f"/api/user-limits/{q(U)}/max-channels", None),
    ("GET", f"/api/user-limits/{q(U)}", None),
    ("PUT", f"/api/user-limits/{q(U)}/max-channels", {"value": "x"}),
    ("PUT", f"/api/user-limits/{q(U)}/max-bogus", {"value": 1}),
    ("PUT", f"/api/user-limits/{q(U)}-missing/max-channels", {"value": 1}),
    ("GET", f"/api/user-limits/{q(U)}-missing", None),
    ("DELETE", f"/api/user-limits/{q(U)}/max-connections", None),
    ("GET", f"/api/user-limits/{q(U)}", None),
    ("GET", "/api/user-limits", None),
]


@pytest.mark.parametrize("steps,key,name", [(VHOST_STEPS, "vhost", V), (USER_STEPS, "user", U)],
                         ids=["vhost-limits", "user-limits"])
def test_limit_endpoints_answer_as_rabbitmq(sides, steps, key, name):
    for method, path, body in steps:
        only = (key, name) if path in ("/api/vhost-limits", "/api/user-limits", "/api/parameters",
                                        "/api/parameters/vhost-limits") else None
        ours, theirs = _both(sides, method, path, body, only=only)
        assert ours == theirs, (method, path, body)


def test_who_may_read_and_change_limits(sides):
    """Any management user reads limits (of the vhosts it sees); only administrators change them."""
    mine, theirs = sides
    for side in sides:
        side.ok("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 9})
        side.ok("PUT", f"/api/user-limits/{q(U)}/max-channels", {"value": 9})
    try:
        for method, path, body, only in [
            ("GET", f"/api/vhost-limits/{q(V)}", None, None),
            ("GET", "/api/vhost-limits", None, ("vhost", V)),
            ("GET", f"/api/user-limits/{q(U)}", None, None),
            ("GET", "/api/user-limits", None, ("user", U)),
            ("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 1}, None),
            ("DELETE", f"/api/vhost-limits/{q(V)}/max-queues", None, None),
            ("PUT", f"/api/user-limits/{q(U)}/max-channels", {"value": 1}, None),
            ("DELETE", f"/api/user-limits/{q(U)}/max-channels", None, None),
        ]:
            ours, theirs = _both(sides, method, path, body, as_user=M, only=only)
            assert ours == theirs, (method, path)
        assert mine.ok("GET", f"/api/vhost-limits/{q(V)}") == [{"vhost": V, "value": {"max-queues": 9}}]
    finally:
        for side in sides:
            side.ok("DELETE", f"/api/vhost-limits/{q(V)}/max-queues")
            side.ok("DELETE", f"/api/user-limits/{q(U)}/max-channels")


def _limits_of(http: RabbitHttp) -> tuple:
    return (http.ok("GET", f"/api/vhost-limits/{q(V)}"), http.ok("GET", f"/api/user-limits/{q(U)}"))


def test_definitions_carry_limits_both_ways(sides):
    """RabbitMQ exports vhost limits as a vhost-limits parameter and user limits on the user; each
    broker's export, imported into the other, gives it the same limits."""
    mine, theirs = sides
    theirs.ok("PUT", f"/api/vhost-limits/{q(V)}/max-connections", {"value": 4})
    theirs.ok("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 6})
    theirs.ok("PUT", f"/api/user-limits/{q(U)}/max-channels", {"value": 3})
    try:
        exported = theirs.ok("GET", "/api/definitions")
        parameters = [p for p in exported["parameters"] if p["vhost"] == V]
        users = [u for u in exported["users"] if u["name"] == U]
        assert parameters == [{"value": {"max-connections": 4, "max-queues": 6}, "vhost": V,
                               "component": "vhost-limits", "name": "limits"}]
        assert users[0]["limits"] == {"max-channels": 3}
        mine.ok("POST", "/api/definitions", {"vhosts": [{"name": V}], "users": users, "parameters": parameters})
        assert _limits_of(mine) == _limits_of(theirs)

        ours = mine.ok("GET", "/api/definitions")
        assert [p for p in ours["parameters"] if p["vhost"] == V] == parameters
        assert [u["limits"] for u in ours["users"] if u["name"] == U] == [{"max-channels": 3}]
        assert mine.ok("GET", f"/api/definitions/{q(V)}")["parameters"] == parameters

        # Back the other way: RabbitMQ cleared, then given our export's entries.
        for name in ("max-connections", "max-queues"):
            theirs.ok("DELETE", f"/api/vhost-limits/{q(V)}/{name}")
        theirs.ok("DELETE", f"/api/user-limits/{q(U)}/max-channels")
        mine.ok("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 2})
        mine.ok("PUT", f"/api/user-limits/{q(U)}/max-connections", {"value": 5})
        ours = mine.ok("GET", "/api/definitions")
        theirs.ok("POST", "/api/definitions", {
            "parameters": [p for p in ours["parameters"] if p["vhost"] == V],
            "users": [u for u in ours["users"] if u["name"] == U]})
        assert _limits_of(theirs) == _limits_of(mine)
        assert _limits_of(mine) == ([{"vhost": V, "value": {"max-queues": 2, "max-connections": 4}}],
                                    [{"user": U, "value": {"max-channels": 3, "max-connections": 5}}])
    finally:
        for side in sides:
            for name in ("max-connections", "max-queues"):
                side.ok("DELETE", f"/api/vhost-limits/{q(V)}/{name}")
            side.ok("DELETE", f"/api/user-limits/{q(U)}/all")


def test_definitions_import_refuses_queues_beyond_max_queues(sides):
    """RabbitMQ checks an import's new queues against each vhost's max-queues before it changes
    anything, and refuses it with its own words."""
    definitions = {"queues": [{"name": f"q{n}", "vhost": V, "durable": True, "auto_delete": False,
                               "arguments": {}} for n in range(3)]}
    for side in sides:
        side.ok("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 2})
    try:
        ours, theirs = _both(sides, "POST", "/api/definitions", definitions)
        # RabbitMQ's API shows the reason as the Erlang term it is, the text a list of character
        # codes; ours gives the same text as a string.
        assert theirs[0] == ours[0] == 400
        tag, codes = theirs[1]["reason"]
        assert (tag, "".join(map(chr, codes))) == ("vhost_limit_exceeded", ours[1]["reason"])
        assert "would exceed the limit of 2 queue(s)" in ours[1]["reason"]
        assert _both(sides, "GET", f"/api/queues/{q(V)}") == [(200, [])] * 2
    finally:
        for side in sides:
            side.ok("DELETE", f"/api/vhost-limits/{q(V)}/max-queues")


def test_queue_declares_over_http_meet_the_queue_limit(sides):
    """The management API declares as a client would: PUT of a queue and the aliveness test
    (which declares ``aliveness-test``) are refused beyond max-queues, in RabbitMQ's words."""
    for side in sides:
        side.ok("PUT", f"/api/permissions/{q(V)}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        side.ok("PUT", f"/api/vhost-limits/{q(V)}/max-queues", {"value": 0})
    try:
        for method, path, body in [("PUT", f"/api/queues/{q(V)}/q1", {"durable": True}),
                                   ("GET", f"/api/aliveness-test/{q(V)}", None)]:
            ours, theirs = _both(sides, method, path, body)
            assert ours == theirs, path
            assert ours[0] == 400 and "queue limit in vhost" in ours[1]["reason"]
    finally:
        for side in sides:
            side.ok("DELETE", f"/api/vhost-limits/{q(V)}/max-queues")
            side.ok("DELETE", f"/api/permissions/{q(V)}/guest")
