"""A virtual clock for the replay engine, so that pacing tests take virtual seconds, not real ones.

The engine takes a clock (replay.clock.Clock): monotonic() and an async sleep(). This one's time
stands still while anything of the engine can still run, and moves only when every coroutine
waits for a clock sleep: then it jumps to the earliest wake-up (auto), or by what a test thread
asks with advance() (manual, for a run that waits while paused). A request sent through
transport() holds time still until its answer is back, so it arrives at the virtual time it
was sent: a test server timestamps its requests with monotonic().
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

import httpx
from httpx_aiohttp import AiohttpTransport

from eventlens.client import tls_context


class VirtualClock:
    """Virtual monotonic seconds from 0 for replay sessions, one after another."""

    SETTLE = 8  # event loop turns that let what is ready run before time moves

    def __init__(self, *, auto: bool = True) -> None:
        self.now = 0.0
        self.auto = auto
        self.in_flight = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: asyncio.Task[None] | None = None

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        loop = self._bind()
        # At least the next representable instant: a wait of 1e-17 s must still end.
        wake = max(self.now + seconds, math.nextafter(self.now, math.inf))
        future = loop.create_future()
        heapq.heappush(self._sleepers, (wake, next(self._order), future))
        if self.auto and (self._driver is None or self._driver.done()):
            self._driver = loop.create_task(self._run_forward())
        await future

    def advance(self, seconds: float) -> None:
        """Manual mode, from a thread other than the engine's: once the requests in flight are
        answered, let `seconds` pass. The waits due by then end in order, and what each wakes
        runs (and may wait again) before time moves on; a request it starts may still be on its
        way when this returns."""
        target = self.now + seconds
        loop = self._loop
        if loop is None or not loop.is_running():  # no session is running: nothing waits
            self.now = target
            return
        asyncio.run_coroutine_threadsafe(self._forward_to(target), loop).result(timeout=60)

    def spend(self, seconds: float) -> None:
        """Time passes while some work runs, a slow read say (from any thread, while no session
        waits on the clock)."""
        self.now += seconds

    def transport(self) -> httpx.AsyncBaseTransport:
        """The engine's transport (aiohttp), holding time still while a request is answered."""
        return _HeldTransport(self, AiohttpTransport(verify=tls_context()))

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop; a new session's loop drops what the ended one was waiting for."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._sleepers, self._driver = loop, [], None
        return loop

    async def _run_forward(self) -> None:
        while True:
            await self._quiet()
            if not self._sleepers:
                return
            self._wake_next()

    async def _forward_to(self, target: float) -> None:
        await self._quiet()
        while self._sleepers and self._sleepers[0][0] <= target:
            self._wake_next()
            await self._turns()
        self.now = max(self.now, target)

    async def _turns(self) -> None:
        """Let the coroutines that are ready run, and those they wake."""
        for _ in range(self.SETTLE):
            await asyncio.sleep(0)

    async def _quiet(self) -> None:
        """_turns until no request is in flight either."""
        await self._turns()
        while self.in_flight:
            await asyncio.sleep(0.001)  # real time: an answer is on its way
            await self._turns()

    def _wake_next(self) -> None:
        self.now = max(self.now, self._sleepers[0][0])
        while self._sleepers and self._sleepers[0][0] <= self.now:
            future = heapq.heappop(self._sleepers)[2]
            if not future.done():  # a cancelled wait has nothing to wake
                future.set_result(None)


class _HeldTransport(httpx.AsyncBaseTransport):
    """A transport during whose requests (answer read included) the clock stands still."""

    def __init__(self, clock: VirtualClock, inner: httpx.AsyncBaseTransport) -> None:
        self.clock = clock
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.clock._bind()
        self.clock.in_flight += 1
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.clock.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()
