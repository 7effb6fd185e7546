"""Inputs (images, folders, patterns) and the run's configuration, checked before any request; bpy-free."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .arguments import IMAGE_SUFFIXES, RESULT_DIR_NAME, UsageError

log = logging.getLogger("onemin3d.image_to_3d")

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
    # the model and background removal journalled for the generation this item goes on from
    # (--resume): sent instead of the command line's, so a resume never changes what is paid for
    generation: dict[str, Any] | None = None
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


@dataclasses.dataclass(frozen=True)
class Defaults:
    """The user's add-on preferences, for `blender -c onemin3d`: used where no argument is given,
    before the environment variables (the base URL: after ONEMIN_API_BASE_URL, as in the add-on)."""

    api_key: str = dataclasses.field(default="", repr=False)
    base_url: str = ""
    result_dir: Path | None = None     # only when the user chose one
    proxy: str | None = None
    ca_bundle: Path | None = None


def result_folder(args: argparse.Namespace, defaults: Defaults | None) -> Path | None:
    """Where a run keeps its results and history: --result-dir, else the preferences' result folder, else
    a folder beside the output; None without any of them. Nothing is created (--dry-run reads it)."""
    chosen = args.result_dir or (defaults.result_dir if defaults is not None else None)
    if chosen is not None:
        return Path(chosen).expanduser().resolve()
    if args.output is not None:
        return Path(args.output).expanduser().resolve().parent / RESULT_DIR_NAME
    if args.output_dir is not None:
        return Path(args.output_dir).expanduser().resolve() / RESULT_DIR_NAME
    return None


def configure(args: argparse.Namespace, environ: dict[str, str], defaults: Defaults | None = None) -> Config:
    """Check everything that can be checked before a request is made; UsageError otherwise."""
    prefs = defaults or Defaults()
    key = (args.api_key or prefs.api_key or environ.get("ONEMIN_API_KEY") or "").strip()
    if args.proxy is None and prefs.proxy:
        args.proxy = prefs.proxy
    if args.ca_bundle is None and prefs.ca_bundle is not None:
        args.ca_bundle = prefs.ca_bundle
    if args.result_dir is None and prefs.result_dir is not None:
        args.result_dir = prefs.result_dir
    if not key:
        raise UsageError(
            "No 1min.ai API key: set the ONEMIN_API_KEY environment variable "
            "(export ONEMIN_API_KEY=...) or pass --api-key KEY. Keys are made in your 1min.ai "
            "account, under API keys.")
    base_url = (args.base_url or environ.get("ONEMIN_API_BASE_URL") or prefs.base_url or "").strip().rstrip("/")
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

    result_dir = result_folder(args, prefs) or out_dir / RESULT_DIR_NAME
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
