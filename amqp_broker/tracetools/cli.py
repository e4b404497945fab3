"""``amqp-broker trace show FILE`` and ``amqp-broker trace pcap FILE -o OUT.pcap``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .reader import TraceError, read_records

PROG = "amqp-broker trace"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Read a frame trace written by the broker (--trace FILE, "
        "`amqp-broker ctl trace_on`, PUT /api/amqp-broker/connections/{name}/trace).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True, prog=PROG,
                                    help="show or pcap")
    show = actions.add_parser("show", help="print the conversation, one line per frame",
                              description="Print the trace as a conversation: time offset, "
                              "connection, channel, direction, method and its fields.")
    show.add_argument("file", metavar="FILE", help='trace file ("-" for standard input)')
    show.add_argument("-c", "--connection", metavar="NAME",
                      help="only connections whose name contains NAME (or labelled NAME: c1, c2...)")
    show.add_argument("--channel", type=int, metavar="N", help="only frames on channel N")
    show.add_argument("--no-events", action="store_true",
                      help="leave out connection events (accept, tls, close...)")
    pcap = actions.add_parser("pcap", help="write a pcap file for Wireshark/tshark",
                              description="Write the traced frames as a pcap capture of TCP "
                              "streams (Ethernet/IPv4/TCP, one stream per connection).")
    pcap.add_argument("file", metavar="FILE", help='trace file ("-" for standard input)')
    pcap.add_argument("-o", "--output", metavar="OUT", required=True, help="pcap file to write")
    pcap.add_argument("-c", "--connection", metavar="NAME",
                      help="only connections whose name contains NAME")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.action == "show":
            from .show import write_conversation

            write_conversation(out, read_records(args.file), connection=args.connection,
                               channel=args.channel, events=not args.no_events)
            return 0
        from .pcap import write_pcap

        try:
            with open(args.output, "wb") as fh:
                summary = write_pcap(read_records(args.file), fh, connection=args.connection)
        except OSError as exc:
            print(f"{PROG} pcap: cannot write {args.output}: {exc.strerror or exc}", file=err)
            return 1
        ports = ", ".join(str(p) for p in summary["ports"]) or "none"
        print(f"{PROG} pcap: wrote {summary['packets']} packets ({summary['frames']} frames, "
              f"{summary['connections']} connections, broker port {ports}) to {args.output}", file=err)
        return 0
    except TraceError as exc:
        print(f"{PROG} {args.action}: {exc}", file=err)
        return 1
    except BrokenPipeError:
        return 0
