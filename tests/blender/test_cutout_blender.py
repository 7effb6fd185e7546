"""Cut-out and torn reliefs and planes with the real bpy wheel: a photo with alpha gives a mesh cut to its silhouette (holes kept, solid and watertight, Strength live); --no-cutout and a photo without alpha keep the rectangle; tear drops the faces over a depth jump."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import addon_harness
import numpy as np
import pytest
from PIL import Image

from onemin3d_addon.blender import scene_build as sb

addon = addon_harness.addon  # fixtures
blender = addon_harness.blender

Blend = Any  # tests/blender/conftest.py: the empty_blend fixture's value

W, H = 200, 150  # the photo: a ring (outer radius 60 px, hole 20 px) centred at (100, 75)


def ring_photo(path: Path, *, alpha: bool = True, scale: int = 1) -> Path:
    """The ring photo, `scale` times larger (the upload wants 512 px at least)."""
    y, x = (np.mgrid[0:H * scale, 0:W * scale].astype(np.float64) + 0.5) / scale
    r = np.hypot(x - 100.0, y - 75.0)
    rgb = np.zeros((H * scale, W * scale, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = (x * 255 / W).astype(np.uint8)
    if alpha:
        a = np.where((r < 60.0) & (r > 20.0), 255, 0).astype(np.uint8)
        Image.fromarray(np.dstack([rgb, a]), "RGBA").save(path)
    else:
        Image.fromarray(rgb).save(path)
    return path


def depth_map(path: Path, *, step: bool = False) -> Path:
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    d = 0.3 + 0.2 * np.exp(-(((x - 100) / 40) ** 2 + ((y - 75) / 40) ** 2))
    if step:  # the right half jumps up between grid columns 20 and 21 (of 0..40): a subject in front
        d = np.where(x >= 103, 0.9, 0.1 + 0.05 * y / H)
    Image.fromarray((np.clip(d, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def positions(mesh: Any) -> np.ndarray:
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", co)
    return co.reshape(-1, 3)


def radius_px(co: np.ndarray, width: float) -> np.ndarray:
    """Distance of each vertex from the ring's centre, in photo pixels (the plane is W/H wide, 1 tall)."""
    px = W / width
    return np.hypot(co[:, 0] * px, co[:, 1] * px)


def non_manifold(mesh: Any) -> tuple[int, int]:
    """(non-manifold edges, non-manifold vertices) as bmesh counts them."""
    import bmesh

    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        return sum(not e.is_manifold for e in bm.edges), sum(not v.is_manifold for v in bm.verts)
    finally:
        bm.free()


def used_vertices(mesh: Any) -> np.ndarray:
    cv = np.empty(len(mesh.loops), np.int32)
    mesh.attributes[".corner_vert"].data.foreach_get("value", cv)
    used = np.zeros(len(mesh.vertices), bool)
    used[cv] = True
    return used


def relief(blend: Blend, photo: Path, depth: Path | None = None, **options: Any) -> Any:
    made = sb.import_result(depth or depth_map(blend.tmp / "depth.png"), photo, "DISPLACEMENT",
                            {"resolution": 41, **options})
    assert made.kind == "RELIEF"
    return made.objects[0]


@pytest.mark.smoke
def test_a_photo_with_alpha_gives_a_relief_cut_to_its_ring_with_the_hole_and_a_live_strength(
        empty_blend: Blend) -> None:
    obj = relief(empty_blend, ring_photo(empty_blend.tmp / "ring.png"))
    mesh = obj.data
    width = W / H
    r = radius_px(positions(mesh), width)
    cell = W / 40
    assert r.max() < 60 + cell and r.min() > 20 - cell, "a vertex lies outside the ring"
    assert len(mesh.polygons) < 0.75 * 40 * 30 and used_vertices(mesh).all()
    assert not mesh.validate(verbose=False)
    assert non_manifold(mesh)[1] == 0, "a bowtie vertex"
    # a grid vertex kept is exactly where the full rectangle has it: no re-centring
    co = positions(mesh)
    on_grid = np.isclose((co[:, 0] + width / 2) / (width / 40) % 1.0, 0.0, atol=1e-4) & \
        np.isclose((co[:, 1] + 0.5) / (1 / 30) % 1.0, 0.0, atol=1e-4)
    assert on_grid.sum() > 100
    # Strength still lifts it
    sb.set_relief_strength(obj, 0.1)
    low = np.ptp(positions(empty_blend.evaluated_mesh(obj))[:, 2])
    sb.set_relief_strength(obj, 0.3)
    high = np.ptp(positions(empty_blend.evaluated_mesh(obj))[:, 2])
    assert high == pytest.approx(3 * low, rel=1e-4) and low > 0


@pytest.mark.smoke
def test_a_solid_cut_out_relief_is_watertight_with_walls_along_the_ring_and_its_hole(empty_blend: Blend) -> None:
    obj = relief(empty_blend, ring_photo(empty_blend.tmp / "ring.png"), solid=True)
    for mesh in (obj.data, empty_blend.evaluated_mesh(obj)):
        assert non_manifold(mesh) == (0, 0)
        assert not mesh.validate(verbose=False)
    co = positions(obj.data)
    back = co[co[:, 2] < -1e-6]
    assert len(back) == len(co) // 2 and np.allclose(back[:, 2], -sb.SOLID_BASE * W / H)
    r = radius_px(back, W / H)
    assert r.min() > 20 - W / 40 and r.max() < 60 + W / 40


def test_no_cutout_and_a_photo_without_alpha_keep_the_rectangle(empty_blend: Blend) -> None:
    for obj in (relief(empty_blend, ring_photo(empty_blend.tmp / "ring.png"), cutout=False),
                relief(empty_blend, ring_photo(empty_blend.tmp / "opaque.png", alpha=False))):
        assert len(obj.data.vertices) == 41 * 31 and len(obj.data.polygons) == 40 * 30


def test_a_plane_of_an_image_with_alpha_is_cut_to_it_and_keeps_its_alpha(empty_blend: Blend) -> None:
    photo = ring_photo(empty_blend.tmp / "ring.png")
    plane = sb.import_result(photo, photo, "PLANE", None).objects[0]
    r = radius_px(positions(plane.data), W / H)
    assert len(plane.data.vertices) > 4 and r.max() < 61 and r.min() > 19
    assert used_vertices(plane.data).all() and non_manifold(plane.data)[1] == 0
    bsdf = next(n for n in plane.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    assert bsdf.inputs["Alpha"].is_linked
    whole = sb.import_result(photo, photo, "PLANE", {"cutout": False}).objects[0]
    assert len(whole.data.vertices) == 4


@pytest.mark.parametrize("solid", [False, True])
def test_tear_removes_the_faces_over_a_depth_jump(empty_blend: Blend, solid: bool) -> None:
    photo = ring_photo(empty_blend.tmp / "opaque.png", alpha=False)
    depth = depth_map(empty_blend.tmp / "step.png", step=True)
    torn = relief(empty_blend, photo, depth, tear=0.3, solid=solid)
    whole = relief(empty_blend, photo, depth, solid=solid)
    top = [len(o.data.polygons) - (int(np.count_nonzero(_sharp(o.data))) if solid else 0) for o in (torn, whole)]
    assert top[1] - top[0] == 30, "one column of faces (the one over the jump) is removed"
    if solid:
        assert non_manifold(torn.data) == (0, 0)


def test_a_cut_out_and_torn_solid_is_still_watertight(empty_blend: Blend) -> None:
    obj = relief(empty_blend, ring_photo(empty_blend.tmp / "ring.png"), depth_map(empty_blend.tmp / "step.png",
                                                                                  step=True), tear=0.3, solid=True)
    whole = relief(empty_blend, ring_photo(empty_blend.tmp / "ring2.png"), solid=True)
    assert non_manifold(obj.data) == (0, 0) and not obj.data.validate(verbose=False)
    assert len(obj.data.polygons) != len(whole.data.polygons)


def _sharp(mesh: Any) -> np.ndarray:
    out = np.zeros(len(mesh.polygons), bool)
    if "sharp_face" in mesh.attributes:
        mesh.attributes["sharp_face"].data.foreach_get("value", out)
    return out


def test_the_api_cuts_out_by_default_and_takes_cutout_and_tear(addon: Any, stand_in: Any, tmp_path: Path) -> None:
    from addon_harness import pump_until

    from onemin3d_addon import api

    photo = ring_photo(tmp_path / "ring.png", scale=4)
    made = {}
    for name, options in (("cut", {}), ("whole", {"cutout": False}), ("torn", {"tear": 0.02, "cutout": False})):
        job = api.submit(photo, mode="displacement", resolution=41, name=name, **options)
        pump_until(lambda job=job: job.done)  # type: ignore[misc]
        assert job.state == "imported", job.error_message
        made[name] = job.objects[0]
    full = 41 * 31
    assert len(made["whole"].data.vertices) == full
    r = radius_px(positions(made["cut"].data), W / H)
    assert len(made["cut"].data.vertices) < 0.75 * full and r.max() < 60 + W / 40
    assert len(made["torn"].data.polygons) < 40 * 30  # the stand-in's depth map has jumps above 2 %
    with pytest.raises(ValueError, match="tear"):
        api.submit(photo, tear=2.0)
