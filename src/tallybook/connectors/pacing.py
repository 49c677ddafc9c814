"""Client-side pacing for providers with a documented request rate (Cursor: 20 requests a minute).

`PacedTransport` wraps any httpx transport and waits before a request that would make more than
`limit` requests in any `window` seconds, so a sync stays under the provider's limit instead of meeting
429s; retries go through it too. A 429 that still comes (another client on the same key) is left to
`ProviderClient`, which honours `retry-after`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import httpx


class Pacer:
    """At most `limit` requests in any `window` seconds, as the server counts them.

    A slot is held from `wait()` until `window` seconds after `done()`: the server saw the request
    arrive at some moment before its answer came back, so counting from the answer never undercounts
    (counting from the start did: a slow answer let the next request in early)."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a pace needs limit >= 1 and window > 0")
        self.limit, self.window = limit, window
        self.clock, self.sleep = clock, sleep
        self.waited = 0.0  # seconds spent waiting, for progress messages and tests
        self._ends: deque[float] = deque()  # when each of the last `limit` requests was answered
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            while self._ends and self._ends[0] <= now - self.window:
                self._ends.popleft()
            if len(self._ends) >= self.limit:
                pause = self._ends[0] + self.window - now
                if pause > 0:
                    self.waited += pause
                    self.sleep(pause)
                self._ends.popleft()

    def done(self) -> None:
        with self._lock:
            self._ends.append(self.clock())
            while len(self._ends) > self.limit:
                self._ends.popleft()


class PacedTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, pacer: Pacer) -> None:
        self.inner, self.pacer = inner, pacer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.pacer.wait()
        try:
            return self.inner.handle_request(request)
        finally:
            self.pacer.done()

    def close(self) -> None:
        self.inner.close()
