"""The built linux-x64 zip, installed as users install it, end to end: Pillow from its wheel, a relief whose Strength slider moves it, a GLB and a zipped OBJ result, a clean disable and uninstall.

This is the smoke tier's user path: it runs on every bpy wheel (4.2 to 5.3, Python 3.11 and 3.13).

The extension runs in a child interpreter of this venv (run as `python -I this_file`), so that:
- its Blender user folders are its own temporary folder (BLENDER_USER_RESOURCES);
- the repository is not on sys.path: only the installed copy (bl_ext.user_default.onemin3d) runs;
- the venv's own Pillow is hidden, as Blender ships none: `import PIL` can then only succeed
  from the folder Blender installs extension wheels into
  (<user extensions>/.local/lib/python3.11/site-packages), which proves the bundled wheel works.
The child reports what it saw as one JSON line; the test asserts on it here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = "linux-x64"
MODULE = "bl_ext.user_default.onemin3d"


@pytest.fixture(scope="module")
def linux_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import build_extension

    zips = build_extension.build(tmp_path_factory.mktemp("dist"), split_platforms=True)
    (archive,) = [z for z in zips if z.name.endswith(f"-{PLATFORM.replace('-', '_')}.zip")]
    return archive


def run_child(spec: dict[str, Any], user_dir: Path) -> dict[str, Any]:
    from addon_harness import run_script_child  # here: this file is also the child's script, run isolated

    return run_script_child(__file__, spec, user_dir)


@pytest.mark.smoke
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="installs the linux-x64 zip")
def test_the_installed_zip_generates_a_relief_with_its_own_pillow_and_leaves_nothing_behind(
        linux_zip: Path, stand_in: Any, api_key: str, tmp_path: Path) -> None:
    from addon_harness import make_photo

    from onemin3d_addon.version import VERSION  # here, not at the top: the child must not see the repo

    photo = make_photo(tmp_path / "photos" / "dress.jpg")
    seen = run_child({"zip": str(linux_zip), "photo": str(photo), "key": api_key,
                      "base_url": stand_in.base_url, "results": str(tmp_path / "results")},
                     tmp_path / "blender-user")

    # Blender without Pillow, until the extension brings its own.
    assert seen["pil_before_install"] is None
    assert seen["install"] == ["FINISHED"] and seen["enabled"], seen
    assert seen["wheel_dir_on_sys_path"] and seen["wheel_dir_has_pil"], seen
    assert seen["installed_version"] == VERSION
    # The add-on's own image handling ran on the bundled Pillow.
    assert seen["generate"] == ["FINISHED"], seen
    assert seen["pil_file"] is not None and seen["pil_from_wheel_dir"], seen
    # A relief: a dense mesh whose evaluated surface has height.
    assert seen["relief_vertices"] >= 32 * 32, seen
    assert seen["relief_height"] > 0.0, seen
    # The Strength slider (the property the panel draws) is live: doubling it doubles the height.
    assert seen["strength_before"] == pytest.approx(0.15), seen
    assert seen["panel_polls"] and seen["slider_rna"] in ("id property", "Strength"), seen
    assert seen["relief_height_doubled"] == pytest.approx(2 * seen["relief_height"], rel=1e-4), seen
    assert seen["strength_after"] == pytest.approx(0.30), seen
    # The model results: a GLB and a zipped OBJ, each imported as its own meshes.
    assert seen["glb"] == ["FINISHED"] and seen["glb_meshes"] >= 1, seen
    assert seen["zip_obj"] == ["FINISHED"] and seen["zip_obj_meshes"] >= 1, seen
    assert stand_in.count("POST", "/api/features") == 3
    # Disabled: nothing of the add-on is left in Blender.
    assert "ONEMIN3D_OT_generate" in seen["classes_enabled"], seen
    assert "Scene.onemin3d" in seen["properties_enabled"] and seen["handlers_enabled"], seen
    assert not seen["enabled_after_disable"]
    assert seen["classes_left"] == [] and seen["properties_left"] == [], seen
    assert not seen["timer_left"] and seen["handlers_left"] == [], seen
    assert seen["threads_left"] == [], seen
    # Uninstalled: the package and its wheel are gone.
    assert seen["uninstall"] == ["FINISHED"], seen
    assert not seen["package_dir_after_uninstall"] and not seen["pil_after_uninstall"], seen
    assert api_key not in json.dumps(seen)


# --- the child: runs inside the hermetic bpy ---------------------------------------------------

def _hide_the_venvs_pillow() -> None:
    """Make the venv's Pillow invisible, as Blender ships none; any other Pillow stays visible."""
    import importlib.abc
    import importlib.machinery
    import sysconfig

    hidden = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}

    class HideVenvPillow(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            if name != "PIL":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if p not in hidden])
            if spec is None:
                raise ModuleNotFoundError("No module named 'PIL' (the venv's copy is hidden)", name=name)
            return spec

    assert "PIL" not in sys.modules
    sys.meta_path.insert(0, HideVenvPillow())


def _child() -> None:
    import threading

    spec = json.loads(sys.stdin.read())
    _hide_the_venvs_pillow()

    import bpy
    import numpy as np

    seen: dict[str, Any] = {}
    try:
        import PIL
        seen["pil_before_install"] = PIL.__file__
    except ModuleNotFoundError:
        seen["pil_before_install"] = None

    seen["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=spec["zip"], repo="user_default", enable_on_install=True))
    seen["enabled"] = MODULE in bpy.context.preferences.addons
    wheel_dir = (Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib"
                 / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages")
    seen["wheel_dir_on_sys_path"] = str(wheel_dir) in sys.path
    seen["wheel_dir_has_pil"] = (wheel_dir / "PIL" / "__init__.py").is_file()

    # The installed package finds its manifest beside itself (blender_manifest.toml in the package root).
    import importlib
    seen["installed_version"] = importlib.import_module(f"{MODULE}.version").VERSION

    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.api_key = spec["key"]
    prefs.base_url = spec["base_url"]
    prefs.result_folder = spec["results"]
    bpy.context.preferences.system.use_online_access = True

    seen["generate"] = sorted(bpy.ops.onemin3d.generate(filepath=spec["photo"], import_mode="DISPLACEMENT"))
    pil = sys.modules.get("PIL")
    seen["pil_file"] = getattr(pil, "__file__", None)
    seen["pil_from_wheel_dir"] = bool(pil and Path(pil.__file__).is_relative_to(wheel_dir))

    def relief() -> tuple[int, float, Any]:
        depsgraph = bpy.context.evaluated_depsgraph_get()
        best: tuple[int, float, Any] = (0, 0.0, None)
        for ob in bpy.context.scene.objects:
            if ob.type != 'MESH':
                continue
            mesh = ob.evaluated_get(depsgraph).to_mesh()
            co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            z = co[2::3]
            found = (len(mesh.vertices), float(z.max() - z.min()) if z.size else 0.0, ob)
            if found[:2] > best[:2]:
                best = found
            ob.evaluated_get(depsgraph).to_mesh_clear()
        return best

    seen["relief_vertices"], seen["relief_height"], obj = relief()

    # The Strength slider, moved the way the UI moves it: through the (owner, property) the
    # panel's "Active Relief" sub-panel draws, written as Blender's UI writes a slider.
    scene_build = importlib.import_module(f"{MODULE}.blender.scene_build")
    panels = importlib.import_module(f"{MODULE}.blender.panels")
    bpy.context.view_layer.objects.active = obj
    seen["strength_before"] = scene_build.get_relief_strength(obj)

    with bpy.context.temp_override(active_object=obj, object=obj):
        seen["panel_polls"] = panels.VIEW3D_PT_onemin3d_relief.poll(bpy.context)
    owner, prop = scene_build.relief_strength_path(obj)
    seen["slider_rna"] = owner.bl_rna.properties[prop].name if not prop.startswith('["') else "id property"
    if prop.startswith('["'):
        owner[prop[2:-2]] = 0.30          # an ID property (Blender 4.2 to 5.1)
    else:
        setattr(owner, prop, 0.30)        # modifier.properties.inputs.<id>.value (5.2 and later)
    obj.update_tag()
    seen["strength_after"] = scene_build.get_relief_strength(obj)
    seen["relief_height_doubled"] = relief()[1]

    # A GLB result, then a zipped OBJ result, switched on the stand-in through its control port.
    import urllib.request

    def result_kind(kind: str) -> None:
        req = urllib.request.Request(spec["base_url"] + "/_control/result", method="POST",
                                     data=json.dumps({"result": kind}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

    for kind, key in (("glb", "glb"), ("zip-obj", "zip_obj")):
        result_kind(kind)
        before = {o.name for o in bpy.data.objects}
        seen[key] = sorted(bpy.ops.onemin3d.generate(filepath=spec["photo"], import_mode="AUTO"))
        seen[key + "_meshes"] = sum(1 for o in bpy.data.objects if o.name not in before and o.type == 'MESH')

    def classes() -> list[str]:
        return sorted(n for n in dir(bpy.types) if "ONEMIN3D" in n.upper())

    def properties() -> list[str]:
        owners = (bpy.types.Scene, bpy.types.WindowManager, bpy.types.Object, bpy.types.Image,
                  bpy.types.Collection, bpy.types.Material)
        return sorted(f"{t.__name__}.{p}" for t in owners for p in dir(t) if "onemin3d" in p.lower())

    def handlers() -> list[str]:
        lists = {n: getattr(bpy.app.handlers, n) for n in dir(bpy.app.handlers) if not n.startswith("_")}
        return sorted(f"{n}:{fn.__name__}" for n, fns in lists.items() if isinstance(fns, list)
                      for fn in fns if getattr(fn, "__module__", "").startswith(MODULE))

    # What disabling must remove, seen while enabled, so that "nothing left" below means something.
    seen["classes_enabled"], seen["properties_enabled"] = classes(), properties()
    seen["handlers_enabled"] = handlers()
    pump = sys.modules[f"{MODULE}.blender.runtime"].pump
    bpy.ops.preferences.addon_disable(module=MODULE)
    seen["enabled_after_disable"] = MODULE in bpy.context.preferences.addons
    seen["classes_left"], seen["properties_left"], seen["handlers_left"] = classes(), properties(), handlers()
    seen["timer_left"] = bpy.app.timers.is_registered(pump)
    seen["threads_left"] = [t.name for t in threading.enumerate() if t.name.startswith("onemin3d") and t.is_alive()]

    repo = next(r for r in bpy.context.preferences.extensions.repos if r.module == "user_default")
    seen["uninstall"] = sorted(bpy.ops.extensions.package_uninstall(repo_directory=repo.directory, pkg_id="onemin3d"))
    seen["package_dir_after_uninstall"] = (Path(repo.directory) / "onemin3d").exists()
    seen["pil_after_uninstall"] = (wheel_dir / "PIL").exists()
    print("RESULT " + json.dumps(seen), flush=True)


if __name__ == "__main__":
    _child()
