"""The tests' TCP proxy (tests/_proxy.py), against a local echo server: each cut does what
its table says, and restore() brings the same address back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests._proxy import CutMode, TcpProxy


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server, TcpProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as p:
        yield p


_clients: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """The clients' ends of the connections are closed after each test (on its loop)."""
    yield
    while _clients:
        _clients.pop().close()


async def _connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    _clients.append(writer)
    return reader, writer


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes = b"ping") -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 5)


async def _ends(reader: asyncio.StreamReader) -> type[BaseException] | None:
    """How the peer ended the connection: the error of a reset, None for a clean close."""
    try:
        data = await asyncio.wait_for(reader.read(1024), 5)
    except ConnectionResetError:
        return ConnectionResetError
    assert data == b""
    return None


async def test_forwards_both_ways_and_keeps_its_port(proxy: TcpProxy) -> None:
    assert proxy.port
    reader, writer = await _connect(proxy)
    assert await _echo(reader, writer) == b"ping"
    assert proxy.open_connections == 1


async def test_refuse_resets_open_connections_and_refuses_new_ones(proxy: TcpProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _echo(reader, writer) == b"ping"
    await proxy.cut(CutMode.REFUSE)
    assert proxy.mode is CutMode.REFUSE and proxy.open_connections == 0
    assert await _ends(reader) is ConnectionResetError
    with pytest.raises(ConnectionRefusedError):
        await _connect(proxy)
    port = proxy.port
    await proxy.restore()
    assert proxy.port == port and proxy.mode is None
    assert await _echo(*await _connect(proxy)) == b"ping"


@pytest.mark.parametrize(("mode", "ending"), [(CutMode.RESET, ConnectionResetError), (CutMode.CLOSE, None)])
async def test_reset_and_close_end_open_and_new_connections(
    proxy: TcpProxy, mode: CutMode, ending: type[BaseException] | None
) -> None:
    reader, writer = await _connect(proxy)
    assert await _echo(reader, writer) == b"ping"
    await proxy.cut(mode)
    assert await _ends(reader) is ending
    new_reader, _ = await _connect(proxy)  # accepted...
    assert await _ends(new_reader) is ending  # ...and ended at once
    await proxy.restore()
    assert await _echo(*await _connect(proxy)) == b"ping"


async def test_a_black_hole_holds_everything_until_restored(proxy: TcpProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _echo(reader, writer) == b"ping"
    await proxy.cut(CutMode.BLACKHOLE)
    writer.write(b"held")
    new_reader, new_writer = await _connect(proxy)  # accepted, never answered
    new_writer.write(b"new")
    with pytest.raises(TimeoutError):  # proving an absence takes a bounded wait
        await asyncio.wait_for(reader.read(1), 0.2)
    assert proxy.open_connections == 2
    await proxy.restore()  # the partition heals: what was held flows on
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
    assert await asyncio.wait_for(new_reader.readexactly(3), 5) == b"new"


async def test_a_cut_can_change_kind_and_close_ends_everything(proxy: TcpProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _echo(reader, writer) == b"ping"
    await proxy.cut(CutMode.BLACKHOLE)
    await proxy.cut(CutMode.REFUSE)  # the silent connection is now reset
    assert await _ends(reader) is ConnectionResetError
    await proxy.cut(CutMode.RESET)  # listening again, to reset what comes
    assert await _ends((await _connect(proxy))[0]) is ConnectionResetError
    await proxy.restore()
    held = await _connect(proxy)
    assert await _echo(*held) == b"ping"
    await proxy.close()
    await proxy.close()
    assert await _ends(held[0]) is ConnectionResetError
    with pytest.raises(ConnectionRefusedError):
        await _connect(proxy)
    with pytest.raises(RuntimeError, match="closed"):
        await proxy.restore()


def test_url_points_at_the_proxy() -> None:
    proxy = TcpProxy("db.example", 5432)
    proxy.port = 6000
    assert proxy.url("postgresql://u:p%40ss@db.example:5432/jobs?schema=s") == (
        "postgresql://u:p%40ss@127.0.0.1:6000/jobs?schema=s"
    )
    assert proxy.url("postgresql://db.example/jobs") == "postgresql://127.0.0.1:6000/jobs"
