"""Scene finishing for the converter (main thread only): grid layout, export, preview render, save.

Importing it does not import bpy (the converter imports it before Blender is set up); each
function imports what it needs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("onemin3d.image_to_3d")

#: the longer side of a preview picture, in pixels
RENDER_SIZE = 256

# --- scene helpers (main thread) -----------------------------------------------------------------


def layout_grid(collections: Sequence[Any]) -> None:
    """Lay results out side by side, in input order, each centred in its own grid cell.

    Rows hold up to four results (more: ceil(√n) per row). The cell pitch comes from the largest
    result, so nothing overlaps; every result's lowest point sits on the ground (z = 0).
    """
    from mathutils import Vector

    bounds = [world_bounds(list(c.all_objects)) for c in collections]
    sizes = [(hi - lo) for lo, hi in bounds if lo is not None and hi is not None]
    if not sizes:
        return
    pitch_x = max(s.x for s in sizes) * 1.2 + 1e-3
    pitch_y = max(s.y for s in sizes) * 1.2 + 1e-3
    count = len(collections)
    cols = count if count <= 4 else math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    for index, (coll, (lo, hi)) in enumerate(zip(collections, bounds, strict=True)):
        if lo is None or hi is None:
            continue
        row, col = divmod(index, cols)
        target = Vector(((col - (cols - 1) / 2) * pitch_x, ((rows - 1) / 2 - row) * pitch_y, 0.0))
        centre = (lo + hi) / 2
        offset = Vector((target.x - centre.x, target.y - centre.y, -lo.z))
        objects = set(coll.all_objects)
        for ob in objects:
            if ob.parent is None or ob.parent not in objects:
                ob.location += offset
    bpy_update()


def bpy_update() -> None:
    import bpy

    view_layer = bpy.context.view_layer
    if view_layer is not None:
        view_layer.update()


def world_bounds(objects: Sequence[Any]) -> tuple[Any, Any]:
    """(min, max) corners of the evaluated geometry of `objects` in world space."""
    from mathutils import Vector

    from .build_common import evaluated_depsgraph  # bpy: imported when used (the converter sets up first)

    depsgraph = evaluated_depsgraph()  # not the context's own depsgraph getter: see build_common
    lo = hi = None
    for ob in objects:
        if ob.type not in {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME"}:
            continue
        ev = ob.evaluated_get(depsgraph)
        mw = ev.matrix_world
        for corner in ev.bound_box:
            p = mw @ Vector(corner)
            lo = p.copy() if lo is None else Vector(list(map(min, lo, p)))
            hi = p.copy() if hi is None else Vector(list(map(max, hi, p)))
    return lo, hi


def remove_new_data(bpy: Any, before: set[Any]) -> None:
    """Remove every datablock that is not in `before` (a snapshot of bpy.data.user_map())."""
    new = [id_ for id_ in bpy.data.user_map() if id_ not in before]
    if new:
        bpy.data.batch_remove(new)


def save_blend(bpy: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.blend")
    # Saved under a temporary name and renamed: an interrupted save never leaves half a .blend.
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp), check_existing=False, copy=True)
    os.replace(tmp, path)


def pack_images(bpy: Any) -> None:
    for image in bpy.data.images:
        if image.source == "FILE" and not image.packed_file and image.filepath:
            image.pack()


def export_collection(bpy: Any, collection: Any, target: Path, fmt: str) -> None:
    """Export the objects of one result; the format's importer must read the file back."""
    view_layer = bpy.context.view_layer
    objects = [o for o in collection.all_objects]
    for ob in view_layer.objects:
        ob.select_set(False)
    for ob in objects:
        ob.select_set(True)
    view_layer.objects.active = objects[0] if objects else None
    target.parent.mkdir(parents=True, exist_ok=True)
    path = str(target)
    if fmt == "glb":
        bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True, export_apply=True)
    elif fmt == "fbx":
        bpy.ops.export_scene.fbx(filepath=path, use_selection=True, use_mesh_modifiers=True,
                                 path_mode="COPY", embed_textures=True)
    elif fmt == "obj":
        bpy.ops.wm.obj_export(filepath=path, export_selected_objects=True, apply_modifiers=True,
                              path_mode="COPY")
    elif fmt == "stl":
        bpy.ops.wm.stl_export(filepath=path, export_selected_objects=True, apply_modifiers=True)
    elif fmt in {"web", "usdz"}:  # reliefs simplified, textures downsized: see blender/export_web
        from .export_web import export_file

        export_file(collection, target, fmt)
    else:  # argparse already refused it
        raise ValueError(fmt)
    if not target.is_file():
        raise RuntimeError(f"the {fmt} exporter wrote nothing to {target}")


PREVIEW_COLLECTION = "1min3d preview"


def render_preview(bpy: Any, collections: Sequence[Any], target: Path) -> None:
    """A small Cycles (CPU) picture of `collections`: a camera and a sun framing their bounds.

    Other result collections are hidden from the render meanwhile; the camera and sun stay in the
    scene (collection "1min3d preview"), so opening the .blend and pressing F12 shows the same view.
    """
    scene = bpy.context.scene
    others = [c for c in _result_collections(scene) if c not in collections]
    hidden = [(c, c.hide_render) for c in others]
    for c, _ in hidden:
        c.hide_render = True
    try:
        objects = [o for c in collections for o in c.all_objects]
        cam, sun = _preview_rig(bpy, scene)
        frame_objects(bpy, scene, cam, sun, objects)
        _render_settings(bpy, scene)
        target.parent.mkdir(parents=True, exist_ok=True)
        scene.render.filepath = str(target)
        bpy.ops.render.render(write_still=True)
        if not target.is_file():
            raise RuntimeError(f"Cycles wrote no picture to {target}")
    finally:
        for c, was in hidden:
            c.hide_render = was


def _result_collections(scene: Any) -> list[Any]:
    return [c for c in scene.collection.children if c.name != PREVIEW_COLLECTION]


def _preview_rig(bpy: Any, scene: Any) -> tuple[Any, Any]:
    coll = bpy.data.collections.get(PREVIEW_COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(PREVIEW_COLLECTION)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    cam = next((o for o in coll.objects if o.type == "CAMERA"), None)
    if cam is None:
        cam = bpy.data.objects.new("1min3d camera", bpy.data.cameras.new("1min3d camera"))
        coll.objects.link(cam)
    sun = next((o for o in coll.objects if o.type == "LIGHT"), None)
    if sun is None:
        light = bpy.data.lights.new("1min3d sun", "SUN")
        light.energy = 3.0
        light.angle = math.radians(8)
        sun = bpy.data.objects.new("1min3d sun", light)
        coll.objects.link(sun)
    scene.camera = cam
    if scene.world is None:
        scene.world = bpy.data.worlds.new("1min3d world")
    world = scene.world
    world.color = (0.08, 0.085, 0.09)
    if hasattr(world, "use_nodes") and world.node_tree is None:
        world.use_nodes = True  # deprecated in 5.0, where worlds always have nodes
    if world.node_tree is not None:
        bg = next((n for n in world.node_tree.nodes if n.type == "BACKGROUND"), None)
        if bg is not None:
            bg.inputs["Color"].default_value = (0.16, 0.17, 0.18, 1.0)
            bg.inputs["Strength"].default_value = 1.0
    return cam, sun


def frame_objects(bpy: Any, scene: Any, cam: Any, sun: Any, objects: Sequence[Any]) -> None:
    """Aim the camera at the objects' bounds from their front, above, and fit them in frame."""
    import numpy as np
    from mathutils import Vector

    lo, hi = world_bounds(objects)
    if lo is None or hi is None:
        lo, hi = Vector((-1, -1, 0)), Vector((1, 1, 1))
    centre = (lo + hi) / 2
    front = _facing(bpy, objects)
    up = Vector((0.0, 0.0, 1.0))
    if front is not None and abs(front.dot(up)) > 0.7:
        # a relief or plane lying flat, facing up: look down at it from the front
        view = (front * math.cos(math.radians(40)) + Vector((0.0, -1.0, 0.0)) * math.sin(math.radians(40)))
    elif front is not None:
        view = front + up * 0.45
    else:
        view = Vector((0.5, -1.0, 0.55))  # a model: glTF's front is Blender's -Y; a three-quarter view
    view.normalize()
    rot = (-view).to_track_quat("-Z", "Y")
    cam.rotation_euler = rot.to_euler()

    extent = hi - lo
    aspect = 1.0
    right = rot @ Vector((1.0, 0.0, 0.0))
    upv = rot @ Vector((0.0, 1.0, 0.0))
    corners = [Vector((x, y, z)) for x in (lo.x, hi.x) for y in (lo.y, hi.y) for z in (lo.z, hi.z)]
    xs = np.array([(c - centre).dot(right) for c in corners])
    ys = np.array([(c - centre).dot(upv) for c in corners])
    zs = np.array([(c - centre).dot(view) for c in corners])
    width, height = float(np.ptp(xs)), float(np.ptp(ys))
    if height > 1e-6:
        aspect = max(1.0, min(2.5, width / height))
    rx = RENDER_SIZE
    ry = max(128, int(round(RENDER_SIZE / aspect)))
    scene.render.resolution_x, scene.render.resolution_y = rx, ry
    scene.render.resolution_percentage = 100

    camdata = cam.data
    camdata.lens = 50.0
    camdata.sensor_fit = "HORIZONTAL"
    half_h = camdata.angle / 2
    half_v = math.atan(math.tan(half_h) * ry / rx)
    margin = 1.08
    dist = float(np.max(zs + np.maximum(np.abs(xs) * margin / math.tan(half_h),
                                        np.abs(ys) * margin / math.tan(half_v))))
    dist = max(dist, 1e-3 + float(np.max(zs)))
    cam.location = centre + view * dist
    camdata.clip_start = max(0.01, dist * 0.01)
    camdata.clip_end = dist * 10 + extent.length * 2

    # key light from the camera's upper left
    light_dir = (view + upv * 0.8 - right * 0.6).normalized()
    sun.rotation_euler = (-light_dir).to_track_quat("-Z", "Y").to_euler()


def _facing(bpy: Any, objects: Sequence[Any]) -> Any:
    """The area-weighted mean normal of the meshes, if they clearly face one way (a plane, a relief)."""
    import numpy as np
    from mathutils import Vector

    from .build_common import evaluated_depsgraph  # bpy: imported when used (the converter sets up first)

    depsgraph = evaluated_depsgraph()  # not the context's own depsgraph getter: see build_common
    total = np.zeros(3)
    area_sum = 0.0
    for ob in objects:
        if ob.type != "MESH":
            continue
        ev = ob.evaluated_get(depsgraph)
        mesh = ev.to_mesh()
        try:
            n = len(mesh.polygons)
            if not n:
                continue
            normals = np.empty(n * 3, np.float32)
            areas = np.empty(n, np.float32)
            mesh.polygon_normals.foreach_get("vector", normals)
            mesh.polygons.foreach_get("area", areas)
            m = np.array(ev.matrix_world.to_3x3().inverted_safe().transposed())
            world_normals = normals.reshape(-1, 3) @ m.T
            total += (world_normals * areas[:, None]).sum(axis=0)
            area_sum += float(areas.sum())
        finally:
            ev.to_mesh_clear()
    if area_sum <= 0:
        return None
    mean = total / area_sum
    length = float(np.linalg.norm(mean))
    if length < 0.5:  # closed or many-sided: a model, not a sheet
        return None
    return Vector(list(mean / length))


def _render_settings(bpy: Any, scene: Any) -> None:
    scene.render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = 16
    cycles.use_adaptive_sampling = True
    cycles.max_bounces = 4
    cycles.use_denoising = _have_oidn()
    if cycles.use_denoising:
        cycles.denoiser = "OPENIMAGEDENOISE"
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.view_settings.view_transform = "Standard"  # photos keep their colours
    scene.render.use_persistent_data = False


def _have_oidn() -> bool:
    try:
        import _cycles  # type: ignore[import-not-found]
    except ImportError:
        return False
    return bool(getattr(_cycles, "with_openimagedenoise", False))
