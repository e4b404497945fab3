"""``amqp-broker ctl fault``: fault injection from the command line (not a rabbitmqctl command;
README.md, "Fault injection").

    amqp-broker ctl fault close_channel --code 406 --on basic.publish --after 3
    amqp-broker ctl fault silence --connection my-app
    amqp-broker ctl fault list
    amqp-broker ctl fault release [ID]

The broker checks the request (server/faults.py, the same door as the tests' and /api/amqp-broker/faults');
this module only turns options into it and the answer into rows.
"""

from __future__ import annotations

import argparse

from . import format as fmt
from .commands import Context, CtlError, EX_USAGE, arguments, command

#: The kinds server/faults.py's KINDS knows (tests/faults checks that the two agree); listed
#: here so that the command line does not import the broker to print its help.
KINDS = ("close_connection", "close_channel", "silence", "stop_heartbeats", "hold_deliveries",
         "delay_deliveries", "block", "unblock", "cancel_consumer", "nack_confirms",
         "withhold_confirms", "reset", "restart")
COLUMNS = ("id", "fault", "state", "on", "after", "times", "seen", "fired", "target")
# Options that become the request's keys, as they are named there.
OPTIONS = ("connection", "channel", "queue", "exchange", "routing_key", "consumer_tag", "code",
           "text", "reason", "seconds", "count", "on", "after", "times")


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", metavar="KIND|list|release",
                   help="the fault to inject (" + ", ".join(KINDS) + "), or list, or release")
    p.add_argument("id", nargs="?", help="release: the fault to release (default: every one)")
    target = p.add_argument_group("target (default: every connection; -p narrows to a vhost)")
    target.add_argument("--connection", help="a connection's name, peer address (host:port) or "
                                             "the connection_name its client announced")
    target.add_argument("--channel", type=int, help="channel number")
    target.add_argument("--queue", help="queue name (deliveries, consumers, trigger methods on it)")
    target.add_argument("--exchange", help="exchange name the trigger method names")
    target.add_argument("--routing-key", help="routing key the trigger method names")
    target.add_argument("--consumer-tag", help="consumer tag")
    params = p.add_argument_group("fault parameters")
    params.add_argument("--code", type=int, help="close_connection/close_channel: reply code "
                                                 "(default 320 / 406)")
    params.add_argument("--text", help="close_connection/close_channel: reply text, sent as given")
    params.add_argument("--reason", help="block: the connection.blocked reason")
    params.add_argument("--seconds", type=float, help="delay_deliveries: how late (default 1)")
    params.add_argument("--count", type=int, help="nack_confirms: how many (default: all until released)")
    params.add_argument("--keep-transient", action="store_true",
                        help="restart: keep non-durable queues (a real restart loses them)")
    trigger = p.add_argument_group("trigger (default: act now)")
    trigger.add_argument("--on", metavar="METHOD", help="fire after this client method, e.g. "
                                                        "basic.publish, basic.consume")
    trigger.add_argument("--after", type=int, help="fire on every Nth matching method (default 1)")
    trigger.add_argument("--times", type=int, help="fire this many times (default 1)")


@command("fault", "Injects a fault into client connections, lists or releases faults (testing)",
         "Fault injection", "fault <kind>|list|release [<id>] [--on <method> --after <n>] [options]",
         tools=())
@arguments(_setup)
def fault(ctx: Context, ns: argparse.Namespace) -> None:
    if ns.action == "list":
        _rows(ctx, ctx.call("fault_list"))
        return
    if ns.action == "release":
        released = ctx.call("fault_release", fault=ns.id)
        if ctx.json:
            fmt.write_json(ctx.out, {"node": ctx.node, "result": "ok", "value": released})
        else:
            ctx.result(f"Released {released} fault(s)")
        return
    if ns.id is not None:
        raise CtlError(EX_USAGE, f"{ns.action} takes no id (only release does)")
    spec = {"fault": ns.action}
    for key in OPTIONS:
        value = getattr(ns, key, None)
        if value is not None:
            spec[key] = value
    vhost = getattr(ns, "vhost", None)  # only when given: -p narrows the fault to it
    if vhost is not None:
        spec["vhost"] = vhost
    if getattr(ns, "keep_transient", False):
        spec["keep_transient"] = True
    _rows(ctx, [ctx.call("fault_arm", spec=spec)])


def _rows(ctx: Context, records: list[dict]) -> None:
    rows = []
    for record in records:
        target = {k: v for k, v in record.items()
                  if k in ("connection", "vhost", "channel", "queue", "exchange", "routing_key",
                           "consumer_tag")}
        rows.append([record.get(c) if c != "target" else
                     ",".join(f"{k}={v}" for k, v in target.items()) for c in COLUMNS])
    ctx.rows(COLUMNS, rows, streamed=False)
