"""RabbitMQ-named wrappers, so that tools and fixtures written for RabbitMQ run this broker.

``amqp-broker shims DIR`` writes four executable scripts into DIR (never onto PATH by itself):

- ``rabbitmq-server``: runs this broker in the foreground (``-detached``: in the background),
  configured by RabbitMQ's variables (``RABBITMQ_NODE_PORT``, ``RABBITMQ_NODENAME``,
  ``RABBITMQ_MNESIA_BASE``, ``RABBITMQ_ENABLED_PLUGINS_FILE``...; see amqp_broker/rabbitmq_config);
- ``rabbitmqctl``: ``amqp-broker ctl`` with rabbitmqctl's commands;
- ``rabbitmq-diagnostics``: the health checks (``-q ping``, ``check_running``,
  ``check_port_connectivity``, ``status``...);
- ``rabbitmq-plugins``: changes nothing (the management API and the metrics endpoint are built
  in) but answers as RabbitMQ's does, because fixtures and images call it.

Each script runs the Python that wrote it (``sys.executable``) on the amqp_broker package that
wrote it, whatever PATH and virtual environment the caller has.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from typing import Sequence

#: Written into every shim; a file without it is not overwritten unless --force.
MARKER = "written by `amqp-broker shims`"

TOOLS = ("rabbitmq-server", "rabbitmqctl", "rabbitmq-diagnostics", "rabbitmq-plugins")

#: The plugins a RabbitMQ tool may ask about that this broker has built in, and which setting
#: each depends on.
_BUILT_IN = {
    "rabbitmq_management": "management_port",
    "rabbitmq_management_agent": "management_port",
    "rabbitmq_web_dispatch": "management_port",
    "rabbitmq_prometheus": "prometheus_port",
}


def _package_root() -> str:
    """The directory holding the amqp_broker package the shims should run."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shim_text(tool: str, python: str, root: str) -> str:
    """The script for ``tool``: POSIX sh, exec'ing Python so that signals reach the broker."""
    return (
        "#!/bin/sh\n"
        f"# {tool} for amqp_broker, {MARKER}: it runs {python} on the package in {root}.\n"
        f"PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f"exec {shlex.quote(python)} -m amqp_broker.ctl.shims {tool} \"$@\"\n"
    )


def write_shims(directory: str, *, python: str | None = None, force: bool = False) -> list[str]:
    """Write the four shims into ``directory`` (created if needed); return their paths. A file
    that is not a shim is left alone (ValueError) unless ``force``."""
    python = python or sys.executable
    root = _package_root()
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, tool) for tool in TOOLS]
    for path in paths:
        if os.path.lexists(path) and not force and not _is_shim(path):
            raise ValueError(f"{path} exists and is not an amqp-broker shim (use --force to replace it)")
    for tool, path in zip(TOOLS, paths):
        temporary = f"{path}.tmp-{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as fh:
            fh.write(shim_text(tool, python, root))
        os.chmod(temporary, 0o755)
        os.replace(temporary, path)
    return paths


def _is_shim(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return MARKER in fh.read(4096)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """``amqp-broker shims DIR``."""
    parser = argparse.ArgumentParser(
        prog="amqp-broker shims",
        description="Write rabbitmq-server, rabbitmqctl, rabbitmq-diagnostics and rabbitmq-plugins "
        "wrappers for this broker into DIR. Put DIR first on PATH (or point a tool's settings at "
        "the scripts) where RabbitMQ's tools are expected.",
    )
    parser.add_argument("directory", metavar="DIR", help="directory to write the scripts into (created if needed)")
    parser.add_argument("--force", action="store_true", help="replace files of those names that are not shims")
    args = parser.parse_args(argv)
    try:
        paths = write_shims(args.directory, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"amqp-broker shims: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    print(f"# to use them: export PATH={shlex.quote(os.path.abspath(args.directory))}:$PATH", file=sys.stderr)
    return 0


# -- what the shims run ----------------------------------------------------------------------------

def rabbitmq_server(argv: Sequence[str]) -> int:
    """rabbitmq-server [-detached]: this broker, configured by RabbitMQ's variables."""
    detached = False
    for arg in argv:
        if arg == "-detached":
            detached = True
        else:
            print(f"rabbitmq-server: unsupported argument {arg!r} (this broker accepts -detached only; "
                  "configure it with RABBITMQ_* variables or rabbitmq.conf)", file=sys.stderr)
            return 64
    command = [sys.executable, "-m", "amqp_broker", "serve"]
    if detached:
        # As RabbitMQ's -detached: the node runs on in its own session, the command returns.
        log = _detached_log()
        with open(log, "ab") if log else open(os.devnull, "wb") as sink:
            subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                             start_new_session=True)
        return 0
    from ..__main__ import main as broker_main

    return broker_main(["serve"])


def _detached_log() -> str | None:
    """Where a detached broker's output goes: ``$RABBITMQ_LOG_BASE/<node>.log`` as RabbitMQ's log,
    when that directory exists."""
    base = os.environ.get("RABBITMQ_LOG_BASE")
    if not base or not os.path.isdir(base):
        return None
    from .client import default_node_name
    from ..config import full_node_name

    node = full_node_name(os.environ.get("RABBITMQ_NODENAME") or default_node_name())
    return os.path.join(base, f"{node}.log")


def rabbitmq_plugins(argv: Sequence[str], environ: dict | None = None) -> int:
    """rabbitmq-plugins: answers as RabbitMQ's, changes nothing (the plugins are built in)."""
    environ = dict(os.environ if environ is None else environ)
    args = [a for a in argv if not a.startswith("-")]
    flags = {a for a in argv if a.startswith("-")}
    quiet = bool({"-q", "--quiet", "-s", "--silent"} & flags)
    node = _node_for_plugins(argv, environ)
    if not args or args[0] in ("help", "--help", "-h"):
        print("Usage: rabbitmq-plugins [-n <node>] list|enable|disable|set|is_enabled|directories [<plugin> ...]\n"
              "amqp_broker has the management API and the Prometheus endpoint built in: this command "
              "changes nothing (turn them off with --management-port 0 / --prometheus-port 0).")
        return 0 if args else 64
    command, plugins = args[0], args[1:]
    record = _record(node)
    if command == "list":
        if not quiet:
            print('Listing plugins with pattern ".*" ...')
            print(" Configured: E = explicitly enabled; e = implicitly enabled")
            print(f" | Status: * = running on {node}")
            print(" |/")
        for name, setting in sorted(_BUILT_IN.items()):
            on = record is None or bool(record.get(setting))
            explicit = name in ("rabbitmq_management", "rabbitmq_prometheus")
            mark = ("E" if explicit else "e") if on else " "
            running = "*" if on and record is not None else " "
            print(f"[{mark}{running}] {name:<33} built in")
        return 0
    if command in ("enable", "disable", "set"):
        verb = {"enable": "Enabling", "disable": "Disabling", "set": "Setting"}[command]
        if not quiet:
            print(f"{verb} plugins on node {node}:")
            for plugin in plugins:
                print(plugin)
            print(f"Applying plugin configuration to {node}...")
            print("Plugin configuration unchanged.")
        print(f"amqp_broker: plugins are built in, nothing to {command} "
              "(the management API and metrics endpoint are settings: --management-port, --prometheus-port)",
              file=sys.stderr)
        return 0
    if command == "is_enabled":
        missing = [p for p in plugins if p not in _BUILT_IN or (record is not None and not record.get(_BUILT_IN[p]))]
        if not quiet:
            print(f"Asking node {node} if plugin(s) {', '.join(plugins)} are enabled...")
        if missing:
            print(f"Plugin(s) {', '.join(missing)} are not enabled on node {node}", file=sys.stderr)
            return 69
        print(f"Plugin(s) {', '.join(plugins)} are enabled on node {node}")
        return 0
    if command == "directories":
        print("Plugin archives directory: (built in)\nPlugin expansion directory: (built in)\n"
              "Enabled plugins file: (none)")
        return 0
    print(f"\nCommand '{command}' not found.", file=sys.stderr)
    return 64


def _node_for_plugins(argv: Sequence[str], environ: dict) -> str:
    from ..config import full_node_name
    from .client import default_node_name

    for flag in ("-n", "--node"):
        if flag in argv:
            index = list(argv).index(flag)
            if index + 1 < len(argv):
                return full_node_name(argv[index + 1])
    return full_node_name(environ.get("RABBITMQ_NODENAME") or default_node_name())


def _record(node: str) -> dict | None:
    from .client import find_record

    return find_record(node, None)


def run(tool: str, argv: Sequence[str]) -> int:
    """What the shim named ``tool`` runs."""
    if tool == "rabbitmq-server":
        return rabbitmq_server(argv)
    if tool == "rabbitmq-plugins":
        return rabbitmq_plugins(argv)
    from .cli import main as ctl_main

    return ctl_main(argv, prog=tool, tool=tool)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        print(f"usage: python -m amqp_broker.ctl.shims {{{','.join(TOOLS)}}} [ARGS...]", file=sys.stderr)
        sys.exit(64)
    sys.exit(run(sys.argv[1], sys.argv[2:]))
