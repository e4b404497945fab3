"""Unit tests for routing in the broker core: vhosts, exchanges, bindings and VHost.route.

The core is driven by plain method calls; no sockets or frames are involved.
"""

from __future__ import annotations

import pytest

from amqp_broker.broker.broker import Broker
from amqp_broker.broker.exchange import (
    DefaultExchange,
    DirectExchange,
    FanoutExchange,
    HeadersExchange,
    TopicExchange,
)
from amqp_broker.broker.message import Message
from amqp_broker.broker.vhost import VHost
from amqp_broker.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionLevelError,
)


def msg(routing_key: str = "", headers: dict | None = None, body: bytes = b"x", exchange: str = "") -> Message:
    """A message with explicit headers (never relying on the protocol layer's decoder)."""
    return Message(exchange, routing_key, b"", body, headers=headers)


def routed(vhost: VHost, exchange_name: str, routing_key: str = "", headers: dict | None = None) -> list[str]:
    """Names of the queues a message reaches, as a list (so duplicates would show)."""
    exchange = vhost.get_exchange(exchange_name)
    return [q.name for q in vhost.route(exchange, msg(routing_key, headers, exchange=exchange_name))]


@pytest.fixture
def vhost() -> VHost:
    return Broker().vhosts["/"]


def q(vhost: VHost, name: str, **kwargs) -> object:
    return vhost.declare_queue(None, name, **kwargs)


# --- Broker / vhost setup ------------------------------------------------------------------------


def test_broker_has_default_vhost_with_predeclared_exchanges():
    broker = Broker()
    assert set(broker.vhosts) == {"/"}
    vhost = broker.vhosts["/"]
    assert vhost.name == "/"
    expected = {
        "": DefaultExchange,
        "amq.direct": DirectExchange,
        "amq.fanout": FanoutExchange,
        "amq.topic": TopicExchange,
        "amq.headers": HeadersExchange,
        "amq.match": HeadersExchange,
    }
    assert set(vhost.exchanges) == set(expected)
    for name, cls in expected.items():
        ex = vhost.exchanges[name]
        assert type(ex) is cls, name
        assert ex.name == name
        assert ex.durable is True
        assert ex.auto_delete is False
        assert ex.internal is False
        assert ex.bindings == {}
    assert vhost.exchanges["amq.direct"].type_name == "direct"
    assert vhost.exchanges["amq.fanout"].type_name == "fanout"
    assert vhost.exchanges["amq.topic"].type_name == "topic"
    assert vhost.exchanges["amq.headers"].type_name == "headers"
    assert vhost.exchanges["amq.match"].type_name == "headers"
    assert vhost.queues == {}
    assert vhost.exchange_bindings == 0


def test_add_vhost_is_idempotent_and_vhosts_are_isolated():
    broker = Broker()
    other = broker.add_vhost("other")
    assert broker.add_vhost("other") is other
    assert set(broker.vhosts) == {"/", "other"}
    assert set(other.exchanges) == set(broker.vhosts["/"].exchanges)
    other.declare_queue(None, "q")
    assert "q" in other.queues
    assert "q" not in broker.vhosts["/"].queues
    assert other.exchanges["amq.direct"] is not broker.vhosts["/"].exchanges["amq.direct"]


def test_get_exchange_missing_is_404_with_rabbit_text(vhost):
    with pytest.raises(ChannelError) as info:
        vhost.get_exchange("probe.x")
    assert info.value.reply_code == NOT_FOUND
    assert info.value.reply_text == "NOT_FOUND - no exchange 'probe.x' in vhost '/'"


def test_get_queue_missing_is_404_with_rabbit_text(vhost):
    with pytest.raises(ChannelError) as info:
        vhost.get_queue("probe.q")
    assert info.value.reply_code == NOT_FOUND
    assert info.value.reply_text == "NOT_FOUND - no queue 'probe.q' in vhost '/'"


def test_declare_exchange_reserved_and_unknown_type(vhost):
    with pytest.raises(ChannelError) as info:
        vhost.declare_exchange("amq.custom", "direct")
    assert info.value.reply_code == ACCESS_REFUSED
    assert info.value.text == "exchange name 'amq.custom' contains reserved prefix 'amq.*'"
    with pytest.raises(ConnectionLevelError) as info2:
        vhost.declare_exchange("x", "nope")
    assert info2.value.reply_code == COMMAND_INVALID
    assert info2.value.text == "unknown exchange type 'nope'"
    # Redeclaring a predeclared amq.* exchange with matching properties is fine.
    assert vhost.declare_exchange("amq.direct", "direct", durable=True) is vhost.exchanges["amq.direct"]
    # Passive declare of a missing exchange: 404.
    with pytest.raises(ChannelError) as info3:
        vhost.declare_exchange("probe.x", "direct", passive=True)
    assert info3.value.reply_text == "NOT_FOUND - no exchange 'probe.x' in vhost '/'"


# --- default exchange ----------------------------------------------------------------------------


def test_default_exchange_routes_by_queue_name(vhost):
    q(vhost, "a")
    q(vhost, "b")
    assert routed(vhost, "", "a") == ["a"]
    assert routed(vhost, "", "b") == ["b"]
    assert routed(vhost, "", "missing") == []
    assert routed(vhost, "", "") == []


def test_default_exchange_forgets_deleted_queue(vhost):
    queue = q(vhost, "a")
    assert routed(vhost, "", "a") == ["a"]
    assert vhost.delete_queue(queue) == 0
    assert routed(vhost, "", "a") == []


def test_default_exchange_cannot_be_bound_or_deleted(vhost):
    queue = q(vhost, "a")
    default = vhost.exchanges[""]
    for call in (
        lambda: vhost.bind_queue(queue, default, "a", {}),
        lambda: vhost.unbind_queue(queue, default, "a", {}),
        lambda: vhost.delete_exchange(""),
        lambda: vhost.declare_exchange("", "direct"),
        lambda: vhost.bind_exchange(vhost.exchanges["amq.direct"], default, "k", {}),
    ):
        with pytest.raises(ChannelError) as info:
            call()
        assert info.value.reply_code == ACCESS_REFUSED
        assert info.value.reply_text == "ACCESS_REFUSED - operation not permitted on the default exchange"
    assert default.bindings == {}


def test_default_exchange_reaches_exclusive_queue_of_any_session(vhost):
    broker = Broker()
    vh = broker.vhosts["/"]
    user = broker.authenticate("guest", "guest")
    owner = broker.open_session(user, "/", {}, "peer")
    vh.declare_queue(owner, "excl", exclusive=True)
    assert routed(vh, "", "excl") == ["excl"]


# --- direct --------------------------------------------------------------------------------------


def test_direct_routes_on_exact_key(vhost):
    a, b, c = q(vhost, "a"), q(vhost, "b"), q(vhost, "c")
    x = vhost.declare_exchange("x", "direct")
    vhost.bind_queue(a, x, "k1", {})
    vhost.bind_queue(b, x, "k1", {})
    vhost.bind_queue(c, x, "k2", {})
    assert sorted(routed(vhost, "x", "k1")) == ["a", "b"]
    assert routed(vhost, "x", "k2") == ["c"]
    assert routed(vhost, "x", "k3") == []
    assert routed(vhost, "x", "") == []
    assert routed(vhost, "x", "K1") == []  # case-sensitive
    assert routed(vhost, "x", "k1.x") == []  # no pattern semantics


def test_direct_empty_routing_key_binding(vhost):
    a = q(vhost, "a")
    vhost.bind_queue(a, vhost.exchanges["amq.direct"], "", {})
    assert routed(vhost, "amq.direct", "") == ["a"]
    assert routed(vhost, "amq.direct", "a") == []


def test_direct_queue_bound_twice_gets_one_copy(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.direct"]
    vhost.bind_queue(a, x, "k", {})
    vhost.bind_queue(a, x, "k", {"arg": 1})
    vhost.bind_queue(a, x, "k", {"arg": 2})
    assert len(x.bindings) == 3
    assert routed(vhost, "amq.direct", "k") == ["a"]


def test_binding_is_idempotent(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.direct"]
    vhost.bind_queue(a, x, "k", {"z": 1})
    vhost.bind_queue(a, x, "k", {"z": 1})
    assert len(x.bindings) == 1
    assert x.has_binding(a, "k", {"z": 1})
    # A single unbind removes the (single) binding.
    vhost.unbind_queue(a, x, "k", {"z": 1})
    assert x.bindings == {}
    assert routed(vhost, "amq.direct", "k") == []
    assert x not in a.bound_from


# --- binding identity ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exchange_name, key",
    [("amq.direct", "k"), ("amq.topic", "a.b"), ("amq.fanout", "k")],
)
def test_same_key_different_arguments_are_two_bindings(vhost, exchange_name, key):
    a = q(vhost, "a")
    x = vhost.exchanges[exchange_name]
    vhost.bind_queue(a, x, key, {"v": 1})
    vhost.bind_queue(a, x, key, {"v": 2})
    assert len(x.bindings) == 2
    assert x.has_binding(a, key, {"v": 1})
    assert x.has_binding(a, key, {"v": 2})
    assert not x.has_binding(a, key, {})
    assert routed(vhost, exchange_name, key) == ["a"]
    # Unbinding one leaves the other routing.
    vhost.unbind_queue(a, x, key, {"v": 1})
    assert len(x.bindings) == 1
    assert not x.has_binding(a, key, {"v": 1})
    assert x.has_binding(a, key, {"v": 2})
    assert routed(vhost, exchange_name, key) == ["a"]
    assert x in a.bound_from
    # Unbinding with arguments that match nothing is a no-op.
    vhost.unbind_queue(a, x, key, {"v": 3})
    assert routed(vhost, exchange_name, key) == ["a"]
    vhost.unbind_queue(a, x, key, {"v": 2})
    assert x.bindings == {}
    assert routed(vhost, exchange_name, key) == []
    assert x not in a.bound_from


def test_binding_arguments_identity_ignores_table_key_order(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.direct"]
    vhost.bind_queue(a, x, "k", {"p": 1, "q": {"n": [1, 2]}})
    vhost.bind_queue(a, x, "k", {"q": {"n": [1, 2]}, "p": 1})
    assert len(x.bindings) == 1
    vhost.unbind_queue(a, x, "k", {"q": {"n": [1, 2]}, "p": 1})
    assert x.bindings == {}


def test_headers_same_args_but_different_key_are_two_bindings(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.headers"]
    vhost.bind_queue(a, x, "one", {"h": 1})
    vhost.bind_queue(a, x, "two", {"h": 1})
    assert len(x.bindings) == 2
    assert routed(vhost, "amq.headers", headers={"h": 1}) == ["a"]
    vhost.unbind_queue(a, x, "one", {"h": 1})
    assert routed(vhost, "amq.headers", headers={"h": 1}) == ["a"]
    vhost.unbind_queue(a, x, "two", {"h": 1})
    assert routed(vhost, "amq.headers", headers={"h": 1}) == []


def test_unbind_of_missing_binding_is_a_noop(vhost):
    a = q(vhost, "a")
    x = vhost.declare_exchange("x", "direct", auto_delete=True)
    vhost.unbind_queue(a, x, "never", {})
    # The auto-delete exchange had no binding to lose: it stays.
    assert "x" in vhost.exchanges


# --- fanout --------------------------------------------------------------------------------------


def test_fanout_ignores_routing_key(vhost):
    a, b = q(vhost, "a"), q(vhost, "b")
    x = vhost.exchanges["amq.fanout"]
    vhost.bind_queue(a, x, "ignored", {})
    vhost.bind_queue(b, x, "", {})
    for key in ("", "ignored", "anything.else"):
        assert sorted(routed(vhost, "amq.fanout", key)) == ["a", "b"]
    vhost.unbind_queue(a, x, "ignored", {})
    assert routed(vhost, "amq.fanout", "x") == ["b"]


def test_fanout_with_no_bindings_routes_nowhere(vhost):
    vhost.declare_exchange("x", "fanout")
    assert routed(vhost, "x", "k") == []


def test_fanout_queue_bound_with_two_keys_gets_one_copy(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.fanout"]
    vhost.bind_queue(a, x, "k1", {})
    vhost.bind_queue(a, x, "k2", {})
    assert routed(vhost, "amq.fanout") == ["a"]
    vhost.unbind_queue(a, x, "k1", {})
    assert routed(vhost, "amq.fanout") == ["a"]
    vhost.unbind_queue(a, x, "k2", {})
    assert routed(vhost, "amq.fanout") == []


# --- topic ---------------------------------------------------------------------------------------


def test_topic_patterns(vhost):
    names = ["star", "hash", "exact", "hashmid", "all", "starstar"]
    queues = {n: q(vhost, n) for n in names}
    x = vhost.exchanges["amq.topic"]
    vhost.bind_queue(queues["star"], x, "a.*", {})
    vhost.bind_queue(queues["hash"], x, "a.#", {})
    vhost.bind_queue(queues["exact"], x, "a.b", {})
    vhost.bind_queue(queues["hashmid"], x, "a.#.z", {})
    vhost.bind_queue(queues["all"], x, "#", {})
    vhost.bind_queue(queues["starstar"], x, "*.*", {})

    def r(key):
        return sorted(routed(vhost, "amq.topic", key))

    assert r("a.b") == ["all", "exact", "hash", "star", "starstar"]
    assert r("a.c") == ["all", "hash", "star", "starstar"]
    assert r("a") == ["all", "hash"]
    assert r("a.b.c") == ["all", "hash"]
    assert r("a.z") == ["all", "hash", "hashmid", "star", "starstar"]
    assert r("a.b.c.z") == ["all", "hash", "hashmid"]
    assert r("b.a") == ["all", "starstar"]
    assert r("") == ["all"]
    assert r("b") == ["all"]


def test_topic_overlapping_patterns_give_one_copy(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.topic"]
    for pattern in ("a.*", "a.#", "#", "*.b", "a.b"):
        vhost.bind_queue(a, x, pattern, {})
    assert routed(vhost, "amq.topic", "a.b") == ["a"]
    for pattern in ("a.*", "a.#", "#", "*.b"):
        vhost.unbind_queue(a, x, pattern, {})
    assert routed(vhost, "amq.topic", "a.b") == ["a"]
    assert routed(vhost, "amq.topic", "a.c") == []
    vhost.unbind_queue(a, x, "a.b", {})
    assert routed(vhost, "amq.topic", "a.b") == []


# --- headers -------------------------------------------------------------------------------------


def test_headers_all_and_any(vhost):
    all_q, any_q, none_q = q(vhost, "all"), q(vhost, "any"), q(vhost, "none")
    x = vhost.exchanges["amq.headers"]
    vhost.bind_queue(all_q, x, "", {"x-match": "all", "a": 1, "b": "two"})
    vhost.bind_queue(any_q, x, "", {"x-match": "any", "a": 1, "b": "two"})
    vhost.bind_queue(none_q, x, "", {"c": 3})  # x-match defaults to all

    def r(headers):
        return sorted(routed(vhost, "amq.headers", "ignored", headers))

    assert r({"a": 1, "b": "two"}) == ["all", "any"]
    assert r({"a": 1, "b": "two", "c": 3}) == ["all", "any", "none"]
    assert r({"a": 1}) == ["any"]
    assert r({"b": "two"}) == ["any"]
    assert r({"a": 2, "b": "three"}) == []
    assert r({"c": 3}) == ["none"]
    assert r(None) == []
    assert r({}) == []


def test_headers_empty_binding_all_matches_everything(vhost):
    a = q(vhost, "a")
    vhost.bind_queue(a, vhost.exchanges["amq.match"], "", {})
    assert routed(vhost, "amq.match", headers=None) == ["a"]
    assert routed(vhost, "amq.match", headers={"z": 1}) == ["a"]


def test_headers_bad_x_match_is_406_and_not_bound(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.headers"]
    with pytest.raises(ChannelError) as info:
        vhost.bind_queue(a, x, "", {"x-match": "some"})
    assert info.value.reply_code == PRECONDITION_FAILED
    assert info.value.text.startswith("Invalid x-match field value")
    assert x.bindings == {}
    assert a.bound_from == {}


def test_headers_queue_bound_twice_gets_one_copy(vhost):
    a = q(vhost, "a")
    x = vhost.exchanges["amq.headers"]
    vhost.bind_queue(a, x, "", {"x-match": "any", "h": 1})
    vhost.bind_queue(a, x, "", {"x-match": "any", "g": 2})
    assert routed(vhost, "amq.headers", headers={"h": 1, "g": 2}) == ["a"]
    vhost.unbind_queue(a, x, "", {"x-match": "any", "h": 1})
    assert routed(vhost, "amq.headers", headers={"h": 1}) == []
    assert routed(vhost, "amq.headers", headers={"g": 2}) == ["a"]


# --- exchange-to-exchange ------------------------------------------------------------------------


def test_e2e_chain(vhost):
    x1 = vhost.declare_exchange("x1", "direct")
    x2 = vhost.declare_exchange("x2", "topic")
    x3 = vhost.declare_exchange("x3", "fanout")
    qa, qb, qc = q(vhost, "qa"), q(vhost, "qb"), q(vhost, "qc")
    vhost.bind_exchange(x2, x1, "a.b", {})  # x1 --a.b--> x2
    vhost.bind_exchange(x3, x2, "a.*", {})  # x2 --a.*--> x3
    vhost.bind_queue(qa, x3, "", {})
    vhost.bind_queue(qb, x2, "#", {})
    vhost.bind_queue(qc, x1, "other", {})
    assert vhost.exchange_bindings == 2
    assert sorted(routed(vhost, "x1", "a.b")) == ["qa", "qb"]
    assert routed(vhost, "x1", "a.c") == []
    assert routed(vhost, "x1", "other") == ["qc"]
    assert sorted(routed(vhost, "x2", "a.c")) == ["qa", "qb"]
    assert sorted(routed(vhost, "x2", "z")) == ["qb"]
    assert routed(vhost, "x3", "whatever") == ["qa"]
    vhost.unbind_exchange(x3, x2, "a.*", {})
    assert vhost.exchange_bindings == 1
    assert routed(vhost, "x1", "a.b") == ["qb"]


def test_e2e_into_headers_exchange(vhost):
    x = vhost.declare_exchange("x", "fanout")
    h = vhost.declare_exchange("h", "headers")
    a = q(vhost, "a")
    vhost.bind_exchange(h, x, "", {})
    vhost.bind_queue(a, h, "", {"k": "v"})
    assert routed(vhost, "x", "rk", {"k": "v"}) == ["a"]
    assert routed(vhost, "x", "rk", {"k": "w"}) == []


def test_e2e_cycle_terminates_and_delivers_once(vhost):
    x1 = vhost.declare_exchange("x1", "fanout")
    x2 = vhost.declare_exchange("x2", "fanout")
    x3 = vhost.declare_exchange("x3", "fanout")
    a, b = q(vhost, "a"), q(vhost, "b")
    vhost.bind_exchange(x2, x1, "", {})
    vhost.bind_exchange(x3, x2, "", {})
    vhost.bind_exchange(x1, x3, "", {})  # cycle x1 -> x2 -> x3 -> x1
    vhost.bind_queue(a, x1, "", {})
    vhost.bind_queue(b, x3, "", {})
    for start in ("x1", "x2", "x3"):
        assert sorted(routed(vhost, start)) == ["a", "b"], start


def test_e2e_self_binding(vhost):
    x = vhost.declare_exchange("x", "fanout")
    a = q(vhost, "a")
    vhost.bind_exchange(x, x, "", {})
    vhost.bind_queue(a, x, "", {})
    assert routed(vhost, "x") == ["a"]
    vhost.delete_exchange("x")
    assert vhost.exchange_bindings == 0
    assert a.bound_from == {}


def test_e2e_diamond_gives_one_copy(vhost):
    top = vhost.declare_exchange("top", "fanout")
    left = vhost.declare_exchange("left", "fanout")
    right = vhost.declare_exchange("right", "direct")
    a = q(vhost, "a")
    vhost.bind_exchange(left, top, "", {})
    vhost.bind_exchange(right, top, "", {})
    vhost.bind_queue(a, left, "", {})
    vhost.bind_queue(a, right, "k", {})
    vhost.bind_queue(a, top, "", {})  # and directly
    assert routed(vhost, "top", "k") == ["a"]
    assert routed(vhost, "top", "j") == ["a"]
    assert routed(vhost, "right", "k") == ["a"]


def test_e2e_binding_identity_and_idempotence(vhost):
    src = vhost.declare_exchange("src", "direct")
    dst = vhost.declare_exchange("dst", "fanout")
    a = q(vhost, "a")
    vhost.bind_queue(a, dst, "", {})
    vhost.bind_exchange(dst, src, "k", {})
    vhost.bind_exchange(dst, src, "k", {})  # idempotent
    assert vhost.exchange_bindings == 1
    vhost.bind_exchange(dst, src, "k", {"v": 1})  # different arguments: a second binding
    assert vhost.exchange_bindings == 2
    assert routed(vhost, "src", "k") == ["a"]
    vhost.unbind_exchange(dst, src, "k", {})
    assert vhost.exchange_bindings == 1
    assert routed(vhost, "src", "k") == ["a"]
    vhost.unbind_exchange(dst, src, "k", {"v": 1})
    vhost.unbind_exchange(dst, src, "k", {"v": 1})  # idempotent
    assert vhost.exchange_bindings == 0
    assert routed(vhost, "src", "k") == []


# --- auto-delete exchanges -----------------------------------------------------------------------


def test_auto_delete_exchange_removed_with_last_queue_binding(vhost):
    x = vhost.declare_exchange("x", "direct", auto_delete=True)
    a, b = q(vhost, "a"), q(vhost, "b")
    vhost.bind_queue(a, x, "k", {})
    vhost.bind_queue(b, x, "k", {})
    vhost.unbind_queue(a, x, "k", {})
    assert "x" in vhost.exchanges
    vhost.unbind_queue(b, x, "k", {})
    assert "x" not in vhost.exchanges
    assert b.bound_from == {} and a.bound_from == {}
    with pytest.raises(ChannelError) as info:
        vhost.declare_exchange("x", "direct", passive=True)
    assert info.value.reply_text == "NOT_FOUND - no exchange 'x' in vhost '/'"


def test_auto_delete_exchange_not_removed_before_first_binding(vhost):
    vhost.declare_exchange("x", "fanout", auto_delete=True)
    assert "x" in vhost.exchanges


def test_auto_delete_exchange_removed_when_bound_queue_deleted(vhost):
    x = vhost.declare_exchange("x", "fanout", auto_delete=True)
    keep = vhost.declare_exchange("keep", "fanout")
    a = q(vhost, "a")
    vhost.bind_queue(a, x, "", {})
    vhost.bind_queue(a, keep, "", {})
    vhost.delete_queue(a)
    assert "x" not in vhost.exchanges
    assert "keep" in vhost.exchanges
    assert keep.bindings == {}


def test_auto_delete_exchange_removed_with_last_e2e_source_binding(vhost):
    src = vhost.declare_exchange("src", "fanout", auto_delete=True)
    dst = vhost.declare_exchange("dst", "fanout")
    vhost.bind_exchange(dst, src, "", {})
    vhost.unbind_exchange(dst, src, "", {})
    assert "src" not in vhost.exchanges
    assert "dst" in vhost.exchanges
    assert vhost.exchange_bindings == 0


def test_auto_delete_exchange_as_destination_only_survives_unbind(vhost):
    src = vhost.declare_exchange("src", "fanout")
    dst = vhost.declare_exchange("dst", "fanout", auto_delete=True)
    a = q(vhost, "a")
    vhost.bind_queue(a, dst, "", {})
    vhost.bind_exchange(dst, src, "", {})
    vhost.unbind_exchange(dst, src, "", {})
    # Only bindings where it is the source count.
    assert "dst" in vhost.exchanges
    assert routed(vhost, "dst") == ["a"]


def test_auto_delete_exchange_removed_when_destination_exchange_deleted(vhost):
    src = vhost.declare_exchange("src", "fanout", auto_delete=True)
    dst = vhost.declare_exchange("dst", "fanout")
    vhost.bind_exchange(dst, src, "", {})
    vhost.delete_exchange("dst")
    assert "src" not in vhost.exchanges
    assert "dst" not in vhost.exchanges
    assert vhost.exchange_bindings == 0


def test_auto_delete_exchanges_cascade(vhost):
    a_ex = vhost.declare_exchange("a", "fanout", auto_delete=True)
    b_ex = vhost.declare_exchange("b", "fanout", auto_delete=True)
    queue = q(vhost, "q")
    vhost.bind_exchange(b_ex, a_ex, "", {})  # a -> b -> q
    vhost.bind_queue(queue, b_ex, "", {})
    assert routed(vhost, "a") == ["q"]
    vhost.delete_queue(queue)
    assert "b" not in vhost.exchanges
    assert "a" not in vhost.exchanges
    assert vhost.exchange_bindings == 0


# --- deletions remove bindings -------------------------------------------------------------------


def test_deleting_queue_removes_its_bindings(vhost):
    a, b = q(vhost, "a"), q(vhost, "b")
    direct = vhost.exchanges["amq.direct"]
    topic = vhost.exchanges["amq.topic"]
    headers = vhost.exchanges["amq.headers"]
    fanout = vhost.exchanges["amq.fanout"]
    for queue in (a, b):
        vhost.bind_queue(queue, direct, "k", {})
        vhost.bind_queue(queue, direct, "k", {"v": 1})
        vhost.bind_queue(queue, topic, "t.*", {})
        vhost.bind_queue(queue, headers, "", {"h": 1})
        vhost.bind_queue(queue, fanout, "", {})
    assert set(a.bound_from) == {direct, topic, headers, fanout}
    vhost.delete_queue(a)
    assert a.deleted
    assert "a" not in vhost.queues
    assert a.bound_from == {}
    for ex in (direct, topic, headers, fanout):
        assert all(key[0] is not a for key in ex.bindings), ex.name
        assert any(key[0] is b for key in ex.bindings), ex.name
    assert routed(vhost, "amq.direct", "k") == ["b"]
    assert routed(vhost, "amq.topic", "t.x") == ["b"]
    assert routed(vhost, "amq.headers", headers={"h": 1}) == ["b"]
    assert routed(vhost, "amq.fanout") == ["b"]
    # A new queue of the same name starts unbound.
    a2 = q(vhost, "a")
    assert a2 is not a
    assert routed(vhost, "amq.direct", "k") == ["b"]
    # Deleting twice is harmless.
    assert vhost.delete_queue(a) == 0
    assert vhost.queues["a"] is a2


def test_delete_queue_returns_ready_count(vhost):
    a = q(vhost, "a")
    for i in range(3):
        a.publish(msg("a", body=b"%d" % i))
    assert vhost.delete_queue(a) == 3
    assert a.message_count == 0


def test_deleting_exchange_removes_bindings_as_source_and_destination(vhost):
    up = vhost.declare_exchange("up", "fanout")
    mid = vhost.declare_exchange("mid", "direct")
    down = vhost.declare_exchange("down", "fanout")
    a, b, c = q(vhost, "a"), q(vhost, "b"), q(vhost, "c")
    vhost.bind_exchange(mid, up, "", {})  # mid is a destination of up
    vhost.bind_exchange(down, mid, "k", {})  # mid is a source for down
    vhost.bind_queue(a, mid, "k", {})
    vhost.bind_queue(b, down, "", {})
    vhost.bind_queue(c, up, "", {})
    assert vhost.exchange_bindings == 2
    assert sorted(routed(vhost, "up", "k")) == ["a", "b", "c"]

    vhost.delete_exchange("mid")
    assert "mid" not in vhost.exchanges
    assert vhost.exchange_bindings == 0
    assert mid.bindings == {}
    assert all(key[0] is not mid for key in up.bindings)
    assert mid not in a.bound_from
    assert a.bound_from == {}
    assert routed(vhost, "up", "k") == ["c"]
    assert routed(vhost, "down") == ["b"]
    # Deleting a missing exchange is fine (RabbitMQ 3.x).
    vhost.delete_exchange("mid")


def test_delete_exchange_if_unused(vhost):
    x = vhost.declare_exchange("probe.x", "direct")
    x2 = vhost.declare_exchange("probe.x2", "direct")
    vhost.bind_exchange(x2, x, "k", {})
    # X2 is only a destination: if-unused allows deleting it.
    vhost.delete_exchange("probe.x2", if_unused=True)
    assert "probe.x2" not in vhost.exchanges
    a = q(vhost, "a")
    vhost.bind_queue(a, x, "k", {})
    with pytest.raises(ChannelError) as info:
        vhost.delete_exchange("probe.x", if_unused=True)
    assert info.value.reply_code == PRECONDITION_FAILED
    assert info.value.reply_text == "PRECONDITION_FAILED - exchange 'probe.x' in vhost '/' in use"
    assert "probe.x" in vhost.exchanges


def test_delete_system_exchange_refused(vhost):
    with pytest.raises(ChannelError) as info:
        vhost.delete_exchange("amq.direct")
    assert info.value.reply_code == ACCESS_REFUSED
    assert info.value.text == "deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    assert "amq.direct" in vhost.exchanges


def test_route_after_e2e_removed_uses_fast_path(vhost):
    src = vhost.declare_exchange("src", "fanout")
    dst = vhost.declare_exchange("dst", "fanout")
    a, b = q(vhost, "a"), q(vhost, "b")
    vhost.bind_queue(a, src, "", {})
    vhost.bind_queue(b, dst, "", {})
    vhost.bind_exchange(dst, src, "", {})
    assert sorted(routed(vhost, "src")) == ["a", "b"]
    vhost.delete_exchange("dst")
    assert vhost.exchange_bindings == 0
    assert routed(vhost, "src") == ["a"]


# --- the core alone -----------------------------------------------------------------------------

_CORE_ALONE = """
import sys
from pamqp import commands
from amqp_broker.broker.broker import Broker
from amqp_broker.broker.message import Message

vhost = Broker().vhosts["/"]
queue = vhost.declare_queue(None, "matched")
vhost.bind_queue(queue, vhost.exchanges["amq.headers"], "", {"x-match": "all", "h": "v"})
raw = commands.Basic.Properties(headers={"h": "v"}, delivery_mode=2).marshal()
message = Message.from_stored("amq.headers", "", raw, b"body")
assert message.persistent and message.headers == {"h": "v"}, message.headers
assert [q.name for q in vhost.route(vhost.exchanges["amq.headers"], message)] == ["matched"]
assert message.with_properties(message.properties()).properties_raw == raw
assert not [name for name in sys.modules if name.startswith("amqp_broker.protocol")]
"""


def test_a_headers_exchange_routes_with_the_core_alone():
    """Properties are the core's to read: a program using broker/ without the protocol layer (a
    fresh interpreter, nothing else imported) sees a message's headers, so a headers exchange
    routes it, and rewriting its properties round-trips."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _CORE_ALONE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
