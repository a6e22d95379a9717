"""A simulated VPS uplink: a throttling TCP proxy on 127.0.0.1 in front of the loopback sshd.

Each direction is a token bucket (32 kB deep, refilled at the link's rate) shared by every connection
through the proxy (one uplink, one downlink), followed by a fixed one-way delay: a chunk of up to 16 kB
read at ``t`` leaves the bucket once the bucket holds its size, and reaches the other side ``delay``
later. The reader waits for the bucket before reading on, so a fast sender is held back by TCP
(its socket buffers fill) as by a real bottleneck, and the proxy holds at most a bandwidth-delay product
per direction. Bytes are counted each way: what crosses the link, after any compression.

``cut_after(n)`` arms a cut: once ``n`` more client-to-server bytes have crossed, every connection
through the proxy is reset (both sides get a TCP RST), as when a laptop's Wi-Fi or the VPS's uplink drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

HOST = "127.0.0.1"
CHUNK = 16 * 1024
BURST = 32 * 1024


@dataclass
class _Direction:
    rate_bytes_s: float
    delay_s: float
    free_at: float = 0.0
    bytes: int = 0


class ThrottledLink:
    """``ThrottledLink(target_port).start()``; then connect to ``.port`` instead of the target."""

    def __init__(self, target_port: int, *, mbit_s: float = 20.0, rtt_ms: float = 40.0) -> None:
        rate = mbit_s * 1e6 / 8
        self.target_port = target_port
        self.up = _Direction(rate, rtt_ms / 2000)
        self.down = _Direction(rate, rtt_ms / 2000)
        self.port = 0
        self.cuts = 0
        self._cut_at: int | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="throttled-link", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> ThrottledLink:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, HOST, 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            self._abort_all()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def counters(self) -> tuple[int, int]:
        """Bytes that crossed (client to server, server to client) so far."""
        return self.up.bytes, self.down.bytes

    def cut_after(self, up_bytes: int | None) -> None:
        """Reset every connection once ``up_bytes`` more bytes have gone up (None disarms)."""
        self._cut_at = None if up_bytes is None else self.up.bytes + up_bytes

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        try:
            await asyncio.gather(self._pipe(client_r, server_w, self.up), self._pipe(server_r, client_w, self.down))
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: _Direction) -> None:
        """Read, wait for the bucket, then hand the chunk to ``deliver`` which writes it ``delay`` later."""
        loop = asyncio.get_running_loop()
        in_flight: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=256)

        async def deliver() -> None:
            while True:
                due, data = await in_flight.get()
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if not data:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while data := await reader.read(CHUNK):
                now = loop.time()
                # a bucket of BURST bytes: the time a late wake-up lost is made up, not lost
                way.free_at = max(now - BURST / way.rate_bytes_s, way.free_at) + len(data) / way.rate_bytes_s
                leaves = max(now, way.free_at)
                await asyncio.sleep(leaves - now)
                way.bytes += len(data)
                await in_flight.put((leaves + way.delay_s, data))
                if way is self.up and self._cut_at is not None and way.bytes >= self._cut_at:
                    self._cut_at = None
                    self.cuts += 1
                    self._abort_all()
                    return
            await in_flight.put((loop.time() + way.delay_s, b""))
            await delivering
        finally:
            delivering.cancel()
