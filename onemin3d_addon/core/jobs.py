"""bpy-free, thread-safe: a bounded pool of worker threads that run jobs and report only through one event queue.

Workers never touch bpy. They report through `JobRunner.events`: `Progress` and `Checkpointed`
while a job runs, then exactly one terminal event, `Done` or `Failed`, whatever happens
(cancelled while queued or running, our errors, unexpected exceptions, a shutdown that timed out).
The main thread drains the queue (`blender/runtime.pump()`).

Workers are daemon threads named "onemin3d-worker-N", started on demand up to `max_workers`
and ended as soon as no job is waiting, so an idle runner holds no thread at all.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import Cancelled, Onemin3DError, get_logger

if TYPE_CHECKING:  # pipeline imports requests; keep importing this module cheap
    from .pipeline import Checkpoint, Request, Result

log = get_logger(__name__)

RunFn = Callable[..., "Result"]
JournalFn = Callable[[str, "Checkpoint"], None]

_INTERNAL = ("An internal error stopped the job: see the system console for the details, "
             "and report it to the add-on's developers")


@dataclass(frozen=True)
class Progress:
    job_id: str
    stage: str
    fraction: float
    message: str


@dataclass(frozen=True)
class Checkpointed:
    job_id: str
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Done:
    job_id: str
    result: Result


@dataclass(frozen=True)
class Failed:
    job_id: str
    error: Onemin3DError


Event = Progress | Checkpointed | Done | Failed


@dataclass(eq=False)
class _Job:
    id: str
    request: Request
    resume: Checkpoint | None
    cancel: threading.Event
    stage: str = "prepare"
    running: bool = False
    finished: bool = False


class JobRunner:
    """Runs `run(request, progress=, cancel=, checkpoint=, resume=)` for each submitted job.

    `run` defaults to `core.pipeline.run` (imported on first use). `journal`, when given, is
    called on the worker thread with every checkpoint *before* the `Checkpointed` event is
    queued, so a uuid or result file is on disk even if Blender dies before the next pump.

    A job cancelled while queued fails at once with `Cancelled`. A running job is asked to stop
    through its `threading.Event`; if `run` still returns a result after that, the job ends as
    `Failed(Cancelled)` all the same (the result file stays where the checkpoint said).
    """

    def __init__(self, max_workers: int = 2, run: RunFn | None = None, *,
                 journal: JournalFn | None = None) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self._run = run
        self._journal = journal
        self._lock = threading.Lock()
        self._pending: deque[_Job] = deque()
        self._jobs: dict[str, _Job] = {}  # queued or running, in submission order
        self._threads: set[threading.Thread] = set()
        self._max_workers = _check_workers(max_workers)
        self._names = itertools.count(1)
        self._closed = False

    # --- the main thread's side --------------------------------------------------------------------

    def submit(self, request: Request, *, job_id: str | None = None, resume: Checkpoint | None = None) -> str:
        """Queue a job and return its id at once; a worker starts it when one is free."""
        job = _Job(job_id or uuid.uuid4().hex, request, resume, threading.Event())
        with self._lock:
            if self._closed:
                raise RuntimeError("this JobRunner has been shut down; create a new one")
            if job.id in self._jobs:
                raise ValueError(f"a job with id {job.id!r} is already queued or running")
            self._jobs[job.id] = job
            self._pending.append(job)
            self._spawn_locked()
        return job.id

    def cancel(self, job_id: str) -> None:
        """Ask one job to stop. A queued job fails with `Cancelled` at once; unknown ids are ignored."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.cancel.set()
            if not job.running:
                self._pending.remove(job)
                self._finish_locked(job, Failed(job.id, Cancelled("The job was cancelled before it started.")))

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._jobs)
        for job_id in ids:
            self.cancel(job_id)

    def active(self) -> list[str]:
        """Ids of the jobs queued or running, oldest first."""
        with self._lock:
            return list(self._jobs)

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def set_max_workers(self, n: int) -> None:
        """Change the bound at runtime: more starts waiting jobs now; fewer lets running jobs finish."""
        with self._lock:
            self._max_workers = _check_workers(n)
            self._spawn_locked()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel every job, wait up to `timeout` seconds for the workers; True if they all ended.

        A job whose worker has not ended by then gets its terminal `Failed(Cancelled)` now, and
        anything its worker reports later is dropped. The runner accepts no new job afterwards.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            self._closed = True
        self.cancel_all()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            stuck = [job for job in self._jobs.values() if not job.finished]
            for job in stuck:
                log.warning("job %s did not stop within %.1f s of shutdown", job.id, timeout)
                self._finish_locked(job, Failed(job.id, Cancelled("The job was stopped at shutdown.")))
            return not any(t.is_alive() for t in threads)

    # --- the workers' side ---------------------------------------------------------------------------

    def _spawn_locked(self) -> None:
        running = sum(1 for job in self._jobs.values() if job.running)
        wanted = min(self._max_workers, running + len(self._pending))
        while len(self._threads) < wanted:
            thread = threading.Thread(target=self._work, name=f"onemin3d-worker-{next(self._names)}",
                                      daemon=True)
            self._threads.add(thread)
            thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._lock:
                    if not self._pending or len(self._threads) > self._max_workers:
                        return
                    job = self._pending.popleft()
                    job.running = True
                self._execute(job)
        finally:
            with self._lock:
                self._threads.discard(me)
                # a job submitted while this thread was leaving (or after an exception) still runs
                if self._pending and not self._closed:
                    self._spawn_locked()

    def _execute(self, job: _Job) -> None:
        event: Done | Failed | None = None
        try:
            run = self._resolve_run()
            if job.cancel.is_set():
                raise Cancelled("The job was cancelled before it started.")
            result = run(job.request, progress=lambda stage, fraction, message:
                         self._progress(job, stage, fraction, message),
                         cancel=job.cancel, checkpoint=lambda cp: self._checkpoint(job, cp),
                         resume=job.resume)
            event = self._cancelled(job) if job.cancel.is_set() else Done(job.id, result)
        except Cancelled as err:
            event = Failed(job.id, err)
        except Onemin3DError as err:
            # a cancel can surface as another error (a closed connection): the user asked to stop
            event = self._cancelled(job) if job.cancel.is_set() else Failed(job.id, err)
        except Exception as exc:
            log.exception("internal error in job %s (stage %s)", job.id, job.stage)
            event = Failed(job.id, self._internal(job, exc))
        finally:
            if event is None:  # SystemExit, KeyboardInterrupt... still end the job exactly once
                log.error("job %s was interrupted by a BaseException in stage %s", job.id, job.stage)
                event = Failed(job.id, self._internal(job, None))
            with self._lock:
                self._finish_locked(job, event)

    def _resolve_run(self) -> RunFn:
        if self._run is None:
            from .pipeline import run  # lazy: pipeline pulls in requests

            self._run = run
        return self._run

    def _progress(self, job: _Job, stage: str, fraction: float, message: str) -> None:
        job.stage = stage
        if not job.finished:
            self.events.put(Progress(job.id, stage, fraction, message))

    def _checkpoint(self, job: _Job, checkpoint: Checkpoint) -> None:
        if self._journal is not None:
            try:
                self._journal(job.id, checkpoint)
            except Exception:  # the job must go on: its events still reach the main thread
                log.exception("could not journal a checkpoint of job %s", job.id)
        if not job.finished:
            self.events.put(Checkpointed(job.id, checkpoint))

    @staticmethod
    def _cancelled(job: _Job) -> Failed:
        err = Cancelled(f"The job was cancelled during the {job.stage}.")
        err.stage = job.stage
        return Failed(job.id, err)

    @staticmethod
    def _internal(job: _Job, exc: BaseException | None) -> Onemin3DError:
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else None
        err = Onemin3DError(f"{_INTERNAL} (during the {job.stage}).", detail=detail)
        err.stage = job.stage
        return err

    def _finish_locked(self, job: _Job, event: Done | Failed) -> None:
        """Queue the job's one terminal event; later attempts are dropped."""
        if job.finished:
            log.debug("dropping a second terminal event for job %s: %r", job.id, event)
            return
        job.finished = True
        job.running = False
        if self._jobs.get(job.id) is job:
            del self._jobs[job.id]
        self.events.put(event)


def _check_workers(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"max_workers must be a whole number of at least 1, not {n!r}")
    return n
