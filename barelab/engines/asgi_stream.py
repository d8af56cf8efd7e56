"""One TCP connection as the ASGI engine sees it: bytes in, bytes out, every wait bounded.

asyncio's StreamReader/StreamWriter do the buffering and TCP flow control. The engine reads
only when it needs the next request head, or when the app asks for more body, so a client
cannot push more into memory than the StreamReader's limit: the rest waits in the kernel and
TCP slows the client down. Every read takes a timeout and a *wake* future, so the server's
shutdown (or a finished response) interrupts a pending read instead of waiting for it; every
write drains with a timeout, so a client that stops reading cannot pin a task forever.

Closing follows RFC 9112 §9.6: after an error response the server half-closes, then reads and
discards for a moment before closing, so the client sees the response rather than a reset
caused by the unread bytes it already sent.
"""

from __future__ import annotations

import asyncio

# asyncio.timeout arrived in Python 3.11; on 3.10 every read takes the general path.
_timeout = getattr(asyncio, "timeout", None)

READ_SIZE = 64 * 1024
WRITE_TIMEOUT = 30.0  # seconds a client may leave our output unread before we give up
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024


class ClientDisconnected(OSError):
    """``send()`` was called on a connection the client has left (or the server closed).

    ASGI HTTP spec 2.4 (and the WebSocket spec): "If send() is called on a closed connection
    the server should raise a server-specific subclass of OSError." barelab raises this one;
    the engine treats it escaping from the app as a normal end, not as an app crash.
    """


def _address(value):
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


class Stream:
    """A connection's reader and writer with bounded waits and an external wake-up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.client = _address(writer.get_extra_info("peername"))
        self.server = _address(writer.get_extra_info("sockname"))
        self.eof = False  # the client sent FIN (or reset): nothing more will arrive
        self._shutdown = asyncio.get_running_loop().create_future()

    @property
    def closed(self) -> bool:
        """True once nothing more can be written (we closed it, or the connection died)."""
        return self.writer.transport.is_closing()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.done()

    def wake(self) -> None:
        """Interrupt every pending read on this connection: the server is stopping."""
        if not self._shutdown.done():
            self._shutdown.set_result(None)
            # Ends a read pending in the fast path below, which does not watch _shutdown.
            self.reader.feed_eof()

    async def read(self, timeout: float | None, wake: asyncio.Future | None = None):
        """The next bytes from the client.

        Returns ``b""`` at EOF, on a reset, or when woken (server shutdown or ``wake``
        resolved), and ``None`` when ``timeout`` seconds pass without data.
        """
        if self.eof or self.shutting_down or (wake is not None and wake.done()):
            return b""
        if wake is None and _timeout is not None:
            return await self._read_fast(timeout)
        read = asyncio.ensure_future(self.reader.read(READ_SIZE))
        waits = {read, self._shutdown} if wake is None else {read, self._shutdown, wake}
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()  # StreamReader.read loses no data when cancelled while waiting
        if read.done() and not read.cancelled():
            try:
                data = read.result()
            except OSError:  # ConnectionResetError and friends: the client is gone
                data = b""
            if not data:
                self.eof = True
            return data
        if self.shutting_down or (wake is not None and wake.done()):
            return b""
        return None

    async def _read_fast(self, timeout: float | None):
        # The common case (the next request head, no wake future): a timer instead of a
        # task and a wait set per read. Shutdown still ends it: wake() feeds EOF.
        try:
            async with _timeout(timeout):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            return b"" if self.shutting_down else None
        except OSError:  # ConnectionResetError and friends: the client is gone
            data = b""
        if not data:
            self.eof = True
        return data

    async def wait_woken(self, wake: asyncio.Future) -> None:
        """Wait, without reading, until ``wake`` resolves or the server stops."""
        await asyncio.wait({wake, self._shutdown}, return_when=asyncio.FIRST_COMPLETED)

    async def write(self, data: bytes, written=None, timeout: float = WRITE_TIMEOUT) -> None:
        """Write and drain (backpressure); raise ``ClientDisconnected`` if it cannot be sent.

        ``written`` is called just before the bytes go to the transport (which may send them
        at once): the server log shows a response by the time the client can have read it.
        ``timeout`` bounds the wait for a client that does not read (shorter for a last word,
        such as a WebSocket close frame, than for a response body).
        """
        if self.closed:
            raise ClientDisconnected("the client connection is closed")
        if written is not None:
            written()
        self.writer.write(data)
        transport = self.writer.transport
        if not transport.is_closing() and transport.get_write_buffer_size() == 0:
            return  # all sent at once: no backpressure to wait for, skip drain's task
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except OSError as exc:
            self.abort()
            raise ClientDisconnected(f"the client connection was lost: {exc}") from exc
        except asyncio.TimeoutError:
            self.abort()
            raise ClientDisconnected(
                f"the client did not read the response for {timeout:g}s") from None

    def close(self) -> None:
        """Close after the buffered output is flushed."""
        self.writer.close()

    def abort(self) -> None:
        """Drop the connection now, buffered output included."""
        self.writer.transport.abort()

    async def close_gracefully(self) -> None:
        """Lingering close (RFC 9112 §9.6): half-close, drain what the client still sends."""
        if self.closed:
            return
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except OSError:
            self.abort()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        discarded = 0
        while discarded < LINGER_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            data = await self.read(remaining)
            if not data:  # EOF, woken, or timed out
                break
            discarded += len(data)
        self.close()
