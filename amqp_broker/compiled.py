"""The optional compiled build: which hot-path modules mypyc compiles, and whether they are.

``AMQP_BROKER_COMPILE=1 pip install .`` (or ``make compile``, in place) compiles the modules in
:data:`MODULES` with mypyc from the same typed source; without a compiler, or without that
variable, the broker runs them interpreted, as it always did. The compiled classes are native:
attributes are declared and typed (mypyc checks the types at run time), no instance ``__dict__``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import logging
import os
import sys
import sysconfig

try:  # only present where mypy is installed (the compiled build); a no-op otherwise
    from mypy_extensions import mypyc_attr
except ImportError:  # pragma: no cover - the plain install
    def mypyc_attr(*_args: object, **_kwargs: object):  # type: ignore[misc]
        return lambda cls: cls

# The hot path (publish -> route -> deliver), as py-spy shows it under the bench scenarios.
MODULES = (
    "amqp_broker/protocol/codec.py",
    "amqp_broker/protocol/framing.py",
    "amqp_broker/protocol/violations.py",
    "amqp_broker/protocol/content.py",
    "amqp_broker/protocol/confirms.py",
    "amqp_broker/protocol/channel.py",
    "amqp_broker/protocol/output.py",
    "amqp_broker/protocol/connection.py",
    "amqp_broker/broker/channel.py",
    "amqp_broker/broker/queue.py",
    "amqp_broker/broker/buffer.py",
    "amqp_broker/broker/exchange.py",
    "amqp_broker/broker/message.py",
    "amqp_broker/broker/topic.py",
)


def compiled_modules() -> list[str]:
    """The names of :data:`MODULES` that are loaded from an extension module (imports them)."""
    found = []
    for path in MODULES:
        name = path[:-3].replace("/", ".")
        origin = getattr(importlib.import_module(name), "__file__", None) or ""
        if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            found.append(name)
    return found


def stale_modules() -> list[str]:
    """Compiled modules whose source was edited after an in-place build: the extension, not the
    edited source, is what runs (rebuild with ``make compile``, or ``make uncompile``)."""
    compiled = compiled_modules()
    installed = {os.path.realpath(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    if compiled and os.path.dirname(os.path.dirname(os.path.realpath(__file__))) in installed:
        return []  # a wheel's files arrive together (their times say nothing); only in place
    # The per-module extensions are thin shims, not rewritten by a rebuild when unchanged; the
    # code is in mypyc's shared library (amqp_broker._hot_path__mypyc).
    files = [sys.modules[name].__file__ or "" for name in compiled]
    files += [getattr(module, "__file__", None) or "" for name, module in list(sys.modules.items())
              if name.endswith("__mypyc")]
    built = max((os.path.getmtime(f) for f in files if os.path.exists(f)), default=0.0)
    stale = []
    for name in compiled:
        so = sys.modules[name].__file__ or ""
        source = os.path.join(os.path.dirname(so), name.rpartition(".")[2] + ".py")
        if os.path.exists(source) and os.path.getmtime(source) > built:
            stale.append(name)
    return stale


def describe() -> str:
    """One line for the start-up log: whether the hot path runs compiled."""
    compiled = compiled_modules()
    if not compiled:
        return "hot path interpreted (no compiled build)"
    if len(compiled) == len(MODULES):
        return f"hot path compiled with mypyc ({len(compiled)} modules)"
    return f"hot path partly compiled with mypyc ({len(compiled)} of {len(MODULES)} modules)"


def log_build(log: logging.Logger) -> None:
    """Say at start-up whether the hot path runs compiled, and warn of a stale build."""
    log.info("%s", describe())
    stale = stale_modules()
    if stale:
        log.warning("compiled modules older than their source (the compiled ones run; rebuild with "
                    "`make compile` or remove them with `make uncompile`): %s", ", ".join(stale))
