"""Registering the add-on (as Blender does, and directly) is clean, repeatable and leaves nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import addon_harness
import pytest
from addon_harness import MODULE, disable, enable, make_photo, prefs, worker_threads

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender


OPERATORS = ("generate", "cancel", "reimport", "remove_history", "check_key")
CLASSES = (
    "ONEMIN3D_OT_generate", "ONEMIN3D_OT_cancel", "ONEMIN3D_OT_reimport", "ONEMIN3D_OT_remove_history",
    "ONEMIN3D_OT_check_key", "VIEW3D_PT_onemin3d_main", "VIEW3D_PT_onemin3d_options",
    "VIEW3D_PT_onemin3d_history", "ONEMIN3D_UL_history",
)


def _footprint() -> dict[str, Any]:
    """Everything of the add-on that registration can leave in Blender."""
    import bpy

    from onemin3d_addon.blender import runtime

    return {
        "classes": sorted(name for name in CLASSES if hasattr(bpy.types, name)),
        "ops": sorted(name for name in OPERATORS if hasattr(bpy.ops.onemin3d, name)
                      and _op_exists(f"onemin3d.{name}")),
        "scene_prop": "onemin3d" in bpy.types.Scene.bl_rna.properties,
        "wm_prop": "onemin3d" in bpy.types.WindowManager.bl_rna.properties,
        "timer": bpy.app.timers.is_registered(runtime.pump),
        "load_post": sum(getattr(h, "__module__", "").startswith(MODULE) for h in bpy.app.handlers.load_post),
        "save_post": sum(getattr(h, "__module__", "").startswith(MODULE) for h in bpy.app.handlers.save_post),
        "import_menu": _menu_funcs(bpy.types.TOPBAR_MT_file_import),
        "image_menu": _menu_funcs(bpy.types.IMAGE_MT_image),
        "threads": [t.name for t in worker_threads()],
        "runtime": runtime.peek_runtime() is not None,
    }


def _op_exists(idname: str) -> bool:
    import bpy

    module, name = idname.split(".")
    try:
        getattr(getattr(bpy.ops, module), name).get_rna_type()
    except KeyError:
        return False
    return True


def _menu_funcs(menu: Any) -> int:
    funcs = getattr(menu.draw, "_draw_funcs", [])
    return sum(getattr(f, "__module__", "").startswith(MODULE) for f in funcs)


NOTHING = {
    "classes": [], "ops": [], "scene_prop": False, "wm_prop": False, "timer": False, "load_post": 0,
    "save_post": 0, "import_menu": 0, "image_menu": 0, "threads": [], "runtime": False,
}


@pytest.mark.smoke
def test_enable_disable_three_times_with_a_job_in_flight_leaves_nothing(blender, stand_in, api_key, tmp_path):
    import bpy

    from onemin3d_addon import api


    if addon_harness.addon_enabled():
        disable()
    assert _footprint() == NOTHING
    # a synchronous generation never answered: unregister must end the job, not wait for it
    # (asynchronous jobs cut off this way are resumed by the next register: not what this test is about)
    stand_in.hold("generate")
    photo = make_photo(tmp_path / "p.jpg")
    for cycle in range(3):
        enable()
        p = prefs()
        p.api_key, p.base_url, p.result_folder = api_key, stand_in.base_url, str(tmp_path / "results")
        p.request_mode = 'SYNC'
        seen = _footprint()
        assert seen["classes"] == sorted(CLASSES)
        assert seen["ops"] == sorted(OPERATORS)
        assert seen["scene_prop"] and seen["wm_prop"]
        assert seen["import_menu"] == 1 and seen["image_menu"] == 1
        assert seen["load_post"] == 1 and seen["save_post"] == 1

        job = api.submit(photo)
        assert bpy.app.timers.is_registered(api.runtime.pump), "a job runs: the timer must be registered"
        while job.stage != "generate" or not stand_in.count("POST", "/api/features") == cycle + 1:
            api.pump()
            time.sleep(0.01)
        assert worker_threads()
        disable()
        assert _footprint() == NOTHING, f"cycle {cycle}"
    assert "onemin3d" not in bpy.types.Scene.bl_rna.properties


@pytest.mark.smoke
def test_register_called_directly_three_times_is_clean(blender):
    import onemin3d_addon
    from onemin3d_addon.blender import preferences


    if addon_harness.addon_enabled():
        disable()
    for _ in range(3):
        onemin3d_addon.register()
        assert preferences.get_prefs() is None  # no entry in Preferences › Add-ons: defaults apply
        conn = preferences.connection_settings()
        assert conn.parallel_jobs == 2 and conn.result_folder.is_dir()
        onemin3d_addon.unregister()
        assert _footprint() == NOTHING


def test_a_failing_register_leaves_nothing_registered(blender, monkeypatch):
    import onemin3d_addon
    from onemin3d_addon.blender import panels


    if addon_harness.addon_enabled():
        disable()

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(panels, "register", broken)
    with pytest.raises(RuntimeError, match="boom"):
        onemin3d_addon.register()
    assert _footprint() == NOTHING


def test_operators_have_labels_and_tooltips(addon):
    import bpy

    for name in OPERATORS:
        rna = getattr(bpy.ops.onemin3d, name).get_rna_type()
        assert rna.name and "1min.ai" in rna.name, name
        assert len(rna.description) > 20, f"{name} needs a tooltip"
    assert bpy.ops.onemin3d.generate.get_rna_type().name == "Image to 3D (1min.ai)"


def test_preferences_defaults_and_limits(addon):
    p = addon
    assert p.bl_rna.properties["api_key"].subtype == 'PASSWORD'
    assert p.bl_rna.properties["parallel_jobs"].default == 2
    p.parallel_jobs = 50
    assert p.parallel_jobs == 8
    assert p.bl_rna.properties["request_mode"].enum_items.keys() == ["SYNC", "ASYNC"]


def test_default_result_folder_is_in_blenders_user_folder_and_writable(addon):
    from onemin3d_addon.blender import preferences

    addon.result_folder = ""
    folder = preferences.result_folder(addon)
    user_root = Path(os.environ["BLENDER_USER_RESOURCES"]).resolve()
    assert folder.resolve().is_relative_to(user_root)
    probe = folder / "probe.txt"
    probe.write_text("ok")
    probe.unlink()


def test_key_source_follows_preferences_then_environment(addon, monkeypatch):
    from onemin3d_addon.blender import preferences

    assert preferences.api_key_source() == "preferences"
    addon.api_key = ""
    assert preferences.api_key_source() == ""
    monkeypatch.setenv("ONEMIN_API_KEY", "env-key-0123456789")
    assert preferences.api_key_source() == "environment"
    assert preferences.connection_settings().api_key == "env-key-0123456789"
    monkeypatch.setenv("ONEMIN_API_BASE_URL", "http://127.0.0.1:9")
    assert preferences.connection_settings().base_url == "http://127.0.0.1:9"
    assert "env-key" not in repr(preferences.connection_settings())
