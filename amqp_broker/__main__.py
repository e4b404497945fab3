"""Command-line entry point: ``amqp-broker [serve] [--port N ...]`` or ``python -m amqp_broker``;
``amqp-broker definitions export|import FILE`` exports or imports definitions in the data directory;
``amqp-broker ctl COMMAND`` controls a running broker with rabbitmqctl's commands (exit codes as
rabbitmqctl's); ``amqp-broker trace show|pcap FILE`` reads a frame trace; ``amqp-broker shims DIR`` writes RabbitMQ-named wrapper scripts into DIR.

Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 on a configuration error or when the
broker cannot start because of an OS error (port in use, data directory not writable), 2 on a
malformed command line (from :mod:`argparse`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from functools import partial

import trio

from amqp_broker.config import ConfigError, Settings, build_arg_parser, settings_from_args
from amqp_broker.store.sqlite import StoreError

LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"

log = logging.getLogger("amqp_broker")


# Control characters (newlines above all) escaped in log messages: names and texts in log lines
# come from clients, and a queue named "q\n2026-... [ERROR] ..." would otherwise forge a line.
_ESCAPE_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


class EscapingFormatter(logging.Formatter):
    """A formatter that escapes control characters in the message (tracebacks keep theirs)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPE_CONTROLS)
        return super().formatMessage(record)


def configure_logging(level: str) -> None:
    """Send log records at ``level`` (a :data:`amqp_broker.config.LOG_LEVELS` name) to stderr,
    one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``amqp-broker`` command with ``argv`` (default ``sys.argv[1:]``); return its status.

    With no command, or ``serve``, loads the settings, configures logging and runs
    :func:`amqp_broker.server.run_broker` until it returns on SIGINT/SIGTERM. ``definitions
    export|import FILE`` works on the data directory and returns 0, or 1 on an error.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ctl"]:
        # The control CLI has rabbitmqctl's own command line, so its own parser.
        from amqp_broker.ctl.cli import main as ctl_main

        return ctl_main(argv[1:])
    if argv[:1] == ["trace"]:
        from amqp_broker.tracetools.cli import main as trace_main

        return trace_main(argv[1:])
    if argv[:1] == ["shims"]:
        from amqp_broker.ctl.shims import main as shims_main

        return shims_main(argv[1:])
    args = build_arg_parser().parse_args(argv)
    warnings: list[str] = []
    try:
        settings = settings_from_args(args, os.environ, warnings.append)
    except ConfigError as exc:
        print(f"amqp-broker: configuration error: {exc}", file=sys.stderr)
        return 1
    configure_logging(settings.log_level)
    for warning in warnings:  # held until now: the log level was not known while reading
        logging.getLogger("amqp_broker.config").warning("%s", warning)

    command = args.command or "serve"
    if command == "serve":
        return _serve(settings)
    if command == "definitions":
        return _definitions(settings, args.definitions_action, args.file, getattr(args, "force", False))
    print(f"amqp-broker: unknown command {command!r}", file=sys.stderr)  # pragma: no cover
    return 2  # pragma: no cover


def _serve(settings: Settings) -> int:
    """Run the broker in trio until it shuts down; map start-up failures to exit status 1."""
    from amqp_broker.server import run_broker  # imported late: config errors report without it
    from amqp_broker.server.allocator import tune_allocator, tune_collector
    from amqp_broker.server.descriptors import log_fd_limit, raise_fd_limit

    # The process is the broker's alone here (not when embedded in tests or an application).
    tune_allocator()
    tune_collector()
    fd_limit = raise_fd_limit()

    try:
        # The limit is logged once the broker has started: a start that fails says one line.
        trio.run(partial(run_broker, settings, on_ready=partial(log_fd_limit, fd_limit)))
    except KeyboardInterrupt:
        # run_broker handles SIGINT itself; this is only a ^C before its handler was installed.
        return 130
    except (OSError, ConfigError, StoreError, BaseExceptionGroup) as exc:
        error = _only_error(exc)
        if error is None:
            raise
        if isinstance(error, ConfigError):
            print(f"amqp-broker: configuration error: {error}", file=sys.stderr)
        elif isinstance(error, StoreError):
            print(f"amqp-broker: cannot start: {error}", file=sys.stderr)
        elif getattr(error, "where", None):  # an HTTP listener's port (management, Prometheus)
            print(f"amqp-broker: cannot start ({error.where}): {error}", file=sys.stderr)
        else:
            print(f"amqp-broker: cannot start: {error}", file=sys.stderr)
        log.debug("start-up failed", exc_info=exc)
        return 1
    return 0


def _definitions(settings: Settings, action: str, path: str, force: bool) -> int:
    """``definitions export FILE`` / ``definitions import FILE`` on ``settings.data_dir``."""
    from amqp_broker import definitions  # imported late, as the server

    keys = ("users", "vhosts", "permissions", "topic_permissions", "exchanges", "queues", "bindings")
    try:
        if action == "export":
            data = definitions.export_data_dir(settings)
            definitions.write_definitions_file(data, path)
            counts = {key: len(data[key]) for key in keys}
            what = f"exported from {settings.data_dir} to {path}"
        else:
            data = definitions.read_definitions_file(path)
            counts = definitions.import_data_dir(settings, data, force=force)
            what = f"imported from {path} into {settings.data_dir}"
    except (definitions.DefinitionsError, StoreError) as exc:
        print(f"amqp-broker: definitions {action}: {exc}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{counts[key]} {key}" for key in keys)
    if counts.get("skipped"):
        summary += f" ({counts['skipped']} entries skipped or ignored: see the warnings above)"
    print(f"amqp-broker: {what}: {summary}", file=sys.stderr)
    if action == "import":
        transient = [
            f"{kind[:-1]} {entry.get('name')!r} in vhost {entry.get('vhost')!r}"
            for kind in ("exchanges", "queues")
            for entry in data.get(kind) or []
            if isinstance(entry, dict) and entry.get("durable") is False
        ]
        if transient:
            print(
                "amqp-broker: transient, so not kept (a data directory holds durable definitions "
                f"only): {', '.join(transient)}",
                file=sys.stderr,
            )
    return 0


def _only_error(exc: BaseException) -> OSError | ConfigError | StoreError | None:
    """The OSError or ConfigError that ``exc`` is, or that an exception group holds alone.

    trio wraps errors that escape a nursery in exception groups; a group holding anything else
    gives None, so the caller re-raises it with its full traceback.
    """
    if isinstance(exc, (OSError, ConfigError, StoreError)):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _only_error(exc.exceptions[0])
    return None


if __name__ == "__main__":
    sys.exit(main())
