"""bpy-free, runs on a worker thread: `run()` turns one image into one downloaded result (prepare → upload → generate/poll → download).

The job reports `(stage, fraction, message)` progress, stops at the next chunk or stage when its
cancel Event is set, and calls `checkpoint` whenever something worth journalling became known
(the asset key, that the generation request is about to go out, the uuid, the final record, the
result file), so that a crash or a restart can resume without paying twice: `run(...,
resume=checkpoint)` goes on from the furthest point reached, and never sends a generation again.

Asynchronous requests are the default: the generation's uuid comes back at once and is journalled
before anything else happens, so an interrupted job is fetched later, free. A synchronous
generation that was sent but never answered has no uuid to fetch it by; a resume refuses it
(`UnansweredGeneration`) rather than pay for it again.

With `Request.remove_background` the job has two paid steps, chained through the result folder:
prepare → upload the photo → BACKGROUND_REMOVER (sent, uuid, poll, record: journalled like the 3D
step, in the checkpoint's `bg_*` fields) → download its PNG into the result folder and check it
(size, sniffed, decodes, has alpha) → upload that PNG → IMAGE_3D_GENERATOR with `Request.model` →
poll → download. The cut-out PNG is journalled (`bg_file`) before it is uploaded, so a resume after
it never pays for the removal again, and `Result.cutout_image` names it: the import textures the
relief or plane with it and cuts them by its alpha.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import images, results
from .errors import (
    Cancelled,
    Onemin3DError,
    ResultError,
    UnansweredGeneration,
    advised,
    get_logger,
    may_have_run,
)
from .protocol import DEFAULT_BASE_URL, MODEL, GenerationRecord, RetryPolicy, Timeouts

if TYPE_CHECKING:
    from .client import OneMinClient

log = get_logger(__name__)

STAGES = ("prepare", "upload", "generate", "poll", "download")  # "import" is added by blender/
ProgressFn = Callable[[str, float, str], None]  # (stage, fraction 0..1 within the stage, message)

_PROGRESS_STEP = 0.01  # transfer progress is reported per whole percent…
_PROGRESS_INTERVAL = 0.25  # …or at least this often (seconds) when the size is unknown


@dataclass(frozen=True)
class Request:
    """Everything a job needs, copied on the main thread before the job starts."""

    image_path: Path
    api_key: str = field(repr=False)
    result_dir: Path  # results land here (the cache / result folder)
    base_url: str = DEFAULT_BASE_URL
    asset_base_url: str | None = None
    use_async: bool = True  # start, then poll: an interrupted job keeps its uuid (see the module doc)
    timeouts: Timeouts = Timeouts()
    poll_interval: float = 1.0  # the first wait between polls; it grows ×1.5 up to 10 s
    poll_deadline: float = 900.0
    max_side: int = 2048
    allow_upscale: bool = False
    proxy: str | None = None
    ca_bundle: str | None = None
    retry: RetryPolicy = RetryPolicy()
    max_download_bytes: int = results.MAX_RESULT_BYTES
    model: str = MODEL  # the API model id: protocol.MODEL ("stable-image") or protocol.TRELLIS_MODEL
    remove_background: bool = False  # BACKGROUND_REMOVER first; its cut-out is what the 3D model gets
    #: the cut-out is uploaded again for the 3D step (the safe default); False sends the removal's
    #: own storage key as the imageUrl instead (the stand-in takes both; 1min.ai's answer is unknown)
    reupload_cutout: bool = True


@dataclass(frozen=True)
class Checkpoint:
    """What the history journals, and what a resume starts from. Each one holds all that is known."""

    asset_key: str | None = None
    uuid: str | None = None
    record: GenerationRecord | None = None
    result_file: Path | None = None
    #: the generation request may have reached 1min.ai (journalled just before it is sent, cleared
    #: when the service refused it or it never left): with no uuid, it may be charged yet unfetchable
    sent: bool = False
    # the background removal (Request.remove_background), the same way: sent, uuid, final record,
    # and the downloaded, checked cut-out PNG (after which the removal is never sent again)
    bg_sent: bool = False
    bg_uuid: str | None = None
    bg_record: GenerationRecord | None = None
    bg_file: Path | None = None


@dataclass(frozen=True)
class Result:
    file: Path  # the downloaded result, inside request.result_dir
    kind: str  # results.KINDS
    record: GenerationRecord
    source_image: Path  # the user's original image
    timings: dict[str, float]  # seconds per stage, and "total"
    #: the downloaded cut-out PNG (Request.remove_background), else None: when set, the import
    #: textures the relief or plane with it, and cuts them by its alpha, instead of source_image
    cutout_image: Path | None = None

    @property
    def texture_image(self) -> Path:
        """The image a relief or plane is coloured with: the cut-out when there is one."""
        return self.cutout_image or self.source_image


def run(request: Request, *, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
        checkpoint: Callable[[Checkpoint], None] | None = None, resume: Checkpoint | None = None) -> Result:
    """Run one job to a result file in `request.result_dir`.

    `resume`: with a `result_file` that still holds a result, return it at once; with a
    successful `record`, download it; with a `uuid`, poll it, then download. A checkpoint whose
    generation was `sent` but has no uuid is refused with `UnansweredGeneration` (it may have
    been charged, and it is never sent twice); any other checkpoint starts over from the photo.

    Errors are our `Onemin3DError`s with `.stage` set to the stage they happened in.
    """
    return _Job(request, progress, cancel, checkpoint, resume or Checkpoint()).run()


class _Job:
    def __init__(self, request: Request, progress: ProgressFn | None, cancel: threading.Event | None,
                 checkpoint: Callable[[Checkpoint], None] | None, state: Checkpoint) -> None:
        self.request = request
        self.report = _Reporter(progress)
        self.cancel = cancel
        self.on_checkpoint = checkpoint
        self.state = state
        self.stage = "prepare"  # what an error is attributed to
        self.timings: dict[str, float] = {}
        self._timed: str | None = None  # the stage the clock runs for
        self._stage_started = 0.0
        self._step = _GEN  # the paid step under way: the background removal, or the 3D generation

    # --- the stages ----------------------------------------------------------------------------

    def run(self) -> Result:
        started = time.perf_counter()
        work_dir = Path(tempfile.gettempdir()) / f"onemin3d-prep-{uuidlib.uuid4().hex[:12]}"
        try:
            done = self._resume_finished()
            if done is not None:
                return done
            req = self.request
            from .client import OneMinClient  # on first use: registering the add-on loads no HTTP stack

            with OneMinClient(req.api_key, req.base_url, req.timeouts, retry=req.retry,
                              asset_base_url=req.asset_base_url, cancel=self.cancel, proxy=req.proxy,
                              ca_bundle=req.ca_bundle, max_download_bytes=req.max_download_bytes) as client:
                record = self._paid_record(client, lambda: self._source_key(client, work_dir))
                file = self._download(client, record)
            self._leave()
            kind = results.sniff_file(file)
            if kind is None:  # the client sniffed it while downloading; this is belt and braces
                raise advised(ResultError, f"The downloaded result {file.name} cannot be read back: ",
                              "download it again, free, {download_again}.")
            self.timings["total"] = time.perf_counter() - started
            log.info("job for %s done in %.2f s: %s (%s)", req.image_path.name, self.timings["total"],
                     file.name, kind)
            return Result(file, kind, record, req.image_path, dict(self.timings), cutout_image=self._cutout_file())
        except Onemin3DError as err:
            if err.stage is None:
                err.stage = self.stage
            if err.uuid is None:
                err.uuid = self.state.bg_uuid if self._step is _BG else self.state.uuid
            raise
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _resume_finished(self) -> Result | None:
        path = self.state.result_file
        if path is None:
            return None
        path = Path(path)
        kind = results.sniff_file(path) if path.is_file() else None
        if kind is None:
            log.warning("the result file %s of a resumed job is gone or unreadable; fetching it again", path)
            self.state = replace(self.state, result_file=None)
            return None
        record = self.state.record or GenerationRecord(
            uuid=self.state.uuid or "", status="SUCCESS", result_keys=(), download_url=None,
            credit_limit=None, used_credit=None)
        self.report("download", 1.0, "result already downloaded")
        return Result(path, kind, record, self.request.image_path, {}, cutout_image=self._cutout_file())

    def _cutout_file(self) -> Path | None:
        """The journalled cut-out, while it is on disk."""
        path = self.state.bg_file
        return Path(path) if path is not None and Path(path).is_file() else None

    def _source_key(self, client: OneMinClient, work_dir: Path) -> str:
        """Upload what the 3D generation is made from: the photo, or its checked cut-out (also
        when a resumed checkpoint holds a background removal: what was paid for goes on)."""
        s = self.state
        if not (self.request.remove_background or s.bg_sent or s.bg_uuid or s.bg_file):
            return self._upload(client, self._prepare(work_dir))
        cutout = self._cutout(client, work_dir)
        keys = self.state.bg_record.result_keys if self.state.bg_record is not None else ()
        if not self.request.reupload_cutout and keys:
            return keys[0]
        self._enter("upload")
        self.report("upload", 0.0, "uploading the cut-out")
        prepared = images.prepare(cutout, self.request.max_side, self.request.allow_upscale, work_dir=work_dir)
        return self._upload(client, prepared)

    def _cutout(self, client: OneMinClient, work_dir: Path) -> Path:
        """BACKGROUND_REMOVER's checked PNG, in the result folder: the journalled file, else its
        record downloaded again (free), else its uuid polled (free), else sent once (paid)."""
        from . import background

        s = self.state
        if s.bg_file is not None and Path(s.bg_file).is_file():
            try:
                return background.check_cutout(s.bg_file).path
            except ResultError as err:
                log.warning("the journalled cut-out %s cannot be used (%s); downloading it again", s.bg_file, err)
        self._step = _BG
        record = self._paid_record(client, lambda: self._upload(client, self._prepare(work_dir)))
        file = self._download(client, record)
        try:
            checked = background.check_cutout(file)
        except ResultError:
            file.unlink(missing_ok=True)  # hostile or damaged: not left in the result folder
            raise
        if not checked.has_alpha:
            self.report("download", 1.0, "the cut-out has no transparency: nothing is cut")
        self._save(result_file=file)
        self._step = _GEN
        return file

    def _paid_record(self, client: OneMinClient, make_key: Callable[[], str]) -> GenerationRecord:
        """The current step's finished record: the journalled one when it succeeded, else its uuid
        polled (free); a request sent but never answered is refused, never sent twice; else the
        step is sent once (paid), made from the asset `make_key()` gives."""
        record = cast("GenerationRecord | None", self._get("record"))
        if record is not None and record.succeeded:
            return record
        uuid = cast("str | None", self._get("uuid")) or (record.uuid if record is not None else None)
        if uuid is not None:
            return self._poll(client, uuid)
        if self._get("sent"):
            self._enter("generate")
            raise UnansweredGeneration(self.request.image_path.name)
        return self._generate(client, make_key())

    def _prepare(self, work_dir: Path) -> images.PreparedImage:
        req = self.request
        self._enter("prepare")
        self.report("prepare", 0.0, f"checking {req.image_path.name}")
        prepared = images.prepare(req.image_path, req.max_side, req.allow_upscale, work_dir=work_dir)
        how = "converted" if prepared.converted else "sent as is"
        self.report("prepare", 1.0, f"image ready: {prepared.width}×{prepared.height}, {how}")
        return prepared

    def _upload(self, client: OneMinClient, prepared: images.PreparedImage) -> str:
        self._enter("upload")
        self.report("upload", 0.0, "uploading the image")

        def on_bytes(sent: int, total: int) -> None:
            self.report.transfer("upload", sent, total, "uploading")

        key = client.upload_asset(prepared.path, on_bytes, filename=prepared.path.name, mime=prepared.mime)
        self._save(asset_key=key)
        self.report("upload", 1.0, "image uploaded")
        return key

    def _generate(self, client: OneMinClient, key: str) -> GenerationRecord:
        req = self.request
        self._enter("generate")
        self.report("generate", 0.0, f"1min.ai is {self._step.doing}")
        polling_since: list[float] = []

        def on_record(record: GenerationRecord) -> None:
            if not polling_since:  # the uuid just became known: journal it before waiting on it
                polling_since.append(time.monotonic())
                self._save(uuid=record.uuid, record=record)
                self.report("generate", 1.0, f"{self._step.what} started")
                self._enter("poll")
            self._report_poll(record, time.monotonic() - polling_since[0])

        # Journalled before the request leaves: from here on, a crash means "may have been charged".
        self._save(sent=True)
        try:
            if self._step is _BG:
                record = client.remove_background(key, req.use_async, poll_interval=req.poll_interval,
                                                  deadline=req.poll_deadline, on_record=on_record)
            else:
                record = client.generate_3d(key, req.use_async, poll_interval=req.poll_interval,
                                            deadline=req.poll_deadline, on_record=on_record, model=req.model)
        except Onemin3DError as err:
            known = self._get("uuid")
            if err.uuid is not None and known is None:
                self._save(uuid=err.uuid)  # it ran and failed (or outlived polling): it has an id
            elif known is None and not may_have_run(err):
                self._save(sent=False)  # refused, or never left this machine: nothing was charged
            raise
        self._save(uuid=record.uuid, record=record)
        self.report(self.stage, 1.0, self._credits_text(record))
        return record

    def _poll(self, client: OneMinClient, uuid: str) -> GenerationRecord:
        req = self.request
        self._enter("poll")
        self.report("poll", 0.0, f"checking on the {self._step.what}")
        since = time.monotonic()
        record = client.wait_for_result(uuid, poll_interval=req.poll_interval, deadline=req.poll_deadline,
                                        on_record=lambda r: self._report_poll(r, time.monotonic() - since))
        self._save(uuid=record.uuid, record=record)
        self.report("poll", 1.0, self._credits_text(record))
        return record

    def _download(self, client: OneMinClient, record: GenerationRecord) -> Path:
        self._enter("download")
        self.report("download", 0.0, f"downloading the {self._step.result}")

        def on_bytes(received: int, total: int) -> None:
            self.report.transfer("download", received, total, "downloading")

        file = client.download(record, self.request.result_dir, on_bytes)
        if self._step is _GEN:  # a cut-out is journalled once it passed its check (_cutout)
            self._save(result_file=file)
        self.report("download", 1.0, f"result saved as {file.name}")
        return file

    # --- helpers -------------------------------------------------------------------------------

    def _enter(self, stage: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled before the " + stage)
        self._leave()
        self.stage = self._timed = stage

    def _leave(self) -> None:
        now = time.perf_counter()
        if self._timed is not None:
            self.timings[self._timed] = self.timings.get(self._timed, 0.0) + (now - self._stage_started)
        self._timed = None
        self._stage_started = now

    def _save(self, *, asset_key: str | None = None, uuid: str | None = None,
              record: GenerationRecord | None = None, result_file: Path | None = None,
              sent: bool | None = None) -> None:
        """Journal what became known; `uuid`, `record`, `result_file` and `sent` are the current
        step's (the background removal's `bg_*` fields while it runs)."""
        step = self._step
        changes: dict[str, Any] = {}
        for name, value in (("uuid", uuid), ("record", record), ("result_file", result_file)):
            if value is not None:
                changes[getattr(step, name)] = value
        if sent is not None:
            changes[step.sent] = sent
        if asset_key is not None:
            changes["asset_key"] = asset_key
        self.state = replace(self.state, **changes)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.state)

    def _get(self, name: str) -> object:
        """The current step's checkpoint field `name` ("uuid", "record", ...)."""
        return getattr(self.state, getattr(self._step, name))

    def _report_poll(self, record: GenerationRecord, elapsed: float) -> None:
        # no promise of when it ends: an asymptotic bar that keeps moving, with honest text
        fraction = min(0.95, 1.0 - math.exp(-elapsed / 40.0))
        self.report("poll", fraction, f"1min.ai is working on it ({record.status.lower()}, {elapsed:.0f} s)")

    def _credits_text(self, record: GenerationRecord) -> str:
        left = record.credits_left
        return f"{self._step.what} finished" + (f"; {left:,} credits left" if left is not None else "")


@dataclass(frozen=True)
class _Step:
    """One paid step of a job, and the Checkpoint fields it is journalled in."""

    what: str
    doing: str
    result: str
    uuid: str
    record: str
    result_file: str
    sent: str


_GEN = _Step("generation", "generating the 3D result", "result", "uuid", "record", "result_file", "sent")
_BG = _Step("background removal", "removing the background", "cut-out", "bg_uuid", "bg_record", "bg_file",
            "bg_sent")


class _Reporter:
    """Forwards progress, thinned out for transfers (at most about 100 reports per stage)."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self._progress = progress
        self._stage = ""
        self._fraction = -1.0
        self._at = 0.0

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        self._stage, self._fraction, self._at = stage, fraction, time.monotonic()
        if self._progress is not None:
            self._progress(stage, max(0.0, min(1.0, fraction)), message)

    def transfer(self, stage: str, done: int, total: int, verb: str) -> None:
        if self._progress is None:
            return
        fraction = done / total if total > 0 else 0.0
        now = time.monotonic()
        if (stage == self._stage and fraction < 1.0 and fraction - self._fraction < _PROGRESS_STEP
                and now - self._at < _PROGRESS_INTERVAL):
            return
        text = (f"{verb} {done / 1e6:.1f} of {total / 1e6:.1f} MB" if total > 0
                else f"{verb} {done / 1e6:.1f} MB")
        self(stage, fraction, text)
