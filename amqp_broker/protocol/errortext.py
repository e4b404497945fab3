"""Texts in RabbitMQ's format for errors about raw octets and methods (FRAME_ERROR and friends).

RabbitMQ prints offending frame bytes with Erlang's ``~p``/``~w``; clients and logs show these
texts, so they are reproduced exactly (calibrated against RabbitMQ 3.10.8's answers).
"""

from __future__ import annotations

from typing import Any

from ..erlang_text import erlang_binary


def erlang_binary_w(data: Any) -> str:
    """Octets the way Erlang's ``~w`` prints them (``cannot decode <<0,0,5,97,98>>``).

    Only the first 128 octets: the reply text is cut at 255 bytes anyway.
    """
    return "<<" + ",".join(str(b) for b in bytes(data[:128])) + ">>"


def octets_text(frame_type: int, payload: Any, error: Any = None) -> str:
    """rabbit_reader's ``type T, all octets = <<...>>[: Error]`` (``first 16 octets`` when longer).

    ``error`` is an atom (str) or a tuple of an atom and integers, printed like Erlang's ``~p``.
    """
    raw = bytes(payload[:17])
    which = "all"
    if len(raw) > 16:
        which, raw = "first 16", raw[:16]
    text = f"type {frame_type}, {which} octets = "
    text += erlang_binary(raw, len(text))
    if error is None:
        return text
    if isinstance(error, str):
        return f"{text}: {error}"
    column = len(text) - (text.rfind("\n") + 1) + 2
    parts = [str(part) for part in error]
    term = "{" + ",".join(parts) + "}"
    if column + len(term) > 78:  # io_lib_pretty: one element per line when the tuple does not fit
        term = "{" + (",\n" + " " * (column + 1)).join(parts) + "}"
    return f"{text}: {term}"


def amqp_name(method: Any) -> str:
    """``Basic.Publish`` -> ``basic.publish``, as RabbitMQ names methods in texts."""
    name = method.name
    cls, _, meth = name.partition(".")
    out = []
    for i, ch in enumerate(meth):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return f"{cls.lower()}.{''.join(out)}"
