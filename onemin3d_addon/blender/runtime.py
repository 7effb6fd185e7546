"""Main thread only: the job runtime: submits pipelines to worker threads and `pump()`s their events into Blender.

Worker threads (core.jobs.JobRunner) never touch bpy. They report through one event queue,
which `pump()` drains on the main thread: from a persistent `bpy.app.timers` callback while
jobs exist (it unregisters itself when idle), or called directly where no event loop runs
(`blender -b`, the bpy wheel, scripts: see api.pump()). A tick costs a few milliseconds at most,
except the tick that imports a finished result, which is one undo step.

Every stage is journalled through core.history, so a paid result survives a crash, a restart
or a file switch, and an async generation with a known uuid resumes polling on the next start
(also after a cancel: the generation is paid for; it is fetched, not imported). Re-import in the
history fetches such a generation, or a result whose file is gone or failed to import, again,
free; a generation that was sent but never answered is refused there in one sentence, never
sent again. The key is never journalled, logged or shown.
"""

from __future__ import annotations

import copy
import functools
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import bpy

from ..core.errors import (
    PREFS_PATH,
    Cancelled,
    ImportFailed,
    Onemin3DError,
    UnansweredGeneration,
    get_logger,
    user_message,
)
from ..core.options import generation_request
from . import connection, runtime_state
from .wm_view import WindowManagerView, current_blend_file, tag_redraw, window_state

if TYPE_CHECKING:  # imported where used: registering the add-on loads none of them (scripts/bench.py startup)
    import queue

    from ..core.history import History, HistoryEntry
    from ..core.jobs import Progress
    from ..core.pipeline import Checkpoint, Result
    from ..core.protocol import RetryPolicy

log = get_logger(__name__)

#: Seconds between timer ticks while jobs run.
TICK_INTERVAL = 0.1
#: Most of one tick spent draining events (seconds); the importing tick is the exception.
TICK_BUDGET = 0.003

TERMINAL_STATES = frozenset({"imported", "done", "failed", "cancelled"})

STAGE_LABELS = {
    "queued": "Waiting for a free slot",
    "prepare": "Preparing the image",
    "upload": "Uploading",
    "generate": "Generating on 1min.ai",
    "poll": "Waiting for 1min.ai",
    "download": "Downloading the result",
    "import": "Importing",
}
# (start, width) of each stage on the job's overall progress bar.
_STAGE_SPAN = {
    "queued": (0.0, 0.0),
    "prepare": (0.0, 0.05),
    "upload": (0.05, 0.15),
    "generate": (0.2, 0.55),
    "poll": (0.3, 0.45),
    "download": (0.75, 0.2),
    "import": (0.95, 0.05),
}
# Stages during which the server works and reports nothing: the bar creeps with time instead.
_WAITING_STAGES = frozenset({"generate", "poll"})


class Job:
    """One generation, as the main thread sees it. Callers read it and may `cancel()` it."""

    def __init__(self, runtime: Runtime, entry: HistoryEntry, *, history: History, name: str,
                 mode: str, options: dict[str, Any], scene_name: str | None, generation: int | None,
                 auto_import: bool) -> None:
        self._runtime = runtime
        self.id = entry.id
        self.entry = entry
        self.history = history
        self.name = name
        self.mode = mode
        self.options = dict(options)
        self.scene_name = scene_name
        # The load_post generation the job was started in; None: a resumed job, which imports
        # only into the very file it was made for.
        self.generation = generation
        self.auto_import = auto_import
        self.state = "queued"
        self.stage = "queued"
        self.fraction = 0.0
        self.message = ""
        self.stages: list[str] = []
        self.stage_started = time.monotonic()
        self.error: Onemin3DError | None = None
        self.error_message = ""
        self.result: Result | None = None
        self.object_names: list[str] = []
        self.collection_name: str | None = None  # the collection the import made
        self.import_kind: str | None = None  # what the result became: PLANE | RELIEF | MODEL
        self.warnings: list[str] = []
        self.cancel_requested = False
        # Checkpoints the worker has journalled itself, by id (kept alive until their event is
        # handled): the main thread must not apply them again, out of order with newer ones.
        self.journalled: dict[int, Checkpoint] = {}
        self.finished = threading.Event()

    def __repr__(self) -> str:
        return f"<onemin3d Job {self.id} {self.name!r} {self.state}/{self.stage}>"

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def progress(self) -> float:
        """Overall progress, 0..1."""
        if self.state == "imported":
            return 1.0
        start, width = _STAGE_SPAN.get(self.stage, (0.0, 0.0))
        fraction = self.fraction
        if self.stage in _WAITING_STAGES and fraction <= 0.0 and not self.done:
            # The server says nothing while it works: creep towards the end of the stage.
            elapsed = time.monotonic() - self.stage_started
            fraction = 1.0 - 30.0 / (30.0 + elapsed)
        return min(1.0, start + width * max(0.0, min(1.0, fraction)))

    @property
    def result_file(self) -> Path | None:
        return Path(self.entry.result_file) if self.entry.result_file else None

    @property
    def objects(self) -> list[Any]:
        """The objects the import created (those still in the file)."""
        return [ob for name in self.object_names if (ob := bpy.data.objects.get(name)) is not None]

    @property
    def collection(self) -> Any:
        """The collection the import created, while it is still in the file; else None."""
        return bpy.data.collections.get(self.collection_name) if self.collection_name else None

    def status_text(self) -> str:
        label = STAGE_LABELS.get(self.stage, self.stage.capitalize())
        if self.cancel_requested and not self.done:
            return "Cancelling…"
        if self.stage in _WAITING_STAGES:
            return f"{label}… {int(time.monotonic() - self.stage_started)} s"
        if self.stage in {"upload", "download"} and self.fraction > 0.0:
            return f"{label}… {int(self.fraction * 100)}%"
        return f"{label}…"

    def cancel(self) -> None:
        self._runtime.cancel(self.id)

    def wait(self, timeout: float | None = None) -> None:
        """Pump until this job ends (see Runtime.wait)."""
        self._runtime.wait([self], timeout=timeout)


def _now() -> float:
    return time.time()


def _public_url(url: str) -> str:
    """`url` without user:password, fit for the history."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def new_job_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


class Runtime:
    """The session's jobs, their runner, the history and the WindowManager view of them."""

    def __init__(self, folder: Path, *, max_workers: int = 2) -> None:
        global queue
        import queue  # for every method of the runtime: a runtime exists only once this ran

        from ..core.history import History
        from ..core.jobs import JobRunner
        from ..core.journal import JournalWriter

        self.folder = folder
        self.history = History(folder)
        self._histories: dict[Path, History] = {folder: self.history}
        # The journal runs on the worker thread, before the Checkpointed event is queued: a uuid or a
        # result file reaches the disk even if Blender dies before the next pump.
        self.runner = JobRunner(max_workers=max_workers, journal=self._journal)
        self._lock = threading.RLock()  # guards the entries: the main thread and the journal change them
        self.journal = JournalWriter(self._write_queued, self._journal_failed)  # history writes, off the main thread
        self.jobs: dict[str, Job] = {}
        self.generation = 0
        self.credits_left: int | None = None
        self.last_error = ""
        self._main_calls: queue.Queue[Callable[[], None]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.view = WindowManagerView()  # what changed since WindowManager.onemin3d was written
        self._closed = False

    # --- submitting ------------------------------------------------------------------------

    def set_folder(self, folder: Path) -> None:
        """Show (and journal new jobs in) another result folder's history."""
        if folder == self.folder:
            return
        self.folder = folder
        self.history = self.history_for(folder)
        self.view.full = True
        self.sync_wm()

    def history_for(self, folder: Path) -> History:
        history = self._histories.get(folder)
        if history is None:
            from ..core.history import History

            history = self._histories[folder] = History(folder)
        return history

    def submit(self, image: Path, *, conn: connection.ConnectionSettings, mode: str,
               options: dict[str, Any], name: str | None = None, scene_name: str | None = None,
               auto_import: bool = True, max_side: int | None = None,
               allow_upscale: bool | None = None, retry: RetryPolicy | None = None,
               max_download_bytes: int | None = None, resume: Checkpoint | None = None,
               metadata: dict[str, Any] | None = None) -> Job:
        """Start one job and return at once. Raises before anything is sent when Blender is
        offline or there is no key: no request is ever made with online access off.

        `resume`: what an earlier run left (a result file on disk, or an asset key and the uuid
        of a generation): the pipeline continues from there, and pays nothing twice.
        `metadata`: JSON-able facts the caller wants journalled with the entry (settings["metadata"])."""
        from ..core.history import HistoryEntry
        from ..core.pipeline import Request

        if self._closed:
            raise Onemin3DError("The add-on is shutting down; try again.")
        connection.require_sendable(conn)
        folder = conn.result_folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Onemin3DError(f"The result folder {folder} cannot be created ({exc.strerror}): "
                                f"choose another in {PREFS_PATH}.") from exc
        history = self.history_for(folder)
        if conn.parallel_jobs != self.runner_workers:
            self.set_max_workers(conn.parallel_jobs)

        image = Path(image)
        job_id = new_job_id()
        now = _now()
        request_kw: dict[str, Any] = {}
        if max_side is not None:
            request_kw["max_side"] = max_side
        if allow_upscale is not None:
            request_kw["allow_upscale"] = allow_upscale
        # Not journalled with the settings: they tune this run's transfers, not the result.
        transfer_kw: dict[str, Any] = {}
        if retry is not None:
            transfer_kw["retry"] = retry
        if max_download_bytes is not None:
            transfer_kw["max_download_bytes"] = max(1, int(max_download_bytes))
        request = Request(
            image_path=image, api_key=conn.api_key, result_dir=folder, base_url=conn.base_url,
            use_async=conn.use_async, timeouts=conn.timeouts, poll_interval=conn.poll_interval,
            poll_deadline=conn.poll_deadline, proxy=conn.proxy, ca_bundle=conn.ca_bundle, **request_kw,
            **transfer_kw, **generation_request(options),
        )
        blend_file = current_blend_file() or ""
        entry = HistoryEntry(
            id=job_id, created=now, updated=now, source_path=str(image),
            settings={
                "name": name or image.stem, "mode": mode, "options": dict(options),
                "scene": scene_name, "base_url": _public_url(conn.base_url), "use_async": conn.use_async,
                **request_kw, **({"metadata": dict(metadata)} if metadata else {}),
            },
            state="queued", stage="queued", asset_key=None, uuid=None, result_file=None, result_kind=None,
            credits_used=None, credits_left=None, error=None, blend_file=blend_file, times={"queued": now},
        )
        if resume is not None:
            entry.asset_key = resume.asset_key
            entry.generation_sent = resume.sent
            entry.uuid = resume.uuid
            entry.bg_sent, entry.bg_uuid = resume.bg_sent, resume.bg_uuid
            entry.bg_file = str(resume.bg_file) if resume.bg_file is not None else None
            entry.result_file = str(resume.result_file) if resume.result_file is not None else None
        job = Job(self, entry, history=history, name=name or image.stem, mode=mode, options=options,
                  scene_name=scene_name, generation=self.generation, auto_import=auto_import)
        self.jobs[job_id] = job
        # Written by the journal thread, not here: a slow or network disk never stalls the click.
        # It is durable before anything is paid for: the worker journals the whole entry (with the
        # asset key) itself before it sends the generation.
        self._persist(job)
        self.runner.submit(request, job_id=job_id, resume=resume)
        self._mark(job)
        self.last_error = ""
        self.sync_wm()
        ensure_timer()
        return job

    @property
    def runner_workers(self) -> int:
        return int(getattr(self.runner, "max_workers", 0) or 0)

    def set_max_workers(self, n: int) -> None:
        self.runner.set_max_workers(max(1, min(connection.MAX_PARALLEL_JOBS, int(n))))

    def resume_pending(self, conn: connection.ConnectionSettings) -> list[Job]:
        """Pick up what a crash or restart interrupted: generations with a uuid poll again (a
        cancelled one is fetched and listed, not imported); results already on disk are only
        listed (re-import them from the history)."""
        resumed: list[Job] = []
        history = self.history_for(conn.result_folder)
        for entry in history.resumable():
            if entry.id in self.jobs:
                continue
            if entry.result_file and Path(entry.result_file).is_file():
                if entry.state not in {"done", "imported"}:
                    entry.state = "done"
                    entry.stage = "download"
                    entry.updated = _now()
                    history.save(entry)
                continue
            if not entry.uuid:  # (a paid cut-out alone goes on at Re-import: that sends the generation)
                continue
            why = self._cannot_fetch(entry, conn)
            if why is not None:
                log.info("job %s waits to resume: %s", entry.id, why)
                continue
            settings = entry.settings or {}
            job = self._fetch(entry, history, conn, mode=str(settings.get("mode") or "AUTO"),
                              options=dict(settings.get("options") or {}), scene_name=settings.get("scene"),
                              generation=None, auto_import=entry.state != "cancelled")
            resumed.append(job)
            log.info("resuming job %s (generation %s)", entry.id, entry.uuid)
        if resumed:
            ensure_timer()
        self.view.full = True
        return resumed

    def _cannot_fetch(self, entry: HistoryEntry, conn: connection.ConnectionSettings) -> str | None:
        """Why the generation of `entry` cannot be polled now, or None."""
        made_with = (entry.settings or {}).get("base_url")
        if made_with and made_with != _public_url(conn.base_url):
            return (f"it was made on {made_with}, and the Base URL is now {_public_url(conn.base_url)}: "
                    f"set it back in {PREFS_PATH} to fetch it")
        problem = connection.sendable_problem(conn)
        return str(problem) if problem is not None else None

    def _fetch(self, entry: HistoryEntry, history: History, conn: connection.ConnectionSettings, *,
               mode: str, options: dict[str, Any], scene_name: str | None, generation: int | None,
               auto_import: bool) -> Job:
        """Poll and download the generation `entry` names, again (free: no new generation), as a job
        under the entry's own id. `generation` None: imported only into the file it was made for."""
        from ..core import resume
        from ..core.pipeline import Request

        settings = entry.settings or {}
        # what the entry was paid for (its journalled options), whatever the import options now
        request = Request(
            image_path=Path(entry.source_path), api_key=conn.api_key, result_dir=conn.result_folder,
            base_url=conn.base_url, use_async=True, timeouts=conn.timeouts,
            poll_interval=conn.poll_interval, poll_deadline=conn.poll_deadline,
            proxy=conn.proxy, ca_bundle=conn.ca_bundle, **_journalled_generation(settings),
        )
        job = Job(self, entry, history=history, name=str(settings.get("name") or Path(entry.source_path).stem),
                  mode=mode, options=options, scene_name=scene_name, generation=generation,
                  auto_import=auto_import)
        job.stage = entry.stage or "poll"
        if entry.result_file:  # gone, or it failed to import: keep it listed with the entry's files
            if entry.result_file not in entry.files:
                entry.files.append(entry.result_file)
            entry.result_file = None
            entry.result_kind = None
        entry.state = "running"
        entry.error = None
        entry.error_kind = None
        entry.updated = _now()
        history.save(entry)
        self.jobs[entry.id] = job
        self.runner.submit(request, job_id=entry.id, resume=resume.checkpoint_for(entry))
        self._mark(job)
        return job

    # --- cancelling ------------------------------------------------------------------------

    def cancel(self, job_id: str | None = None) -> int:
        """Cancel one job, or all (job_id None/""); returns how many were asked to stop."""
        targets = [j for j in self.jobs.values() if not j.done and (not job_id or j.id == job_id)]
        for job in targets:
            if not job.cancel_requested:
                job.cancel_requested = True
                self.runner.cancel(job.id)
                self._mark(job)
        if targets:
            self.sync_wm()
            ensure_timer()
        return len(targets)

    # --- the pump --------------------------------------------------------------------------

    def busy(self) -> bool:
        return (any(not j.done for j in self.jobs.values())
                or not self.runner.events.empty() or not self._main_calls.empty()
                or any(t.is_alive() for t in self._threads))

    def pump(self, *, budget: float = TICK_BUDGET, block: float = 0.0) -> float | None:
        """Drain events for at most `budget` seconds (an import may take longer, and ends the
        tick). With `block`, wait that long for a first event. Returns the delay until the
        next tick, or None when idle."""
        start = time.perf_counter()
        changed = False
        first = True
        while True:
            try:
                call = self._main_calls.get_nowait()
            except queue.Empty:
                break
            call()
            changed = True
        while True:
            try:
                if first and block > 0.0:
                    event = self.runner.events.get(timeout=block)
                else:
                    event = self.runner.events.get_nowait()
            except queue.Empty:
                break
            first = False
            changed = True
            if self._handle(event):
                break  # an import happened: that is this tick's work
            if time.perf_counter() - start > budget:
                break
        if self._tick_waiting_jobs():
            changed = True
        if changed:
            self.sync_wm()
        self._threads = [t for t in self._threads if t.is_alive()]
        if not self.busy():
            return None
        return 0.0 if not self.runner.events.empty() else TICK_INTERVAL

    def _tick_waiting_jobs(self) -> bool:
        """Jobs waiting on the server show elapsed seconds: mark them dirty once a second."""
        changed = False
        for job in self.jobs.values():
            if not job.done and job.stage in _WAITING_STAGES:
                second = int(time.monotonic() - job.stage_started)
                if second != getattr(job, "_shown_second", -1):
                    job._shown_second = second  # type: ignore[attr-defined]
                    self.view.dirty_jobs.add(job.id)
                    changed = True
        return changed

    def _handle(self, event: Any) -> bool:
        """Apply one event; True when it imported a result."""
        from ..core.jobs import Checkpointed, Done, Failed, Progress

        job = self.jobs.get(event.job_id)
        if job is None:
            log.debug("event for unknown job %s ignored", event.job_id)
            return False
        if isinstance(event, Progress):
            self._on_progress(job, event)
        elif isinstance(event, Checkpointed):
            self._on_checkpoint(job, event.checkpoint)
        elif isinstance(event, Done):
            return self._on_done(job, event.result)
        elif isinstance(event, Failed):
            self._on_failed(job, event.error)
        return False

    def _enter_stage(self, job: Job, stage: str) -> None:
        job.stage = stage
        job.stages.append(stage)
        job.stage_started = time.monotonic()
        job.fraction = 0.0
        job.state = "running"
        with self._lock:
            entry = job.entry
            entry.stage = stage
            entry.state = "running"
            entry.times[stage] = _now()
        self._persist(job)
        self.view.dirty_entries.add(job.id)

    def _on_progress(self, job: Job, event: Progress) -> None:
        if job.done:
            return
        if event.stage != job.stage:
            self._enter_stage(job, event.stage)
        job.fraction = event.fraction
        job.message = event.message
        self.view.dirty_jobs.add(job.id)

    def _journal(self, job_id: str, cp: Checkpoint) -> None:
        """Worker thread: write the checkpoint to disk before its event is queued (no bpy here)."""
        job = self.jobs.get(job_id)
        if job is None:
            return
        changed = self._apply_checkpoint(job, cp)
        with self._lock:
            job.journalled[id(cp)] = cp
        if changed:
            self._write(job)

    def _apply_checkpoint(self, job: Job, cp: Checkpoint) -> bool:
        """Copy a checkpoint into the job's entry; True when that changed it."""
        with self._lock:
            entry = job.entry
            before = (entry.asset_key, entry.generation_sent, entry.uuid, entry.result_file, entry.credits_left,
                      entry.bg_sent, entry.bg_uuid, entry.bg_file)
            if cp.asset_key:
                entry.asset_key = cp.asset_key
            # sent: from just before the generation request leaves; cleared when it was refused
            entry.generation_sent = cp.sent or bool(cp.uuid and entry.generation_sent)
            if cp.uuid:
                entry.uuid = cp.uuid
            if cp.record is not None:
                entry.uuid = entry.uuid or cp.record.uuid
                left = cp.record.credits_left
                if left is not None:
                    entry.credits_left = int(left)
            if cp.result_file is not None:
                entry.result_file = str(cp.result_file)
            # the background removal, the same way
            entry.bg_sent = cp.bg_sent or bool(cp.bg_uuid and entry.bg_sent)
            entry.bg_uuid = cp.bg_uuid or (cp.bg_record.uuid if cp.bg_record is not None else None) or entry.bg_uuid
            if cp.bg_file is not None:
                entry.bg_file = str(cp.bg_file)
            return (entry.asset_key, entry.generation_sent, entry.uuid, entry.result_file,
                    entry.credits_left, entry.bg_sent, entry.bg_uuid, entry.bg_file) != before

    def _on_checkpoint(self, job: Job, cp: Checkpoint) -> None:
        with self._lock:
            journalled = job.journalled.pop(id(cp), None) is cp
        # Usually journalled already, by the worker, in order: applying it again here could undo a
        # newer one (the generation request's "sent", set after the asset key's checkpoint).
        if not journalled and self._apply_checkpoint(job, cp):
            self._persist(job)
        if job.entry.credits_left is not None:
            self.credits_left = job.entry.credits_left
        self.view.dirty_entries.add(job.id)

    def _note_credits(self, entry: HistoryEntry, record: Any) -> None:
        left = getattr(record, "credits_left", None)
        if left is not None:
            entry.credits_left = int(left)
            self.credits_left = int(left)

    # --- journalling: off the main thread, so a slow disk never stalls Blender ----------------

    def _persist(self, job: Job) -> None:
        """Have the journal thread write the job's entry as it is by then."""
        self.journal.persist(job.id)

    def _write(self, job: Job) -> None:
        """Write the entry now (any thread). Writes of one entry happen in the order of their
        snapshots, and the state lock is never held during the disk I/O."""
        self.journal.write_now(job.id, functools.partial(self._save_snapshot, job))

    def _save_snapshot(self, job: Job) -> None:
        with self._lock:
            snapshot = copy.deepcopy(job.entry)
        job.history.save(snapshot)

    def _write_queued(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            self._write(job)

    def _journal_failed(self, err: Onemin3DError) -> None:
        message = user_message(err)
        log.error("%s", message)
        self._main_calls.put(functools.partial(self._set_last_error, message))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every pending history write is on disk; True if it is."""
        return self.journal.flush(timeout)

    def _set_last_error(self, message: str) -> None:
        self.last_error = message

    def _on_done(self, job: Job, result: Result) -> bool:
        entry = job.entry
        job.result = result
        with self._lock:
            entry.result_file = str(result.file)
            entry.result_kind = result.kind
            entry.uuid = entry.uuid or result.record.uuid or None
            self._note_credits(entry, result.record)
        if job.cancel_requested:
            self._finish(job, "cancelled", error="Cancelled after the result arrived: it is kept, "
                                                  "re-import it from the history.")
            return False
        if not job.auto_import:
            self._finish(job, "done")
            return False
        blend_now = current_blend_file() or ""
        same_file = (job.generation == self.generation if job.generation is not None
                     else bool(entry.blend_file) and entry.blend_file == blend_now)
        if not same_file:
            made_for = entry.blend_file or "an unsaved file"
            log.info("result of %s not imported: it was made for %s", job.name, made_for)
            self._finish(job, "done")
            return False
        self._enter_stage(job, "import")
        try:
            imported = import_result_into_scene(
                result.file, texture_image(entry), job.mode, job.options,
                scene_name=job.scene_name, undo_message=f"Image to 3D: {job.name}")
        except Onemin3DError as err:
            err.stage = err.stage or "import"
            self._fail(job, err)
            return True
        except Exception as exc:  # an importer bug must not lose the paid result
            log.exception("importing %s failed unexpectedly", entry.result_file)
            self._fail(job, ImportFailed(f"Blender could not import the result ({type(exc).__name__}): it is "
                                         "kept in the history, so re-import it or open the file by hand."))
            return True
        job.object_names = [ob.name for ob in imported]
        job.warnings = list(getattr(imported, "warnings", ()))
        collection = getattr(imported, "collection", None)
        job.collection_name = collection.name if collection is not None else None
        job.import_kind = getattr(imported, "kind", None)
        self._finish(job, "imported")
        return True

    def _on_failed(self, job: Job, err: Onemin3DError) -> None:
        if isinstance(err, Cancelled) or job.cancel_requested:
            self._finish(job, "cancelled", error=_cancel_note(job.entry))
            return
        self._fail(job, err)

    def _fail(self, job: Job, err: Onemin3DError) -> None:
        job.error = err
        # The sentence says what to do, true to the case: a paid generation (its uuid known) is
        # fetched again, free, at the next start or by Re-import (History.resumable lists it).
        message = user_message(err)
        if (err.stage or job.stage) == "import" and job.entry.uuid and "re-import" not in message.lower():
            # a damaged download: Re-import fetches it again (free) before anyone pays for a new one
            message += (" Before a new, paid generation, press Re-import in the history: it downloads the "
                        "result again, free, and imports it.")
        job.error_message = message
        if err.stage:
            job.entry.stage = err.stage
        log.warning("job %s (%s) failed at %s: %s", job.id, job.name, err.stage or job.stage, message)
        self.last_error = f"{job.name}: {message}"
        self._finish(job, "failed", error=message, error_kind=type(err).__name__)

    def _finish(self, job: Job, state: str, *, error: str | None = None, error_kind: str | None = None) -> None:
        job.state = state
        with self._lock:
            entry = job.entry
            entry.state = state
            entry.error = error
            entry.error_kind = error_kind
            entry.times[state] = _now()
        self._persist(job)
        job.finished.set()
        self._mark(job)

    def _mark(self, job: Job) -> None:
        self.view.dirty_jobs.add(job.id)
        self.view.dirty_entries.add(job.id)

    def on_file_loaded(self) -> None:
        self.generation += 1
        self.view.full = True
        self.sync_wm()

    def on_file_saved(self) -> None:
        """A job started in an unsaved file belongs to it once it is saved."""
        path = current_blend_file() or ""
        for job in self.jobs.values():
            if not job.done and job.generation == self.generation and job.entry.blend_file != path:
                with self._lock:
                    job.entry.blend_file = path
                self._persist(job)
                self.view.dirty_entries.add(job.id)

    # --- waiting (headless) ----------------------------------------------------------------

    def wait(self, jobs: Iterable[Job], timeout: float | None = None) -> None:
        """Pump until every job ends. Ctrl-C cancels them, waits for them to stop, and re-raises."""
        jobs = list(jobs)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not all(j.done for j in jobs):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{sum(not j.done for j in jobs)} job(s) still running after {timeout} s")
                self.pump(budget=0.05, block=0.05)
            self.flush()
        except KeyboardInterrupt:
            for job in jobs:
                job.cancel()
            stop = time.monotonic() + 10.0
            while not all(j.done for j in jobs) and time.monotonic() < stop:
                self.pump(budget=0.05, block=0.05)
            raise

    # --- key check -------------------------------------------------------------------------

    def check_key(self, conn: connection.ConnectionSettings, *, wait: bool = False) -> tuple[str, str]:
        """Ask 1min.ai whether the key is valid (a free request), in a thread unless `wait`.
        Returns (status, message) when waiting, ('CHECKING', …) otherwise."""
        connection.require_sendable(conn)
        box: list[tuple[str, str]] = []

        def work() -> None:
            box.append(_check_key(conn))
            status, message = box[-1]
            self._main_calls.put(lambda: self._set_key_status(status, message))

        if wait:
            work()
            self.pump()
            return box[-1]
        self._set_key_status('CHECKING', "Checking the key…")
        thread = threading.Thread(target=work, name="onemin3d-check-key", daemon=True)
        self._threads.append(thread)
        thread.start()
        ensure_timer()
        return ('CHECKING', "Checking the key…")

    def _set_key_status(self, status: str, message: str) -> None:
        state = window_state()
        if state is not None:
            state.key_status = status
            state.key_message = message
        tag_redraw()

    # --- the WindowManager view (wm_view.py) ---------------------------------------------------

    def sync_wm(self) -> None:
        """Write what changed to WindowManager.onemin3d, and redraw only if something did."""
        self.view.sync(self)

    def refresh_history(self) -> None:
        self.view.full = True
        self.sync_wm()

    # --- history actions -------------------------------------------------------------------

    def find_entry(self, entry_id: str) -> tuple[HistoryEntry, History] | None:
        job = self.jobs.get(entry_id)
        if job is not None:
            return job.entry, job.history
        entry = self.history.load(entry_id)
        return (entry, self.history) if entry is not None else None

    def reimport(self, entry_id: str, *, mode: str | None = None, options: dict[str, Any] | None = None,
                 scene_name: str | None = None, wait: bool | None = None) -> list[Any]:
        """Import a journalled result again: from disk, with no request and no credits.

        When the file is gone or unreadable, or its import failed (a damaged download), and the
        generation's uuid is known, the result is fetched again first (a poll and a download,
        free; never a new generation) as a job that imports it when it arrives. `wait`
        (default: under `blender -b`) waits for it and returns its objects; otherwise this
        returns [] at once. A generation that was sent but never answered is refused
        (UnansweredGeneration): it may have been charged, and only Generate sends it again.
        """
        from ..core import resume

        found = self.find_entry(entry_id)
        if found is None:
            raise Onemin3DError("That history entry no longer exists.")
        entry, history = found
        job = self.jobs.get(entry_id)
        if job is not None and not job.done:
            raise Onemin3DError("That job is still running: wait for it to finish.")
        # core.resume: the policy --resume follows too
        decision = resume.decide(entry, retry_import=True, new_options=mode is not None or options is not None)
        if decision.action == resume.FETCH:
            return self._fetch_again(entry, history, mode=mode, options=options, scene_name=scene_name,
                                     wait=bpy.app.background if wait is None else wait)
        if decision.action == resume.REFUSE:
            raise UnansweredGeneration(Path(entry.source_path).name)
        if decision.action == resume.NOTHING:
            if entry.result_file:
                raise Onemin3DError(f"The result file {entry.result_file} is missing or unreadable (it was moved, "
                                    "deleted or damaged), and its generation cannot be fetched again.")
            why = ("1min.ai did not deliver one" if entry.uuid
                   else "it ended before its generation was sent, so nothing was charged")
            raise Onemin3DError(f"That job has no result to import ({why}): to make one, choose the photo "
                                "and press Generate.")
        result = decision.result_file
        assert result is not None
        settings = entry.settings or {}
        objects, _warnings = import_into_scene(
            result, texture_image(entry), mode or str(settings.get("mode") or "AUTO"),
            options if options is not None else dict(settings.get("options") or {}),
            scene_name=scene_name, undo_message=None)
        with self._lock:
            entry.state = "imported"
            entry.error = None
            entry.error_kind = None
            entry.blend_file = current_blend_file() or ""
            entry.times["imported"] = _now()
        if job is not None:
            job.object_names = [ob.name for ob in objects]
            self._write(job)
            self.view.dirty_entries.add(entry.id)
        else:
            history.save(entry)
            self.view.full = True
        self.sync_wm()
        return objects

    def _fetch_again(self, entry: HistoryEntry, history: History, *, mode: str | None,
                     options: dict[str, Any] | None, scene_name: str | None, wait: bool) -> list[Any]:
        conn = connection.connection_settings()
        why = self._cannot_fetch(entry, conn)
        if why is not None:
            raise Onemin3DError(f"The result of {Path(entry.source_path).name} cannot be fetched again now: {why}.")
        settings = entry.settings or {}
        job = self._fetch(entry, history, conn, mode=mode or str(settings.get("mode") or "AUTO"),
                          options=options if options is not None else dict(settings.get("options") or {}),
                          scene_name=scene_name, generation=self.generation, auto_import=True)
        log.info("fetching the result of job %s (generation %s) again", entry.id, entry.uuid)
        self.sync_wm()
        ensure_timer()
        if not wait:
            return []
        self.wait([job])
        if job.state == "imported":
            return job.objects
        if job.error is not None:
            raise job.error
        raise Onemin3DError(job.entry.error or f"Fetching the result of {job.name} again ended: {job.state}.")

    def remove_entry(self, entry_id: str, *, delete_files: bool = False) -> None:
        found = self.find_entry(entry_id)
        if found is None:
            return
        entry, history = found
        job = self.jobs.get(entry_id)
        if job is not None and not job.done:
            raise Onemin3DError("That job is still running: cancel it first.")
        history.remove(entry_id, delete_files=delete_files)
        self.jobs.pop(entry_id, None)
        self.view.full = True
        self.sync_wm()

    # --- shutdown --------------------------------------------------------------------------

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel every job and join every thread within `timeout` seconds. Async jobs that
        already have a uuid stay resumable; results already downloaded stay listed."""
        from ..core.jobs import Checkpointed, Done, Failed, Progress

        self._closed = True
        deadline = time.monotonic() + timeout
        joined = bool(self.runner.shutdown(timeout=timeout))
        # Journal what the workers managed to report, without importing anything.
        while True:
            try:
                event = self.runner.events.get_nowait()
            except queue.Empty:
                break
            job = self.jobs.get(event.job_id)
            if job is None or job.done:
                continue
            if isinstance(event, Progress):
                if event.stage != job.stage:
                    self._enter_stage(job, event.stage)
            elif isinstance(event, Checkpointed):
                self._on_checkpoint(job, event.checkpoint)
            elif isinstance(event, Done):
                job.auto_import = False
                self._on_done(job, event.result)
            elif isinstance(event, Failed):
                self._interrupted(job, event.error)
        for job in self.jobs.values():
            if not job.done:
                self._interrupted(job, Cancelled("interrupted"))
        joined = self.flush(max(0.5, deadline - time.monotonic())) and joined
        joined = self.journal.stop(max(0.0, deadline - time.monotonic()) + 0.5) and joined
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            joined = joined and not thread.is_alive()
        return joined

    def _interrupted(self, job: Job, err: Onemin3DError) -> None:
        entry = job.entry
        if not isinstance(err, Cancelled) and not job.cancel_requested:
            self._fail(job, err)
            return
        if not job.cancel_requested and entry.uuid and not entry.result_file:
            # Paid for and still running on the server: leave it resumable.
            with self._lock:
                entry.error = "Interrupted when the add-on stopped; it resumes on the next start."
            self._persist(job)
            job.state = "cancelled"
            job.finished.set()
            return
        note = _cancel_note(entry)
        if not job.cancel_requested:
            note = "Interrupted when the add-on stopped or Blender closed."
            if entry.generation_sent and not entry.uuid:
                note += " 1min.ai was generating: the credits may have been spent."
        self._finish(job, "cancelled", error=note)


def _journalled_generation(settings: dict[str, Any]) -> dict[str, Any]:
    """The model and background removal an entry was sent with (its journalled options); a value
    no longer understood is left out: fetching a generation again polls its uuid, and pays nothing."""
    try:
        return generation_request(settings.get("options") or {})
    except ValueError:
        return {}


def texture_image(entry: HistoryEntry) -> Path:
    """The image a relief or plane of `entry` is coloured with and cut by: its background
    removal's cut-out while it is on disk, else the photo."""
    if entry.bg_file and Path(entry.bg_file).is_file():
        return Path(entry.bg_file)
    return Path(entry.source_path)


def _cancel_note(entry: HistoryEntry) -> str | None:
    """What a cancel left behind that costs something, if anything."""
    if entry.uuid and not entry.result_file:
        return ("Cancelled after 1min.ai started the generation: it is paid for and kept in the history, "
                "and it is fetched, free, the next time the add-on starts or when you press Re-import.")
    if entry.generation_sent and not entry.uuid:
        return "Cancelled while 1min.ai was generating: the credits may have been spent."
    if entry.uuid or entry.result_file:
        return None
    if entry.bg_uuid or entry.bg_file:
        return ("Cancelled after the background removal was paid for: it is kept in the history, and "
                "Re-import goes on from its cut-out (fetched free) with the generation.")
    if entry.bg_sent:
        return "Cancelled while 1min.ai was removing the background: the credits may have been spent."
    return None


def _check_key(conn: connection.ConnectionSettings) -> tuple[str, str]:
    """Runs in a worker thread: no bpy here."""
    from ..core.client import OneMinClient

    try:
        client = OneMinClient(conn.api_key, conn.base_url, conn.timeouts, proxy=conn.proxy,
                              ca_bundle=conn.ca_bundle)
        valid = client.check_key()
    except Onemin3DError as err:
        from ..core.errors import AuthError

        if isinstance(err, AuthError):
            return ('INVALID', user_message(err))
        return ('ERROR', user_message(err))
    if valid:
        return ('VALID', "The key is valid.")
    return ('INVALID', "1min.ai rejected the key: paste a valid one.")


# --- bpy helpers --------------------------------------------------------------------------------

def _window_for(scene: Any) -> Any:
    wm = bpy.context.window_manager
    windows = list(wm.windows) if wm is not None else []
    for window in windows:
        if window.scene == scene:
            return window
    return windows[0] if windows else None


def import_into_scene(result_file: Path, source_image: Path, mode: str, options: dict[str, Any], *,
                      scene_name: str | None, undo_message: str | None) -> tuple[list[Any], list[str]]:
    """Import a result into `scene_name` (else the current scene); (objects, warnings)."""
    imported = import_result_into_scene(result_file, source_image, mode, options, scene_name=scene_name,
                                        undo_message=undo_message)
    return list(imported), list(getattr(imported, "warnings", ()))


def import_result_into_scene(result_file: Path, source_image: Path, mode: str, options: dict[str, Any], *,
                             scene_name: str | None, undo_message: str | None) -> Any:
    """Import a result into `scene_name` (else the current scene) with a window context, so
    importers that exist only as operators work from a timer; push one undo step after it.
    Returns scene_build.Imported (iterating it yields the objects)."""
    from . import scene_build

    scene = bpy.data.scenes.get(scene_name) if scene_name else None
    window = bpy.context.window or _window_for(scene or bpy.context.scene)
    override: dict[str, Any] = {}
    if window is not None:
        override["window"] = window
        if scene is None:
            scene = window.scene
    if scene is not None:
        override["scene"] = scene
        layer = window.view_layer if window is not None and window.scene == scene else scene.view_layers[0]
        override["view_layer"] = layer
    with bpy.context.temp_override(**override):
        imported = scene_build.import_result(result_file, source_image, mode, options)
        if undo_message and not bpy.app.background:
            _undo_push(undo_message)
    for warning in getattr(imported, "warnings", ()):
        log.warning("%s: %s", Path(result_file).name, warning)
    return imported


def _undo_push(message: str) -> None:
    try:
        if bpy.ops.ed.undo_push.poll():  # type: ignore[call-arg]
            bpy.ops.ed.undo_push(message=message)
    except RuntimeError as exc:  # no undo stack in this context: nothing to undo to
        log.debug("undo push skipped: %s", exc)


# --- module-level lifecycle ---------------------------------------------------------------------

_runtime: Runtime | None = None


def get_runtime(context: Any = None) -> Runtime:
    """The session's runtime, created on first use (also without registration, for scripts).

    While the add-on is registered, the first use also starts it: the preference folder's
    history is listed and what a crash or restart interrupted is resumed (`_start`).
    """
    global _runtime
    if _runtime is None or _runtime._closed:
        conn_folder = connection.result_folder(connection.get_prefs(context))
        _runtime = Runtime(conn_folder, max_workers=connection.parallel_jobs(context))
        runtime_state.install_handlers()
        if runtime_state.registered:
            _start(_runtime, context)
    return _runtime


def _start(rt: Runtime, context: Any = None) -> None:
    try:
        conn = connection.connection_settings(context)
        rt.resume_pending(conn)
    except (Onemin3DError, OSError) as exc:
        log.warning("could not resume interrupted jobs: %s", exc)
    rt.sync_wm()


def peek_runtime() -> Runtime | None:
    return _runtime


def pump() -> float | None:
    """The timer callback (and api.pump()): drains job events on the main thread."""
    rt = _runtime
    if rt is None:
        return None
    try:
        return rt.pump()
    except Exception:  # a timer that raises is dropped by Blender: keep the jobs alive
        log.exception("the job pump failed")
        return TICK_INTERVAL if rt.busy() else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=TICK_INTERVAL, persistent=True)


def settings_changed(what: str, context: Any) -> None:
    """A preference the running jobs follow changed (see connection.settings_changed; lifecycle passes it on)."""
    if what == "parallel_jobs":
        set_parallel_jobs(connection.parallel_jobs(context))
    elif what == "result_folder":
        result_folder_changed(context)


def set_parallel_jobs(n: int) -> None:
    if _runtime is not None:
        _runtime.set_max_workers(n)


def result_folder_changed(context: Any = None) -> None:
    """The preference changed: list that folder's history, and resume what it left pending."""
    if _runtime is None:
        if runtime_state.registered:
            get_runtime(context)  # starts it, in the new folder
        return
    conn = connection.connection_settings(context)
    _runtime.set_folder(conn.result_folder)
    try:
        _runtime.resume_pending(conn)
    except (Onemin3DError, OSError) as exc:
        log.warning("could not resume interrupted jobs: %s", exc)
    _runtime.sync_wm()


def on_file_loaded() -> None:
    """After a .blend was loaded (runtime_state's load_post handler)."""
    if _runtime is not None:
        _runtime.on_file_loaded()
        if _runtime.busy():
            ensure_timer()


def on_file_saved() -> None:
    """After a .blend was saved (runtime_state's save_post handler)."""
    if _runtime is not None:
        _runtime.on_file_saved()


def stop() -> None:
    """Stop the runtime, if there is one: its timer removed, its jobs cancelled, its threads joined
    (lifecycle.unregister, through runtime_state; a script that started one without registering
    calls `unregister`)."""
    global _runtime
    rt, _runtime = _runtime, None
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)
    if rt is not None and not rt.shutdown(timeout=5.0):
        log.warning("some job threads did not stop within 5 s")


def unregister() -> None:
    """Stop the runtime a script started without registering the add-on, and remove its file
    handlers (disabling the add-on does this through lifecycle.unregister)."""
    runtime_state.registered = False
    runtime_state.remove_handlers()
    stop()


# What the file handlers (installed at registration, before this module is imported) call.
runtime_state.attach(file_loaded=on_file_loaded, file_saved=on_file_saved, peek=peek_runtime, stop=stop)


__all__ = [
    "Job",
    "Runtime",
    "ensure_timer",
    "get_runtime",
    "pump",
    "unregister",
]
