"""Client-side pacing for providers with a documented request rate (Cursor: 20 requests a minute).

`PacedTransport` wraps any httpx transport and waits before a request that would exceed `limit`
requests in any `window` seconds, so a sync stays under the provider's limit instead of meeting
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
    """At most `limit` starts in any `window` seconds: `wait()` sleeps until the next start is allowed."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a pace needs limit >= 1 and window > 0")
        self.limit, self.window = limit, window
        self.clock, self.sleep = clock, sleep
        self.waited = 0.0  # seconds spent waiting, for progress messages and tests
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            if len(self._starts) >= self.limit:
                pause = self._starts[0] + self.window - now
                if pause > 0:
                    self.waited += pause
                    self.sleep(pause)
                now = self.clock()
                self._starts.popleft()
            self._starts.append(now)


class PacedTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, pacer: Pacer) -> None:
        self.inner, self.pacer = inner, pacer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.pacer.wait()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
