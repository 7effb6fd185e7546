"""Reliability-tier helpers (imported by tests/reliability/conftest.py and the test modules): fast settings, thread baselines, datablock and file checks, and run_job().

The tier drives real jobs through `api.submit` + `api.pump()` in the bpy wheel against the local
stand-in (scripts/fake_onemin_server.py), so what it proves is what a user gets. Shared here:

* the fixtures live in conftest.py: `reliability_addon` (module scope: the add-on enabled once,
  online, with a key; each cell still gets an empty file, `fresh_file`, and its own stand-in and
  result folder), `fresh_file`, `module_photo`.
* `fast_retry()` / `fast_timeouts()` / `job_settings()`: short backoffs and timeouts, so a persistent
  fault exhausts the retry policy in well under a second instead of the user-facing ~15 s.
* `ThreadBaseline`: the live threads before a cell, ignoring the stand-in's own
  (`onemin-stand-in-*`, which the test owns); `wait_back()` says which add-on threads outlived it.
* `orphans()` / `datablock_names()`: the datablock counting of tests/blender/conftest.py (loaded
  from there, not copied: fixtures in that conftest are not visible from this folder).
* `files_under()` / `partial_files()`: what a job left in a folder (temp or .part files).
* `run_job()`: submit one job and pump it to its end, counting terminal transitions.

Test modules here are not a package: import this module by name (`import reliability_harness`),
never `conftest`, whose name every test folder shares. BLENDER_USER_RESOURCES is set by
tests/conftest.py before anything imports bpy.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_BLENDER_TESTS = ROOT / "tests" / "blender"
if str(_BLENDER_TESTS) not in sys.path:
    sys.path.insert(0, str(_BLENDER_TESTS))

import addon_harness  # noqa: E402  (needs the path above)


def _load_blender_helpers() -> Any:
    """tests/blender/conftest.py as a plain module, for its datablock-counting helpers."""
    name = "_onemin3d_blender_conftest_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _BLENDER_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_blend = _load_blender_helpers()
orphans: Callable[[], list[str]] = _blend.orphans
datablock_names: Callable[[], dict[str, set[str]]] = _blend.datablock_names
assert_unchanged: Callable[[dict[str, set[str]]], None] = _blend.assert_unchanged

make_photo = addon_harness.make_photo
prefs = addon_harness.prefs
set_online = addon_harness.set_online

#: threads the test itself owns (the stand-in's server, connection and worker threads)
STAND_IN_PREFIX = "onemin-stand-in"
#: files a job must never leave behind: the client's partial downloads, history temp files,
#: a zip's staging folder
PARTIAL_PATTERNS = (".part", ".tmp", ".onemin3d-")


def fast_retry() -> Any:
    """The retry policy's shape (attempts, Retry-After honoured, 404 retries) with tiny waits."""
    from onemin3d_addon.core.client import RetryPolicy

    return RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.04, max_retry_after=0.05, not_found_retries=2)


def fast_timeouts() -> Any:
    """Short reads (the stand-in answers polls and downloads at once), and room for a synchronous
    generation, which the stand-in computes while the request waits: on a busy machine (two test
    tiers at once) that alone passed 0.8 s and failed cells that had nothing to do with timeouts."""
    from onemin3d_addon.core.client import Timeouts

    return Timeouts(connect=1.0, generate=GENERATE_TIMEOUT, read=0.8)


#: the generation request's timeout in fast cells (a slow-headers delay at generate must outlast it)
GENERATE_TIMEOUT = 5.0


def job_settings(**overrides: Any) -> dict[str, Any]:
    """api.submit keywords for a fast cell: small relief, short timeouts and backoffs, quick polls."""
    kw: dict[str, Any] = dict(resolution=48, retry=fast_retry(), timeouts=fast_timeouts(),
                              poll_interval=0.05, poll_deadline=20.0)
    kw.update(overrides)
    return kw


# --- threads -----------------------------------------------------------------------------------


def addon_threads(exclude: set[int] | frozenset[int] = frozenset()) -> list[threading.Thread]:
    """Live threads that are neither the stand-in's nor in `exclude` (idents)."""
    return [t for t in threading.enumerate()
            if t.is_alive() and not t.name.startswith(STAND_IN_PREFIX) and t.ident not in exclude]


@dataclass
class ThreadBaseline:
    """The threads alive before a cell (the stand-in's excluded): what must be all that is left after."""

    idents: frozenset[int] = field(default_factory=lambda: frozenset(
        t.ident for t in threading.enumerate() if t.ident is not None))

    def extra(self) -> list[threading.Thread]:
        return addon_threads(set(self.idents))

    def wait_back(self, timeout: float = 3.0) -> list[str]:
        """Wait until only the baseline is left; the names of the threads that outlived `timeout`."""
        deadline = time.monotonic() + timeout
        while self.extra() and time.monotonic() < deadline:
            time.sleep(0.01)
        return [t.name for t in self.extra()]


# --- files -------------------------------------------------------------------------------------


def files_under(folder: Path) -> list[Path]:
    """Every file (and symlink) under `folder`, recursively; [] when it does not exist."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def partial_files(folder: Path) -> list[Path]:
    """Temporary or partial files under `folder` (anything a finished job must not leave)."""
    out = []
    for p in folder.rglob("*") if folder.exists() else ():
        if any(tag in p.name for tag in PARTIAL_PATTERNS):
            out.append(p)
    return sorted(out)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of everything under `folder`, for before/after diffs."""
    out: dict[str, tuple[int, int]] = {}
    if not folder.exists():
        return out
    for p in folder.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


# --- driving a job -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """One job pumped to its end."""

    job: Any
    terminal_transitions: int  # how many times the job went from not-done to done (must be 1)
    states_seen: list[str]
    seconds: float

    @property
    def state(self) -> str:
        return str(self.job.state)

    @property
    def message(self) -> str:
        return str(self.job.error_message or "")


def run_job(image: Path, *, base_url: str, result_dir: Path, timeout: float = 30.0,
            on_tick: Callable[[Any], None] | None = None, after_done: float = 0.15, **kw: Any) -> Outcome:
    """Submit one job through api.submit and pump it to its end, as the UI's timer would.

    Counts the job's terminal transitions, then keeps pumping `after_done` seconds more so that a
    second terminal event, if a bug sent one, would be applied and counted.
    """
    from onemin3d_addon import api

    started = time.monotonic()
    job = api.submit(image, base_url=base_url, result_dir=result_dir, **kw)
    states = [job.state]
    transitions = 0
    was_done = job.done
    deadline = started + timeout
    settle_until: float | None = None
    while True:
        api.pump()
        if on_tick is not None:
            on_tick(job)
        if job.state != states[-1]:
            states.append(job.state)
        if job.done and not was_done:
            transitions += 1
        if was_done and not job.done:
            states.append(f"reopened:{job.state}")
        was_done = job.done
        now = time.monotonic()
        if job.done and settle_until is None:
            settle_until = now + after_done
        if settle_until is not None and now >= settle_until:
            break
        if now > deadline:
            raise AssertionError(f"job not finished within {timeout} s: {job!r} ({job.message})")
        time.sleep(0.005)
    from onemin3d_addon.blender import runtime

    rt = runtime.peek_runtime()
    if rt is not None:
        assert rt.flush(), "history writes still pending"
    return Outcome(job, transitions, states, time.monotonic() - started)
