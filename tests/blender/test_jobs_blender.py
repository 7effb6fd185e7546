"""Background jobs in Blender: submit returns at once, pump ticks never import early, ordered stages, cancel, concurrency, file switch, crash, and no key leaks.

No test here asserts a duration: what must happen first is shown by the stand-in holding a stage
(`stand_in.hold`), and the speed figures (submit latency, pump ticks, cancel) are measured by
`python scripts/bench.py ui`, as ratios.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import addon_harness
import pytest
from addon_harness import MODULE, disable, enable, make_photo, prefs, pump_until, worker_threads

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_ORDER = ("prepare", "upload", "generate", "poll", "download", "import")


def _history_json(folder: Path, job_id: str) -> dict:
    from onemin3d_addon.blender import runtime

    rt = runtime.peek_runtime()
    if rt is not None:
        assert rt.flush()
    return json.loads((folder / "history" / f"{job_id}.json").read_text(encoding="utf-8"))


def _no_worker_threads(timeout: float = 30.0) -> bool:  # a guard: it returns once they are gone
    deadline = time.monotonic() + timeout
    while worker_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not worker_threads()


def test_submit_returns_before_the_job_runs_and_pump_imports_the_result(addon, stand_in, photo, tmp_path):
    import bpy

    from onemin3d_addon import api

    held = stand_in.hold("generate")  # the generation is not answered until the test says so
    objects_before = len(bpy.data.objects)
    job = api.submit(photo, mode="auto")
    assert job.state == "queued" and not job.done

    pump_until(lambda: stand_in.count("POST", "/api/features") == 1 and job.stage == "generate")
    for _ in range(20):  # ticks while the service works: they report, they never import
        api.pump()
        assert job.stage == "generate" and job.result is None and not job.done
    assert len(bpy.data.objects) == objects_before
    held.set()
    pump_until(lambda: job.done)

    assert job.state == "imported", job.error_message
    assert job.stages == ["prepare", "upload", "generate", "download", "import"]
    assert len(bpy.data.objects) > objects_before and job.objects
    assert all(ob.name in bpy.context.scene.objects for ob in job.objects)

    entry = _history_json(tmp_path / "results", job.id)
    assert entry["state"] == "imported"
    assert entry["source_path"] == str(photo)
    assert entry["settings"]["mode"] == "AUTO" and entry["settings"]["options"]["resolution"] == 512
    assert entry["asset_key"] and entry["uuid"]
    assert Path(entry["result_file"]).is_file() and entry["result_kind"] == "png"
    assert entry["credits_left"] is not None and entry["error"] is None
    assert [s for s in PIPELINE_ORDER if s in entry["times"]] == ["prepare", "upload", "generate", "download",
                                                                  "import"]
    assert entry["times"]["prepare"] <= entry["times"]["upload"] <= entry["times"]["download"]
    state = bpy.context.window_manager.onemin3d
    assert state.history[0].entry_id == job.id and state.history[0].state == "imported"
    assert state.credits_left == entry["credits_left"] and not len(state.jobs)
    assert _no_worker_threads()


def test_async_jobs_poll_and_journal_the_uuid(addon, stand_in, photo, tmp_path):
    from onemin3d_addon import api

    addon.request_mode = 'ASYNC'
    stand_in.latency = 0.5
    job = api.submit(photo, mode="displacement", poll_interval=0.1)
    pump_until(lambda: job.done)
    assert job.state == "imported", job.error_message
    assert "poll" in job.stages and job.stages.index("poll") < job.stages.index("download")
    assert stand_in.count("GET", "/api/results/") >= 1
    assert _history_json(tmp_path / "results", job.id)["uuid"]


def _wait_stage(job, stage: str, timeout: float = 15.0) -> None:
    pump_until(lambda: job.stage == stage or job.done, timeout)
    assert job.stage == stage, f"job ended at {job.stage}: {job.error_message}"


@pytest.mark.parametrize("stage", ["upload", "generate", "download"])
def test_cancel_leaves_no_objects_no_thread_and_is_journalled(addon, stand_in, photo, tmp_path, stage):
    import bpy

    from onemin3d_addon import api

    # held until the end of the test: only the cancel can end the job (a synchronous one: an
    # asynchronous job waits for the generation's short answer, which holds its uuid)
    addon.request_mode = 'SYNC'
    stand_in.hold(stage)
    objects_before, meshes_before = len(bpy.data.objects), len(bpy.data.meshes)
    job = api.submit(photo)
    _wait_stage(job, stage)
    if stage == "generate":  # the billed POST has reached the server
        pump_until(lambda: stand_in.count("POST", "/api/features") == 1)
    job.cancel()
    pump_until(lambda: job.done)
    assert job.state == "cancelled"
    assert (len(bpy.data.objects), len(bpy.data.meshes)) == (objects_before, meshes_before)
    assert _no_worker_threads()
    entry = _history_json(tmp_path / "results", job.id)
    assert entry["state"] == "cancelled"
    api.pump()  # no worker is left to send anything more
    assert stand_in.count("POST", "/api/features") == (0 if stage == "upload" else 1)


def test_two_jobs_at_once_both_import(addon, stand_in, tmp_path):
    import bpy

    from onemin3d_addon import api

    held = stand_in.hold("generate")
    a = api.submit(make_photo(tmp_path / "a.jpg", seed=1))
    b = api.submit(make_photo(tmp_path / "b.jpg", seed=2))
    # They overlap: both generations reach the service while neither has been answered.
    pump_until(lambda: stand_in.count("POST", "/api/features") == 2 and a.stage == b.stage == "generate")
    assert not (a.done or b.done)
    held.set()
    pump_until(lambda: a.done and b.done, timeout=30)
    assert (a.state, b.state) == ("imported", "imported")
    assert {ob.name for ob in a.objects}.isdisjoint(ob.name for ob in b.objects)
    assert "1min3d a" in bpy.data.collections and "1min3d b" in bpy.data.collections


def test_parallel_limit_one_runs_jobs_one_after_the_other(addon, stand_in, tmp_path):
    from onemin3d_addon import api

    addon.parallel_jobs = 1
    stand_in.latency = 0.5
    a = api.submit(make_photo(tmp_path / "a.jpg", seed=1))
    b = api.submit(make_photo(tmp_path / "b.jpg", seed=2))
    pump_until(lambda: a.state == "running" or a.done)
    assert b.state == "queued"
    pump_until(lambda: a.done and b.done, timeout=30)
    assert (a.state, b.state) == ("imported", "imported")
    assert b.entry.times["prepare"] >= a.entry.times["download"]


def test_a_result_for_another_file_is_kept_not_imported_and_reimports_offline(addon, stand_in, photo, tmp_path):
    import bpy

    from onemin3d_addon import api

    made_for = str(tmp_path / "scene_a.blend")
    bpy.ops.wm.save_as_mainfile(filepath=made_for)
    stand_in.latency = 1.0
    job = api.submit(photo)
    _wait_stage(job, "generate")
    bpy.ops.wm.read_homefile(use_empty=True)  # the user opens another file mid-job
    assert prefs().api_key, "loading a file must not reset the add-on"
    pump_until(lambda: job.done)
    assert job.state == "done" and not job.objects
    assert len(bpy.data.objects) == 0
    entry = _history_json(tmp_path / "results", job.id)
    assert entry["state"] == "done" and entry["blend_file"] == made_for
    item = next(i for i in bpy.context.window_manager.onemin3d.history if i.entry_id == job.id)
    assert item.other_file and item.blend_file == made_for

    requests_before = len(stand_in.requests)
    stand_in.stop()
    assert bpy.ops.onemin3d.reimport(entry_id=job.id) == {'FINISHED'}
    assert len(bpy.data.objects) > 0
    assert len(stand_in.requests) == requests_before
    assert _history_json(tmp_path / "results", job.id)["state"] == "imported"


_CRASHING_SESSION = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    import bpy, addon_utils
    bpy.context.preferences.system.use_online_access = True
    addon_utils.enable("onemin3d_addon", default_set=True)
    p = bpy.context.preferences.addons["onemin3d_addon"].preferences
    p.api_key = os.environ["TEST_KEY"]
    p.base_url, p.result_folder, p.request_mode = {base_url!r}, {folder!r}, 'ASYNC'
    from onemin3d_addon import api
    job = api.submit({photo!r}, poll_interval=0.1)
    journal = os.path.join({folder!r}, "history", job.id + ".json")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # no pump: the worker's journal alone must make it durable
        try:
            with open(journal) as fh:
                on_disk = json.load(fh)
        except (OSError, ValueError):
            on_disk = {{}}
        if on_disk.get({field!r}):
            break
        time.sleep(0.005)
    print("JOB", job.id, flush=True)
    os._exit(9)  # Blender dies: no unregister, no pump, nothing flushed on purpose
""")


def _crash(until: str, stand_in, photo: Path, folder: Path, api_key: str) -> str:
    script = _CRASHING_SESSION.format(root=str(ROOT), base_url=stand_in.base_url, folder=str(folder),
                                      photo=str(photo), field={"uuid": "uuid", "result": "result_file"}[until])
    env = dict(os.environ, TEST_KEY=api_key)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    job_id = proc.stdout.split("JOB", 1)[1].split()[0]
    assert api_key not in proc.stdout + proc.stderr
    return job_id


def _register_fresh(stand_in, api_key: str, folder: Path) -> None:

    if addon_harness.addon_enabled():
        disable()
    enable()
    p = prefs()
    p.api_key, p.base_url, p.request_mode = api_key, stand_in.base_url, 'ASYNC'
    p.result_folder = str(folder)  # the add-on lists (and resumes) this folder's history


def test_after_a_crash_mid_generation_the_job_resumes_without_paying_twice(
        blender, stand_in, api_key, photo, tmp_path):
    import bpy

    folder = tmp_path / "results"
    stand_in.latency = 2.0
    job_id = _crash("uuid", stand_in, photo, folder, api_key)
    entry = _history_json(folder, job_id)
    assert entry["uuid"] and not entry["result_file"] and entry["state"] in {"queued", "running"}
    assert stand_in.count("POST", "/api/features") == 1
    try:
        _register_fresh(stand_in, api_key, folder)
        from onemin3d_addon.blender import runtime

        rt = runtime.peek_runtime()
        job = rt.jobs[job_id]  # resumed on registration
        pump_until(lambda: job.done, timeout=30)
        assert job.state == "done"  # made in another (unsaved) session: listed, not imported
        entry = _history_json(folder, job_id)
        assert entry["state"] == "done" and Path(entry["result_file"]).is_file()
        assert stand_in.count("POST", "/api/features") == 1, "the generation was sent twice"
        assert any(i.entry_id == job_id for i in bpy.context.window_manager.onemin3d.history)
        assert bpy.ops.onemin3d.reimport(entry_id=job_id) == {'FINISHED'}
        assert len(bpy.data.objects) > 0
    finally:
        disable()


def test_after_a_crash_before_the_import_the_result_is_listed_and_reimportable(
        blender, stand_in, api_key, photo, tmp_path):
    import bpy

    folder = tmp_path / "results"
    job_id = _crash("result", stand_in, photo, folder, api_key)
    requests_before = len(stand_in.requests)
    try:
        _register_fresh(stand_in, api_key, folder)
        state = bpy.context.window_manager.onemin3d
        item = next(i for i in state.history if i.entry_id == job_id)
        assert item.state == "done" and item.result_exists
        assert bpy.ops.onemin3d.reimport(entry_id=job_id) == {'FINISHED'}
        assert len(bpy.data.objects) > 0
        assert len(stand_in.requests) == requests_before, "a listed result needs no request"
    finally:
        disable()


def test_the_key_is_never_in_the_blend_the_history_or_the_logs(addon, stand_in, api_key, photo, tmp_path,
                                                               caplog):
    import bpy

    from onemin3d_addon import api

    caplog.set_level(logging.DEBUG)
    logging.getLogger(MODULE).setLevel(logging.DEBUG)
    try:
        job = api.submit(photo)
        pump_until(lambda: job.done)
        assert job.state == "imported"
        stand_in.inject("401", stage="upload")
        failed = api.submit(photo)
        pump_until(lambda: failed.done)
        assert failed.state == "failed" and "rejected the API key" in failed.error_message
        bpy.context.scene.onemin3d.filepath = str(photo)
        blend = tmp_path / "saved.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=False)
    finally:
        logging.getLogger(MODULE).setLevel(logging.NOTSET)
    secret = api_key.encode()
    assert secret not in blend.read_bytes()
    history_files = list((tmp_path / "results" / "history").glob("*.json"))
    assert len(history_files) == 2
    for path in history_files:
        assert secret not in path.read_bytes()
    assert caplog.records and api_key not in caplog.text
    assert api_key not in repr(job) and api_key not in failed.error_message


def test_the_api_works_without_enabling_the_addon(blender, stand_in, api_key, photo, tmp_path):
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import runtime

    if addon_harness.addon_enabled():
        disable()
    try:
        objects = api.generate(photo, mode="plane", api_key=api_key, base_url=stand_in.base_url,
                               result_dir=tmp_path / "out")
        assert objects and all(ob.name in bpy.context.scene.objects for ob in objects)
        assert list((tmp_path / "out" / "history").glob("*.json"))
    finally:
        runtime.unregister()  # the runtime a script started on its own
    assert not worker_threads()


def test_bad_options_are_refused_before_anything_is_sent(addon, stand_in, photo):
    from onemin3d_addon import api

    with pytest.raises(TypeError, match="unknown option"):
        api.submit(photo, strenght=0.3)
    with pytest.raises(ValueError, match="mode"):
        api.submit(photo, mode="sculpt")
    with pytest.raises(ValueError, match="shader"):
        api.submit(photo, shader="toon")
    assert stand_in.count() == 0
