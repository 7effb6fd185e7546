"""JobRunner: bounded workers, one event queue, exactly one terminal event per job, no thread left behind.

The `run` callable is JobRunner's own injection point; these tests pass small functions that
behave like `pipeline.run` (report progress, honour the cancel Event, return or raise).
"""

from __future__ import annotations

import logging
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from onemin3d_addon.core.client import GenerationRecord
from onemin3d_addon.core.errors import (
    AuthError,
    Cancelled,
    ImageError,
    NetworkError,
    Onemin3DError,
    user_message,
)
from onemin3d_addon.core.jobs import Checkpointed, Done, Event, Failed, JobRunner, Progress
from onemin3d_addon.core.pipeline import Checkpoint, Request, Result

pytestmark = pytest.mark.timeout(60)

RECORD = GenerationRecord(uuid="u-1", status="SUCCESS", result_keys=("r.png",), download_url=None,
                          credit_limit=100, used_credit=10)


def request(tmp_path: Path, name: str = "a.jpg") -> Request:
    return Request(image_path=tmp_path / name, api_key="test-key-0123456789", result_dir=tmp_path / "out")


def result_for(req: Request) -> Result:
    return Result(file=req.result_dir / "r.png", kind="png", record=RECORD, source_image=req.image_path,
                  timings={})


def quick(req: Request, *, progress: Callable[[str, float, str], None], cancel: threading.Event,
          checkpoint: Callable[[Checkpoint], None], resume: Checkpoint | None) -> Result:
    for stage in ("prepare", "upload", "generate", "download"):
        progress(stage, 0.0, stage)
        if stage == "generate":
            checkpoint(Checkpoint(asset_key="k", uuid="u-1"))
        progress(stage, 1.0, stage)
    return result_for(req)


def drain(runner: JobRunner, n_terminal: int, timeout: float = 60.0) -> list[Event]:
    """Events until `n_terminal` Done/Failed arrived; fails the test on timeout (a guard, not a figure)."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, Done | Failed) for e in events) < n_terminal:
        try:
            events.append(runner.events.get(timeout=max(deadline - time.monotonic(), 0.01)))
        except queue.Empty:
            pytest.fail(f"only {len(events)} events, expected {n_terminal} terminal ones: {events}")
    return events


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("onemin3d-worker-")]


def wait_no_workers(timeout: float = 30.0) -> None:  # a guard: returns once they are gone
    deadline = time.monotonic() + timeout
    while workers() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert workers() == []


def terminal(events: list[Event], job_id: str) -> Done | Failed:
    found = [e for e in events if isinstance(e, Done | Failed) and e.job_id == job_id]
    assert len(found) == 1, found
    return found[0]


class Gate:
    """A fake run that blocks until released (or cancelled), counting how many run at once."""

    def __init__(self, *, honour_cancel: bool = True) -> None:
        self.release = threading.Event()
        self.honour_cancel = honour_cancel
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.started: list[Path] = []
        self.entered = threading.Semaphore(0)

    def __call__(self, req: Request, *, progress: Any, cancel: threading.Event, checkpoint: Any,
                 resume: Any) -> Result:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.started.append(req.image_path)
        self.entered.release()
        progress("upload", 0.5, "uploading")
        try:
            while not self.release.wait(0.005):
                if self.honour_cancel and cancel.is_set():
                    raise Cancelled("cancelled during the upload")
            return result_for(req)
        finally:
            with self.lock:
                self.now -= 1

    def wait_started(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=5)


# --- the happy path --------------------------------------------------------------------------


def test_events_arrive_in_order_and_end_with_done(tmp_path: Path) -> None:
    runner = JobRunner(max_workers=1, run=quick)
    ids = [runner.submit(request(tmp_path, f"{i}.jpg")) for i in range(3)]
    events = drain(runner, 3)
    assert [e.job_id for e in events if isinstance(e, Done)] == ids  # sequential, in submission order
    for job_id in ids:
        mine = [e for e in events if e.job_id == job_id]
        kinds = [type(e).__name__ for e in mine]
        assert kinds == ["Progress"] * 5 + ["Checkpointed"] + ["Progress"] * 3 + ["Done"]
        stages = [e.stage for e in mine if isinstance(e, Progress)]
        assert stages == ["prepare", "prepare", "upload", "upload", "generate", "generate", "download",
                          "download"]
        checkpoint = next(e for e in mine if isinstance(e, Checkpointed)).checkpoint
        assert checkpoint.uuid == "u-1"
        done = mine[-1]
        assert isinstance(done, Done) and done.result.source_image.name.endswith(".jpg")
    # with one worker, each job's events come as one block
    order = [e.job_id for e in events]
    assert order == sorted(order, key=ids.index)
    assert runner.active() == []
    wait_no_workers()


def test_submit_returns_at_once_with_a_unique_id(tmp_path: Path) -> None:
    gate = Gate()  # closed: a submit that waited for its job would never return
    runner = JobRunner(max_workers=1, run=gate)
    a = runner.submit(request(tmp_path))
    b = runner.submit(request(tmp_path), job_id="my-job")
    assert not any(isinstance(e, Done | Failed) for e in list(runner.events.queue))  # both still under way
    assert a != b and b == "my-job" and runner.active() == [a, b]
    with pytest.raises(ValueError, match="already queued"):
        runner.submit(request(tmp_path), job_id="my-job")
    gate.release.set()
    drain(runner, 2)
    assert runner.active() == []


# --- bounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_workers", [1, 2, 3])
def test_no_more_than_max_workers_run_at_once(tmp_path: Path, max_workers: int) -> None:
    gate = Gate()
    runner = JobRunner(max_workers=max_workers, run=gate)
    for i in range(6):
        runner.submit(request(tmp_path, f"{i}.jpg"))
    gate.wait_started(max_workers)
    time.sleep(0.05)  # give a wrongly started extra worker the time to show up
    assert gate.now == max_workers and len(workers()) == max_workers
    gate.release.set()
    drain(runner, 6)
    assert gate.peak == max_workers
    assert [p.name for p in gate.started][:1] == ["0.jpg"]
    if max_workers == 1:
        assert [p.name for p in gate.started] == [f"{i}.jpg" for i in range(6)]
    wait_no_workers()


def test_max_workers_changes_at_runtime(tmp_path: Path) -> None:
    gate = Gate()
    runner = JobRunner(max_workers=1, run=gate)
    for i in range(5):
        runner.submit(request(tmp_path, f"{i}.jpg"))
    gate.wait_started(1)
    runner.set_max_workers(3)
    gate.wait_started(2)
    assert gate.now == 3 and runner.max_workers == 3
    runner.set_max_workers(1)  # running jobs finish; then only one at a time
    gate.release.set()
    drain(runner, 5)
    with pytest.raises(ValueError):
        runner.set_max_workers(0)
    with pytest.raises(ValueError):
        JobRunner(max_workers=0)
    wait_no_workers()


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_a_queued_job_fails_it_at_once_and_it_never_runs(tmp_path: Path) -> None:
    gate = Gate()
    runner = JobRunner(max_workers=1, run=gate)
    first = runner.submit(request(tmp_path, "first.jpg"))
    queued = runner.submit(request(tmp_path, "queued.jpg"))
    gate.wait_started(1)
    runner.cancel(queued)
    events = drain(runner, 1)
    failed = terminal(events, queued)
    assert isinstance(failed, Failed) and isinstance(failed.error, Cancelled)
    assert user_message(failed.error) == "The job was cancelled; nothing was imported."
    assert runner.active() == [first]
    gate.release.set()
    events += drain(runner, 1)
    assert isinstance(terminal(events, first), Done)
    assert [p.name for p in gate.started] == ["first.jpg"]
    runner.cancel(queued)  # already ended: ignored, no second event
    runner.cancel("no-such-job")
    assert runner.events.empty()
    wait_no_workers()


def test_cancel_a_running_job(tmp_path: Path) -> None:
    gate = Gate()
    runner = JobRunner(max_workers=2, run=gate)
    job = runner.submit(request(tmp_path))
    other = runner.submit(request(tmp_path))
    gate.wait_started(2)
    runner.cancel(job)
    events = drain(runner, 1)
    failed = terminal(events, job)
    assert isinstance(failed, Failed) and isinstance(failed.error, Cancelled)
    assert runner.active() == [other]
    gate.release.set()
    assert isinstance(terminal(drain(runner, 1), other), Done)
    wait_no_workers()


def test_cancel_wins_over_a_result_or_error_that_arrives_after_it(tmp_path: Path) -> None:
    outcomes: dict[str, Callable[[Request], Result]] = {}

    def stubborn(req: Request, *, progress: Any, cancel: threading.Event, checkpoint: Any,
                 resume: Any) -> Result:
        progress("download", 0.5, "downloading")
        assert cancel.wait(5)
        return outcomes[req.image_path.name](req)

    def network_error(req: Request) -> Result:
        raise NetworkError("connection closed")

    outcomes = {"result.jpg": result_for, "error.jpg": network_error}
    runner = JobRunner(max_workers=2, run=stubborn)
    ids = [runner.submit(request(tmp_path, name)) for name in outcomes]
    events: list[Event] = []
    while sum(isinstance(e, Progress) for e in events) < 2:
        events.append(runner.events.get(timeout=5))
    runner.cancel_all()
    events += drain(runner, 2)
    for job_id in ids:
        failed = terminal(events, job_id)
        assert isinstance(failed, Failed) and isinstance(failed.error, Cancelled)
        assert failed.error.stage == "download"
    wait_no_workers()


# --- failures ---------------------------------------------------------------------------------


def test_our_errors_pass_through_unchanged(tmp_path: Path) -> None:
    err = AuthError("bad key", status=401)

    def failing(req: Request, **_: Any) -> Result:
        raise err

    runner = JobRunner(run=failing)
    job = runner.submit(request(tmp_path))
    failed = terminal(drain(runner, 1), job)
    assert isinstance(failed, Failed) and failed.error is err


def test_an_unexpected_exception_becomes_a_generic_failure_with_a_logged_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def buggy(req: Request, *, progress: Any, **_: Any) -> Result:
        progress("upload", 0.1, "uploading")
        raise KeyError("oops")

    runner = JobRunner(run=buggy)
    with caplog.at_level(logging.ERROR, logger="onemin3d_addon.core.jobs"):
        job = runner.submit(request(tmp_path))
        failed = terminal(drain(runner, 1), job)
        wait_no_workers()
    assert isinstance(failed, Failed) and type(failed.error) is Onemin3DError
    assert failed.error.stage == "upload"
    message = user_message(failed.error)
    assert message.startswith("An internal error stopped the job") and "system console" in message
    assert "KeyError" in (failed.error.detail or "")
    assert any("internal error in job" in r.getMessage() and r.exc_text and "KeyError" in r.exc_text
               for r in caplog.records)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # SystemExit ends its thread
def test_a_base_exception_still_ends_the_job_once_and_the_queue_goes_on(tmp_path: Path) -> None:
    def exits(req: Request, **_: Any) -> Result:
        if req.image_path.name == "exit.jpg":
            raise SystemExit(3)
        return result_for(req)

    runner = JobRunner(max_workers=1, run=exits)
    bad = runner.submit(request(tmp_path, "exit.jpg"))
    good = runner.submit(request(tmp_path, "good.jpg"))
    events = drain(runner, 2)
    failed = terminal(events, bad)
    assert isinstance(failed, Failed) and "internal error" in failed.error.message
    assert isinstance(terminal(events, good), Done)
    wait_no_workers()


def test_default_run_is_the_real_pipeline(tmp_path: Path) -> None:
    runner = JobRunner()
    job = runner.submit(request(tmp_path, "missing.jpg"))  # fails in "prepare": no request is sent
    events = drain(runner, 1)
    failed = terminal(events, job)
    assert isinstance(failed, Failed) and isinstance(failed.error, ImageError)
    assert failed.error.stage == "prepare" and "does not exist" in failed.error.message
    wait_no_workers()


def test_importing_jobs_does_not_import_the_http_stack() -> None:
    code = "import sys, onemin3d_addon.core.jobs; print('requests' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "False"


# --- journal --------------------------------------------------------------------------------


def test_checkpoints_are_journalled_on_the_worker_before_the_event(tmp_path: Path) -> None:
    seen: list[tuple[str, str | None, str]] = []

    def journal(job_id: str, cp: Checkpoint) -> None:
        seen.append((job_id, cp.uuid, threading.current_thread().name))
        if len(seen) == 2:
            raise OSError("disk full")  # must not break the job

    runner = JobRunner(max_workers=1, run=quick, journal=journal)
    a = runner.submit(request(tmp_path))
    b = runner.submit(request(tmp_path))
    events = drain(runner, 2)
    assert [(j, u) for j, u, _ in seen] == [(a, "u-1"), (b, "u-1")]
    assert all(name.startswith("onemin3d-worker-") for _, _, name in seen)
    assert isinstance(terminal(events, a), Done) and isinstance(terminal(events, b), Done)
    assert sum(isinstance(e, Checkpointed) for e in events) == 2


# --- exactly once, threads, shutdown ------------------------------------------------------------


def test_exactly_one_terminal_event_per_job_under_chaos(tmp_path: Path) -> None:
    rnd = random.Random(42)

    def chaotic(req: Request, *, progress: Any, cancel: threading.Event, checkpoint: Any,
                resume: Any) -> Result:
        roll = int(req.image_path.stem)
        for stage in ("prepare", "upload", "download"):
            if cancel.is_set():
                raise Cancelled("stopped")
            progress(stage, 0.5, stage)
            time.sleep(0.001 * (roll % 3))
        if roll % 5 == 1:
            raise NetworkError("reset")
        if roll % 7 == 2:
            raise ZeroDivisionError("bug")
        return result_for(req)

    runner = JobRunner(max_workers=4, run=chaotic)
    ids = [runner.submit(request(tmp_path, f"{i}.jpg")) for i in range(60)]
    cancelled = rnd.sample(ids, 20)
    for i, job_id in enumerate(cancelled):
        if i % 4 == 0:
            runner.set_max_workers(rnd.randint(1, 5))
        runner.cancel(job_id)
        time.sleep(0.001)
    events = drain(runner, 60, timeout=30)
    time.sleep(0.05)
    assert runner.events.empty()
    for job_id in ids:
        term = terminal(events, job_id)
        mine = [e for e in events if e.job_id == job_id]
        assert mine[-1] is term  # nothing after the terminal event
        if isinstance(term, Failed):
            assert isinstance(term.error, Onemin3DError)
    assert runner.active() == []
    wait_no_workers()


def test_threads_return_to_baseline_after_each_batch(tmp_path: Path) -> None:
    baseline = threading.active_count()
    runner = JobRunner(max_workers=4, run=quick)
    for _ in range(3):
        for i in range(8):
            runner.submit(request(tmp_path, f"{i}.jpg"))
        drain(runner, 8)
        wait_no_workers()
        assert threading.active_count() == baseline


def test_shutdown_cancels_everything_and_joins_every_worker(tmp_path: Path) -> None:
    gate = Gate()
    runner = JobRunner(max_workers=2, run=gate)
    ids = [runner.submit(request(tmp_path, f"{i}.jpg")) for i in range(4)]
    gate.wait_started(2)
    assert runner.shutdown(timeout=30.0) is True  # every worker joined: none was left to the bound
    events = drain(runner, 4)
    for job_id in ids:
        failed = terminal(events, job_id)
        assert isinstance(failed, Failed) and isinstance(failed.error, Cancelled)
    assert workers() == []
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit(request(tmp_path))


def test_shutdown_gives_up_on_a_worker_that_ignores_cancel(tmp_path: Path) -> None:
    gate = Gate(honour_cancel=False)
    runner = JobRunner(max_workers=1, run=gate)
    job = runner.submit(request(tmp_path))
    gate.wait_started(1)
    assert runner.shutdown(timeout=0.2) is False
    assert gate.now == 1 and workers(), "shutdown waited for the stuck worker instead of giving up on it"
    failed = terminal(drain(runner, 1), job)
    assert isinstance(failed, Failed) and isinstance(failed.error, Cancelled)
    gate.release.set()  # the worker finally returns a result: dropped, not a second terminal event
    wait_no_workers()
    time.sleep(0.02)
    assert runner.events.empty()
