"""`blender -c onemin3d`: the function the add-on registers with `bpy.utils.register_cli_command`, called in-process.

Runs on every bpy tier (smoke). The command runs in a child interpreter of this venv (`python -I
this_file`), as `blender -c` runs it: the add-on enabled from the repository, its key, base URL
and result folder set in the add-on preferences only (no environment variable, no --api-key),
online access off, as in any `blender -b`. The child calls the registered function with the
arguments Blender would pass it and reports one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.smoke


def run_child(spec: dict[str, Any], user_dir: Path) -> dict[str, Any]:
    from addon_harness import run_script_child  # here: this file is also the child's script, run isolated

    return run_script_child(__file__, spec, user_dir)


def test_the_registered_command_converts_a_folder_under_the_users_preferences(
        stand_in: Any, api_key: str, tmp_path: Path) -> None:
    from addon_harness import make_photo

    make_photo(tmp_path / "photos" / "dress.jpg")
    make_photo(tmp_path / "photos" / "shoe.png", seed=2)
    out, results = tmp_path / "out", tmp_path / "my-results"
    seen = run_child({"root": str(ROOT), "key": api_key, "base_url": stand_in.base_url,
                      "results": str(results),
                      "argv": [str(tmp_path / "photos"), "--output-dir", str(out), "--mode", "displacement",
                               "--resolution", "48", "--export", "web", "--json", str(out / "report.json")]},
                     tmp_path / "blender-user")

    assert seen["registered"], seen
    assert seen["help_exit"] == 0 and "--output-dir" in seen["help"] and "blender -c onemin3d" in seen["help"]
    assert seen["exit"] == 0, seen["stderr"]
    assert sorted(p.name for p in out.glob("*.blend")) == ["dress.blend", "shoe.blend"]
    assert sorted(p.name for p in out.glob("*.web.glb")) == ["dress.web.glb", "shoe.web.glb"]  # --export web
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["converted"] == 2, report
    # The key, the base URL and the result folder came from the preferences.
    assert report["settings"]["base_url"] == stand_in.base_url
    assert report["settings"]["result_dir"] == str(results)
    assert all(Path(i["files"]["result"]).parent.is_relative_to(results) for i in report["items"]), report
    assert not (out / "onemin3d-results").exists()
    assert stand_in.count("POST", "/api/features") >= 2
    # --dry-run --resume finds the results in the preferences' result folder: nothing left to pay
    assert seen["dry_run_exit"] == 0 and "Total: 0 credits for 0 of 2 photos" in seen["dry_run"], seen["dry_run"]
    # The run's consent to go online was for the run: the preference is as it was.
    assert seen["online_after"] is False, seen
    # A usage error: exit 2, said on stderr with the command's name.
    assert seen["usage_exit"] == 2
    assert "blender -c onemin3d: error:" in seen["stderr"]
    # Disabled: the command is gone.
    assert seen["registered_after_disable"] is False
    assert api_key not in seen["stdout"] + seen["stderr"]


def test_the_registered_command_cuts_out_tears_removes_the_background_and_uses_trellis(
        stand_in: Any, api_key: str, tmp_path: Path) -> None:
    """Issue 15's options through `blender -c onemin3d`: a photo with alpha cut out, torn, solid; then
    the background removal and Trellis, each charged once at the price table's credits."""
    import numpy as np
    from addon_harness import make_photo
    from PIL import Image

    from onemin3d_addon.core import prices

    cut = tmp_path / "cut" / "vase.png"
    rgb = np.asarray(Image.open(make_photo(tmp_path / "vase.jpg")).convert("RGB"))
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    alpha = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (0.4 * h) ** 2, 255, 0).astype(np.uint8)
    cut.parent.mkdir()
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(cut)
    make_photo(tmp_path / "shoe" / "shoe.jpg", seed=3)
    out = tmp_path / "out"
    common = ["--resolution", "48", "--solid"]
    runs = [
        [str(cut), "--mode", "displacement", "--tear", "0.5", *common, "--output", str(out / "cut.blend"),
         "--json", str(out / "cut.json")],
        [str(cut), "--mode", "displacement", "--no-cutout", *common, "--output", str(out / "rect.blend"),
         "--json", str(out / "rect.json")],
        [str(tmp_path / "shoe"), "--remove-background", "--model", "trellis", "--dry-run"],
        [str(tmp_path / "shoe"), "--remove-background", "--model", "trellis", "--output", str(out / "shoe.blend"),
         "--json", str(out / "shoe.json")],
    ]
    seen = run_child({"root": str(ROOT), "key": api_key, "base_url": stand_in.base_url,
                      "results": str(tmp_path / "results"), "runs": runs}, tmp_path / "blender-user")

    assert seen["exits"] == [0, 0, 0, 0], seen["stderr"]
    reports = {name: json.loads((out / f"{name}.json").read_text()) for name in ("cut", "rect", "shoe")}
    assert reports["cut"]["settings"]["cutout"] is True and reports["cut"]["settings"]["tear"] == 0.5
    assert reports["rect"]["settings"]["cutout"] is False
    # the cut-out relief has fewer faces than the rectangle's, and both are closed (solid)
    assert 0 < seen["faces"]["cut.blend"] < seen["faces"]["rect.blend"], seen["faces"]
    assert seen["non_manifold"] == {"cut.blend": 0, "rect.blend": 0}, seen["non_manifold"]
    # --dry-run priced the removal and Trellis from the one table, and sent nothing
    expected = prices.cost("Qubico/trellis", True).credits
    assert expected == 60_000 and f"{expected:,}" in seen["outputs"][2], seen["outputs"][2]
    shoe = reports["shoe"]
    assert shoe["settings"]["model"] == "trellis" and shoe["settings"]["remove_background"] is True
    assert shoe["summary"]["converted"] == 1, shoe
    # two reliefs at stable-image's price, then the shoe's two paid steps, each sent once: the removal
    # then Trellis (a model came back)
    relief = prices.cost("stable-image", False).credits
    assert relief == 20_000
    assert stand_in.generations == 4 and stand_in.used_credit == 45_000 + 2 * relief + expected
    assert seen["models"]["shoe.blend"] >= 1, seen
    assert api_key not in seen["stdout"] + seen["stderr"]


# --- the child: runs inside the hermetic bpy ---------------------------------------------------

def _child() -> None:
    import contextlib
    import importlib
    import io

    spec = json.loads(sys.stdin.read())
    sys.path.insert(0, spec["root"])
    import bpy  # first: it puts Blender's own modules (addon_utils) on sys.path

    addon_utils = importlib.import_module("addon_utils")

    addon_utils.enable("onemin3d_addon", default_set=True, handle_error=lambda exc: (_ for _ in ()).throw(exc))
    from onemin3d_addon.blender import command, preferences

    prefs = preferences.get_prefs()
    assert prefs is not None
    prefs.api_key = spec["key"]
    prefs.base_url = spec["base_url"]
    prefs.result_folder = spec["results"]
    bpy.context.preferences.system.use_online_access = False
    seen: dict[str, Any] = {"registered": bool(command._handles)}
    if "runs" in spec:
        _child_runs(bpy, command, spec["runs"], seen)
        addon_utils.disable("onemin3d_addon", default_set=True)
        print("RESULT " + json.dumps(seen), flush=True)
        return

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        seen["help_exit"] = command.run(["--help"])
    seen["help"] = buf.getvalue()
    seen["exit"] = command.run(list(spec["argv"]))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # what running it again would cost: the result folder is the preferences'
        seen["dry_run_exit"] = command.run([*spec["argv"], "--resume", "--dry-run"])
    seen["dry_run"] = buf.getvalue()
    seen["online_after"] = bool(bpy.context.preferences.system.use_online_access)
    seen["usage_exit"] = command.run([spec["argv"][0], "--output", "not-a-blend.txt"])
    addon_utils.disable("onemin3d_addon", default_set=True)
    seen["registered_after_disable"] = bool(command._handles)
    print("RESULT " + json.dumps(seen), flush=True)


def _child_runs(bpy: Any, command: Any, runs: list[list[str]], seen: dict[str, Any]) -> None:
    """Each argv through the registered function; then what each .blend written holds."""
    import contextlib
    import io

    import bmesh

    seen["exits"], seen["outputs"] = [], []
    for argv in runs:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            seen["exits"].append(command.run(list(argv)))
        seen["outputs"].append(buf.getvalue())
    seen["faces"], seen["non_manifold"], seen["models"] = {}, {}, {}
    for argv in runs:
        if "--output" not in argv:
            continue
        blend = Path(argv[argv.index("--output") + 1])
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        meshes = [o for o in bpy.data.objects if o.type == "MESH"]
        seen["models"][blend.name] = sum(1 for o in meshes if o.get("onemin3d_kind") == "MODEL")
        reliefs = [o for o in meshes if o.get("onemin3d_kind") == "RELIEF"]
        if reliefs:
            bm = bmesh.new()
            bm.from_mesh(reliefs[0].data)
            seen["faces"][blend.name] = len(bm.faces)
            seen["non_manifold"][blend.name] = sum(1 for e in bm.edges if not e.is_manifold)
            bm.free()


if __name__ == "__main__":
    _child()
    sys.stderr.flush()
    import os

    os._exit(0)  # bpy 4.2's wheel segfaults in Python's finalisation after a glTF export (as cli/main.py ends)
