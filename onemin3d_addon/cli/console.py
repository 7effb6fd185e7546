"""Progress on stderr (a bar on a terminal, else one line per stage change) and Ctrl-C handling; bpy-free."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .inputs import Item

log = logging.getLogger("onemin3d.image_to_3d")

# --- console -------------------------------------------------------------------------------------


class Console:
    """Progress on stderr: a bar on a terminal, else one line per stage change per image."""

    def __init__(self, total: int, *, quiet: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.quiet = total, quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.started = time.monotonic()
        self.fraction: dict[int, float] = {}
        self.current: dict[int, str] = {}
        self.done = self.failed = 0
        self._drawn = 0.0
        self._bar_visible = False
        self._encoding = getattr(self.stream, "encoding", None) or "utf-8"
        self._block = "█" if self._encodable("█") else "#"

    # -- events
    def stage(self, item: Item, stage: str, fraction: float = 0.0) -> None:
        changed = self.current.get(item.index) != f"{item.label}: {stage}"
        self.current[item.index] = f"{item.label}: {stage}"
        self.fraction[item.index] = _overall_fraction(stage, fraction)
        if self.quiet:
            return
        if self.tty:
            self.draw(force=changed)
        elif changed:
            self._line(f"{self.counter(item)} {item.label}: {stage}")

    def finished(self, item: Item) -> None:
        self.current.pop(item.index, None)
        self.fraction[item.index] = 1.0
        if item.status == "failed":
            self.failed += 1
            self.message(f"{self.counter(item)} {item.label}: FAILED at {item.stage}: {item.error}",
                         error=True)
        elif item.status == "interrupted":
            self.message(f"{self.counter(item)} {item.label}: interrupted at {item.stage}")
        elif item.status in ("converted", "skipped"):
            self.done += 1
            if not self.quiet:
                what = {"result": "done (result from the result folder)",
                        "generation": "done (earlier generation fetched, none started)"}.get(
                    item.resumed_from or "", "done")
                if item.status == "skipped":
                    what = "skipped (already done)"
                took = ""
                if item.status == "converted" and item.started is not None and item.finished is not None:
                    took = f" in {item.finished - item.started:.1f} s"
                target = item.blend_file.name if item.blend_file else ""
                self.message(f"{self.counter(item)} {item.label}: {what}{took}"
                             f"{' → ' + target if target else ''}")
        if self.tty:
            self.draw(force=True)

    def message(self, text: str, *, error: bool = False) -> None:
        if self.quiet and not error:
            return
        self._clear()
        self._line(text)
        if self.tty:
            self.draw(force=True)

    def tick(self) -> None:
        if self.tty and time.monotonic() - self._drawn > 0.5:
            self.draw(force=True)

    def close(self) -> None:
        self._clear()

    # -- drawing
    def counter(self, item: Item) -> str:
        width = len(str(self.total))
        return f"[{item.index + 1:>{width}}/{self.total}]"

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        cols = shutil.get_terminal_size((100, 20)).columns
        frac = sum(self.fraction.values()) / max(self.total, 1)
        bar_w = max(10, min(30, cols // 4))
        filled = int(round(frac * bar_w))
        elapsed = int(now - self.started)
        head = (f"{frac * 100:3.0f}% |{self._block * filled}{' ' * (bar_w - filled)}| "
                f"{self.done + self.failed}/{self.total} "
                f"[{elapsed // 60:d}:{elapsed % 60:02d}]")
        if self.failed:
            head += f" {self.failed} failed"
        tail = ""
        if self.current:
            tail = " " + "; ".join(list(self.current.values())[:3])
        text = self._safe(head + tail)[: cols - 1]
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._bar_visible = True

    def _clear(self) -> None:
        if self._bar_visible:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._bar_visible = False

    def _line(self, text: str) -> None:
        self.stream.write(self._safe(text) + "\n")
        self.stream.flush()

    def _encodable(self, text: str) -> bool:
        try:
            text.encode(self._encoding)
        except (UnicodeEncodeError, LookupError):
            return False
        return True

    def _safe(self, text: str) -> str:
        """`text` as the stream can print it (a Windows console may not take "…" or "×")."""
        if self._encodable(text):
            return text
        return text.encode(self._encoding, errors="replace").decode(self._encoding, errors="replace")


_STAGE_ORDER = ("queued", "prepare", "upload", "generate", "poll", "download", "import", "save",
                "export", "render")


def _overall_fraction(stage: str, fraction: float) -> float:
    try:
        i = _STAGE_ORDER.index(stage)
    except ValueError:
        return 0.0
    return min(1.0, (i + max(0.0, min(1.0, fraction))) / len(_STAGE_ORDER))


# --- the batch -----------------------------------------------------------------------------------


class Interrupt:
    """Ctrl-C once: cancel the running jobs and save what finished. Twice: stop at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
