"""A TCP proxy for tests: put it between a client and a server, then cut the line at will.

``TcpProxy`` listens on 127.0.0.1 (a free port) and forwards every connection to a target
``host:port``, byte for byte. ``cut(mode)`` simulates an outage of the server or of the
network in one of four ways, ``restore()`` ends it:

=============  ===========================================  =============================
mode           connections already open                     new connections
=============  ===========================================  =============================
``REFUSE``     reset (RST)                                  refused: nothing listens
                                                            (``ECONNREFUSED``)
``RESET``      reset (RST)                                  accepted, then reset at once
``CLOSE``      closed (FIN)                                 accepted, then closed at once
``BLACKHOLE``  kept open, silent: bytes are held, not sent  accepted, never answered
=============  ===========================================  =============================

``REFUSE`` is a server that is down (its host up); ``RESET`` and ``CLOSE`` a server, or a
pooler in front of it, that kills what comes; ``BLACKHOLE`` a network partition: nothing
answers, nothing fails, every wait ends in its own timeout. When a black hole is restored,
what it held flows on (TCP would have retransmitted it), and the connections it accepted
meanwhile reach the target then, as a partition that heals.

Every call returns once its effect is in place (no sleeps): after ``cut()``, the open
connections are gone (or silent) and new ones get the mode's treatment; after
``restore()``, new connections reach the target again. One event loop per proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 1 << 16


class CutMode(enum.Enum):
    """How ``TcpProxy.cut()`` treats connections (see the module's table)."""

    REFUSE = "refuse"
    RESET = "reset"
    CLOSE = "close"
    BLACKHOLE = "blackhole"


class _Link:
    """One client connection and, once connected, its upstream twin."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def end(self, *, reset: bool) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _end(writer, reset=reset)


def _end(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Close a connection at once: with an RST if ``reset``, else with a FIN."""
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` until cut.

    Use as ``async with TcpProxy(host, port) as proxy:``, or ``await start()`` and
    ``await close()``.
    """

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.port = 0  # chosen by the system at start(), kept across cuts
        self.accepted = 0  # connections accepted so far, whatever became of them
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._mode: CutMode | None = None
        self._flowing = asyncio.Event()  # cleared while a black hole holds the bytes
        self._flowing.set()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()

    async def close(self) -> None:
        """Stop listening and reset every connection; safe twice."""
        self._closed = True
        await self._stop_listening(reset=True)

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- what tests call ------------------------------------------------------------------

    @property
    def mode(self) -> CutMode | None:
        """The current cut, or None while forwarding."""
        return self._mode

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def url(self, url: str) -> str:
        """``url`` (``scheme://user:pw@host:port/path?query``) with its host and port made ours."""
        parts = urlsplit(url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{self.listen_host}:{self.port}"))

    async def cut(self, mode: CutMode = CutMode.REFUSE) -> None:
        """Begin an outage (or change its kind); see the module's table."""
        if self._closed:
            raise RuntimeError("the proxy is closed")
        self._mode = mode
        if mode is CutMode.BLACKHOLE:
            self._flowing.clear()
            return
        if mode is CutMode.REFUSE:
            await self._stop_listening(reset=True)
            return
        await self._listen()  # from REFUSE: accept again, to reset or close
        await self._end_links(reset=mode is not CutMode.CLOSE)

    async def restore(self) -> None:
        """End the outage: forward again (and let what a black hole held flow on)."""
        if self._closed:
            raise RuntimeError("the proxy is closed")
        self._mode = None
        await self._listen()
        self._flowing.set()

    # -- inside ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        # The same port after a REFUSE cut: the client's URL must stay valid.
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self, *, reset: bool) -> None:
        """Stop accepting, end the open connections, then wait for the server to close.

        In that order: since Python 3.12.1, ``Server.wait_closed()`` also waits for the
        connections the server accepted, so awaited before they end it never returns.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._end_links(reset=reset)
        if server is not None:
            await server.wait_closed()

    async def _end_links(self, *, reset: bool) -> None:
        links = list(self._links)
        for link in links:
            link.end(reset=reset)
            if link.task is not None:
                link.task.cancel()
        await asyncio.gather(*(link.task for link in links if link.task is not None), return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._mode in (CutMode.REFUSE, CutMode.RESET, CutMode.CLOSE):
            _end(writer, reset=self._mode is not CutMode.CLOSE)
            return
        link = _Link(writer)
        self._links.add(link)
        link.task = asyncio.create_task(self._serve(link, reader), name="tcp-proxy-link")

    async def _serve(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        try:
            await self._flowing.wait()  # a black hole holds new connections here
            try:
                upstream_reader, link.upstream = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                _end(link.client, reset=True)  # the target is down: say so as it would
                return
            pumps = [
                asyncio.create_task(self._pump(client_reader, link.upstream)),
                asyncio.create_task(self._pump(upstream_reader, link.client)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
            link.end(reset=False)  # one side hung up: hang up the other
        finally:
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):  # a reset on either side ends the link
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()  # a black hole holds the bytes until restore()
                writer.write(data)
                await writer.drain()
