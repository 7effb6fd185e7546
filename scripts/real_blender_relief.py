"""Inside a real Blender: the installed extension makes one relief, and its Strength slider moves it.

    blender -b --online-mode --python scripts/real_blender_relief.py -- BASE_URL PHOTO OUT.blend RESULTS

Run by scripts/real_blender_check.sh against the stand-in, after `blender --command extension
install-file --enable` installed the built zip. Prints one line, "RESULT {json}", and exits 1
when the relief or the slider did not work.
"""

import json
import sys

import bpy
import numpy as np

base_url, photo, out, results = sys.argv[sys.argv.index("--") + 1:]
MODULE = "bl_ext.user_default.onemin3d"
seen = {"blender": bpy.app.version_string, "python": sys.version.split()[0], "numpy": np.__version__,
        "enabled": MODULE in bpy.context.preferences.addons, "online": bpy.app.online_access}
prefs = bpy.context.preferences.addons[MODULE].preferences
prefs.api_key, prefs.base_url, prefs.result_folder = "test-key-0123456789", base_url, results
import PIL  # noqa: E402 - from the wheel the extension bundles

seen["pil"] = PIL.__file__
seen["pil_bundled"] = "/extensions/.local/lib/" in PIL.__file__
seen["generate"] = sorted(bpy.ops.onemin3d.generate(filepath=photo, import_mode="DISPLACEMENT"))
sb = sys.modules[MODULE + ".blender.scene_build"]
obj = next(o for o in bpy.context.scene.objects if sb.relief_modifier(o) is not None)


def height() -> tuple[int, float]:
    dg = bpy.context.evaluated_depsgraph_get()
    m = obj.evaluated_get(dg).to_mesh()
    co = np.empty(len(m.vertices) * 3, np.float32)
    m.vertices.foreach_get("co", co)
    obj.evaluated_get(dg).to_mesh_clear()
    return len(co) // 3, float(np.ptp(co[2::3]))


seen["vertices"], seen["height"] = height()
owner, prop = sb.relief_strength_path(obj)
seen["slider"] = prop
seen["strength"] = sb.get_relief_strength(obj)
sb.set_relief_strength(obj, 2 * seen["strength"])
seen["height_doubled"] = height()[1]
bpy.ops.wm.save_as_mainfile(filepath=out)
print("RESULT " + json.dumps(seen))
ok = (seen["generate"] == ["FINISHED"] and seen["vertices"] >= 64 * 64 and seen["height"] > 0 and seen["pil_bundled"]
      and abs(seen["height_doubled"] - 2 * seen["height"]) < 1e-4 * seen["height_doubled"])
sys.exit(0 if ok else 1)
