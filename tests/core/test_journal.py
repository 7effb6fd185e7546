"""core.journal.JournalWriter: history writes off the caller's thread, in order, flushed and stopped (bpy-free)."""

from __future__ import annotations

import threading
import time

from onemin3d_addon.core.errors import Onemin3DError
from onemin3d_addon.core.journal import JournalWriter


def test_requests_before_a_write_make_one_write_of_the_latest_state_and_flush_waits() -> None:
    state = {"a": 0}
    written: list[tuple[str, int, str]] = []
    gate = threading.Event()

    def write(key: str) -> None:
        gate.wait(5)
        writer.write_now(key, lambda: written.append((key, state[key], threading.current_thread().name)))

    writer = JournalWriter(write, on_error=lambda err: None)
    writer.persist("a")
    time.sleep(0.05)          # the thread took "a" and waits at the gate
    state["a"] = 1
    writer.persist("a")
    state["a"] = 2
    writer.persist("a")       # merged with the one before
    gate.set()
    assert writer.flush(5)
    assert [w[:2] for w in written] == [("a", 2), ("a", 2)]
    assert {w[2] for w in written} == {"onemin3d-journal"}
    assert writer.stop(5)


def test_a_failed_write_is_reported_and_counted_done() -> None:
    errors: list[Onemin3DError] = []

    def write(key: str) -> None:
        raise Onemin3DError(f"disk full for {key}")

    writer = JournalWriter(write, on_error=errors.append)
    writer.persist("b")
    assert writer.flush(5) and writer.unwritten == 0
    assert [str(e) for e in errors] == ["disk full for b"]
    assert writer.stop(5)
