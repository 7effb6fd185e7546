"""The operators as scripts and users call them: poll messages, background generate, image datablocks, errors, history actions, key check."""

from __future__ import annotations

import json
from pathlib import Path

import addon_harness
import pytest
from addon_harness import make_photo, prefs, pump_until, set_online

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo


def _poll_message(op, **context_members) -> str | None:
    """The message Blender shows on a disabled button (None when the operator can run)."""
    import bpy

    with bpy.context.temp_override(**context_members):
        if op.poll():
            return None
        with pytest.raises(RuntimeError) as info:
            op()
    return str(info.value)


def test_each_disabled_reason_has_its_own_poll_message(addon, stand_in, monkeypatch):
    import bpy

    settings = bpy.context.scene.onemin3d
    generate = bpy.ops.onemin3d.generate

    settings.source_type = 'IMAGE'
    message = _poll_message(generate, onemin3d_settings=settings)
    assert "No image chosen" in message
    settings.source_type = 'FILE'
    assert "No image file chosen" in _poll_message(generate, onemin3d_settings=settings)
    settings.filepath = "//photo.jpg"
    assert _poll_message(generate, onemin3d_settings=settings) is None
    assert _poll_message(generate) is None  # from F3 / File › Import: the file browser picks it

    addon.api_key = ""
    message = _poll_message(generate)
    assert "No 1min.ai API key" in message and "Preferences › Add-ons" in message and "ONEMIN_API_KEY" in message
    monkeypatch.setenv("ONEMIN_API_KEY", "env-key-0123456789")
    assert _poll_message(generate) is None

    set_online(False)
    message = _poll_message(generate)
    assert "Online access is off" in message
    assert "Online access is off" in _poll_message(bpy.ops.onemin3d.check_key)


def test_with_online_access_off_not_a_single_request_is_made(addon, stand_in, photo):
    import addon_utils
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.core.errors import OfflineError

    set_online(False)
    with pytest.raises(OfflineError):
        api.submit(photo)
    with pytest.raises(OfflineError):
        api.generate(photo)
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.onemin3d.generate(filepath=str(photo))
    # A restart with a resumable job on disk does not phone home either.
    history = Path(addon.result_folder) / "history"
    history.mkdir(parents=True, exist_ok=True)
    (history / "20250101-000000-abcd.json").write_text(json.dumps({
        "id": "20250101-000000-abcd", "created": 1.0, "updated": 1.0, "source_path": str(photo),
        "settings": {"mode": "AUTO"}, "state": "running", "stage": "poll", "uuid": "1234",
    }))
    addon_utils.disable(addon_harness.MODULE, default_set=False)
    addon_utils.enable(addon_harness.MODULE, default_set=False)
    prefs().result_folder = prefs().result_folder  # re-reads (and would resume) that history
    assert stand_in.count() == 0
    assert stand_in.requests == []


@pytest.mark.smoke
@pytest.mark.parametrize(("mode", "result", "expect"), [
    ('AUTO', "glb", "model"),            # the service returned a model: imported as it is
    ('PLANE', "depth", "plane"),         # PLANE always shows the result image
    ('DISPLACEMENT', "color", "relief"), # a colour result's luminance becomes the depth
])
def test_one_generate_per_import_mode_lands_in_its_collection(addon, stand_in, photo, mode, result, expect):
    import bpy

    stand_in.result = result
    assert bpy.ops.onemin3d.generate(filepath=str(photo), import_mode=mode, resolution=32) == {'FINISHED'}
    meshes = [ob for ob in bpy.data.collections["1min3d dress"].all_objects if ob.type == 'MESH']
    assert meshes
    if expect == "plane":
        assert len(meshes) == 1 and len(meshes[0].data.vertices) == 4
    elif expect == "relief":
        assert len(meshes[0].data.vertices) >= 32 * 16
    assert stand_in.count("POST", "/api/features") == 1


def test_generate_from_a_background_script_imports_a_relief(addon, stand_in, photo):
    import bpy

    result = bpy.ops.onemin3d.generate(filepath=str(photo), import_mode='DISPLACEMENT', resolution=64)
    assert result == {'FINISHED'}
    collection = bpy.data.collections["1min3d dress"]
    meshes = [ob for ob in collection.all_objects if ob.type == 'MESH']
    assert meshes and max(len(ob.data.vertices) for ob in meshes) >= 64 * 32
    state = bpy.context.window_manager.onemin3d
    assert state.history[0].state == "imported" and state.history[0].import_mode == 'DISPLACEMENT'
    assert stand_in.count("POST", "/api/features") == 1


def test_generate_sends_one_job_per_selected_file(addon, stand_in, tmp_path):
    import bpy

    folder = tmp_path / "many"
    make_photo(folder / "one.jpg", seed=1)
    make_photo(folder / "two.jpg", seed=2)
    result = bpy.ops.onemin3d.generate(directory=str(folder), files=[{"name": "one.jpg"}, {"name": "two.jpg"}],
                                       import_mode='PLANE')
    assert result == {'FINISHED'}
    assert {"1min3d one", "1min3d two"} <= set(bpy.data.collections.keys())
    assert stand_in.count("POST", "/api/features") == 2


def test_generate_uses_the_preferences_default_options_unless_told_otherwise(addon, stand_in, photo):
    import bpy

    addon.defaults.import_mode = 'PLANE'
    assert bpy.ops.onemin3d.generate(filepath=str(photo)) == {'FINISHED'}
    assert bpy.context.window_manager.onemin3d.history[0].import_mode == 'PLANE'
    assert bpy.ops.onemin3d.generate(filepath=str(photo), import_mode='DISPLACEMENT') == {'FINISHED'}
    assert bpy.context.window_manager.onemin3d.history[0].import_mode == 'DISPLACEMENT'


def test_the_panel_button_sends_the_scene_image_with_the_scene_settings(addon, stand_in, photo):
    import bpy

    image = bpy.data.images.load(str(photo))
    settings = bpy.context.scene.onemin3d
    settings.source_type, settings.image, settings.import_mode = 'IMAGE', image, 'PLANE'
    with bpy.context.temp_override(onemin3d_settings=settings):
        assert bpy.ops.onemin3d.generate('INVOKE_DEFAULT') == {'FINISHED'}
    item = bpy.context.window_manager.onemin3d.history[0]
    assert item.state == "imported" and item.import_mode == 'PLANE'
    assert item.source_path == str(photo)  # a saved, unchanged image is sent from its own file


def test_a_packed_image_is_sent_from_its_packed_bytes(addon, stand_in, photo, tmp_path):
    import bpy

    image = bpy.data.images.load(str(photo))
    image.pack()
    photo.unlink()  # only the packed copy remains
    assert bpy.ops.onemin3d.generate(image_name=image.name, import_mode='PLANE') == {'FINISHED'}
    sent = Path(bpy.context.window_manager.onemin3d.history[0].source_path)
    assert sent.parent == Path(addon.result_folder) / "sources"
    assert sent.read_bytes() == image.packed_file.data
    assert image.packed_file is not None and image.filepath.endswith("dress.jpg")


def test_a_generated_and_painted_image_is_written_to_a_png_without_touching_it(addon, stand_in):
    import bpy
    import numpy as np
    from PIL import Image

    image = bpy.data.images.new("painted", 600, 520)
    pixels = np.zeros((520, 600, 4), np.float32)
    pixels[..., 3] = 1.0
    pixels[:260, :, 0] = 1.0  # bottom half red (Blender rows start at the bottom)
    image.pixels.foreach_set(pixels.ravel())
    image.update()
    assert bpy.ops.onemin3d.generate(image_name=image.name, import_mode='PLANE') == {'FINISHED'}
    sent = Path(bpy.context.window_manager.onemin3d.history[0].source_path)
    with Image.open(sent) as im:
        assert im.format == "PNG" and im.size == (600, 520)
        assert im.getpixel((10, 510))[:3] == (255, 0, 0) and im.getpixel((10, 10))[:3] == (0, 0, 0)
    assert image.source == 'GENERATED' and image.filepath == "" and image.is_dirty


def test_errors_are_reported_in_one_sentence_and_kept_for_the_panel(addon, stand_in, photo):
    import bpy

    stand_in.inject("401", stage="upload")
    with pytest.raises(RuntimeError, match="rejected the API key"):
        bpy.ops.onemin3d.generate(filepath=str(photo))
    state = bpy.context.window_manager.onemin3d
    assert "rejected the API key" in state.last_error and "Preferences" in state.last_error
    assert state.history[0].state == "failed"

    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.onemin3d.generate(filepath=str(photo.with_name("missing.jpg")))
    assert "does not exist" in state.last_error


def test_cancel_all_stops_every_running_job(addon, stand_in, tmp_path):
    import bpy

    from onemin3d_addon import api

    stand_in.latency = 5.0
    jobs = [api.submit(make_photo(tmp_path / f"{i}.jpg", seed=i)) for i in range(3)]
    pump_until(lambda: jobs[0].stage == "generate")
    assert bpy.ops.onemin3d.cancel() == {'FINISHED'}
    pump_until(lambda: all(j.done for j in jobs), timeout=5)
    assert [j.state for j in jobs] == ["cancelled"] * 3
    assert not bpy.ops.onemin3d.cancel.poll()


def test_reimport_and_remove_work_from_the_history_without_requests(addon, stand_in, photo):
    import bpy

    from onemin3d_addon import api

    job = api.submit(photo, mode="plane")
    pump_until(lambda: job.done)
    requests = len(stand_in.requests)
    objects = len(bpy.data.objects)
    state = bpy.context.window_manager.onemin3d
    state.history_index = 0
    assert bpy.ops.onemin3d.reimport(import_mode='DISPLACEMENT') == {'FINISHED'}
    assert len(bpy.data.objects) > objects
    assert len(stand_in.requests) == requests

    result_file = Path(job.result_file)
    assert bpy.ops.onemin3d.remove_history(entry_id=job.id, delete_files=True) == {'FINISHED'}
    assert not len(state.history)
    assert not result_file.exists()
    assert not (Path(addon.result_folder) / "history" / f"{job.id}.json").exists()


def test_check_key_is_free_and_says_whether_the_key_works(addon, stand_in):
    import bpy

    assert bpy.ops.onemin3d.check_key() == {'FINISHED'}
    state = bpy.context.window_manager.onemin3d
    assert state.key_status == 'VALID'
    assert stand_in.requests == [("GET", "/api/results/00000000-0000-0000-0000-000000000000")]
    addon.api_key = "wrong-key-0123456789"
    with pytest.raises(RuntimeError, match="rejected"):
        bpy.ops.onemin3d.check_key()
    assert state.key_status == 'INVALID'
    assert stand_in.count("POST") == 0


def test_in_the_ui_generate_returns_at_once_and_the_job_runs_on(addon, stand_in, photo):
    import bpy

    held = stand_in.hold("generate")  # the job cannot end before the test lets it
    assert bpy.ops.onemin3d.generate(filepath=str(photo), wait='RETURN') == {'FINISHED'}
    state = bpy.context.window_manager.onemin3d
    assert len(state.jobs) == 1 and state.jobs[0].name == "dress"
    assert not len(state.history) or state.history[0].state != "imported"
    held.set()
    pump_until(lambda: not len(state.jobs))
    assert state.history[0].state == "imported"
