"""bpy-free: what earlier runs left for --resume (history entries, the last report), looked up by image; the batch and --dry-run read it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from .inputs import Item

log = logging.getLogger("onemin3d.image_to_3d")


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
        """A result file an earlier run left for this image, whole and not known to be damaged
        (core.resume's IMPORT), else the one its report names."""
        from ..core import resume

        for e in self._entries_for(item):
            decision = resume.decide(e)
            if decision.action == resume.IMPORT:
                return decision.result_file
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
        from ..core import resume

        result = self.result_for(item)
        if result is not None:
            item.reused, item.resumed_from = True, "result"
            return pipeline.Checkpoint(result_file=result)
        for e in self._entries_for(item):  # newest first
            decision = resume.decide(e)
            if decision.action == resume.FETCH:
                # paid for: poll its uuid and download again (also after a damaged download or import)
                item.reused, item.resumed_from = True, "generation"
                item.generation = journalled_generation(e)
                # with a background removal paid for and no generation sent yet, its uuid or cut-out
                return pipeline.Checkpoint(asset_key=e.asset_key, uuid=e.uuid, bg_uuid=e.bg_uuid,
                                           bg_file=Path(e.bg_file) if e.bg_file else None)
            if decision.action == resume.REFUSE:
                # Sent (sync, or cut off before the answer) and never answered: it may be charged, and
                # nothing can fetch it. pipeline.run() refuses this checkpoint in one sentence that
                # names the photo, instead of paying again behind the user's back (--regenerate asks).
                item.resumed_from = "interrupted generation"
                item.generation = journalled_generation(e)
                return pipeline.Checkpoint(asset_key=e.asset_key, sent=True)
        return None


def regenerated(item: Item, given: list[str]) -> bool:
    """--regenerate (`given`) names this image, by path or by file name."""
    assert item.path is not None
    for name in given:
        target = Path(name).expanduser()
        if target.name == name and item.path.name == name:
            return True
        with contextlib.suppress(OSError):
            if target.resolve() == item.path:
                return True
    return False


def journalled_generation(entry: Any) -> dict[str, Any]:
    """The model and background removal `entry` was sent with (its journalled options), as the
    options `api.submit` takes: a resume goes on with what was paid for, whatever the command line
    says now. An entry from before these options has the defaults (all there was then)."""
    from ..core import options

    recorded = (entry.settings or {}).get("options") or {}
    chosen: dict[str, Any] = {}
    for name in options.GENERATION_NAMES:
        try:
            chosen[name] = options.get(name).check(recorded.get(name, options.get(name).default))
        except ValueError:
            log.warning("history entry %s: %s %r is not understood; using %r", entry.id, name,
                        recorded.get(name), options.get(name).default)
            chosen[name] = options.get(name).default
    return chosen


def load_previous(report_path: Path | None, history: Any) -> Previous:
    """The history's entries, and the items of the report at `report_path` (--json) if it reads."""
    report: dict[str, dict[str, Any]] = {}
    path = report_path
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for entry in data.get("items", []):
                if entry.get("path"):
                    report[entry["path"]] = entry
        except (OSError, ValueError) as exc:
            log.warning("the previous report %s could not be read (%s); using the history only", path, exc)
    return Previous(entries=history.entries(), report=report)
