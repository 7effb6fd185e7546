"""Interrupted generations in Blender: a cancel, a restart and the history's Re-import never lose a paid result and never pay twice.

Async is the default request mode: a cancel after 1min.ai answered keeps the uuid, the next start
fetches it (listed, not imported) and Re-import fetches it on demand. A damaged or deleted result
is downloaded again by Re-import, free. A sync generation cut off before its answer is refused by
Re-import in one sentence that names the photo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import addon_harness
import pytest
from addon_harness import disable, enable, prefs, pump_until

addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo

REFUSAL = ("dress.jpg: its generation may already have been sent and charged, but its answer never arrived, so "
           "it is not sent again; to generate it again on purpose, choose the photo and press Generate.")


def _journal(folder: Path, job_id: str) -> dict[str, Any]:
    from onemin3d_addon.blender import runtime

    rt = runtime.peek_runtime()
    if rt is not None:
        assert rt.flush()
    return json.loads((folder / "history" / f"{job_id}.json").read_text(encoding="utf-8"))


def _restart(stand_in: Any, api_key: str, folder: Path) -> Any:
    """What a restart of Blender does: the add-on registers again and reads the folder's history."""
    from onemin3d_addon.blender import runtime

    disable()
    enable()
    p = prefs()
    p.api_key, p.base_url = api_key, stand_in.base_url
    p.result_folder = str(folder)  # lists (and resumes) this folder's history
    return runtime.peek_runtime()


def test_async_is_the_default_request_mode(addon: Any) -> None:
    from onemin3d_addon.blender import preferences

    assert addon.bl_rna.properties["request_mode"].default == 'ASYNC'
    assert preferences.ConnectionSettings(api_key="k", key_source="", base_url="u").use_async is True


def test_a_job_cancelled_after_1min_ai_answered_is_fetched_at_the_next_start_not_imported(
        addon: Any, stand_in: Any, api_key: str, photo: Path, tmp_path: Path) -> None:
    import bpy

    from onemin3d_addon import api

    addon.request_mode = 'ASYNC'
    stand_in.latency = 2.0
    folder = tmp_path / "results"
    job = api.submit(photo, poll_interval=0.1)
    pump_until(lambda: bool(job.entry.uuid) or job.done)
    job.cancel()
    pump_until(lambda: job.done)
    assert job.state == "cancelled"
    entry = _journal(folder, job.id)
    assert entry["state"] == "cancelled" and entry["uuid"] and not entry["result_file"]
    assert "paid for" in entry["error"] and "fetched" in entry["error"]
    objects = len(bpy.data.objects)

    rt = _restart(stand_in, api_key, folder)
    resumed = rt.jobs[job.id]
    pump_until(lambda: resumed.done, timeout=30)
    assert resumed.state == "done", resumed.error_message  # fetched and listed, not imported
    assert Path(_journal(folder, job.id)["result_file"]).is_file()
    assert len(bpy.data.objects) == objects
    assert stand_in.generations == 1 and stand_in.count("POST", "/api/features") == 1
    assert rt.reimport(job.id) and len(bpy.data.objects) > objects


def test_a_cancel_while_the_async_request_is_answered_keeps_the_uuid_and_reimport_fetches_it(
        addon: Any, stand_in: Any, photo: Path, tmp_path: Path) -> None:
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import runtime

    addon.request_mode = 'ASYNC'
    stand_in.inject("slow-headers", stage="generate", delay=1.5)
    job = api.submit(photo, poll_interval=0.1)
    pump_until(lambda: stand_in.count("POST", "/api/features") == 1 or job.done)
    job.cancel()
    pump_until(lambda: job.done)
    assert job.state == "cancelled"
    entry = _journal(tmp_path / "results", job.id)
    assert entry["uuid"], entry  # the answer was awaited, so the paid generation can be fetched
    objects = runtime.get_runtime().reimport(job.id, wait=True)
    assert objects and all(ob.name in bpy.context.scene.objects for ob in objects)
    assert stand_in.generations == 1 and stand_in.count("POST", "/api/features") == 1
    assert _journal(tmp_path / "results", job.id)["state"] == "imported"


def test_a_sync_generation_cut_off_is_refused_by_reimport_in_one_sentence_and_never_sent_again(
        addon: Any, stand_in: Any, api_key: str, photo: Path, tmp_path: Path) -> None:
    import bpy

    from onemin3d_addon import api

    addon.request_mode = 'SYNC'
    stand_in.latency = 3.0
    folder = tmp_path / "results"
    job = api.submit(photo)
    pump_until(lambda: stand_in.count("POST", "/api/features") == 1 or job.done)
    job.cancel()
    pump_until(lambda: job.done)
    entry = _journal(folder, job.id)
    assert entry["state"] == "cancelled" and entry["generation_sent"] and not entry["uuid"]
    assert "credits may have been spent" in entry["error"]

    with pytest.raises(RuntimeError, match="its generation may already have been sent and charged"):
        bpy.ops.onemin3d.reimport(entry_id=job.id)  # the operator reports the error (raised under -b)
    assert bpy.context.window_manager.onemin3d.last_error == REFUSAL
    rt = _restart(stand_in, api_key, folder)
    assert job.id not in rt.jobs  # nothing to fetch, and never sent again
    with pytest.raises(RuntimeError, match="choose the photo and press Generate"):
        bpy.ops.onemin3d.reimport(entry_id=job.id)
    assert bpy.context.window_manager.onemin3d.last_error == REFUSAL
    assert stand_in.count("POST", "/api/features") == 1 and stand_in.generations == 1


def test_reimport_downloads_a_damaged_result_again_free_as_the_message_says(
        addon: Any, stand_in: Any, photo: Path, tmp_path: Path) -> None:
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import runtime

    stand_in.result = "glb"
    stand_in.inject("invalid-glb", stage="download")
    job = api.submit(photo)
    pump_until(lambda: job.done)
    assert job.state == "failed" and job.entry.stage == "import"
    assert "press Re-import in the history: it downloads the result again, free" in job.error_message
    damaged = job.entry.result_file
    objects = runtime.get_runtime().reimport(job.id, wait=True)  # what the message says to do
    assert objects and all(ob.name in bpy.context.scene.objects for ob in objects)
    entry = _journal(tmp_path / "results", job.id)
    assert entry["state"] == "imported" and entry["result_file"] != damaged and damaged in entry["files"]
    assert stand_in.generations == 1 and stand_in.count("POST", "/api/features") == 1


def test_reimport_fetches_a_result_whose_file_was_deleted(addon: Any, stand_in: Any, photo: Path) -> None:
    from onemin3d_addon import api
    from onemin3d_addon.blender import runtime

    job = api.submit(photo)
    pump_until(lambda: job.done)
    assert job.state == "imported"
    Path(job.entry.result_file).unlink()
    rt = runtime.get_runtime()
    assert rt.reimport(job.id, wait=False) == []  # as in the UI: it returns at once, the job fetches it
    fetch = rt.jobs[job.id]
    pump_until(lambda: fetch.done)
    assert fetch.state == "imported" and fetch.objects, fetch.error_message
    assert Path(fetch.entry.result_file).is_file()
    assert stand_in.generations == 1 and stand_in.count("POST", "/api/assets") == 1


def test_an_older_checkpoint_handled_late_never_undoes_a_newer_one(addon: Any, stand_in: Any, photo: Path,
                                                                   tmp_path: Path) -> None:
    """The worker journals each checkpoint in order; the main thread handles their events later. The
    asset key's checkpoint (not sent) must not overwrite the "sent" one that followed it."""
    from onemin3d_addon import api
    from onemin3d_addon.blender import runtime
    from onemin3d_addon.core.pipeline import Checkpoint

    job = api.submit(photo)
    pump_until(lambda: job.done)
    rt = runtime.get_runtime()
    job.entry.uuid = None  # as it was before the answer
    older, newer = Checkpoint(asset_key="images/k.jpg"), Checkpoint(asset_key="images/k.jpg", sent=True)
    rt._journal(job.id, older)
    rt._journal(job.id, newer)
    rt._on_checkpoint(job, older)
    rt._on_checkpoint(job, newer)
    assert job.entry.generation_sent
    assert _journal(tmp_path / "results", job.id)["generation_sent"] is True
