#!/usr/bin/env python3
"""Studio renders of a .blend's results, for the README and out/demo.png: framed, on a neutral backdrop.

    python scripts/render_docs.py SCENE.blend OUT.png [OUT.jpg ...] [--width 1200] [--height 800] [--samples 96]
    blender -b --python scripts/render_docs.py -- SCENE.blend OUT.png ...

Opens SCENE.blend (a scene made by scripts/image_to_3d.py), hides its own preview rig, and puts
the results on a grey cyclorama (a floor that curves up into a wall behind them) under a large
soft key light, a fill and a rim, with a camera that frames them with a margin: from the front and
above for what lies flat (a relief, a plane), three-quarters for what stands (a model). Renders
with Cycles on the CPU (adaptive sampling, then OpenImageDenoise where the build has it) in the
Standard view transform, so the photos keep their colours. Writes each OUT in the format its
suffix names (.png, .jpg); the .blend is not changed.

Run by scripts/demo.py (`make demo`; `--update-docs-images` copies them into docs/img/).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
PREVIEW_COLLECTION = "1min3d preview"  # the converter's camera and sun (scripts/image_to_3d.py)
BACKDROP_GREY = 0.42
#: how far the frame reaches past the results' bounds (1.0: they touch the edges)
MARGIN = 1.18


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="render_docs.py", description=__doc__.splitlines()[0])
    ap.add_argument("scene", type=Path, help="a .blend made by scripts/image_to_3d.py")
    ap.add_argument("outputs", type=Path, nargs="+", help="pictures to write: .png or .jpg")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel (adaptive; then denoised)")
    return ap.parse_args(argv)


def world_bounds(objects: list[Any]) -> tuple[Any, Any]:
    from mathutils import Vector

    points = [o.matrix_world @ Vector(corner) for o in objects for corner in o.bound_box]
    lo = Vector((min(p.x for p in points), min(p.y for p in points), min(p.z for p in points)))
    hi = Vector((max(p.x for p in points), max(p.y for p in points), max(p.z for p in points)))
    return lo, hi


def cyclorama(bpy: Any, lo: Any, hi: Any) -> Any:
    """A floor under the results that curves up into a wall behind them, wide enough to fill the frame."""
    size = max((hi - lo).length, 1.0)
    width, depth, radius, height = size * 8, size * 4, size * 0.9, size * 4
    floor_z = lo.z - size * 0.002
    back_y = hi.y + size * 0.5 + radius  # the floor stays flat under the results; the curve starts behind
    profile = [(back_y - radius - depth, floor_z)]
    for i in range(17):  # the quarter circle from the floor up to the wall
        a = math.radians(90 * i / 16)
        profile.append((back_y - radius + radius * math.sin(a), floor_z + radius - radius * math.cos(a)))
    profile.append((back_y, floor_z + height))
    cx = (lo.x + hi.x) / 2
    verts = [(cx + side * width / 2, y, z) for y, z in profile for side in (-1, 1)]
    faces = [(2 * i, 2 * i + 1, 2 * i + 3, 2 * i + 2) for i in range(len(profile) - 1)]
    mesh = bpy.data.meshes.new("docs backdrop")
    mesh.from_pydata(verts, [], faces)
    mesh.shade_smooth() if hasattr(mesh, "shade_smooth") else None
    mat = bpy.data.materials.new("docs backdrop")
    if hasattr(mat, "use_nodes") and mat.node_tree is None:
        mat.use_nodes = True  # deprecated in 5.0, where materials always have nodes
    bsdf = next(n for n in mat.node_tree.nodes if n.type == 'BSDF_PRINCIPLED')
    bsdf.inputs["Base Color"].default_value = (BACKDROP_GREY, BACKDROP_GREY, BACKDROP_GREY * 1.02, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.75
    mesh.materials.append(mat)
    obj = bpy.data.objects.new("docs backdrop", mesh)
    return obj


def area_light(bpy: Any, name: str, energy: float, size: float, location: Any, target: Any) -> Any:
    light = bpy.data.lights.new(name, 'AREA')
    light.energy = energy
    light.shape = 'DISK'
    light.size = size
    obj = bpy.data.objects.new(name, light)
    obj.location = location
    obj.rotation_euler = (target - location).to_track_quat('-Z', 'Y').to_euler()
    return obj


def frame(scene: Any, cam: Any, lo: Any, hi: Any, flat: bool) -> None:
    """Aim the camera at the bounds' middle and back off until every corner is inside the frame."""
    from mathutils import Vector

    centre = (lo + hi) / 2
    # flat results are seen from the front and well above; standing ones three-quarters, a little above
    elevation, azimuth = (math.radians(42), 0.0) if flat else (math.radians(14), math.radians(-28))
    view = Vector((math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation),
                   math.sin(elevation)))
    rot = (-view).to_track_quat('-Z', 'Y')
    cam.rotation_euler = rot.to_euler()
    cam.data.lens = 60.0
    cam.data.sensor_fit = 'HORIZONTAL'
    rx, ry = scene.render.resolution_x, scene.render.resolution_y
    tan_h = math.tan(cam.data.angle / 2)
    tan_v = tan_h * ry / rx
    right, up = rot @ Vector((1.0, 0.0, 0.0)), rot @ Vector((0.0, 1.0, 0.0))
    corners = [Vector((x, y, z)) for x in (lo.x, hi.x) for y in (lo.y, hi.y) for z in (lo.z, hi.z)]
    dist = max(
        (c - centre).dot(view) + max(abs((c - centre).dot(right)) * MARGIN / tan_h,
                                     abs((c - centre).dot(up)) * MARGIN / tan_v)
        for c in corners)
    cam.location = centre + view * dist
    cam.data.clip_start = max(0.01, dist * 0.01)
    cam.data.clip_end = dist * 20


def render(bpy: Any, args: argparse.Namespace) -> None:
    from mathutils import Vector

    bpy.ops.wm.open_mainfile(filepath=str(args.scene.resolve()))
    scene = bpy.context.scene
    rig = bpy.data.collections.get(PREVIEW_COLLECTION)
    if rig is not None:
        rig.hide_render = True
    results = [o for o in scene.objects if o.type == 'MESH' and not o.hide_render
               and (rig is None or o.name not in rig.all_objects)]
    if not results:
        raise SystemExit(f"render_docs: no mesh to render in {args.scene}")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    lo, hi = world_bounds([o.evaluated_get(depsgraph) for o in results])
    extent = hi - lo
    flat = extent.z < 0.35 * max(extent.x, extent.y)

    studio = bpy.data.collections.new("docs studio")
    scene.collection.children.link(studio)
    studio.objects.link(cyclorama(bpy, lo, hi))
    centre, size = (lo + hi) / 2, max(extent.length, 1.0)
    for name, energy, light_size, offset in (
            ("docs key", 220.0, 2.5, Vector((-1.6, -1.4, 2.2))),   # large and soft, upper left front
            ("docs fill", 40.0, 4.0, Vector((2.2, -1.8, 1.0))),    # lifts the shadows, right
            ("docs rim", 60.0, 1.5, Vector((0.6, 2.0, 1.6)))):     # separates the results from the wall
        studio.objects.link(area_light(bpy, name, energy * size * size / 4, light_size * size / 2,
                                       centre + offset * size, centre))
    cam = bpy.data.objects.new("docs camera", bpy.data.cameras.new("docs camera"))
    studio.objects.link(cam)
    scene.camera = cam

    world = scene.world or bpy.data.worlds.new("docs world")
    scene.world = world
    if hasattr(world, "use_nodes") and world.node_tree is None:
        world.use_nodes = True
    bg = next((n for n in world.node_tree.nodes if n.type == 'BACKGROUND'), None)
    if bg is not None:
        bg.inputs["Color"].default_value = (0.5, 0.5, 0.52, 1.0)
        bg.inputs["Strength"].default_value = 0.25

    scene.render.resolution_x, scene.render.resolution_y = args.width, args.height
    scene.render.resolution_percentage = 100
    frame(scene, cam, lo, hi, flat)
    scene.render.engine = 'CYCLES'
    cycles = scene.cycles
    cycles.device = 'CPU'
    cycles.samples = args.samples
    cycles.use_adaptive_sampling = True
    cycles.adaptive_threshold = 0.03
    # what shows here: diffuse light bounced once or twice; more only costs time
    cycles.max_bounces = 3
    cycles.diffuse_bounces = 2
    cycles.glossy_bounces = 2
    cycles.transmission_bounces = 2
    cycles.transparent_max_bounces = 4
    try:
        import _cycles
        cycles.use_denoising = bool(getattr(_cycles, "with_openimagedenoise", False))
    except ImportError:
        cycles.use_denoising = False
    if cycles.use_denoising:
        cycles.denoiser = 'OPENIMAGEDENOISE'
    scene.render.film_transparent = False
    scene.view_settings.view_transform = 'Standard'  # the photos keep their colours
    scene.view_settings.look = 'None'

    start = time.monotonic()
    bpy.ops.render.render()
    image = bpy.data.images["Render Result"]
    for out in args.outputs:
        fmt = FORMATS.get(out.suffix.lower())
        if fmt is None:
            raise SystemExit(f"render_docs: {out}: write .png or .jpg")
        settings = scene.render.image_settings
        settings.file_format = fmt
        settings.color_mode = 'RGB'
        if fmt == 'JPEG':
            settings.quality = 88
        else:
            settings.compression = 90
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save_render(str(out.resolve()), scene=scene)
        print(f"render_docs: {out} ({args.width}x{args.height}, {args.samples} samples, "
              f"{time.monotonic() - start:.0f} s)", flush=True)


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    args = parse_args(argv)
    import bpy

    render(bpy, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
