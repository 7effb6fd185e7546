#!/usr/bin/env python3
"""Headless batch converter: photos in, Blender scenes (plus exports and previews) out, via 1min.ai.

Runs two ways, with the same arguments:

    blender -b --factory-startup --python-exit-code 1 --python scripts/image_to_3d.py -- ARGS
    python scripts/image_to_3d.py ARGS                      # with the bpy wheel installed

Each image is a job of the add-on's scripting API (`onemin3d_addon.api.submit`): the same
runtime as in Blender's UI runs the pipeline in worker threads, journals every step in the
result folder's history, imports each result through `scene_build`, and cancels on Ctrl-C.
This script adds only what a batch needs on top: inputs, per-image .blend files or one grid
scene, exports, preview renders, --resume lookups, progress lines and the JSON report.
Requests are paced by the add-on's client (`core.ratelimit`), under 1min.ai's 180 a minute.

Generations are asynchronous by default (start, then poll): the generation's uuid is journalled
the moment 1min.ai answers, so after Ctrl-C, a crash or a fault --resume fetches the same
generation, free. --sync holds one long request instead; a generation cut off while it waits may
have been charged but cannot be fetched, so --resume refuses it (and names it) rather than pay
again, until --regenerate asks for a new one.

Exit codes: 0 every input converted; 1 some inputs failed (the others are still converted and
saved); 2 usage or configuration error (nothing was sent; the --json report, when asked for,
says why); 130 interrupted by Ctrl-C (what had finished is saved, and the report says what was
interrupted).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: what a folder is searched for; anything but JPEG/PNG/WebP is converted before the upload
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".tga")
EXPORT_FORMATS = ("glb", "fbx", "obj", "stl")
MODES = ("auto", "plane", "displacement")
MAX_JOBS = 8
RESULT_DIR_NAME = "onemin3d-results"
RENDER_SIZE = 256
#: after Ctrl-C, how long to wait for jobs to acknowledge the cancel before leaving them behind
CANCEL_GRACE = 10.0

log = logging.getLogger("onemin3d.image_to_3d")  # replaced by get_logger() once the add-on is importable


# --- command line --------------------------------------------------------------------------------


def script_argv(argv: Sequence[str] | None = None) -> list[str]:
    """The arguments meant for this script: after `--` under Blender, else argv[1:]."""
    argv = list(sys.argv if argv is None else argv)
    this = Path(__file__).resolve()
    if argv and _same_file(argv[0], this):
        return argv[1:]  # python scripts/image_to_3d.py ARGS
    if "--" in argv:
        return argv[argv.index("--") + 1:]  # blender ... --python scripts/image_to_3d.py -- ARGS
    return []


def _same_file(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b
    except OSError:
        return False


EPILOG = """\
inputs:
  Files, folders (their JPEG, PNG, WebP, BMP, TIFF and TGA images; --recursive for sub-folders) and glob
  patterns ("photos/*.jpg", quoted so the shell leaves them alone). A missing path is reported
  as a failed input; it does not stop the batch.

where things go:
  --output OUT.blend     one scene with every result side by side, each in its own collection
  --output-dir DIR       one DIR/<image name>.blend per image
  --export FMT           also DIR/<image name>.FMT (next to the .blend) for each result
  --render PATH          PATH ending in .png: one preview of the whole scene (--output only);
                         a folder: one preview per result, <folder>/<image name>.png
  --result-dir DIR       where every paid result is kept, with its history journal
                         (default: <output folder>/onemin3d-results)
  --json REPORT          a report: per input its status, files, error, stage and timings
  A log with the full details of every run is written to <result dir>/logs/.

the API key:
  --api-key KEY, else the ONEMIN_API_KEY environment variable. Prefer the variable: command-line
  arguments are visible to other users of the machine. The key is never printed or saved.

examples:
  %(prog)s photo.jpg --output photo.blend
  %(prog)s shots/ --recursive --output-dir out/ --export glb --jobs 4 --json out/report.json
  %(prog)s "shots/*.png" --mode displacement --strength 0.2 --solid --output relief.blend \\
      --render relief.png
  %(prog)s shots/ --output-dir out/ --resume      # after a failure or Ctrl-C: no credits spent twice

sync and async:
  Generations are asynchronous by default: each starts at once and is polled, and its id is kept in
  the history the moment 1min.ai answers, so after Ctrl-C, a crash or a fault, --resume fetches it
  without a new generation. --sync waits on one long request instead (Cloudflare may cut it after
  about 100 s); a sync generation cut off before its answer may have been charged, and --resume
  then refuses it with: "PHOTO: its generation may already have been sent and charged, but its
  answer never arrived, so --resume does not send it again; to generate it again on purpose, add
  --regenerate PHOTO to the command."

exit codes:
  0 every input converted   1 some inputs failed (the rest were converted and saved)
  2 usage or configuration error (nothing was sent; --json still writes the report, with the reason)
  130 interrupted by Ctrl-C
"""


class _Parser(argparse.ArgumentParser):
    """argparse, remembering its error message (for the --json report of an exit 2)."""

    last_error: str | None = None

    def error(self, message: str) -> Any:
        self.last_error = message
        super().error(message)


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ValueError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="image_to_3d.py",
        description="Turn photos into 3D with 1min.ai (image to 3D) and save them as Blender scenes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also look for images in sub-folders (and let ** in patterns match them)")

    out = p.add_argument_group("output")
    where = out.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", type=Path, metavar="OUT.blend",
                       help="one .blend with every result, side by side, each in its own collection")
    where.add_argument("-d", "--output-dir", type=Path, metavar="DIR", help="one .blend per image in DIR")
    out.add_argument("--export", choices=EXPORT_FORMATS, metavar="{glb,fbx,obj,stl}",
                     help="also export each result in this format next to its .blend")
    out.add_argument("--render", action="append", default=[], metavar="PNG|DIR",
                     help="render a small Cycles preview: a .png path renders the whole scene, a folder "
                          "one picture per result (may be given twice)")
    out.add_argument("--pack", action="store_true", help="pack the images into the .blend files")
    out.add_argument("--result-dir", type=Path, metavar="DIR",
                     help=f"where paid results and their history are kept (default: <output folder>/{RESULT_DIR_NAME})")
    out.add_argument("--json", type=Path, metavar="REPORT", dest="report",
                     help="write a JSON report: one entry per input with status, files, error, stage, timings")

    imp = p.add_argument_group("import")
    imp.add_argument("--mode", choices=MODES, default="auto",
                     help="auto: a model is imported as a model, a depth map as a relief, a colour image as "
                          "a plane; plane: always a textured plane; displacement: always a relief "
                          "(default: %(default)s)")
    imp.add_argument("--resolution", type=_positive_int, default=512,
                     help="relief: vertices on the long side (default: %(default)s)")
    imp.add_argument("--strength", type=float, default=0.15,
                     help="relief: depth as a fraction of the width (default: %(default)s)")
    imp.add_argument("--invert", action="store_true", help="relief: dark is near instead of white")
    imp.add_argument("--smooth", type=_non_negative_float, default=0.0,
                     help="relief: blur the depth map by this many pixels, against JPEG noise (default: 0)")
    imp.add_argument("--solid", action="store_true",
                     help="relief: close it into a watertight solid with a flat back (printable)")
    imp.add_argument("--size", type=_positive_float, default=2.0,
                     help="height of a plane or relief, longest side of a model, in metres (default: %(default)s)")

    api = p.add_argument_group("1min.ai")
    api.add_argument("--api-key", metavar="KEY", help="the 1min.ai API key (default: $ONEMIN_API_KEY)")
    api.add_argument("--base-url", metavar="URL",
                     help="the API's address (default: $ONEMIN_API_BASE_URL, else https://api.1min.ai)")
    api.add_argument("-j", "--jobs", type=_jobs, default=2,
                     help=f"parallel conversions, 1 to {MAX_JOBS}; requests stay under 1min.ai's limit of "
                          "180 a minute whatever the number (default: %(default)s)")
    how = api.add_mutually_exclusive_group()
    how.add_argument("--sync", dest="use_async", action="store_false",
                     help="wait for each generation on one long request, instead of the default: start it, "
                          "then poll. A sync generation cut off before its answer may be charged yet cannot "
                          "be fetched, and --resume does not send it again")
    how.add_argument("--async", dest="use_async", action="store_true",
                     help="start each generation, then poll for it: the default, kept for compatibility")
    p.set_defaults(use_async=True)
    api.add_argument("--poll-interval", type=_positive_float, default=1.0,
                     help="seconds before the first status check of a generation; later checks slow down "
                          "(x1.5 each, up to 10 s) to stay under the rate limit (default: %(default)s)")
    api.add_argument("--timeout", type=_positive_float, default=300.0,
                     help="seconds to wait for a generation to answer (default: %(default)s)")
    api.add_argument("--proxy", metavar="URL", help="an HTTP(S) proxy (the usual HTTPS_PROXY variables also work)")
    api.add_argument("--ca-bundle", type=Path, metavar="PEM", help="a CA bundle for TLS-inspecting proxies")
    api.add_argument("--upscale", action="store_true",
                     help="scale images smaller than 512×512 up to it, instead of refusing them")
    api.add_argument("--resume", action="store_true",
                     help="go on from what earlier runs left in the result folder or the report: results on "
                          "disk are imported from it, generations started earlier are fetched (free), and "
                          "nothing is paid twice; a damaged result is downloaded again")
    api.add_argument("--regenerate", action="append", default=[], metavar="PHOTO",
                     help="with --resume: generate PHOTO (a path or a file name) again, a new and paid "
                          "generation, instead of reusing or refusing what an earlier run left (may be given "
                          "more than once)")

    con = p.add_argument_group("console")
    talk = con.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    talk.add_argument("-v", "--verbose", action="store_true", help="also print the log on stderr")
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text}")
    return value


def _jobs(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_JOBS}, not {text}")
    return value


class UsageError(Exception):
    """A problem with the arguments or the set-up: exit 2 before anything is sent."""


class StepFailed(Exception):
    """A step after the import (an export, a render) failed; `message` is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- inputs --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Item:
    """One input and everything that happened to it; the report is written from these."""

    index: int
    given: str
    path: Path | None
    name: str = ""
    status: str = "pending"  # pending | running | converted | skipped | failed | interrupted
    stage: str = "queued"
    error: str | None = None
    error_type: str | None = None
    result_file: Path | None = None
    result_kind: str | None = None
    import_kind: str | None = None  # PLANE | RELIEF | MODEL: what the result became in the scene
    warnings: list[str] = dataclasses.field(default_factory=list)
    blend_file: Path | None = None
    exports: list[Path] = dataclasses.field(default_factory=list)
    renders: list[Path] = dataclasses.field(default_factory=list)
    reused: bool = False          # no new generation: the result (or its generation) came from an earlier run
    # "result" (a file on disk), "generation" (a uuid polled again), "interrupted generation"
    # (sent but never answered: refused by the pipeline rather than paid for twice)
    resumed_from: str | None = None
    uuid: str | None = None
    credits_left: int | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    stage_started: float | None = None
    history_id: str | None = None
    sha256: str | None = None
    collection: Any = None  # bpy.types.Collection while the scene is open; never in the report

    @property
    def label(self) -> str:
        return self.path.name if self.path is not None else self.given

    def fail(self, message: str, *, stage: str | None = None, error_type: str = "Error") -> None:
        self.status, self.error, self.error_type = "failed", message, error_type
        if stage:
            self.stage = stage
        self.finished = time.time()

    def report_entry(self) -> dict[str, Any]:
        files: dict[str, Any] = {
            "result": _s(self.result_file),
            "blend": _s(self.blend_file),
            "exports": [str(p) for p in self.exports],
            "renders": [str(p) for p in self.renders],
        }
        timings = {k: round(v, 3) for k, v in self.timings.items()}
        if self.started is not None and self.finished is not None:
            timings["total"] = round(self.finished - self.started, 3)
        return {
            "input": self.given,
            "path": _s(self.path),
            "name": self.name,
            "status": self.status,
            "stage": self.stage,
            "error": self.error,
            "error_type": self.error_type if self.error else None,
            "result_kind": self.result_kind,
            "import_kind": self.import_kind,
            "warnings": list(self.warnings),
            "reused_result": self.reused,
            "resumed_from": self.resumed_from,
            "uuid": self.uuid,
            "credits_left": self.credits_left,
            "files": files,
            "timings": timings,
        }


def _s(p: Path | None) -> str | None:
    return None if p is None else str(p)


def collect_inputs(patterns: Sequence[str], recursive: bool) -> list[Item]:
    """Expand files, folders and globs into one Item per image, in order, without duplicates.

    A path that does not exist (and matches nothing as a pattern) becomes an Item with no path:
    it is reported as a failed input rather than stopping the batch.
    """
    items: list[Item] = []
    seen: set[Path] = set()

    def add(given: str, path: Path | None) -> None:
        if path is not None:
            key = path.resolve()
            if key in seen:
                return
            seen.add(key)
            path = key
        items.append(Item(index=len(items), given=given, path=path))

    for given in patterns:
        p = Path(given).expanduser()
        if p.is_dir():
            found = _images_in(p, recursive)
            if not found:
                log.warning("no images in folder %s", p)
            for f in found:
                add(str(f), f)
        elif p.exists():
            add(given, p)
        elif glob.has_magic(given):
            matches = sorted(glob.glob(os.path.expanduser(given), recursive=recursive))
            files = [Path(m) for m in matches if Path(m).is_file()
                     and Path(m).suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                add(given, None)  # reported as "no image matches"
            for f in files:
                add(str(f), f)
        else:
            add(given, None)
    _name_items(items)
    return items


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    walker = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in walker if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                  and not f.name.startswith("."))


def _name_items(items: list[Item]) -> None:
    """A file-system-safe, batch-unique name per item: the image's stem, then -2, -3, ..."""
    used: set[str] = set()
    for item in items:
        stem = item.path.stem if item.path is not None else Path(item.given).stem or "input"
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "image"
        base = base[:80]
        name, n = base, 1
        while name.lower() in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name.lower())
        item.name = name


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --- configuration -------------------------------------------------------------------------------


@dataclasses.dataclass
class Config:
    args: argparse.Namespace
    api_key: str = dataclasses.field(repr=False)
    base_url: str
    out_dir: Path            # the folder of --output, or --output-dir
    result_dir: Path
    scene_render: Path | None
    render_dirs: list[Path]
    log_file: Path


def configure(args: argparse.Namespace, environ: dict[str, str]) -> Config:
    """Check everything that can be checked before a request is made; UsageError otherwise."""
    key = (args.api_key or environ.get("ONEMIN_API_KEY") or "").strip()
    if not key:
        raise UsageError(
            "No 1min.ai API key: set the ONEMIN_API_KEY environment variable "
            "(export ONEMIN_API_KEY=...) or pass --api-key KEY. Keys are made in your 1min.ai "
            "account, under API keys.")
    base_url = (args.base_url or environ.get("ONEMIN_API_BASE_URL") or "").strip().rstrip("/")
    if base_url and not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url must start with http:// or https://, not {base_url!r}")

    if args.output is not None:
        output = args.output.expanduser().resolve()
        if output.suffix.lower() != ".blend":
            raise UsageError(f"--output must name a .blend file, not {args.output}")
        if output.is_dir():
            raise UsageError(f"--output {args.output} is a folder: give a .blend file, or use --output-dir")
        args.output = output
        out_dir = output.parent
    else:
        out_dir = args.output_dir.expanduser().resolve()
        args.output_dir = out_dir
    _ensure_writable(out_dir, "output folder")

    result_dir = (args.result_dir.expanduser().resolve() if args.result_dir else out_dir / RESULT_DIR_NAME)
    _ensure_writable(result_dir, "result folder (--result-dir)")

    scene_render: Path | None = None
    render_dirs: list[Path] = []
    for raw in args.render:
        target = Path(raw).expanduser().resolve()
        if target.suffix.lower() == ".png":
            if args.output is None:
                raise UsageError("--render FILE.png renders the whole scene, which needs --output; "
                                 "with --output-dir give a folder, for one picture per image")
            _ensure_writable(target.parent, "render folder")
            scene_render = target
        elif target.suffix:
            raise UsageError(f"--render takes a .png file or a folder, not {raw}")
        else:
            _ensure_writable(target, "render folder")
            render_dirs.append(target)

    if args.report is not None:
        args.report = args.report.expanduser().resolve()
        if args.report.is_dir():
            raise UsageError(f"--json {args.report} is a folder: give a file name, e.g. report.json")
        _ensure_writable(args.report.parent, "report folder")

    if args.ca_bundle is not None and not args.ca_bundle.is_file():
        raise UsageError(f"--ca-bundle {args.ca_bundle}: no such file")

    logs = result_dir / "logs"
    _ensure_writable(logs, "log folder")
    log_file = logs / time.strftime("image_to_3d-%Y%m%d-%H%M%S.log")
    return Config(args=args, api_key=key, base_url=base_url, out_dir=out_dir, result_dir=result_dir,
                  scene_render=scene_render, render_dirs=render_dirs, log_file=log_file)


def _ensure_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".onemin3d-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"Cannot write to the {what} {folder}: {reason}. "
                         "Choose a folder you can write to.") from None


def setup_logging(config: Config) -> None:
    """Everything (tracebacks included) goes to the log file; stderr gets it only with --verbose."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    handler = logging.FileHandler(config.log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if config.args.verbose:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        err.setLevel(logging.INFO)
        root.addHandler(err)
    logging.captureWarnings(True)
    for noisy in ("urllib3", "PIL"):
        logging.getLogger(noisy).setLevel(logging.INFO)


# --- Blender -------------------------------------------------------------------------------------


def start_blender(config: Config) -> Any:
    """Import bpy, register the add-on, start from an empty scene, then allow online access.

    Online access is switched on only after registration and the empty file are in place: the
    add-on's runtime resumes the in-Blender history's interrupted jobs when it registers and
    whenever a file is loaded, and those jobs are not this batch's business.
    """
    import bpy

    if getattr(bpy.app, "online_access_override", False) and not bpy.app.online_access:
        raise UsageError("Blender was started with --offline-mode, so no request may be made: "
                         "drop --offline-mode to convert images.")
    online = bpy.context.preferences.system
    online.use_online_access = False
    with _blender_output_to_log():
        _enable_addon(bpy)
        bpy.ops.wm.read_homefile(use_empty=True)
    # Running this command is the user's explicit request to go online, like blender --online-mode.
    online.use_online_access = True
    return bpy


def _running_inside_blender() -> bool:
    """True under the blender executable, which imports bpy before it runs --python scripts."""
    return "bpy" in sys.modules and not _same_file(sys.argv[0] if sys.argv else "", Path(__file__).resolve())


def _hermetic_user_folder() -> None:
    """With the bpy wheel, keep Blender's user folders (config, scripts) in a temporary folder.

    The add-on is registered from this repository, so nothing is needed from the user's own
    Blender set-up, and nothing of this run should land in it. Must run before `import bpy`.
    """
    if _running_inside_blender() or "BLENDER_USER_RESOURCES" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="onemin3d-cli-user-")
    os.environ["BLENDER_USER_RESOURCES"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def _enable_addon(bpy: Any) -> None:
    """Enable the add-on: this repository's copy when the script runs from it, else the installed
    extension (bl_ext.<repository>.onemin3d)."""
    import addon_utils

    def fail(exc: BaseException) -> None:
        raise exc

    if (ROOT / "onemin3d_addon" / "__init__.py").is_file():
        _addon_path()
        names = ["onemin3d_addon"]
    else:
        names = [m.__name__ for m in addon_utils.modules() if m.__name__.split(".")[-1] == "onemin3d"]
    if not names:
        raise UsageError("The onemin3d add-on was not found: run this script from the repository, "
                         "or install the extension in Blender first.")
    name = names[0]
    if not addon_utils.check(name)[1]:
        addon_utils.enable(name, default_set=True, handle_error=fail)


@contextlib.contextmanager
def _blender_output_to_log() -> Iterator[None]:
    """Send what Blender and its importers print (C-level stdout and stderr) to the log file.

    Importers and the renderer print progress chatter, and Python add-ons print tracebacks they
    caught themselves; none of it belongs between our progress lines, all of it belongs in the log.
    """
    log_path = _log_file_path()
    if log_path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log_path, "ab", buffering=0) as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _log_file_path() -> str | None:
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.flush()
            return h.baseFilename
    return None


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

        from onemin3d_addon import api
        from onemin3d_addon.core import history, pipeline

        self.api, self.pipeline = api, pipeline
        self.history = history.History(config.result_dir)  # read for --resume; the runtime writes it

    def check_key(self) -> None:
        """A free request before the first paid one: a rejected key or an unreachable server is a
        configuration error (exit 2) found in a second, not a batch of failures."""
        from onemin3d_addon.core import client, errors

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
        previous = load_previous(self.config, self.history) if self.args.resume else None
        pending: list[Item] = []
        for item in self.items:
            if item.path is None:
                pattern = glob.has_magic(item.given)
                item.fail(f"no image matches {item.given!r}" if pattern else f"file not found: {item.given}",
                          stage="input", error_type="FileNotFoundError")
                self.console.finished(item)
                continue
            if not item.path.is_file():
                item.fail(f"not a file: {item.given}", stage="input", error_type="FileNotFoundError")
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
        assert item.path is not None
        for given in self.args.regenerate:
            target = Path(given).expanduser()
            if target.name == given and item.path.name == given:
                return True
            with contextlib.suppress(OSError):
                if target.resolve() == item.path:
                    return True
        return False

    def _submit(self, item: Item, resume: Any) -> None:
        from onemin3d_addon.core import errors

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
                **import_options(self.args))
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
        from onemin3d_addon.core import errors

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
        from onemin3d_addon.core import errors

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
                target = blend.parent / f"{it.name}.{self.args.export}"
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
        if self.args.export and not (blend.parent / f"{item.name}.{self.args.export}").is_file():
            return False
        if any(not (folder / f"{item.name}.png").is_file() for folder in self.config.render_dirs):
            return False
        item.status, item.stage, item.reused, item.resumed_from = "skipped", "done", True, "result"
        item.blend_file, item.result_file = blend, known
        item.started = item.finished = time.time()
        for ext in EXPORT_FORMATS:
            if (blend.parent / f"{item.name}.{ext}").is_file() and ext == self.args.export:
                item.exports.append(blend.parent / f"{item.name}.{ext}")
        self.console.finished(item)
        return True


def import_options(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's import options, named as `api.submit` (and `scene_build.import_result`) take them."""
    return {
        "resolution": args.resolution,
        "strength": args.strength,
        "invert": args.invert,
        "smooth": args.smooth,
        "solid": args.solid,
        "height": args.size,        # a plane's or relief's height
        "target_size": args.size,   # a model's longest side
    }


def _timeouts(generate: float) -> Any:
    from onemin3d_addon.core.client import Timeouts

    return Timeouts(generate=generate)


def cli_message(err: BaseException, photo: str | None = None) -> str:
    """`errors.user_message(err)`, with the add-on's UI places and next steps swapped for this
    tool's options. `photo`: the image's file name, for advice that names it."""
    from onemin3d_addon.core import errors

    name = _quoted(photo) if photo else "PHOTO"
    if isinstance(err, errors.UnansweredGeneration):
        return unanswered_text(err.photo)
    text = errors.user_message(err)
    for ui, cli in (
        (f"in {errors.PREFS_PATH} or in the ONEMIN_API_KEY environment variable",
         "with the ONEMIN_API_KEY environment variable or --api-key"),
        (f"proxy and timeouts in {errors.PREFS_PATH}", "proxy (--proxy, --ca-bundle) and --timeout"),
        ("enable 'Allow upscaling'", "pass --upscale"),
        (errors.FETCH_LATER, "the generation is paid for: run again with --resume to fetch it, free"),
        ("try the download again later from the history", "run again later with --resume to download it again, free"),
        ("try the download again from the history", "run again with --resume to download it again, free"),
        (errors.DOWNLOAD_AGAIN, "by running again with --resume"),
        ("and if the same comes back, generate it again.",
         f"and if the same comes back, add --regenerate {name} to generate it again."),
        ("re-import it (that downloads it again, free)", "run again with --resume (that downloads it again, free)"),
        ("re-download it from the history", "run again with --resume to download it again, free"),
        ("choose another result folder in the add-on preferences", "choose another --result-dir"),
    ):
        text = text.replace(ui, cli)
    return text


def unanswered_text(photo: str) -> str:
    """The one sentence a resume refuses an unanswered generation with (see errors.unanswered_sentence)."""
    from onemin3d_addon.core import errors

    return errors.unanswered_sentence(photo, resend="--resume does not send it again",
                                      how=f"add --regenerate {_quoted(photo)} to the command")


def _quoted(photo: str) -> str:
    return shlex.quote(photo)


# --- resume --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Previous:
    """What earlier runs left: history entries and report items, looked up by image."""

    entries: list[Any]
    report: dict[str, dict[str, Any]]

    def _entries_for(self, item: Item) -> list[Any]:
        out = []
        for e in self.entries:
            if e.source_path != str(item.path):
                continue
            settings = e.settings or {}
            digest = (settings.get("metadata") or {}).get("sha256") or settings.get("sha256")
            if digest and item.sha256 and digest != item.sha256:
                continue  # the file changed since: its old result is not this image's
            out.append(e)
        return out  # newest first, as History.entries() returns them

    def result_for(self, item: Item) -> Path | None:
        """A result file an earlier run left for this image, whole and not known to be damaged."""
        from onemin3d_addon.core import results

        for e in self._entries_for(item):
            if e.state == "failed" and e.stage == "import":
                continue  # it did not import: a damaged download, fetched again (checkpoint_for)
            if e.result_file and Path(e.result_file).is_file() and results.sniff_file(Path(e.result_file)):
                return Path(e.result_file)
        rep = self.report.get(str(item.path))
        if rep and rep.get("status") in ("converted", "skipped"):
            if not rep.get("sha256") or rep.get("sha256") == item.sha256:
                res = (rep.get("files") or {}).get("result")
                if res and Path(res).is_file():
                    return Path(res)
        return None

    def checkpoint_for(self, item: Item, pipeline: Any) -> Any:
        """Where this image goes on from: a result on disk, a generation to fetch again (free), a
        generation that may have been charged but can never be fetched (refused by the pipeline,
        never sent again), or None: nothing usable, the image is generated."""
        from onemin3d_addon.core import history

        result = self.result_for(item)
        if result is not None:
            item.reused, item.resumed_from = True, "result"
            return pipeline.Checkpoint(result_file=result)
        for e in self._entries_for(item):  # newest first
            if history.fetchable(e):
                # paid for: poll its uuid and download again (also after a damaged download or import)
                item.reused, item.resumed_from = True, "generation"
                return pipeline.Checkpoint(asset_key=e.asset_key, uuid=e.uuid)
            if history.unanswered(e):
                # Sent (sync, or cut off before the answer) and never answered: it may be charged, and
                # nothing can fetch it. pipeline.run() refuses this checkpoint in one sentence that
                # names the photo, instead of paying again behind the user's back (--regenerate asks).
                item.resumed_from = "interrupted generation"
                return pipeline.Checkpoint(asset_key=e.asset_key, sent=True)
        return None


def load_previous(config: Config, history: Any) -> Previous:
    report: dict[str, dict[str, Any]] = {}
    path = config.args.report
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for entry in data.get("items", []):
                if entry.get("path"):
                    report[entry["path"]] = entry
        except (OSError, ValueError) as exc:
            log.warning("the previous report %s could not be read (%s); using the history only", path, exc)
    return Previous(entries=history.entries(), report=report)



# --- scene helpers (main thread) -----------------------------------------------------------------


def layout_grid(collections: Sequence[Any]) -> None:
    """Lay results out side by side, in input order, each centred in its own grid cell.

    Rows hold up to four results (more: ceil(√n) per row). The cell pitch comes from the largest
    result, so nothing overlaps; every result's lowest point sits on the ground (z = 0).
    """
    from mathutils import Vector

    bounds = [world_bounds(list(c.all_objects)) for c in collections]
    sizes = [(hi - lo) for lo, hi in bounds if lo is not None and hi is not None]
    if not sizes:
        return
    pitch_x = max(s.x for s in sizes) * 1.2 + 1e-3
    pitch_y = max(s.y for s in sizes) * 1.2 + 1e-3
    count = len(collections)
    cols = count if count <= 4 else math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    for index, (coll, (lo, hi)) in enumerate(zip(collections, bounds, strict=True)):
        if lo is None or hi is None:
            continue
        row, col = divmod(index, cols)
        target = Vector(((col - (cols - 1) / 2) * pitch_x, ((rows - 1) / 2 - row) * pitch_y, 0.0))
        centre = (lo + hi) / 2
        offset = Vector((target.x - centre.x, target.y - centre.y, -lo.z))
        objects = set(coll.all_objects)
        for ob in objects:
            if ob.parent is None or ob.parent not in objects:
                ob.location += offset
    bpy_update()


def bpy_update() -> None:
    import bpy

    bpy.context.view_layer.update()


def world_bounds(objects: Sequence[Any]) -> tuple[Any, Any]:
    """(min, max) corners of the evaluated geometry of `objects` in world space."""
    import bpy
    from mathutils import Vector

    depsgraph = bpy.context.evaluated_depsgraph_get()
    lo = hi = None
    for ob in objects:
        if ob.type not in {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME"}:
            continue
        ev = ob.evaluated_get(depsgraph)
        mw = ev.matrix_world
        for corner in ev.bound_box:
            p = mw @ Vector(corner)
            lo = p.copy() if lo is None else Vector(map(min, lo, p))
            hi = p.copy() if hi is None else Vector(map(max, hi, p))
    return lo, hi


def remove_new_data(bpy: Any, before: set[Any]) -> None:
    """Remove every datablock that is not in `before` (a snapshot of bpy.data.user_map())."""
    new = [id_ for id_ in bpy.data.user_map() if id_ not in before]
    if new:
        bpy.data.batch_remove(new)


def save_blend(bpy: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.blend")
    # Saved under a temporary name and renamed: an interrupted save never leaves half a .blend.
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp), check_existing=False, copy=True)
    os.replace(tmp, path)


def pack_images(bpy: Any) -> None:
    for image in bpy.data.images:
        if image.source == "FILE" and not image.packed_file and image.filepath:
            image.pack()


def export_collection(bpy: Any, collection: Any, target: Path, fmt: str) -> None:
    """Export the objects of one result; the format's importer must read the file back."""
    view_layer = bpy.context.view_layer
    objects = [o for o in collection.all_objects]
    for ob in view_layer.objects:
        ob.select_set(False)
    for ob in objects:
        ob.select_set(True)
    view_layer.objects.active = objects[0] if objects else None
    target.parent.mkdir(parents=True, exist_ok=True)
    path = str(target)
    if fmt == "glb":
        bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True, export_apply=True)
    elif fmt == "fbx":
        bpy.ops.export_scene.fbx(filepath=path, use_selection=True, use_mesh_modifiers=True,
                                 path_mode="COPY", embed_textures=True)
    elif fmt == "obj":
        bpy.ops.wm.obj_export(filepath=path, export_selected_objects=True, apply_modifiers=True,
                              path_mode="COPY")
    elif fmt == "stl":
        bpy.ops.wm.stl_export(filepath=path, export_selected_objects=True, apply_modifiers=True)
    else:  # argparse already refused it
        raise ValueError(fmt)
    if not target.is_file():
        raise RuntimeError(f"the {fmt} exporter wrote nothing to {target}")


PREVIEW_COLLECTION = "1min3d preview"


def render_preview(bpy: Any, collections: Sequence[Any], target: Path) -> None:
    """A small Cycles (CPU) picture of `collections`: a camera and a sun framing their bounds.

    Other result collections are hidden from the render meanwhile; the camera and sun stay in the
    scene (collection "1min3d preview"), so opening the .blend and pressing F12 shows the same view.
    """
    scene = bpy.context.scene
    others = [c for c in _result_collections(scene) if c not in collections]
    hidden = [(c, c.hide_render) for c in others]
    for c, _ in hidden:
        c.hide_render = True
    try:
        objects = [o for c in collections for o in c.all_objects]
        cam, sun = _preview_rig(bpy, scene)
        frame_objects(bpy, scene, cam, sun, objects)
        _render_settings(bpy, scene)
        target.parent.mkdir(parents=True, exist_ok=True)
        scene.render.filepath = str(target)
        bpy.ops.render.render(write_still=True)
        if not target.is_file():
            raise RuntimeError(f"Cycles wrote no picture to {target}")
    finally:
        for c, was in hidden:
            c.hide_render = was


def _result_collections(scene: Any) -> list[Any]:
    return [c for c in scene.collection.children if c.name != PREVIEW_COLLECTION]


def _preview_rig(bpy: Any, scene: Any) -> tuple[Any, Any]:
    coll = bpy.data.collections.get(PREVIEW_COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(PREVIEW_COLLECTION)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    cam = next((o for o in coll.objects if o.type == "CAMERA"), None)
    if cam is None:
        cam = bpy.data.objects.new("1min3d camera", bpy.data.cameras.new("1min3d camera"))
        coll.objects.link(cam)
    sun = next((o for o in coll.objects if o.type == "LIGHT"), None)
    if sun is None:
        light = bpy.data.lights.new("1min3d sun", "SUN")
        light.energy = 3.0
        light.angle = math.radians(8)
        sun = bpy.data.objects.new("1min3d sun", light)
        coll.objects.link(sun)
    scene.camera = cam
    if scene.world is None:
        scene.world = bpy.data.worlds.new("1min3d world")
    world = scene.world
    world.color = (0.08, 0.085, 0.09)
    if hasattr(world, "use_nodes") and world.node_tree is None:
        world.use_nodes = True  # deprecated in 5.0, where worlds always have nodes
    if world.node_tree is not None:
        bg = next((n for n in world.node_tree.nodes if n.type == "BACKGROUND"), None)
        if bg is not None:
            bg.inputs["Color"].default_value = (0.16, 0.17, 0.18, 1.0)
            bg.inputs["Strength"].default_value = 1.0
    return cam, sun


def frame_objects(bpy: Any, scene: Any, cam: Any, sun: Any, objects: Sequence[Any]) -> None:
    """Aim the camera at the objects' bounds from their front, above, and fit them in frame."""
    import numpy as np
    from mathutils import Vector

    lo, hi = world_bounds(objects)
    if lo is None or hi is None:
        lo, hi = Vector((-1, -1, 0)), Vector((1, 1, 1))
    centre = (lo + hi) / 2
    front = _facing(bpy, objects)
    up = Vector((0.0, 0.0, 1.0))
    if front is not None and abs(front.dot(up)) > 0.7:
        # a relief or plane lying flat, facing up: look down at it from the front
        view = (front * math.cos(math.radians(40)) + Vector((0.0, -1.0, 0.0)) * math.sin(math.radians(40)))
    elif front is not None:
        view = front + up * 0.45
    else:
        view = Vector((0.5, -1.0, 0.55))  # a model: glTF's front is Blender's -Y; a three-quarter view
    view.normalize()
    rot = (-view).to_track_quat("-Z", "Y")
    cam.rotation_euler = rot.to_euler()

    extent = hi - lo
    aspect = 1.0
    right = rot @ Vector((1.0, 0.0, 0.0))
    upv = rot @ Vector((0.0, 1.0, 0.0))
    corners = [Vector((x, y, z)) for x in (lo.x, hi.x) for y in (lo.y, hi.y) for z in (lo.z, hi.z)]
    xs = np.array([(c - centre).dot(right) for c in corners])
    ys = np.array([(c - centre).dot(upv) for c in corners])
    zs = np.array([(c - centre).dot(view) for c in corners])
    width, height = float(np.ptp(xs)), float(np.ptp(ys))
    if height > 1e-6:
        aspect = max(1.0, min(2.5, width / height))
    rx = RENDER_SIZE
    ry = max(128, int(round(RENDER_SIZE / aspect)))
    scene.render.resolution_x, scene.render.resolution_y = rx, ry
    scene.render.resolution_percentage = 100

    camdata = cam.data
    camdata.lens = 50.0
    camdata.sensor_fit = "HORIZONTAL"
    half_h = camdata.angle / 2
    half_v = math.atan(math.tan(half_h) * ry / rx)
    margin = 1.08
    dist = float(np.max(zs + np.maximum(np.abs(xs) * margin / math.tan(half_h),
                                        np.abs(ys) * margin / math.tan(half_v))))
    dist = max(dist, 1e-3 + float(np.max(zs)))
    cam.location = centre + view * dist
    camdata.clip_start = max(0.01, dist * 0.01)
    camdata.clip_end = dist * 10 + extent.length * 2

    # key light from the camera's upper left
    light_dir = (view + upv * 0.8 - right * 0.6).normalized()
    sun.rotation_euler = (-light_dir).to_track_quat("-Z", "Y").to_euler()


def _facing(bpy: Any, objects: Sequence[Any]) -> Any:
    """The area-weighted mean normal of the meshes, if they clearly face one way (a plane, a relief)."""
    import numpy as np
    from mathutils import Vector

    depsgraph = bpy.context.evaluated_depsgraph_get()
    total = np.zeros(3)
    area_sum = 0.0
    for ob in objects:
        if ob.type != "MESH":
            continue
        ev = ob.evaluated_get(depsgraph)
        mesh = ev.to_mesh()
        try:
            n = len(mesh.polygons)
            if not n:
                continue
            normals = np.empty(n * 3, np.float32)
            areas = np.empty(n, np.float32)
            mesh.polygon_normals.foreach_get("vector", normals)
            mesh.polygons.foreach_get("area", areas)
            m = np.array(ev.matrix_world.to_3x3().inverted_safe().transposed())
            world_normals = normals.reshape(-1, 3) @ m.T
            total += (world_normals * areas[:, None]).sum(axis=0)
            area_sum += float(areas.sum())
        finally:
            ev.to_mesh_clear()
    if area_sum <= 0:
        return None
    mean = total / area_sum
    length = float(np.linalg.norm(mean))
    if length < 0.5:  # closed or many-sided: a model, not a sheet
        return None
    return Vector(mean / length)


def _render_settings(bpy: Any, scene: Any) -> None:
    scene.render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = 16
    cycles.use_adaptive_sampling = True
    cycles.max_bounces = 4
    cycles.use_denoising = _have_oidn()
    if cycles.use_denoising:
        cycles.denoiser = "OPENIMAGEDENOISE"
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.view_settings.view_transform = "Standard"  # photos keep their colours
    scene.render.use_persistent_data = False


def _have_oidn() -> bool:
    try:
        import _cycles
    except ImportError:
        return False
    return bool(getattr(_cycles, "with_openimagedenoise", False))


# --- report --------------------------------------------------------------------------------------


def write_report(config: Config, items: Sequence[Item], batch: Batch | None, *, partial: bool) -> None:
    """Write the --json report atomically; called after every finished image and at the end."""
    path = config.args.report
    if path is None:
        return
    args = config.args
    counts = _counts(items)
    data = {
        "tool": "onemin3d image_to_3d",
        "version": _version(),
        "complete": not partial,
        "interrupted": bool(batch and batch.interrupted),
        "error": None,
        "started": _iso(batch.started if batch else time.time()),
        "written": _iso(time.time()),
        "settings": {
            "mode": args.mode, "jobs": args.jobs, "async": args.use_async,
            "base_url": config.base_url or "https://api.1min.ai",
            "resolution": args.resolution, "strength": args.strength, "invert": args.invert,
            "smooth": args.smooth, "solid": args.solid, "size": args.size,
            "output": _s(args.output), "output_dir": _s(args.output_dir), "export": args.export,
            "result_dir": str(config.result_dir), "log": str(config.log_file),
        },
        "summary": counts,
        "items": [dict(i.report_entry(), sha256=i.sha256) for i in items],
    }
    if batch is not None:
        data["timings"] = {"startup": round(batch.startup, 3),
                           "batch": round(batch.run_time, 3) if batch.run_time is not None else None}
    if batch is not None and batch.problems:
        data["problems"] = list(batch.problems)
    if batch is not None and batch.scene_time:
        data["scene_timings"] = {k: round(v, 3) for k, v in batch.scene_time.items()}
    text = json.dumps(data, indent=2, ensure_ascii=False)
    from onemin3d_addon.core.errors import redact

    text = redact(text)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_usage_report(path: Path | None, items: Sequence[Item], message: str) -> None:
    """The --json report of a run that stopped with exit code 2 before converting anything: the
    reason at the top (`error`), and every input marked failed with it. Nothing was sent."""
    if path is None:
        return
    for item in items:
        if item.status in ("pending", "running"):
            item.fail(message, stage="queued", error_type="UsageError")
    data = {
        "tool": "onemin3d image_to_3d",
        "version": _version(),
        "complete": True,
        "interrupted": False,
        "exit_code": EXIT_USAGE,
        "error": message,
        "written": _iso(time.time()),
        "summary": _counts(items),
        "items": [dict(i.report_entry(), sha256=i.sha256) for i in items],
    }
    try:
        path = Path(path).expanduser().resolve()
        from onemin3d_addon.core.errors import redact

        text = redact(json.dumps(data, indent=2, ensure_ascii=False))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        print(f"image_to_3d: error: could not write the report {path}: {exc.strerror or exc}", file=sys.stderr)


def _report_argument(arguments: Sequence[str]) -> Path | None:
    """The --json path of a command line argparse refused (if that much of it can be read)."""
    pre = _QuietParser(add_help=False)
    pre.add_argument("--json", type=Path, dest="report")
    try:
        known, _rest = pre.parse_known_args(list(arguments))
    except ValueError:
        return None
    report: Path | None = known.report
    return report


def _counts(items: Sequence[Item]) -> dict[str, int]:
    counts = {"total": len(items), "converted": 0, "skipped": 0, "failed": 0, "interrupted": 0}
    for i in items:
        if i.status in counts:
            counts[i.status] += 1
        elif i.status in ("pending", "running"):
            counts["interrupted"] += 1
    return counts


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def _version() -> str:
    try:
        from onemin3d_addon.version import VERSION
    except (ImportError, OSError, ValueError):
        return "unknown"
    return VERSION


def summary_line(items: Sequence[Item], report: Path | None) -> str:
    c = _counts(items)
    parts = [f"{c['converted']} converted"]
    if c["skipped"]:
        parts.append(f"{c['skipped']} skipped (already done)")
    parts.append(f"{c['failed']} failed")
    if c["interrupted"]:
        parts.append(f"{c['interrupted']} interrupted")
    text = ", ".join(parts)
    if c["failed"] or c["interrupted"]:
        text += f" (see report {report})" if report is not None else " (see the messages above)"
    return text


# --- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    t_main = time.perf_counter()
    for stream in (sys.stdout, sys.stderr):  # a console that cannot show "×" or "…" gets "?"
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
    parser = build_parser()
    arguments = script_argv() if argv is None else list(argv)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        code = int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        if code == EXIT_USAGE:
            _addon_path()
            write_usage_report(_report_argument(arguments), [], f"bad arguments: {parser.last_error or 'see --help'}")
        return code

    _hermetic_user_folder()  # before anything can import bpy (the add-on package may)
    _addon_path()
    from onemin3d_addon.core import errors

    global log
    log = errors.get_logger("onemin3d.image_to_3d")
    try:
        config = configure(args, dict(os.environ))
    except UsageError as exc:
        print(f"image_to_3d: error: {exc}", file=sys.stderr)
        write_usage_report(args.report, collect_inputs(args.inputs, args.recursive), str(exc))
        return EXIT_USAGE
    errors.register_secret(config.api_key)
    setup_logging(config)
    errors.install_log_filter()
    log.info("onemin3d image_to_3d %s: %s", _version(), " ".join(_safe_argv(argv)))

    items = collect_inputs(args.inputs, args.recursive)
    if not items:
        message = ("no images found in the inputs given (looked for "
                   f"{', '.join(IMAGE_SUFFIXES)}; add --recursive for sub-folders)")
        print(f"image_to_3d: error: {message}", file=sys.stderr)
        write_usage_report(args.report, items, message)
        return EXIT_USAGE

    interrupt = Interrupt()
    console = Console(len(items), quiet=args.quiet)
    batch: Batch | None = None
    try:
        try:
            bpy = start_blender(config)
        except UsageError as exc:
            print(f"image_to_3d: error: {exc}", file=sys.stderr)
            write_usage_report(args.report, items, str(exc))
            return EXIT_USAGE
        interrupt.install()
        batch = Batch(config, items, bpy, console, interrupt)
        batch.startup = time.perf_counter() - t_main
        if not args.quiet:
            n = len(items)
            console.message(f"Converting {n} image{'s' if n != 1 else ''}, {min(n, args.jobs)} at a time; "
                            f"results are kept in {config.result_dir}")
        batch.run()
    except UsageError as exc:  # the key check: a rejected key or an unreachable server
        console.close()
        print(f"image_to_3d: error: {exc}", file=sys.stderr)
        write_usage_report(args.report, items, str(exc))
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line on the console, the traceback in the log
        console.close()
        log.error("internal error:\n%s", traceback.format_exc())
        print(f"image_to_3d: internal error ({type(exc).__name__}: {errors.redact(str(exc))}); the details "
              f"are in {config.log_file}. Finished results are kept in {config.result_dir}.", file=sys.stderr)
        _write_report_safely(config, items, batch)
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.close()
        print("image_to_3d: stopped at once (second Ctrl-C); finished results are in "
              f"{config.result_dir}", file=sys.stderr)
        for item in items:
            if item.status in ("pending", "running"):
                item.status, item.error = "interrupted", "stopped by a second Ctrl-C"
        if batch is not None:
            batch.interrupted = True
        _write_report_safely(config, items, batch)
        return EXIT_INTERRUPTED
    finally:
        interrupt.restore()
        console.close()

    if batch.interrupted:
        for item in items:
            if item.status in ("pending", "running"):
                item.status = "interrupted"
                item.error = item.error or batch.interrupted_text(item)
    _write_report_safely(config, items, batch)
    _print_outputs(config, items, args.quiet)
    if not args.quiet or any(i.status == "failed" for i in items):
        print(summary_line(items, args.report))
    if batch.interrupted:
        return EXIT_INTERRUPTED
    failed = any(i.status in ("failed", "interrupted") for i in items) or batch.problems
    return EXIT_FAILED if failed else EXIT_OK


def _write_report_safely(config: Config, items: Sequence[Item], batch: Batch | None) -> None:
    try:
        write_report(config, items, batch, partial=False)
    except OSError as exc:
        print(f"image_to_3d: error: could not write the report {config.args.report}: {exc}", file=sys.stderr)


def _print_outputs(config: Config, items: Sequence[Item], quiet: bool) -> None:
    if quiet:
        return
    args = config.args
    if args.output is not None and any(i.blend_file for i in items):
        print(f"scene:   {args.output}")
    elif args.output_dir is not None and any(i.blend_file for i in items):
        print(f"scenes:  {args.output_dir}")
    if config.scene_render is not None and config.scene_render.is_file():
        print(f"render:  {config.scene_render}")
    for folder in config.render_dirs:
        print(f"renders: {folder}")
    if args.report is not None:
        print(f"report:  {args.report}")
    print(f"results: {config.result_dir}")
    print(f"log:     {config.log_file}")


def _safe_argv(argv: Sequence[str] | None) -> list[str]:
    """The arguments for the log, with any --api-key value masked."""
    out, hide = [], False
    for a in (script_argv() if argv is None else argv):
        if hide:
            out.append("***")
            hide = False
        elif a == "--api-key":
            out.append(a)
            hide = True
        elif a.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(a)
    return out


def _addon_path() -> None:
    """Make `onemin3d_addon` importable from the repository this script lives in."""
    if (ROOT / "onemin3d_addon" / "__init__.py").is_file() and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


if __name__ == "__main__":
    sys.exit(main())
