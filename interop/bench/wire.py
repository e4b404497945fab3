"""AMQP 0-9-1 frames for the load generator: pre-encoded hot frames and a cheap frame scanner.

Set-up frames (declare, bind, consume, ...) are built and parsed with pamqp in ``amqp.py``; this
module only knows what the hot path needs:

* ``publish_message`` -- publish + content header + body frame(s) as one ``bytes``, built once and
  repeated into a batch that goes out with one ``sendall``.
* ``Batch`` -- such a batch with the 8-byte monotonic timestamps of all its bodies rewritten at once
  (eight strided slice assignments, no per-message Python work).
* ``Scanner`` -- a receive buffer that walks frame headers. Content-carrying methods (basic.deliver
  for a consumer, basic.publish for the sink) are only counted; everything else is handed back.
  Once it has seen one complete message it learns the message's frame layout, and from then on a
  run of identical-layout messages is verified with strided slices (the type, size and frame-end
  bytes of every frame, the class/method ids of every method frame) instead of frame by frame, so a
  consumer costs a few hundredths of a microsecond per message.
"""

from __future__ import annotations

import struct

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8


def cm(class_id: int, method_id: int) -> int:
    return (class_id << 16) | method_id


# class/method ids as one int (the four bytes after the frame header)
CONNECTION_CLOSE = cm(10, 50)
CONNECTION_CLOSE_OK = cm(10, 51)
CONNECTION_BLOCKED = cm(10, 60)
CONNECTION_UNBLOCKED = cm(10, 61)
CHANNEL_CLOSE = cm(20, 40)
CHANNEL_CLOSE_OK = cm(20, 41)
BASIC_CANCEL = cm(60, 30)
BASIC_PUBLISH = cm(60, 40)
BASIC_RETURN = cm(60, 50)
BASIC_DELIVER = cm(60, 60)
BASIC_ACK = cm(60, 80)
BASIC_NACK = cm(60, 120)

HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"

_FRAME_HDR = struct.Struct(">BHI")
_U64 = struct.Struct(">Q")
_FRAME_HDR_UNPACK = _FRAME_HDR.unpack_from
_U32_UNPACK = struct.Struct(">I").unpack_from


def frame(ftype: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HDR.pack(ftype, channel, len(payload)) + payload + b"\xce"


def shortstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 255:
        raise ValueError("shortstr too long")
    return bytes([len(b)]) + b


def publish_method(channel: int, exchange: str, routing_key: str, mandatory: bool = False) -> bytes:
    payload = b"\x00<\x00(\x00\x00" + shortstr(exchange) + shortstr(routing_key) + bytes([1 if mandatory else 0])
    return frame(FRAME_METHOD, channel, payload)


def content_header(channel: int, body_size: int, persistent: bool = False) -> bytes:
    # class 60, weight 0, body size, property flags (delivery-mode = bit 12) [, delivery-mode octet]
    payload = b"\x00<\x00\x00" + _U64.pack(body_size)
    payload += b"\x10\x00\x02" if persistent else b"\x00\x00"
    return frame(FRAME_HEADER, channel, payload)


def body_frames(channel: int, body: bytes, frame_max: int) -> bytes:
    step = frame_max - 8
    if not body:
        return b""
    return b"".join(frame(FRAME_BODY, channel, body[i:i + step]) for i in range(0, len(body), step))


def publish_message(channel: int, exchange: str, routing_key: str, body: bytes, frame_max: int,
                    persistent: bool = False) -> tuple[bytes, int]:
    """publish + header + body frames; returns (bytes, offset of the first body byte) or -1."""
    head = publish_method(channel, exchange, routing_key) + content_header(channel, len(body), persistent)
    return head + body_frames(channel, body, frame_max), (len(head) + 7 if body else -1)


def ack_frame(channel: int, tag: int, multiple: bool) -> bytes:
    return frame(FRAME_METHOD, channel, b"\x00<\x00P" + _U64.pack(tag) + (b"\x01" if multiple else b"\x00"))


_ACK_HEAD = _FRAME_HDR.pack(FRAME_METHOD, 1, 13) + b"\x00<\x00P"


def single_acks(first: int, last: int) -> bytes:
    """one basic.ack (multiple=false) per tag first..last on channel 1"""
    pack = _U64.pack
    return b"".join([_ACK_HEAD + pack(t) + b"\x00\xce" for t in range(first, last + 1)])


def make_body(size: int) -> bytes:
    return b"x" * size


class Batch:
    """``count`` copies of message templates in one bytearray, timestamps patched per send.

    ``messages`` is a list of (bytes, stamp_offset) of the same length (the topic scenario mixes
    routing keys of equal length); they are laid out round-robin. ``stamp(t)`` writes ``t`` (8 bytes,
    big-endian ns) into every body at once with strided slice assignment.
    """

    def __init__(self, messages: list[tuple[bytes, int]], count: int):
        self.stride = len(messages[0][0])
        if any(len(m) != self.stride for m, _ in messages):
            raise ValueError("messages of a batch must have the same length")
        self.count = count
        self.buf = bytearray(b"".join(messages[i % len(messages)][0] for i in range(count)))
        off = messages[0][1]
        self.stamp_off = off if off >= 0 and all(o == off for _, o in messages) else -1
        # the body may be shorter than 8 bytes: stamp only what fits
        self.stamp_len = 0
        if self.stamp_off >= 0:
            body_len = len(messages[0][0]) - self.stamp_off - 1
            self.stamp_len = min(8, body_len)
        self._ones = [None] * 256

    def stamp(self, t: int) -> bytearray:
        if self.stamp_len == 8:
            b = _U64.pack(t)
            buf, st, n, off = self.buf, self.stride, self.count, self.stamp_off
            for j in range(8):
                buf[off + j::st] = bytes((b[j],)) * n
        return self.buf

    def view(self, n: int) -> memoryview:
        return memoryview(self.buf)[: n * self.stride]


class FrameError(Exception):
    pass


class Scanner:
    """A receive buffer that walks AMQP frames and counts messages of one content method.

    After ``feed()``: ``count`` grew by the messages seen, ``last_msg`` is the buffer offset of the
    last counted message's method frame (valid until the next ``recv``), and ``others`` holds the
    other frames as (channel, class_method, payload bytes) -- class_method 0 for a heartbeat.
    Content header and body frames are skipped.
    """

    FAST_MIN = 4  # messages in the buffer before the strided check pays off

    def __init__(self, content_method: int, size: int = 4 << 20, want_stamps: bool = False):
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.size = size
        self.pos = 0
        self.end = 0
        self.content_method = content_method
        self.count = 0
        self.last_msg = -1
        self.others: list[tuple[int, int, bytes]] = []
        self.want_stamps = want_stamps  # every message's first 8 body bytes -> stamps
        self.stamps: list[int] = []
        self._first_body = False
        self.layout: tuple[int, list[tuple[int, int]]] | None = None  # (length, [(offset, byte)])
        self._layouts: dict[tuple, tuple[int, list[tuple[int, int]]]] = {}
        self.fast_msgs = 0
        self._relearn = False

    # -- buffer --
    def room(self) -> memoryview:
        """free space at the end of the buffer (compacting first when needed)"""
        if self.pos == self.end:
            self.pos = self.end = 0
        elif self.size - self.end < (self.size >> 2) or self.pos > (self.size >> 1):
            n = self.end - self.pos
            self.buf[:n] = self.buf[self.pos:self.end]
            self.pos, self.end = 0, n
        return self.mv[self.end:]

    def recv(self, sock) -> int:
        n = sock.recv_into(self.room())
        self.end += n
        return n

    def push(self, data: bytes) -> None:
        """bytes read by someone else (left over from set-up)"""
        room = self.room()
        room[: len(data)] = data
        self.end += len(data)

    # -- learning the layout of one complete message at pos --
    def _learn(self, pos: int) -> None:
        buf, end = self.buf, self.end
        frames = []
        p = pos
        size = int.from_bytes(buf[p + 3:p + 7], "big")
        frames.append((p, size))
        p += size + 8
        if p + 8 > end or buf[p] != FRAME_HEADER:
            return
        size = int.from_bytes(buf[p + 3:p + 7], "big")
        if p + size + 8 > end:
            return
        body_size = int.from_bytes(buf[p + 11:p + 19], "big")
        frames.append((p, size))
        p += size + 8
        got = 0
        while got < body_size:
            if p + 8 > end or buf[p] != FRAME_BODY:
                return
            size = int.from_bytes(buf[p + 3:p + 7], "big")
            if p + size + 8 > end:
                return
            frames.append((p, size))
            got += size
            p += size + 8
        length = p - pos
        key = tuple(s for _, s in frames) + (bytes(buf[pos:pos + 11]),)
        lay = self._layouts.get(key)
        if lay is None:
            # per frame: type byte, low byte of the size, frame-end byte; the method id's low byte
            checks = []
            for i, (fp, size) in enumerate(frames):
                o = fp - pos
                checks.append((o, buf[fp]))
                checks.append((o + 6, buf[fp + 6]))
                checks.append((o + size + 7, FRAME_END))
                if i == 0:
                    checks.append((o + 10, buf[fp + 10]))
            lay = (length, checks)
            if len(self._layouts) < 64:
                self._layouts[key] = lay
        self.layout = lay

    def _fast(self, pos: int, end: int) -> int:
        """messages of the learned layout starting at pos, verified with strided slices"""
        length, checks = self.layout
        n = (end - pos) // length
        if n < self.FAST_MIN:
            return 0
        buf = self.buf
        stop = pos + n * length
        good = n
        for o, ref in checks:
            s = buf[pos + o:stop:length]
            if s.count(ref) != len(s):
                r = bytes((ref,))
                k = len(s) - len(s.lstrip(r))
                if k < good:
                    good = k
                    if good == 0:
                        return 0
        return good

    # -- walking --
    def feed(self) -> int:
        """process complete frames in the buffer; returns messages counted"""
        buf, end = self.buf, self.end
        pos = self.pos
        counted = 0
        cmeth = self.content_method
        want = self.want_stamps
        while end - pos >= 8:
            if self.layout is not None and not want and end - pos >= self.FAST_MIN * self.layout[0]:
                n = self._fast(pos, end)
                if not n:
                    self._relearn = True
                else:
                    counted += n
                    self.fast_msgs += n
                    length = self.layout[0]
                    self.last_msg = pos + (n - 1) * length
                    pos += n * length
                    continue
            ftype, ch, size = _FRAME_HDR_UNPACK(buf, pos)
            fe = pos + size + 8
            if fe > end:
                break
            if buf[fe - 1] != FRAME_END:
                raise FrameError(f"bad frame end at offset {pos} (type {ftype}, size {size})")
            if ftype == FRAME_METHOD:
                m = _U32_UNPACK(buf, pos + 7)[0]
                if m == cmeth:
                    counted += 1
                    self.last_msg = pos
                    if not want and (self.layout is None or self._relearn):
                        self._relearn = False
                        self._learn(pos)
                else:
                    self.others.append((ch, m, bytes(buf[pos + 11:fe - 1])))
            elif ftype == FRAME_HEADER:
                self._first_body = True
            elif ftype == FRAME_BODY:
                if want and self._first_body and size >= 8:
                    self.stamps.append(int.from_bytes(buf[pos + 7:pos + 15], "big"))
                self._first_body = False
            elif ftype == FRAME_HEARTBEAT:
                self.others.append((0, 0, b""))
            pos = fe
        self.pos = pos
        self.count += counted
        return counted

    # -- reading fields of the last counted message --
    def deliver_tag(self, pos: int) -> int:
        """delivery tag of the basic.deliver method frame at pos"""
        buf = self.buf
        ctag_len = buf[pos + 11]
        o = pos + 12 + ctag_len
        return int.from_bytes(buf[o:o + 8], "big")

    def body_stamp(self, pos: int) -> int:
        """first 8 body bytes of the message at pos, 0 when not (completely) in the buffer"""
        buf, end = self.buf, self.end
        p = pos + int.from_bytes(buf[pos + 3:pos + 7], "big") + 8
        if p + 8 > end:
            return 0
        p += int.from_bytes(buf[p + 3:p + 7], "big") + 8
        if p + 15 > end or buf[p] != FRAME_BODY:
            return 0
        return int.from_bytes(buf[p + 7:p + 15], "big")


def parse_ack(payload: bytes) -> tuple[int, bool]:
    """basic.ack / basic.nack payload (after class/method): tag, multiple"""
    return _U64.unpack_from(payload, 0)[0], bool(payload[8] & 1)


def parse_close(payload: bytes) -> tuple[int, str]:
    """connection.close / channel.close payload (after class/method): reply code, text"""
    code = int.from_bytes(payload[0:2], "big")
    n = payload[2]
    return code, payload[3:3 + n].decode(errors="replace")
