"""A TCP proxy on loopback that adds a fixed latency to every request, for slow-dependency tests.

Each chunk the client sends is forwarded ``delay_s`` after it arrived, in order, like
``tc netem delay`` on the way in: every request/response round trip through it takes at
least ``delay_s`` longer, pipelined requests share one delay (as they would on a slow
link), and throughput is not capped. Replies come back at once.

    with LatencyProxy(6379, delay_s=0.2) as proxy:
        redis.Redis(port=proxy.port).ping()   # >= 0.2 s
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Self

from lab.embedded import LOOPBACK


class LatencyProxy:
    """Listen on 127.0.0.1:``port`` (free one if 0) and forward to 127.0.0.1:``target_port`` with latency."""

    def __init__(self, target_port: int, delay_s: float, port: int = 0):
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = port
        self.connections = 0
        self.chunks_delayed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> Self:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, LOOPBACK, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("latency proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(5)
        loop.close()
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def read_client() -> None:
            try:
                while data := await client_r.read(65536):
                    queue.put_nowait((time.monotonic() + self.delay_s, data))
            finally:
                queue.put_nowait(None)  # the client is gone: half-close upstream once the queue is sent

        async def send_delayed() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.chunks_delayed += 1
                up_w.write(data)
                await up_w.drain()
            up_w.write_eof()

        async def replies() -> None:
            while data := await up_r.read(65536):
                client_w.write(data)
                await client_w.drain()

        try:
            # Done when the server side hangs up (it does once we half-close) or a pump fails.
            pumps = [asyncio.ensure_future(c) for c in (read_client(), send_delayed(), replies())]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for w in (client_w, up_w):
                with contextlib.suppress(Exception):
                    w.close()
            self._tasks.discard(task)
