"""The batch: the images as jobs of the add-on's scripting API, each result finished on the main thread."""

from __future__ import annotations

import glob
import logging
import shlex
import time
import traceback
from pathlib import Path
from typing import Any

from ..blender.finish import (
    export_collection,
    layout_grid,
    pack_images,
    remove_new_data,
    render_preview,
    save_blend,
)
from .arguments import CANCEL_GRACE, StepFailed, UsageError, export_name, import_options
from .console import Console, Interrupt
from .inputs import Config, Item, _sha256
from .logs import _blender_output_to_log
from .previous import Previous, load_previous, regenerated
from .report import write_report

log = logging.getLogger("onemin3d.image_to_3d")

class Batch:
    """Runs the items as jobs of the add-on's scripting API (`onemin3d_addon.api`) and finishes
    each imported result (render, save, export) on the main thread.

    The add-on's runtime does the rest, exactly as in Blender's UI: worker threads, the history
    journal (every checkpoint on disk before the next step, so --resume pays nothing twice), the
    import, and cancelling. Requests are paced by the client's process-wide limiter
    (`core.ratelimit`), so any --jobs stays under 1min.ai's 180 requests a minute.
    """

    def __init__(self, config: Config, items: list[Item], bpy: Any, console: Console,
                 interrupt: Interrupt) -> None:
        self.config, self.args = config, config.args
        self.items, self.bpy, self.console, self.interrupt = items, bpy, console, interrupt
        self.by_job: dict[str, Item] = {}
        self.jobs: dict[str, Any] = {}          # job id -> api.Job, in submission order
        self.seen: dict[str, int] = {}          # job id -> stages already shown
        self.finished_jobs: set[str] = set()
        self.baseline: set[Any] = set()         # bpy.data before any import (--output-dir cleans up to it)
        self.interrupted = False
        self.interrupted_at = 0.0
        self.started = time.time()
        self.scene_time: dict[str, float] = {}
        self.problems: list[str] = []          # scene-level failures (the whole-scene render)
        self.stopped_because: str | None = None  # the key was rejected, or the credits ran out
        self.startup = 0.0                      # seconds from main() to a ready Blender
        self.run_time: float | None = None      # seconds from the first submission to the saved scene

        from .. import api
        from ..core import history, pipeline

        self.api, self.pipeline = api, pipeline
        self.history = history.History(config.result_dir)  # read for --resume; the runtime writes it

    def check_key(self) -> None:
        """A free request before the first paid one: a rejected key or an unreachable server is a
        configuration error (exit 2) found in a second, not a batch of failures."""
        from ..core import client, errors

        base = self.config.base_url or client.DEFAULT_BASE_URL
        try:
            with client.OneMinClient(self.config.api_key, base, client.Timeouts(read=30.0),
                                     proxy=self.args.proxy,
                                     ca_bundle=str(self.args.ca_bundle) if self.args.ca_bundle else None) as c:
                accepted = c.check_key()
        except (errors.NetworkError, errors.OfflineError) as exc:
            raise UsageError(f"{cli_message(exc)} (API at {base})") from None
        except errors.Onemin3DError as exc:  # a 5xx or 429 now says nothing about the key
            log.warning("the key check was inconclusive (%r); going on", exc)
            return
        if not accepted:
            raise UsageError(cli_message(errors.AuthError(status=401)))

    # -- main loop
    def run(self) -> None:
        t0 = time.perf_counter()
        try:
            self._run()
        finally:
            self.run_time = time.perf_counter() - t0
            # Cancels what is still running (after a second Ctrl-C, or a grace that ran out) and
            # writes the history: started async generations stay resumable.
            if not self.api.shutdown(timeout=5.0):
                log.warning("some job threads did not stop within 5 s")

    def _run(self) -> None:
        previous = load_previous(self.args.report, self.history) if self.args.resume else None
        pending: list[Item] = []
        for item in self.items:
            if item.path is None:
                pattern = glob.has_magic(item.given)
                item.fail(f"No image matches {item.given!r}: check the pattern, quote it so the shell leaves it "
                          "alone, and add --recursive for ** in sub-folders." if pattern else
                          f"{item.given} does not exist: check the path (a relative one starts from the folder "
                          "the command runs in).", stage="input", error_type="FileNotFoundError")
                self.console.finished(item)
                continue
            if not item.path.is_file():
                item.fail(f"{item.given} is not a file: give an image file, or a folder of images.",
                          stage="input", error_type="FileNotFoundError")
                self.console.finished(item)
                continue
            try:
                item.sha256 = _sha256(item.path)
            except OSError as exc:
                item.fail(f"cannot read {item.given}: {exc.strerror or exc}", stage="input",
                          error_type="OSError")
                self.console.finished(item)
                continue
            pending.append(item)

        plan: list[tuple[Item, Any]] = []
        for item in pending:
            resume = None
            if previous is not None and not self._regenerate(item):
                if self._already_done(item, previous):
                    continue
                resume = previous.checkpoint_for(item, self.pipeline)
            plan.append((item, resume))
        # results already on disk need no network: a re-assembly works offline
        if any(resume is None or (resume.result_file is None and not resume.sent) for _, resume in plan):
            self.check_key()
        if self.args.output_dir is not None:
            self.baseline = set(self.bpy.data.user_map())
        for item, resume in plan:
            self._submit(item, resume)
        write_report(self.config, self.items, self, partial=True)

        while not all(job.done for job in self.jobs.values()):
            if self.interrupt.event.is_set() and not self.interrupted:
                self._cancel_all()
            if self.interrupted and time.monotonic() - self.interrupted_at > CANCEL_GRACE:
                log.warning("jobs still running %.0f s after Ctrl-C; leaving them", CANCEL_GRACE)
                break
            with _blender_output_to_log():  # the importers' chatter
                self.api.pump(wait=0.1)  # imports at most one result: finish it before the next
            self._observe()
            self.console.tick()
        self._observe()
        self.finish_scene()

    def _regenerate(self, item: Item) -> bool:
        """--regenerate names this image (by path, or by file name)."""
        return regenerated(item, self.args.regenerate)

    def _submit(self, item: Item, resume: Any) -> None:
        from ..core import errors

        assert item.path is not None
        item.status, item.started = "running", time.time()
        try:
            job = self.api.submit(
                item.path, mode=self.args.mode, api_key=self.config.api_key,
                base_url=self.config.base_url or None, name=item.name,
                result_dir=self.config.result_dir, parallel=self.args.jobs,
                use_async=self.args.use_async, timeouts=_timeouts(self.args.timeout),
                poll_interval=self.args.poll_interval, proxy=self.args.proxy,
                ca_bundle=str(self.args.ca_bundle) if self.args.ca_bundle else None,
                allow_upscale=self.args.upscale, resume=resume,
                metadata={"tool": "image_to_3d", "sha256": item.sha256},
                **{**import_options(self.args), **(item.generation or {})})
        except errors.Onemin3DError as exc:
            item.fail(cli_message(exc), stage="queued", error_type=type(exc).__name__)
            self.console.finished(item)
            return
        item.history_id = job.id
        self.by_job[job.id] = item
        self.jobs[job.id] = job
        self.seen[job.id] = 0

    def _cancel_all(self) -> None:
        self.interrupted = True
        self.interrupted_at = time.monotonic()
        self.console.message("Interrupted: cancelling the running jobs and saving what has finished "
                             "(Ctrl-C again to stop at once)…", error=True)
        self._cancel_running()

    def _cancel_running(self) -> None:
        for job in self.jobs.values():
            if not job.done:
                job.cancel()

    # -- what the runtime reported (main thread, after each pump)
    def _observe(self) -> None:
        for job_id, job in self.jobs.items():
            if job_id in self.finished_jobs:
                continue
            item = self.by_job[job_id]
            for stage in job.stages[self.seen[job_id]:]:
                item.stage = stage
                self.console.stage(item, stage)
            self.seen[job_id] = len(job.stages)
            item.uuid = job.entry.uuid or item.uuid
            if not job.done:
                if job.stages:
                    self.console.stage(item, job.stage, job.fraction)
                continue
            self.finished_jobs.add(job_id)
            self._finished(item, job)

    def _finished(self, item: Item, job: Any) -> None:
        entry = job.entry
        if entry.credits_left is not None:
            item.credits_left = entry.credits_left
        if entry.result_file:
            item.result_file = Path(entry.result_file)
            item.result_kind = entry.result_kind or item.result_kind
        if job.result is not None:
            # the pipeline's own "total" is its network time; "total" in the report is the item's
            item.timings.update({("network" if k == "total" else k): v for k, v in job.result.timings.items()})
        if "import" in entry.times and job.state in ("imported", "failed"):
            end = entry.times.get("imported") or entry.times.get("failed")
            if end is not None:
                item.timings["import"] = max(0.0, end - entry.times["import"])
        if job.state == "imported":
            self._done(item, job)
        elif job.state == "failed":
            self._failed(item, job)
        elif job.state == "cancelled":
            self._cancelled(item, job)
        else:  # "done": downloaded but not imported (it cannot happen here: one file, no load)
            item.fail(f"The result was downloaded but not imported; it is kept in {item.result_file}.",
                      stage="import", error_type="ImportFailed")
        self.console.finished(item)
        write_report(self.config, self.items, self, partial=True)

    def _cancelled(self, item: Item, job: Any) -> None:
        stage = job.entry.stage or item.stage
        if self.stopped_because and not self.interrupted:
            # cancelled because the key or the credits failed for another image: same cause here
            item.fail(f"Not converted: {self.stopped_because}", stage=stage, error_type="Cancelled")
            return
        item.status, item.stage = "interrupted", stage
        item.error = self.interrupted_text(item)
        item.error_type = "Cancelled"
        item.finished = time.time()

    def interrupted_text(self, item: Item) -> str:
        """Why an interrupted image is where it is, and what --resume will do with it (true to what
        the history says: a result kept, a generation to fetch, one that may be charged, or nothing)."""
        job = self.jobs.get(item.history_id or "")
        entry = job.entry if job is not None else None
        if item.result_file is not None and item.result_file.is_file():
            return ("interrupted after the result arrived: it is kept; run again with --resume to import it "
                    "without paying twice")
        if item.uuid or (entry is not None and entry.uuid):
            return ("interrupted after the generation was started: run again with --resume to fetch the "
                    "result without paying twice")
        if entry is not None and entry.generation_sent:
            return unanswered_text(item.path.name if item.path is not None else item.given)
        return "interrupted before the generation was sent: nothing was paid; run again with --resume to convert it"

    def _failed(self, item: Item, job: Any) -> None:
        from ..core import errors

        error = job.error
        stage = (getattr(error, "stage", None) or job.entry.stage or item.stage) if error else item.stage
        photo = item.path.name if item.path is not None else item.given
        message = cli_message(error, photo) if error is not None else (job.error_message or "failed")
        if stage == "import" and item.result_file is not None:
            # --resume downloads it again (free: the uuid is known) rather than re-read this file
            if job.entry.uuid:
                message += (f" The result is kept in {item.result_file}. Before a new, paid generation (add "
                            f"--regenerate {_quoted(photo)} to --resume), run again with --resume: it downloads "
                            "the result again and retries, free.")
            else:
                message += f" The result is kept in {item.result_file}; run again with --resume to retry, free."
        item.fail(message, stage=stage, error_type=type(error).__name__ if error else "Error")
        log.info("%s failed at %s: %r", item.given, stage, error)
        if isinstance(error, errors.AuthError | errors.CreditsExhausted) and not self.stopped_because:
            # every other image would fail the same way (and a rejected key is worth no retries)
            self.stopped_because = item.error
            self.console.message("Stopping: the other images cannot be converted either.", error=True)
            self._cancel_running()

    def _done(self, item: Item, job: Any) -> None:
        item.import_kind = job.import_kind
        for warning in job.warnings:
            item.warnings.append(warning)
            self.console.message(f"{self.console.counter(item)} {item.label}: note: {warning}")
        try:
            self.build(item, job.collection)
        except Exception as exc:  # one bad result never aborts the batch
            self._build_failed(item, exc)
        else:
            item.status, item.stage = "converted", "done"
            item.finished = time.time()

    def _build_failed(self, item: Item, exc: BaseException) -> None:
        from ..core import errors

        if isinstance(exc, errors.Onemin3DError):
            message = cli_message(exc)
        elif isinstance(exc, StepFailed):
            message = exc.message
        else:
            log.error("unexpected error while building %s:\n%s", item.given, traceback.format_exc())
            message = f"Blender could not build the scene ({type(exc).__name__}: {exc})"
        message += (f" The result is kept in {item.result_file}; run again with --resume to try again "
                    "without a new generation.")
        item.fail(message, stage=item.stage, error_type=type(exc).__name__)

    # -- Blender work (main thread)
    def build(self, item: Item, collection: Any) -> None:
        """Render / save / export one imported result as the arguments ask.

        With --output-dir every image gets a file of its own: what this image added to
        bpy.data is removed again once its file is written, so the next one starts clean.
        """
        per_file = self.args.output_dir is not None
        try:
            if collection is None:
                raise StepFailed("The import made no collection.")
            self._build(item, collection, per_file)
        finally:
            if per_file:
                item.collection = None
                with _blender_output_to_log():
                    remove_new_data(self.bpy, self.baseline)

    def _build(self, item: Item, collection: Any, per_file: bool) -> None:
        bpy = self.bpy
        item.collection = collection
        if per_file:
            layout_grid([collection])

        render_failure: StepFailed | None = None
        if self.config.render_dirs:
            self._set_stage(item, "render")
            t0 = time.perf_counter()
            for folder in self.config.render_dirs:
                target = folder / f"{item.name}.png"
                try:
                    with _blender_output_to_log():
                        render_preview(bpy, [collection], target)
                except Exception as exc:  # the scene is still saved; the item reports the failure
                    log.error("rendering %s failed:\n%s", target, traceback.format_exc())
                    render_failure = StepFailed(f"The preview render to {target} failed "
                                                f"({type(exc).__name__}: {exc}).")
                    break
                item.renders.append(target)
            item.timings["render"] = time.perf_counter() - t0

        if per_file:
            assert self.args.output_dir is not None
            self._finish_file(self.args.output_dir / f"{item.name}.blend", [item])
        if render_failure is not None:
            raise render_failure

    def _finish_file(self, blend: Path, items: list[Item]) -> None:
        """Save `blend` and the exports of `items` next to it."""
        bpy = self.bpy
        per_file = len(items) == 1 and self.args.output_dir is not None
        for it in items:
            self._set_stage(it, "save", show=per_file)
        t0 = time.perf_counter()
        with _blender_output_to_log():
            if self.args.pack:
                pack_images(bpy)
            save_blend(bpy, blend)
        for it in items:
            it.blend_file = blend
            it.timings["save"] = time.perf_counter() - t0
        if self.args.export:
            for it in items:
                if it.collection is None:
                    continue
                self._set_stage(it, "export", show=per_file)
                t0 = time.perf_counter()
                target = blend.parent / export_name(it.name, self.args.export)
                try:
                    with _blender_output_to_log():
                        export_collection(bpy, it.collection, target, self.args.export)
                except Exception as exc:  # one failed export never costs the others
                    log.error("exporting %s failed:\n%s", target, traceback.format_exc())
                    failure = StepFailed(f"The {self.args.export.upper()} export to {target} failed "
                                          f"({type(exc).__name__}: {exc}); the .blend was saved.")
                    if per_file:
                        raise failure from exc
                    it.fail(failure.message, stage="export", error_type=type(exc).__name__)
                    continue
                it.exports.append(target)
                it.timings["export"] = time.perf_counter() - t0

    def finish_scene(self) -> None:
        """--output: lay out, render and save the one scene with every finished result."""
        if self.args.output is None:
            return
        done = [i for i in self.items if i.collection is not None]
        if not done:
            # an empty scene would look like a result: say there is none instead
            self.console.message(f"Nothing was converted, so {self.args.output.name} was not written.",
                                 error=True)
            return
        layout_grid([i.collection for i in done])
        if self.config.scene_render is not None:
            self.console.message(f"Rendering {self.config.scene_render.name}…")
            t0 = time.perf_counter()
            try:
                with _blender_output_to_log():
                    render_preview(self.bpy, [i.collection for i in done], self.config.scene_render)
            except Exception as exc:
                log.error("rendering %s failed:\n%s", self.config.scene_render, traceback.format_exc())
                self.problems.append(f"the preview render to {self.config.scene_render} failed "
                                     f"({type(exc).__name__}: {exc})")
                self.console.message(f"ERROR: {self.problems[-1]}", error=True)
            self.scene_time["render"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        what = f" and {len(done)} {self.args.export} file{'s' if len(done) != 1 else ''}" if self.args.export else ""
        self.console.message(f"Saving {self.args.output.name}{what}…")
        try:
            self._finish_file(self.args.output, done)
            for it in done:
                if it.status == "converted":
                    it.stage = "done"
        except Exception as exc:
            log.error("saving %s failed:\n%s", self.args.output, traceback.format_exc())
            for it in done:
                it.fail(f"the scene could not be saved to {self.args.output}: {exc}", stage="save",
                        error_type=type(exc).__name__)
        self.scene_time["save"] = time.perf_counter() - t0

    def _set_stage(self, item: Item, stage: str, *, show: bool = True) -> None:
        item.stage = stage
        if show:
            self.console.stage(item, stage)

    def _already_done(self, item: Item, previous: Previous) -> bool:
        """--resume with --output-dir: the image's .blend is there and its result is known."""
        if self.args.output_dir is None:
            return False
        blend = self.args.output_dir / f"{item.name}.blend"
        known = previous.result_for(item)
        if not blend.is_file() or known is None:
            return False
        # everything the arguments ask for must be there, or "--resume to try again" would skip it
        if self.args.export and not (blend.parent / export_name(item.name, self.args.export)).is_file():
            return False
        if any(not (folder / f"{item.name}.png").is_file() for folder in self.config.render_dirs):
            return False
        item.status, item.stage, item.reused, item.resumed_from = "skipped", "done", True, "result"
        item.blend_file, item.result_file = blend, known
        item.started = item.finished = time.time()
        if self.args.export:
            item.exports.append(blend.parent / export_name(item.name, self.args.export))
        self.console.finished(item)
        return True


def _timeouts(generate: float) -> Any:
    from ..core.client import Timeouts

    return Timeouts(generate=generate)


def cli_wording(photo: str | None = None) -> Any:
    """`errors.Wording` in this tool's words: its options instead of the add-on's UI places.
    `photo`: the image's file name, for advice that names it."""
    from ..core import errors

    return errors.Wording(
        key="set a valid key with the ONEMIN_API_KEY environment variable or --api-key",
        network="proxy (--proxy, --ca-bundle) and --timeout",
        fetch_later="the generation is paid for: run again with --resume to fetch it, free",
        download_again="by running again with --resume",
        download_later="run again later with --resume to download it again, free",
        base_url="--base-url (or ONEMIN_API_BASE_URL)",
        reimport="run again with --resume (that downloads it again, free)",
        redownload="run again with --resume to download it again, free",
        upscale="pass --upscale",
        result_folder="choose another --result-dir",
        regenerate=f"add --regenerate {_quoted(photo) if photo else 'PHOTO'} to generate it again",
    )


def cli_message(err: BaseException, photo: str | None = None) -> str:
    """`errors.user_message(err)` in this tool's words (`cli_wording`). `photo`: the image's file
    name, for advice that names it."""
    from ..core import errors

    if isinstance(err, errors.UnansweredGeneration):
        return unanswered_text(err.photo)
    return errors.user_message(err, cli_wording(photo))


def unanswered_text(photo: str) -> str:
    """The one sentence a resume refuses an unanswered generation with (see errors.unanswered_sentence)."""
    from ..core import errors

    return errors.unanswered_sentence(photo, resend="--resume does not send it again",
                                      how=f"add --regenerate {_quoted(photo)} to the command")


def _quoted(photo: str) -> str:
    return shlex.quote(photo)
