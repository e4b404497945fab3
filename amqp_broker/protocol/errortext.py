"""Texts in RabbitMQ's format for errors about raw octets and methods (FRAME_ERROR and friends).

RabbitMQ prints offending frame bytes with Erlang's ``~p``/``~w``; clients and logs show these
texts, so they are reproduced exactly (calibrated against RabbitMQ 3.10.8's answers).
"""

from __future__ import annotations

from typing import Any


# Erlang's ~p escapes inside a printable binary (io_lib:write_string, latin1 printable range).
_ERLANG_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\e",
                   34: '\\"', 92: "\\\\"}


def erlang_binary(data: Any, column: int = 0) -> str:
    """Octets the way RabbitMQ's ``~p`` prints them: ``<<"abc">>`` or ``<<0,20>>``.

    ``column`` is where the term starts on its line: like Erlang's io_lib_pretty, a long byte list
    is filled up to column 78 (79 for its last element) and continued on lines indented to the
    first element (calibrated against RabbitMQ 3.10's texts).
    """
    raw = bytes(data)
    if raw and all(32 <= b < 127 or b >= 160 or b in _ERLANG_ESCAPES for b in raw):
        return '<<"' + "".join(_ERLANG_ESCAPES.get(b) or chr(b) for b in raw) + '">>'
    if not raw:
        return "<<>>"
    elems = [str(b) for b in raw]
    out = ["<<", elems[0]]
    col = column + 2 + len(elems[0])
    last = len(elems) - 1
    for i in range(1, len(elems)):
        elem = elems[i]
        if col + 1 + len(elem) <= (79 if i == last else 78):
            out.append("," + elem)
            col += 1 + len(elem)
        else:
            out.append(",\n" + " " * (column + 2) + elem)
            col = column + 2 + len(elem)
    out.append(">>")
    return "".join(out)


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
