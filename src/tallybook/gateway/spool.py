"""The gateway's durable event log: UsageEvents appended to local files, fsynced in small groups.

The hot path makes no database round trip (DESIGN.md, Scale): `await spool.append(event)` returns
once the event's line is on disk, and `gateway.flusher` moves the lines into the ledger later.

    spool = Spool(Path("/var/lib/tallybook/spool"))
    await spool.append(event)        # written and fsynced when this returns
    spool.append_sync(event)         # the same, for code without an event loop
    await spool.close()

Group commit: one writer thread takes every line waiting (up to `max_batch`, lingering at most
`fsync_interval` seconds for company), writes them with one `write` and one `fdatasync`, and only
then wakes the callers. Under load many requests share one fsync; alone, a request waits for one.

Files: `events-<pid>-<n>.jsonl`, one `UsageEvent.to_json()` a line, a new file after
`segment_bytes`. The writer holds an exclusive `flock` on the file it is appending to, for as long
as it may append; the lock dies with the process (even `kill -9`), so a file nobody holds is
complete and a flusher may consume and delete it. A line without its newline is a write the
process did not finish: it was never acknowledged, and readers skip it. Several processes may
share one directory: each writes only files it created. The directory must be on a local file
system (flock and fdatasync are not to be trusted on NFS).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tallybook.errors import SpoolError
from tallybook.gateway.events import UsageEvent

SEGMENT_PREFIX = "events-"
SEGMENT_SUFFIX = ".jsonl"
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class _Pending:
    line: bytes
    enqueued: float
    waiter: asyncio.Future[None] | concurrent.futures.Future[None]
    loop: asyncio.AbstractEventLoop | None  # None: a sync caller's concurrent future


class Spool:
    """An append-only, group-committed event log in `directory`; one writer thread per instance."""

    def __init__(self, directory: Path, *, fsync_interval: float = 0.002, max_batch: int = 512,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync_interval = fsync_interval
        self.max_batch = max_batch
        self.segment_bytes = segment_bytes
        self._pending: deque[_Pending] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._next = 0
        self._thread = threading.Thread(target=self._run, name="tallybook-spool", daemon=True)
        self._thread.start()

    @property
    def segment(self) -> Path | None:
        """The file being appended to, if one is open."""
        return self._path

    async def append(self, event: UsageEvent) -> None:
        """Return once the event's line is written and fsynced; raise SpoolError if it cannot be."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._put(_Pending((event.to_json() + "\n").encode(), time.monotonic(), waiter, loop))
        await waiter

    def append_sync(self, event: UsageEvent) -> None:
        """`append` for code without an event loop: blocks until the line is on disk."""
        waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put(_Pending((event.to_json() + "\n").encode(), time.monotonic(), waiter, None))
        waiter.result()

    def _put(self, item: _Pending) -> None:
        with self._wake:
            if self._closing:
                raise SpoolError("The spool is closed: events can no longer be appended to it.")
            self._pending.append(item)
            self._wake.notify()

    async def close(self) -> None:
        """Write what is pending, release the open segment (a flusher may then take it) and stop."""
        await asyncio.get_running_loop().run_in_executor(None, self.close_sync)

    def close_sync(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                break
            try:
                self._write(b"".join(p.line for p in batch))
            except Exception as exc:  # a caller must never wait for a batch that will not come
                self._fail(batch, SpoolError(f"Cannot write usage events to {self.directory}: {exc}; free disk "
                                             "space or make TALLYBOOK_GATEWAY_SPOOL_DIR writable."))
            else:
                self._done(batch)
        self._release()

    def _take(self) -> list[_Pending] | None:
        """The next group: everything pending up to max_batch, once the oldest has lingered enough."""
        with self._wake:
            while not self._pending:
                if self._closing:
                    return None
                self._wake.wait()
            if not self._closing and len(self._pending) < self.max_batch:
                # Wait for company, but never keep the oldest line longer than fsync_interval.
                deadline = self._pending[0].enqueued + self.fsync_interval
                while len(self._pending) < self.max_batch and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
            count = min(len(self._pending), self.max_batch)
            return [self._pending.popleft() for _ in range(count)]

    def _write(self, data: bytes) -> None:
        fd = self._fd if self._fd is not None else self._open()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        except OSError:
            # A partial line would glue itself to the next one: cut the file back to its last whole
            # line, and if even that fails start a new segment (readers skip a broken line).
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                self._release()
            raise
        self._size += len(data)
        if self._size >= self.segment_bytes:
            self._release()

    def _open(self) -> int:
        """Create and lock this process's next segment, and make its name durable."""
        pid = os.getpid()
        while True:
            path = self.directory / f"{SEGMENT_PREFIX}{pid}-{self._next}{SEGMENT_SUFFIX}"
            self._next += 1
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
            except FileExistsError:  # left by an earlier process with the same pid
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A flusher may have found the new, unlocked, empty file and deleted it before we locked it.
            if os.fstat(fd).st_nlink == 0:
                os.close(fd)
                continue
            _fsync_directory(self.directory)
            self._fd, self._path, self._size = fd, path, 0
            return fd

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd, self._path, self._size = None, None, 0

    @staticmethod
    def _done(batch: list[_Pending]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for p in batch:
            if p.loop is None:
                p.waiter.set_result(None)  # type: ignore[arg-type]
            else:
                by_loop.setdefault(p.loop, []).append(p.waiter)  # type: ignore[arg-type]
        for loop, waiters in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, waiters, None)

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for p in batch:
            if p.loop is None:
                p.waiter.set_exception(error)
            else:
                by_loop.setdefault(p.loop, []).append(p.waiter)  # type: ignore[arg-type]
        for loop, waiters in by_loop.items():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiters, error)


def _resolve(waiters: list[asyncio.Future[None]], error: Exception | None) -> None:
    for waiter in waiters:
        if waiter.done():  # the caller was cancelled; its line is on disk all the same
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading, for the flusher -----------------------------------------------------------------------

def segment_owner(path: Path) -> tuple[int, int] | None:
    """(pid, n) from a segment's name, or None when the name is not a segment's."""
    name = path.name
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    pid, _, n = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)].partition("-")
    return (int(pid), int(n)) if pid.isdigit() and n.isdigit() else None


def segments(directory: Path) -> list[Path]:
    """Every segment in `directory`, oldest first per process (names sort by pid, then number)."""
    found = [(owner, p) for p in Path(directory).glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")
             if (owner := segment_owner(p)) is not None]
    return [p for _, p in sorted(found)]


def try_lock(fd: int) -> bool:
    """Take the segment's flock if no writer holds it: then it is complete, and stays so."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def complete_lines(data: bytes) -> tuple[list[bytes], int]:
    """The whole lines in `data` and the bytes they span; a torn last line is left out."""
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end
