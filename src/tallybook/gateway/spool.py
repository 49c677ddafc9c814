"""The gateway's durable event log: UsageEvents appended to local files, fdatasynced in groups.

The hot path makes no database round trip (DESIGN.md, Scale): `await spool.append(event)` returns
once the event's line is written, and `gateway.flusher` moves the lines into the ledger later.

    spool = Spool(Path("/var/lib/tallybook/spool"))
    await spool.append(event)        # written (write(2)) when this returns; fdatasynced within ~20 ms
    spool.append_sync(event)         # the same, for code without an event loop
    await spool.close()              # fdatasyncs what is left

Two guarantees, two clocks (docs/gateway.md, "Durability"):
  - process death (`kill -9`, a crash, OOM): an event is safe once `append` returns. The line is
    in the kernel's page cache, which outlives the process; the gateway appends before it sends an
    answer's last byte (a stream's terminal event), so an answer a client completed is never lost.
  - power loss or a kernel crash: a syncer thread fdatasyncs what was written, in groups, at most
    `fsync_interval` seconds (default 0.02) after the first unsynced line. At most that window of
    acknowledged events can be lost on power loss. `sync="answer"` closes the window: `append`
    then also waits for the group fdatasync covering its line (~2-3 ms a request on a virtio disk).

The write itself is one `os.write` of one line, on the caller's thread (a page-cache copy of a few
hundred bytes, ~5-10 us: cheaper than handing it to a thread).

Files: `events-<pid>-<n>.jsonl`, one `UsageEvent.to_json()` a line, a new file after
`segment_bytes`. The spool holds an exclusive `flock` on each file until it has fdatasynced it for
the last time; the lock dies with the process (even `kill -9`), so a file nobody holds is
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
import logging
import os
import threading
import time
from pathlib import Path

from tallybook.errors import SpoolError
from tallybook.gateway.events import UsageEvent

log = logging.getLogger(__name__)
SEGMENT_PREFIX = "events-"
SEGMENT_SUFFIX = ".jsonl"
SEGMENT_BYTES = 64 * 1024 * 1024
SYNC_MODES = ("background", "answer")

Waiter = tuple[int, "asyncio.Future[None] | concurrent.futures.Future[None]", "asyncio.AbstractEventLoop | None"]


class Spool:
    """An append-only event log in `directory`: writes on the caller's thread, fdatasyncs in a thread."""

    def __init__(self, directory: Path, *, fsync_interval: float = 0.02, max_batch: int = 512,
                 segment_bytes: int = SEGMENT_BYTES, sync: str = "background",
                 rotate_seconds: float | None = None) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync is one of {', '.join(SYNC_MODES)}, not {sync!r}.")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync_interval = fsync_interval
        self.max_batch = max_batch  # `sync="answer"`: this many waiting appends start a group at once
        self.segment_bytes = segment_bytes
        # Close the open segment once it is this old, so a flusher in another process may take it.
        self.rotate_seconds = rotate_seconds
        self.wait_for_sync = sync == "answer"
        self._lock = threading.Lock()  # the open segment, its size, the counters
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._next = 0
        self._written = 0  # lines written so far
        self._synced = 0  # lines known fdatasynced
        self._dirty_since: float | None = None  # when the oldest unsynced line was written
        self._retired: list[int] = []  # rotated segments' descriptors, to fdatasync and close
        self._new_names = False  # a segment was created since the directory was last fsynced
        self._waiters: list[Waiter] = []
        self.syncs = 0  # group fdatasyncs done (for tests and the bench)
        self._thread = threading.Thread(target=self._run, name="tallybook-spool-sync", daemon=True)
        self._thread.start()

    @property
    def segment(self) -> Path | None:
        """The file being appended to, if one is open."""
        return self._path

    async def append(self, event: UsageEvent) -> None:
        """Return once the event's line is written (and, with `sync="answer"`, fdatasynced); raise
        SpoolError if it cannot be."""
        seq = self._append(event.to_json_bytes() + b"\n")
        if self.wait_for_sync:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._wait(seq, waiter, loop)
            await waiter

    def append_sync(self, event: UsageEvent) -> None:
        """`append` for code without an event loop."""
        seq = self._append(event.to_json_bytes() + b"\n")
        if self.wait_for_sync:
            waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._wait(seq, waiter, None)
            waiter.result()

    def _append(self, line: bytes) -> int:
        with self._lock:
            if self._closing:
                raise SpoolError("The spool is closed: events can no longer be appended to it.")
            try:
                self._write(line)
            except OSError as exc:
                raise SpoolError(f"Cannot write usage events to {self.directory}: {exc}; free disk space or "
                                 "make TALLYBOOK_GATEWAY_SPOOL_DIR writable.") from None
            self._written += 1
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
                self._wake.notify()
            return self._written

    def _wait(self, seq: int, waiter: asyncio.Future[None] | concurrent.futures.Future[None],
              loop: asyncio.AbstractEventLoop | None) -> None:
        with self._lock:
            if seq <= self._synced:
                waiter.set_result(None)
                return
            self._waiters.append((seq, waiter, loop))
            if len(self._waiters) >= self.max_batch:
                self._wake.notify()

    async def close(self) -> None:
        """fdatasync what is written, release the open segment (a flusher may then take it) and stop."""
        await asyncio.get_running_loop().run_in_executor(None, self.close_sync)

    def close_sync(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()

    # --- writing (the caller's thread, under the lock) ------------------------------------------

    def _write(self, data: bytes) -> None:
        fd = self._fd if self._fd is not None else self._open()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            # A partial line would glue itself to the next one: cut the file back to its last whole
            # line, and if even that fails start a new segment (readers skip a broken line).
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                self._retire()
            raise
        self._size += len(data)
        if self._size >= self.segment_bytes:
            self._retire()

    def _open(self) -> int:
        """Create and lock this process's next segment (its name is made durable with the next sync)."""
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
            self._fd, self._path, self._size = fd, path, 0
            self._opened_at = time.monotonic()
            self._new_names = True
            return fd

    def _retire(self) -> None:
        """Stop appending to the open segment; the syncer fdatasyncs and closes it (dropping its flock)."""
        if self._fd is not None:
            self._retired.append(self._fd)
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
            self._wake.notify()
        self._fd, self._path, self._size = None, None, 0

    # --- the syncer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._dirty_since is None and not self._closing:
                    self._wake.wait(self._rotate_due())
                    if self._rotate_due() == 0:
                        self._retire()
                if not self._closing:  # linger for company, but never past fsync_interval
                    deadline = (self._dirty_since or 0) + self.fsync_interval
                    while not self._closing and len(self._waiters) < self.max_batch:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._wake.wait(left)
                closing = self._closing
                if closing or self._rotate_due() == 0:
                    self._retire()
                fds = [*self._retired, *([self._fd] if self._fd is not None else [])]
                retired, self._retired = self._retired, []
                target, new_names = self._written, self._new_names
                self._dirty_since, self._new_names = None, False
            error: Exception | None = None
            try:
                for fd in fds:
                    os.fdatasync(fd)
                if new_names:
                    _fsync_directory(self.directory)
            except OSError as exc:  # the lines are written (a crash of the process loses nothing), not synced
                error = SpoolError(f"Cannot fdatasync the gateway spool in {self.directory}: {exc}")
                log.error("%s; the events are written but not safe from a power loss", error)
            for fd in retired:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing the last descriptor drops the flock
            with self._lock:
                self.syncs += 1
                if error is None:
                    self._synced = max(self._synced, target)
                done = [w for w in self._waiters if w[0] <= target]
                self._waiters = [w for w in self._waiters if w[0] > target]
            _resolve_all(done, error)
            if closing:
                return


    def _rotate_due(self) -> float | None:
        """Seconds until the open segment is due to be closed (0: now); None: never (under the lock)."""
        if self.rotate_seconds is None or self._fd is None:
            return None
        return max(self._opened_at + self.rotate_seconds - time.monotonic(), 0.0)


def _resolve_all(done: list[Waiter], error: Exception | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for _, waiter, loop in done:
        if loop is None:
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
        else:
            by_loop.setdefault(loop, []).append(waiter)  # type: ignore[arg-type]
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
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
