"""Method arguments checked against their exact layout before they are decoded.

pamqp decodes what it can and ignores the rest: bytes after the last argument, a string running
past the end of its table, and it recurses without bound into nested tables (a 7 KB frame of
tables 1,000 deep raised RecursionError). RabbitMQ's generated decoder matches each method's
whole payload, so any of those is ``501 FRAME_ERROR - cannot decode <<...>>`` there; here the
layout of every method (from pamqp's field types) is walked first, and the caller answers the same.

Tables nested deeper than :data:`~amqp_broker.broker.properties.MAX_TABLE_DEPTH` are refused too,
where RabbitMQ, whose decoder is not recursion-bound, accepts them (README, known differences).
"""

from __future__ import annotations

import struct

from pamqp import commands

from ..broker.properties import check_table

_U32 = struct.Struct(">I")
_FIXED = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}


def _layout(method_class) -> tuple:
    """The argument layout of a method: fixed sizes (int), "shortstr", "longstr", "table".
    Consecutive bits share octets (spec 4.2.5.2), so each run of up to 8 becomes a size of 1."""
    layout: list = []
    bits = 0
    for name in method_class.__slots__:
        kind = method_class.amqp_type(name)
        if kind == "bit":
            if bits % 8 == 0:
                layout.append(1)
            bits += 1
            continue
        bits = 0
        layout.append(_FIXED.get(kind, kind))
    return tuple(layout)


LAYOUTS = {index: _layout(cls) for index, cls in commands.INDEX_MAPPING.items()}


def check_arguments(index: int, buf: bytes, pos: int, end: int) -> None:
    """Check that ``buf[pos:end]`` is exactly the arguments of method ``index``, with well-formed
    tables; ValueError (or EOFError) when not. Unknown indexes pass (the caller refuses them)."""
    for part in LAYOUTS.get(index, ()):
        if part.__class__ is int:
            pos += part
        elif part == "shortstr":
            pos += 1 + buf[pos]
        else:  # longstr or table: a long length, then that many bytes
            start = pos + 4
            pos = start + _U32.unpack_from(buf, pos)[0]
            if part == "table":
                if pos > end:
                    raise EOFError("table runs past the frame")
                check_table(buf, start, pos)
        if pos > end:
            raise EOFError("arguments run past the frame")
    if pos != end:
        raise ValueError(f"{end - pos} bytes after the arguments")
