"""The --json report and the summary line; bpy-free."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import arguments
from .arguments import EXIT_USAGE, _QuietParser
from .inputs import Item, _s

if TYPE_CHECKING:
    from .batch import Batch
    from .inputs import Config

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("onemin3d.image_to_3d")

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
            "smooth": args.smooth, "solid": args.solid, "tear": args.tear, "cutout": args.cutout,
            "model": args.model, "remove_background": args.remove_background,
            "size": args.size,
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
    from ..core.errors import redact

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
        from ..core.errors import redact

        text = redact(json.dumps(data, indent=2, ensure_ascii=False))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        print(f"{arguments.PROG}: error: could not write the report {path}: {exc.strerror or exc}", file=sys.stderr)


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
        from ..version import VERSION
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
