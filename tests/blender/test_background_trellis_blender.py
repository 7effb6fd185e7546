"""In Blender, through the add-on's jobs (api.submit → pipeline → import): the Trellis model's GLB comes in as a model, and a background removal's cut-out is what a relief is coloured with (issue 15 §2, §4)."""

from __future__ import annotations

import json
from pathlib import Path

import addon_harness
import pytest
from addon_harness import pump_until

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender


def _product(path: Path) -> Path:
    """A red disc on a plain backdrop (the stand-in's background remover keeps the disc)."""
    import numpy as np
    from PIL import Image

    h, w = 512, 640
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[...] = (200, 210, 220)
    img[(xx - 320) ** 2 + (yy - 256) ** 2 < 150 ** 2] = (180, 40, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _entry(folder: Path, job_id: str) -> dict:
    from onemin3d_addon.blender import runtime

    rt = runtime.peek_runtime()
    if rt is not None:
        assert rt.flush()
    return json.loads((folder / "history" / f"{job_id}.json").read_text(encoding="utf-8"))


@pytest.mark.smoke
def test_trellis_is_sent_as_qubico_and_its_glb_imported_as_a_model(addon, stand_in, tmp_path):
    from onemin3d_addon import api

    stand_in.result = "depth"  # what stable-image would answer: Trellis answers a GLB whatever it is
    before = stand_in.used_credit
    job = api.submit(_product(tmp_path / "photos" / "mug.png"), mode="auto", model="trellis")
    pump_until(lambda: job.done, timeout=60)
    assert job.state == "imported", job.error_message
    assert [(r["type"], r["model"]) for r in stand_in.records.values()] == [("IMAGE_3D_GENERATOR", "Qubico/trellis")]
    assert stand_in.used_credit - before == 40_000
    assert job.import_kind == "MODEL" and job.objects
    assert any(ob.type == "MESH" for ob in job.objects)
    assert _entry(tmp_path / "results", job.id)["result_kind"] == "glb"


@pytest.mark.smoke
def test_a_relief_is_coloured_with_the_cutout_of_a_background_removal(addon, stand_in, tmp_path):
    from onemin3d_addon import api

    stand_in.result = "depth"
    before = stand_in.used_credit
    job = api.submit(_product(tmp_path / "photos" / "mug.png"), mode="relief", remove_background=True)
    pump_until(lambda: job.done, timeout=60)
    assert job.state == "imported", job.error_message
    assert [r["type"] for r in stand_in.records.values()] == ["BACKGROUND_REMOVER", "IMAGE_3D_GENERATOR"]
    assert stand_in.used_credit - before == 40_000
    entry = _entry(tmp_path / "results", job.id)
    assert entry["bg_uuid"] and entry["bg_sent"] and Path(entry["bg_file"]).is_file()
    images = {Path(node.image.filepath).name
              for ob in job.objects for slot in ob.material_slots if slot.material and slot.material.node_tree
              for node in slot.material.node_tree.nodes if node.type == "TEX_IMAGE" and node.image}
    assert Path(entry["bg_file"]).name in images and "mug.png" not in images
    # and cut by its alpha: the mesh spans the disc (300 px of the photo's 512 px height), not the frame
    (relief,) = [ob for ob in job.objects if ob.type == "MESH"]
    xs = [v.co.x for v in relief.data.vertices]
    ys = [v.co.y for v in relief.data.vertices]
    assert abs((max(xs) - min(xs)) / (max(ys) - min(ys)) - 1.0) < 0.05  # round, not 640:512
