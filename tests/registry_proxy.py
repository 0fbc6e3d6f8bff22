"""A TCP proxy in front of a test registry that interrupts transfers at a chosen byte, whatever the
machine's speed: downloads held back after ``hold_after`` bytes have gone to the client (``held`` is
set then; ``hold_after = None`` passes everything again), uploads cut once after ``cut_after`` bytes
have gone to the registry (``cut`` is set; the connection is closed). Otherwise it relays both ways,
and a connection that either side closes is closed on the other side too."""

from __future__ import annotations

import asyncio
import contextlib


class RegistryProxy:
    def __init__(self, upstream_port: int, *, hold_after: int | None = None, cut_after: int | None = None) -> None:
        self.upstream_port, self.hold_after, self.cut_after = upstream_port, hold_after, cut_after
        self.to_client = 0
        self.to_registry = 0
        self.held = asyncio.Event()
        self.cut = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()

    def drop(self) -> None:
        """Close every relayed connection (what the clients see when the registry dies)."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]

        async def upstream() -> None:
            while data := await reader.read(1 << 16):
                if self.cut_after is not None and not self.cut.is_set() and self.to_registry + len(data) >= self.cut_after:
                    up_writer.write(data[: self.cut_after - self.to_registry])
                    await up_writer.drain()
                    self.cut.set()
                    raise ConnectionResetError("cut")
                self.to_registry += len(data)
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(1 << 16):
                if self.hold_after is not None:
                    data = data[: max(0, self.hold_after - self.to_client)]
                    if not data:
                        self.held.set()
                        await asyncio.Event().wait()  # nothing more reaches the client until the connection goes
                self.to_client += len(data)
                writer.write(data)
                await writer.drain()

        relays = {asyncio.create_task(upstream()), asyncio.create_task(downstream())}
        try:
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for relay in relays:
                relay.cancel()
            await asyncio.wait(relays)
            for relay in relays:
                if not relay.cancelled():
                    with contextlib.suppress(OSError, ConnectionError):
                        relay.result()
            writer.close()
            up_writer.close()
