"""Test clients for the STOMP listener: a raw-socket one that sends exact bytes and reads whole
frames back (independent of the broker's own codec), and a queue-backed stomp.py listener whose
waits all have deadlines."""

from __future__ import annotations

import queue
import socket
import time

import stomp

TIMEOUT = 10.0


class RawStomp:
    """A STOMP connection over a plain socket: ``send`` bytes, ``frames`` reads parsed frames."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, *extra: str, login: str = "guest", passcode: str = "guest") -> tuple:
        headers = "".join(f"{h}\n" for h in ("accept-version:1.2", f"login:{login}",
                                              f"passcode:{passcode}", *extra))
        self.send(f"CONNECT\n{headers}\n".encode() + b"\x00")
        return self.frame()

    def _parse_one(self):
        buf = self.buf.lstrip(b"\r\n")
        head_end = buf.find(b"\n\n")
        if head_end < 0:
            return None
        lines = buf[:head_end].decode("utf-8").split("\n")
        command, headers = lines[0], []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value))
        length = next((int(v) for k, v in headers if k == "content-length"), None)
        start = head_end + 2
        if length is None:
            end = buf.find(b"\x00", start)
            if end < 0:
                return None
        else:
            end = start + length
            if len(buf) <= end:
                return None
            assert buf[end] == 0, "frame body not terminated by NUL"
        self.buf = buf[end + 1:]
        return command, headers, buf[start:end]

    def frame(self, timeout: float = TIMEOUT):
        """The next frame as (command, [(name, value)...], body), or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse_one()
            if parsed is not None:
                return parsed
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete frame within {timeout}s; have {self.buf!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
            self.buf += data

    def frames(self, count: int, timeout: float = TIMEOUT) -> list:
        """``count`` frames, fewer if the connection ends first (then None ends the list)."""
        out = []
        for _ in range(count):
            frame = self.frame(timeout)
            out.append(frame)
            if frame is None:
                break
        return out

    def wait_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Read until the server closes; returns what arrived meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("connection still open")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
            self.buf += data
        return self.buf

    def close(self) -> None:
        self.sock.close()


def headers_of(frame) -> dict:
    return dict(frame[1])


class Events(stomp.ConnectionListener):
    """Everything a stomp.py connection receives, in queues waited on with deadlines."""

    def __init__(self):
        self.messages: queue.Queue = queue.Queue()
        self.receipts: queue.Queue = queue.Queue()
        self.errors: queue.Queue = queue.Queue()
        self.heartbeats = 0
        self.disconnected = False

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame):
        self.errors.put(frame)

    def on_heartbeat(self):
        self.heartbeats += 1

    def on_disconnected(self):
        self.disconnected = True

    def message(self, timeout: float = TIMEOUT):
        return self.messages.get(timeout=timeout)

    def receipt(self, timeout: float = TIMEOUT) -> str:
        return self.receipts.get(timeout=timeout)

    def error(self, timeout: float = TIMEOUT):
        return self.errors.get(timeout=timeout)

    def no_message(self, within: float = 0.3) -> bool:
        """True when no message arrives in ``within`` seconds (after a receipt proved that
        everything before it was handled)."""
        try:
            self.messages.get(timeout=within)
        except queue.Empty:
            return True
        return False


def open_client(port: int, version: str = "1.2", heartbeats=(0, 0), **connect) -> tuple:
    """A connected stomp.py connection and its :class:`Events`."""
    cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
    # stomp.py names the server host as the vhost unless told: RabbitMQ refuses that too.
    kwargs = {"vhost": "/"} if version == "1.0" else {"heartbeats": heartbeats, "vhost": "/"}
    conn = cls([("127.0.0.1", port)], **kwargs)
    events = Events()
    conn.set_listener("events", events)
    conn.connect(connect.pop("username", "guest"), connect.pop("passcode", "guest"), wait=True, **connect)
    return conn, events
