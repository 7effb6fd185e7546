"""bpy-free: the history's writer thread — entries are written off the main thread, so a slow disk never stalls Blender.

`persist(key)` queues a write of one entry (several requests before it runs make one write, of
the entry as it is by then); the thread "onemin3d-journal" starts on demand and ends when idle.
`write_now(key, write)` writes at once, on any thread. The writes of one entry happen one at a
time, in order. `flush()` waits until every queued write is on disk; `stop()` ends the thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from .errors import Onemin3DError


class JournalWriter:
    def __init__(self, write: Callable[[str], None], on_error: Callable[[Onemin3DError], None]) -> None:
        """`write(key)`: write the entry of `key` (through `write_now`); `on_error`: a write
        failed (on the writer thread)."""
        self._write = write
        self._on_error = on_error
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()  # None: stop
        self._pending: set[str] = set()
        self._io_locks: dict[str, threading.Lock] = {}
        self._unwritten = 0
        self._thread: threading.Thread | None = None

    @property
    def unwritten(self) -> int:
        return self._unwritten

    def persist(self, key: str) -> None:
        """Have the writer thread write the entry of `key` as it is by then."""
        with self._lock:
            if key not in self._pending:
                self._pending.add(key)
                self._unwritten += 1
                self._queue.put(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="onemin3d-journal", daemon=True)
                self._thread.start()

    def write_now(self, key: str, write: Callable[[], None]) -> None:
        """Run `write` (any thread), one write of an entry at a time."""
        with self._io_lock_for(key):
            write()

    def _io_lock_for(self, key: str) -> threading.Lock:
        with self._lock:
            lock = self._io_locks.get(key)
            if lock is None:
                lock = self._io_locks[key] = threading.Lock()
            return lock

    def _loop(self) -> None:
        while True:
            try:
                key = self._queue.get(timeout=0.2)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if key is None:
                with self._lock:
                    self._thread = None
                return
            with self._lock:
                self._pending.discard(key)
            try:
                self._write(key)
            except Onemin3DError as err:
                self._on_error(err)
            finally:
                with self._lock:
                    self._unwritten -= 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write is on disk; True if it is."""
        deadline = time.monotonic() + timeout
        while self._unwritten > 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        return self._unwritten == 0

    def stop(self, timeout: float) -> bool:
        """End the writer thread (after what is queued); True once it has ended."""
        thread = self._thread
        if thread is None:
            return True
        self._queue.put(None)
        thread.join(timeout)
        return not thread.is_alive()
