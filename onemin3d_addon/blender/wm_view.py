"""Main thread only: the WindowManager view of the runtime — its jobs and history written to `WindowManager.onemin3d` for the panel, only what changed, with a redraw only when something did."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from ..core.history import HistoryEntry
    from .runtime import Job, Runtime


def current_blend_file() -> str | None:
    """bpy.data.filepath, or None while bpy.data is restricted (during add-on registration)."""
    try:
        return str(bpy.data.filepath)
    except AttributeError:
        return None


class WindowManagerView:
    """What changed since the view was last written: jobs, history entries, or everything."""

    def __init__(self) -> None:
        self.dirty_jobs: set[str] = set()
        self.dirty_entries: set[str] = set()
        self.full = True   # rebuild the lists from scratch

    def sync(self, rt: Runtime) -> None:
        """Write what changed to WindowManager.onemin3d, and redraw only if something did."""
        state = window_state()
        if state is None:
            return
        changed = False
        if self.full:
            self.full = False
            self.dirty_jobs.clear()
            self.dirty_entries.clear()
            changed |= self._rebuild(rt, state)
        else:
            if self.dirty_jobs:
                changed |= self._sync_jobs(rt, state, self.dirty_jobs)
                self.dirty_jobs = set()
            if self.dirty_entries:
                changed |= self._sync_entries(rt, state, self.dirty_entries)
                self.dirty_entries = set()
        changed |= _set(state, "last_error", rt.last_error)
        changed |= _set(state, "credits_left", -1 if rt.credits_left is None else rt.credits_left)
        if changed:
            tag_redraw()

    def _rebuild(self, rt: Runtime, state: Any) -> bool:
        state.jobs.clear()
        for job in rt.jobs.values():
            if not job.done:
                _fill_job_item(state.jobs.add(), job)
        state.history.clear()
        entries = {e.id: e for e in rt.history.entries()}
        for job in rt.jobs.values():  # this session's jobs may live in another folder
            entries[job.id] = job.entry
        current = current_blend_file()
        for entry in sorted(entries.values(), key=lambda e: e.created, reverse=True):
            _fill_history_item(state.history.add(), entry, current)
        if state.history_index >= len(state.history):
            state.history_index = max(0, len(state.history) - 1)
        return True

    def _sync_jobs(self, rt: Runtime, state: Any, ids: set[str]) -> bool:
        changed = False
        items = {item.job_id: (i, item) for i, item in enumerate(state.jobs)}
        for job_id in ids:
            job = rt.jobs.get(job_id)
            found = items.get(job_id)
            if job is None or job.done:
                if found is not None:
                    state.jobs.remove(found[0])
                    items = {item.job_id: (i, item) for i, item in enumerate(state.jobs)}
                    changed = True
                continue
            if found is None:
                item = state.jobs.add()
                changed = True
            else:
                item = found[1]
            changed |= _fill_job_item(item, job)
        return changed

    def _sync_entries(self, rt: Runtime, state: Any, ids: set[str]) -> bool:
        changed = False
        current = current_blend_file()
        pending = {i for i in ids if i in rt.jobs}
        for item in state.history:
            if item.entry_id in pending:
                changed |= _fill_history_item(item, rt.jobs[item.entry_id].entry, current)
                pending.discard(item.entry_id)
        for job_id in sorted(pending, key=lambda i: rt.jobs[i].entry.created):
            item = state.history.add()
            _fill_history_item(item, rt.jobs[job_id].entry, current)
            state.history.move(len(state.history) - 1, 0)
            state.history_index = 0
            changed = True
        return changed


def _set(item: Any, name: str, value: Any) -> bool:
    if getattr(item, name) != value:
        setattr(item, name, value)
        return True
    return False


def _fill_job_item(item: Any, job: Job) -> bool:
    changed = _set(item, "job_id", job.id)
    changed |= _set(item, "name", job.name)
    changed |= _set(item, "state", job.state)
    changed |= _set(item, "stage", job.stage)
    changed |= _set(item, "status", job.status_text())
    changed |= _set(item, "cancelling", job.cancel_requested)
    progress = round(job.progress, 2)
    if abs(item.progress - progress) > 0.004:
        item.progress = progress
        changed = True
    return changed


def _fill_history_item(item: Any, entry: HistoryEntry, current_file: str | None) -> bool:
    settings = entry.settings or {}
    changed = _set(item, "entry_id", entry.id)
    changed |= _set(item, "name", str(settings.get("name") or Path(entry.source_path).stem or entry.id))
    changed |= _set(item, "state", entry.state or "")
    changed |= _set(item, "stage", entry.stage or "")
    changed |= _set(item, "source_path", entry.source_path or "")
    changed |= _set(item, "result_file", entry.result_file or "")
    changed |= _set(item, "result_kind", entry.result_kind or "")
    changed |= _set(item, "blend_file", entry.blend_file or "")
    changed |= _set(item, "import_mode", str(settings.get("mode") or "AUTO"))
    changed |= _set(item, "error", entry.error or "")
    changed |= _set(item, "created", float(entry.created))
    changed |= _set(item, "credits_left", -1 if entry.credits_left is None else int(entry.credits_left))
    other = (current_file is not None and entry.state == "done"
             and (entry.blend_file or "") != current_file)
    changed |= _set(item, "other_file", other)
    changed |= _set(item, "result_exists", entry.result_file is not None and Path(entry.result_file).is_file())
    return changed


def window_state() -> Any:
    wm = getattr(bpy.context, "window_manager", None)
    return getattr(wm, "onemin3d", None)


_REDRAW_AREAS = frozenset({'VIEW_3D', 'IMAGE_EDITOR', 'PREFERENCES'})


def tag_redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in _REDRAW_AREAS:
                area.tag_redraw()
