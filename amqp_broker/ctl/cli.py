"""``amqp-broker ctl COMMAND``: rabbitmqctl's command line, and rabbitmq-diagnostics' and
rabbitmq-plugins' for the shims.

Options may come before or after the command, as with rabbitmqctl. The broker is found by, in
order: ``-n NODE``; ``--data-dir DIR``; ``$RABBITMQ_NODENAME``; ``$RABBITMQ_MNESIA_DIR`` or
``$RABBITMQ_MNESIA_BASE`` (the data directory); ``$AMQP_BROKER_DATA_DIR``; else the default node
name (``rabbit@<short host name>``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from typing import Sequence, TextIO

from . import commands as cmds
from .commands import COMMANDS, Context, UsageError

PROG = "amqp-broker ctl"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors turned into :class:`UsageError` (exit 64, as rabbitmqctl)."""

    command_parsers: dict[str, argparse.ArgumentParser]

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("general options (before or after the command)")
    group.add_argument("-n", "--node", help="node name of the broker (default: $RABBITMQ_NODENAME, "
                                            "else rabbit@<short host name>)")
    group.add_argument("--data-dir", metavar="DIR",
                       help="find the broker by its data directory instead (also $RABBITMQ_MNESIA_BASE)")
    group.add_argument("-p", "--vhost", help="virtual host of per-vhost commands (default: /)")
    group.add_argument("-q", "--quiet", action="store_true", help="leave out informational lines")
    group.add_argument("-s", "--silent", action="store_true",
                       help="leave out informational lines and the table header row")
    group.add_argument("--no-table-headers", action="store_true", help="leave out the table header row")
    group.add_argument("-t", "--timeout", type=float, metavar="SECONDS",
                       help="operation timeout in seconds (await_startup: how long to wait)")
    group.add_argument("--formatter", choices=("table", "json", "pretty_table", "csv", "erlang"),
                       help="output format: table (the default) or json; the others print as table")
    group.add_argument("-l", "--longnames", action="store_true", help="accepted; node names are not resolved")
    return common


def build_parser(prog: str = PROG, names: Sequence[str] | None = None) -> _Parser:
    """The parser of ``amqp-broker ctl`` (``names``: the commands offered, default all)."""
    common = _common()
    names = list(names) if names is not None else list(COMMANDS)
    parser = _Parser(
        prog=prog, parents=[common], usage=f"{prog} [options] <command> [<command options>]",
        description="Control a running amqp_broker with rabbitmqctl's commands and output.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_command_list(names)
        + "\nExit codes: 0 ok, 64 usage, 65 data error, 67 no such user, 69 node unreachable "
        "(or the error rabbitmqctl reports with it), 70 software error, 75 timeout.",
    )
    parser.command_parsers = {}  # for `help COMMAND`
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser,
                                help="one of the commands below (help <command> describes one)")
    for name in names:
        command = COMMANDS[name]
        # No help= here: the epilog lists the commands by section, as rabbitmqctl's help does.
        p = sub.add_parser(name, parents=[common], description=command.help,
                           usage=f"{prog} [options] {command.usage or name}")
        command.setup(p)
        parser.command_parsers[name] = p
    help_parser = sub.add_parser("help", parents=[common],
                                 description="Displays usage information for a command")
    help_parser.add_argument("topic", nargs="?", metavar="command", help="command to describe")
    return parser


def _command_list(names: Sequence[str]) -> str:
    lines = ["Commands:"]
    for section in cmds.SECTIONS:
        members = [COMMANDS[n] for n in names if COMMANDS[n].section == section]
        if not members:
            continue
        lines.append(f"\n  {section}:")
        lines += [f"    {c.name:<24} {c.help}" for c in members]
        if section == "Help":
            lines.append(f"    {'help':<24} Displays usage information for a command")
    return "\n".join(lines) + "\n"


def _locate(ns: argparse.Namespace, environ: dict) -> tuple[str, str | None]:
    """(node name, data directory or None) of the broker to talk to."""
    if getattr(ns, "node", None):
        return _qualified(ns.node), None
    if getattr(ns, "data_dir", None):
        return _default_node(), ns.data_dir
    if environ.get("RABBITMQ_NODENAME"):
        return _qualified(environ["RABBITMQ_NODENAME"]), None
    data_dir = _env_data_dir(environ)
    if data_dir:
        return _default_node(), data_dir
    return _default_node(), None


def _qualified(node: str) -> str:
    """A node name with its host (rabbitmqctl adds the local short host name to a bare name)."""
    from ..config import full_node_name

    return full_node_name(node)


def _default_node() -> str:
    from .client import default_node_name

    return default_node_name()


def _env_data_dir(environ: dict) -> str | None:
    """The data directory RabbitMQ's variables name (resolved as the broker resolves them)."""
    if environ.get("RABBITMQ_MNESIA_DIR"):
        return environ["RABBITMQ_MNESIA_DIR"]
    if environ.get("RABBITMQ_MNESIA_BASE"):
        # The broker's directory is <base>/<node name>, as RabbitMQ's (amqp_broker/rabbitmq_config).
        return os.path.join(environ["RABBITMQ_MNESIA_BASE"], _default_node())
    return environ.get("AMQP_BROKER_DATA_DIR") or None


_INVALID_CHOICE = re.compile(r"argument <command>: invalid choice: '(.*)' \(choose from")


def _usage_error(prog: str, argv: Sequence[str], message: str, command: str | None, err: TextIO) -> int:
    invalid = _INVALID_CHOICE.match(message)
    if command is None and invalid:
        name = invalid.group(1)
        err.write(f"\nCommand '{name}' not found. \n\nUsage\n\n{prog} [--node <node>] [--timeout <timeout>] "
                  f"[--quiet] <command> [<command options>]\n\nRun '{prog} --help' for the commands.\n")
        return cmds.EX_USAGE
    # argparse's words for the two errors rabbitmqctl has its own words for.
    if message.startswith("the following arguments are required"):
        message = "not enough arguments."
    elif message.startswith("unrecognized arguments") and not message.partition(": ")[2].startswith("-"):
        message = "too many arguments."
    err.write(f"Error (argument validation): {message}\nArguments given:\n\t{' '.join(argv)}\n")
    if command in COMMANDS:
        usage = COMMANDS[command].usage or command
        err.write(f"\nUsage\n\n{prog} [--node <node>] [--longnames] [--quiet] {usage}\n")
    return cmds.EX_USAGE


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None, *, prog: str = PROG, tool: str | None = None,
         environ: dict | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one control command; return its exit code (rabbitmqctl's). ``tool`` (rabbitmqctl,
    rabbitmq-diagnostics) limits the commands to that tool's; by default all are offered."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = None if tool is None else cmds.names_for(tool)
    environ = dict(os.environ if environ is None else environ)
    out = out or sys.stdout
    err = err or sys.stderr
    argv = ["--help" if a == "-?" else a for a in argv]
    parser = build_parser(prog, names)
    try:
        with contextlib.redirect_stdout(out):  # --help prints, then exits 0
            ns = parser.parse_args(argv)
    except UsageError as exc:
        return _usage_error(prog, argv, str(exc), _command_of(argv), err)
    except SystemExit as exc:
        return int(exc.code or 0)
    if ns.command is None:
        parser.print_help(err)
        return cmds.EX_USAGE
    if ns.command == "help":
        topic = getattr(ns, "topic", None)
        if topic is None:
            parser.print_help(out)
        elif topic in parser.command_parsers:
            parser.command_parsers[topic].print_help(out)
        else:
            err.write(f"\nCommand '{topic}' not found.\n")
            return cmds.EX_USAGE
        return cmds.EX_OK
    node, data_dir = _locate(ns, environ)
    ctx = Context(
        node=node, data_dir=data_dir, vhost=getattr(ns, "vhost", None) or "/",
        quiet=bool(getattr(ns, "quiet", False)), silent=bool(getattr(ns, "silent", False)),
        headers=not getattr(ns, "no_table_headers", False),
        formatter=getattr(ns, "formatter", None) or "table", timeout=getattr(ns, "timeout", None),
        command=ns.command, out=out,
    )
    try:
        return cmds.execute(COMMANDS[ns.command], ctx, ns, err)
    except UsageError as exc:
        return _usage_error(prog, argv, str(exc), ns.command, err)
    except BrokenPipeError:
        return cmds.EX_OK
