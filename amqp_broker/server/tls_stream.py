"""The server side of one TLS connection: :class:`ssl.SSLObject` over memory buffers, on a
:class:`trio.SocketStream`.

Why not :class:`trio.SSLStream`, which does the same: two things the broker needs that it does
not do, and one it does differently.

- The alert of a failed handshake ("unknown ca", "certificate required") is sent, so the client
  can say why it was refused; SSLStream drops it, and the client sees only a close.
- The closing handshake's half-close: :meth:`send_close_notify` sends TLS's close_notify (then the
  caller sends the TCP FIN) while reading goes on until the client closes. SSLStream can only
  close outright; doing this with it took its private attributes.
- Reads: ``SSLStream.receive_some`` returns one TLS record (16 KiB) per call;
  :meth:`TLSStream.receive_some` decrypts every complete record a socket read brought, as the
  plain listener's reads batch frames. Measured behind the same TLS client (interop/bench/
  tls_compare.sh's set-up, alternating runs): the broker's CPU per message is the same either way
  (encryption dominates), throughput the same or better.

Writes from the connection's writer and from reads (TLS 1.3 sends tickets and key-update answers
after the handshake) go out under one lock, in the order OpenSSL produced them. Renegotiation is
refused (OP_NO_RENEGOTIATION on the context), so a write never waits for a read.
"""

from __future__ import annotations

import ssl

import trio

# Encrypted bytes taken from the socket per read. Larger reads (the plain listener's 256 KiB) held
# back deliveries behind longer decrypt-and-handle runs: 16-byte messages ran slower (alternating
# runs, 90-110k msg/s against 200-220k).
RECEIVE_SIZE = 1 << 16
# Plaintext asked of OpenSSL per call: one record's worth (a larger request only costs a larger
# allocation, as SSL_read returns one record at most).
RECORD_SIZE = 1 << 14


class TLSStream:
    """A TLS server connection on ``tcp``; :meth:`do_handshake` first."""

    def __init__(self, tcp: trio.SocketStream, context: ssl.SSLContext):
        self.transport_stream = tcp
        self.socket = tcp.socket
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._send_lock = trio.Lock()
        self._eof = False  # the client's close_notify, or its FIN, was read

    # -- what the broker asks of the session -----------------------------------------------------

    def getpeercert(self) -> dict | None:
        return self._ssl.getpeercert()

    def version(self) -> str | None:
        return self._ssl.version()

    def cipher(self) -> tuple | None:
        return self._ssl.cipher()

    # -- I/O ---------------------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Send what OpenSSL has written so far."""
        if not self._outgoing.pending:
            return
        async with self._send_lock:
            data = self._outgoing.read()
            if data:
                await self.transport_stream.send_all(data)

    async def do_handshake(self) -> None:
        """Run the handshake; raises :class:`trio.BrokenResourceError` (from the SSLError or the
        early EOF) when it fails, after sending OpenSSL's alert."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.transport_stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise trio.BrokenResourceError("the client closed the connection") from None
                self._incoming.write(data)
                continue
            except ssl.SSLError as exc:
                try:
                    await self._flush()  # the alert
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                raise trio.BrokenResourceError(str(exc)) from exc
            await self._flush()
            return

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of plaintext: every record already received and complete, else
        what the next socket read completes; b"" at the client's end."""
        while True:
            chunks = []
            total = 0
            try:
                while total < max_bytes:
                    chunk = self._ssl.read(min(max_bytes - total, RECORD_SIZE))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:  # close_notify
                self._eof = True
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if self._outgoing.pending:
                await self._flush()
            if chunks:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self._eof:
                return b""
            data = await self.transport_stream.receive_some(RECEIVE_SIZE)
            if not data:
                self._eof = True  # a FIN without close_notify: the end all the same
                return b""
            self._incoming.write(data)

    async def send_all(self, data) -> None:
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        await self._flush()

    async def send_close_notify(self) -> None:
        """Send close_notify without waiting for the client's: reading goes on."""
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # the client's close_notify has not come yet: the reader will see it
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        await self._flush()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()
