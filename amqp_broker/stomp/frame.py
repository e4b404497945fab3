"""STOMP frames: an incremental parser and a serializer, with RabbitMQ's rules
(rabbit_stomp_frame):

- CR LF ends a line as LF does; a CR followed by anything else is an error.
- Header names and values are unescaped (``\\n``, ``\\c``, ``\\r``, ``\\\\``) in every protocol
  version; any other escape is an error, and so is a header line without a colon.
- A repeated header keeps its first value (STOMP 1.2 section "Repeated Header Entries").
- ``content-length`` is honoured on SEND only; every other frame's body ends at the first NUL.
- NULs and blank lines between frames are skipped (heart-beats).

Header names and values are kept as ``str`` decoded with ``surrogateescape``: RabbitMQ allows
any octets there, and such text goes back to the same octets when encoded.
"""

from __future__ import annotations

from typing import Iterator

ENCODING = "utf-8"
ERRORS = "surrogateescape"

_UNESCAPE = {ord("n"): "\n", ord("c"): ":", ord("r"): "\r", ord("\\"): "\\"}
_ESCAPE = str.maketrans({"\\": "\\\\", ":": "\\c", "\n": "\\n", "\r": "\\r"})


class FrameError(ValueError):
    """Bytes that are no STOMP frame; RabbitMQ drops the connection without an ERROR frame."""


class Frame:
    """One parsed frame: its command, headers (first occurrence of each name, in order) and body."""

    __slots__ = ("command", "headers", "body")

    def __init__(self, command: str, headers: dict[str, str], body: bytes = b""):
        self.command = command
        self.headers = headers
        self.body = body

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def __repr__(self) -> str:
        return f"Frame({self.command!r}, {self.headers!r}, {self.body!r})"


def _unescape(raw: bytes) -> str:
    text = raw.decode(ENCODING, ERRORS)
    if "\\" not in text:
        return text
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            raise FrameError("bad escape at the end of a header")
        code = _UNESCAPE.get(ord(text[i + 1]))
        if code is None:
            raise FrameError(f"bad escape \\{text[i + 1]}")
        out.append(code)
        i += 2
    return "".join(out)


class FrameParser:
    """Bytes in, frames out, with no I/O: :meth:`feed` returns the frames completed so far and
    keeps the start of an incomplete one."""

    __slots__ = ("_buf", "_scan", "max_frame")

    def __init__(self, max_frame: int = 0) -> None:
        self._buf = bytearray()
        # The most bytes an incomplete frame may hold (0: no limit): a frame that never ends
        # must not take all memory.
        self.max_frame = max_frame
        # Where the search for the NUL ending an incomplete body resumes, so that a large body
        # arriving in many reads is scanned once.
        self._scan = 0

    def pending(self) -> int:
        """Bytes held of an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Parse ``data`` after what was held; raises :class:`FrameError` on malformed input."""
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        while True:
            frame, pos = self._next(buf, pos)
            if frame is None:
                break
            frames.append(frame)
        if pos:
            del buf[:pos]  # _scan counts from the frame's start, which is now 0
        if self.max_frame and len(buf) > self.max_frame:
            raise FrameError(f"frame larger than {self.max_frame} bytes")
        return frames

    def _next(self, buf: bytearray, pos: int) -> tuple[Frame | None, int]:
        end = len(buf)
        # Inter-frame noise: NULs, LFs and CR LFs.
        while pos < end:
            byte = buf[pos]
            if byte == 0 or byte == 10:
                pos += 1
            elif byte == 13:
                if pos + 1 >= end:
                    return None, pos
                if buf[pos + 1] != 10:
                    raise FrameError("unexpected CR between frames")
                pos += 2
            else:
                break
        if pos >= end:
            self._scan = 0
            return None, pos
        start = pos
        lines = self._lines(buf, pos)
        if lines is None:
            return None, start
        command, header_lines, body_start = lines
        headers: dict[str, str] = {}
        for raw in header_lines:
            colon = raw.find(b":")
            if colon < 0:
                raise FrameError("header without a value")
            name = _unescape(raw[:colon])
            if name not in headers:
                headers[name] = _unescape(raw[colon + 1:])
        length = None
        if command == "SEND" and "content-length" in headers:
            try:
                length = int(headers["content-length"].strip())
            except ValueError:
                raise FrameError("content-length is not an integer") from None
            if length < 0:
                raise FrameError("negative content-length")
        if length is not None:
            if body_start + length >= end:
                return None, start
            if buf[body_start + length] != 0:
                raise FrameError("frame body not terminated by NUL after content-length octets")
            body_end = body_start + length
        else:
            body_end = buf.find(b"\x00", max(body_start, start + self._scan))
            if body_end < 0:
                self._scan = end - start
                return None, start
        self._scan = 0
        return Frame(command, headers, bytes(buf[body_start:body_end])), body_end + 1

    @staticmethod
    def _lines(buf: bytearray, pos: int) -> tuple[str, list[bytes], int] | None:
        """The command, raw header lines and body offset of the frame at ``pos``, or None when its
        headers are not all there yet."""
        lines: list[bytes] = []
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                cr = buf.find(b"\r", pos)
                if cr >= 0 and cr + 1 < len(buf):
                    raise FrameError("CR not followed by LF")
                return None
            line_end = nl
            if line_end > pos and buf[line_end - 1] == 13:
                line_end -= 1
            line = bytes(buf[pos:line_end])
            if b"\r" in line:
                raise FrameError("CR not followed by LF")
            pos = nl + 1
            if not lines:
                lines.append(line)  # the command
                continue
            if not line:
                command = lines[0].decode(ENCODING, ERRORS)
                return command, lines[1:], pos
            lines.append(line)


def _escape(text: str) -> bytes:
    if "\\" in text or ":" in text or "\n" in text or "\r" in text:
        text = text.translate(_ESCAPE)
    return text.encode(ENCODING, ERRORS)


def header_lines(headers: Iterator[tuple[str, str]] | list[tuple[str, str]]) -> bytes:
    """Escaped ``name:value`` lines; a given content-length is dropped (:func:`frame_bytes`
    writes the body's own)."""
    return b"".join([
        _escape(name) + b":" + _escape(value) + b"\n" for name, value in headers if name != "content-length"
    ])


def frame_bytes(command: bytes, lines: bytes, body: bytes = b"") -> bytes:
    """A frame from its command and :func:`header_lines`, as RabbitMQ writes it: a
    content-length when the body is not empty, NUL, and a trailing LF (its trailing_lf default)."""
    if body:
        return b"".join((command, b"\n", lines, b"content-length:%d\n\n" % len(body), body, b"\x00\n"))
    return b"".join((command, b"\n", lines, b"\n\x00\n"))


def serialize(command: str, headers: Iterator[tuple[str, str]] | list[tuple[str, str]],
              body: bytes = b"") -> bytes:
    """A whole frame (see :func:`frame_bytes`)."""
    return frame_bytes(command.encode(ENCODING), header_lines(headers), body)


HEARTBEAT = b"\n"
