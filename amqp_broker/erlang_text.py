"""Erlang terms printed as RabbitMQ prints them in reply texts: shared by the protocol layer
(frame errors) and the broker core (argument errors), so it belongs to neither.
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
