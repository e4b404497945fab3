"""The optional compiled build: which hot-path modules mypyc compiles, and whether they are.

``AMQP_BROKER_COMPILE=1 pip install .`` (or ``make compile``, in place) compiles the modules in
:data:`MODULES` with mypyc from the same typed source; without a compiler, or without that
variable, the broker runs them interpreted, as it always did. The compiled classes are native:
attributes are declared and typed (mypyc checks the types at run time), no instance ``__dict__``.
"""

from __future__ import annotations

import importlib.machinery
import sys

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
    """The names of :data:`MODULES` that were loaded from an extension module."""
    found = []
    for path in MODULES:
        name = path[:-3].replace("/", ".")
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) or ""
        if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            found.append(name)
    return found
