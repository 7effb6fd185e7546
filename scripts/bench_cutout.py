"""`python scripts/bench.py cutout`: the cut-out relief (issue 15) on the astronaut photo cut to an analytic silhouette.

    python scripts/bench.py cutout [--repeat 3] [--picture docs/img/cutout-relief.jpg]

Prints:

* the boundary error in grid cells (max and mean) of a 512² cut-out relief against the true
  contour of the silhouette (a head disc joined to a shoulder ellipse: concave at the neck), and
  of the test shapes of tests/core/test_cutout.py (a disc with a hole, a five-pointed star);
* the non-manifold edges and vertices (bmesh) of the solid cut-out relief, and of a solid
  cut-out torn at 10 % of the depth;
* the build time of the cut-out relief at 1024² against the rectangle's, measured in the same run
  (`import_relief`, file → object, best of --repeat), as a ratio (information, no target).

With --picture, renders the cut-out relief beside the rubber-sheet one (scripts/render_docs.py)
into that JPEG, for the README. The depth maps are the stand-in's (scripts/fake_onemin_server.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
PHOTO = ROOT / "examples" / "astronaut.jpg"

# the silhouette on the 512² photo (pixels, y down): the head, and the shoulders below it
HEAD = (226.0, 122.0, 82.0)              # centre x, y, radius
BODY = (205.0, 520.0, 195.0, 305.0)      # centre x, y, semi-axes


def silhouette(x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """True inside the silhouette (coordinates in pixels of the photo `scale` × 512 wide)."""
    hx, hy, hr = (v * scale for v in HEAD)
    bx, by, ba, bb = (v * scale for v in BODY)
    return (np.hypot(x - hx, y - hy) < hr) | (((x - bx) / ba) ** 2 + ((y - by) / bb) ** 2 < 1.0)


def contour(scale: float = 1.0, n: int = 40000) -> np.ndarray:
    """Dense points (x, y) of the silhouette's true outline inside the photo."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    hx, hy, hr = (v * scale for v in HEAD)
    bx, by, ba, bb = (v * scale for v in BODY)
    head = np.stack([hx + hr * np.cos(t), hy + hr * np.sin(t)], axis=1)
    body = np.stack([bx + ba * np.cos(t), by + bb * np.sin(t)], axis=1)
    head = head[((head[:, 0] - bx) / ba) ** 2 + ((head[:, 1] - by) / bb) ** 2 >= 1.0]
    body = body[np.hypot(body[:, 0] - hx, body[:, 1] - hy) >= hr]
    pts = np.concatenate([head, body])
    side = 512 * scale
    return pts[(pts[:, 0] > 0) & (pts[:, 0] < side) & (pts[:, 1] > 0) & (pts[:, 1] < side)]


def make_inputs(folder: Path, scale: int = 1) -> tuple[Path, Path, Path]:
    """The cut-out photo (RGBA PNG, 4×4 supersampled alpha), the same photo opaque, and the
    stand-in's depth map for the cut-out (its background sinks, as a real model's does)."""
    from fake_onemin_server import depth_map

    side = 512 * scale
    rgb = Image.open(PHOTO).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    sub = 4
    y, x = (np.mgrid[0:side * sub, 0:side * sub] + 0.5) / sub
    alpha = silhouette(x, y, scale).reshape(side, sub, side, sub).mean(axis=(1, 3))
    cut = folder / f"astronaut-cut-{side}.png"
    Image.fromarray(np.dstack([np.asarray(rgb), (alpha * 255).round().astype(np.uint8)]), "RGBA").save(cut)
    opaque = folder / f"astronaut-{side}.png"
    rgb.save(opaque)
    depth = folder / f"astronaut-depth-{side}.png"
    Image.fromarray((depth_map(rgb, alpha.astype(np.float32)) * 255).astype(np.uint8)).save(depth)
    return cut, opaque, depth


def boundary_error(points: np.ndarray, true: np.ndarray, n: int, side: float) -> tuple[float, float]:
    """(max, mean) distance in grid cells from each boundary point of a cut surface (grid units,
    rows bottom-up) to the nearest point of the true outline (pixels, y down); points on the
    photo's own border (the rectangle's edge, not the silhouette) are left out."""
    cell = side / (n - 1)
    x, y = points[:, 0] * cell, side - points[:, 1] * cell
    inner = (points[:, 0] > 1e-6) & (points[:, 0] < n - 1 - 1e-6) & (points[:, 1] > 1e-6) & \
        (points[:, 1] < n - 1 - 1e-6)
    x, y = x[inner], y[inner]
    best = np.full(len(x), np.inf)
    for chunk in np.array_split(true, max(1, len(true) // 2000)):
        d = np.hypot(x[:, None] - chunk[None, :, 0], y[:, None] - chunk[None, :, 1]).min(axis=1)
        best = np.minimum(best, d)
    err = best / cell
    return float(err.max()), float(err.mean())


def rim_points(surface: Any) -> np.ndarray:
    from onemin3d_addon.core import cutout

    _, edges, counts = cutout._undirected(surface)
    return np.asarray(surface.points[np.unique(edges[counts == 1].reshape(-1))])


def errors_on_photo(cut_png: Path, n: int) -> tuple[float, float]:
    from onemin3d_addon.core import cutout

    alpha = cutout.read_alpha(cut_png)
    assert alpha is not None
    surface = cutout.clip(cutout.grid_surface(np.zeros((n, n), np.float32)),
                          cutout.grid_alpha(alpha, n, n).reshape(-1))
    return boundary_error(rim_points(surface), contour(alpha.shape[0] / 512), n, alpha.shape[0])


def errors_on_test_shapes(n: int = 65, side: int = 512) -> dict[str, tuple[float, float]]:
    from onemin3d_addon.core import cutout

    y, x = np.mgrid[0:side, 0:side] + 0.5
    t = np.linspace(0, 2 * np.pi, 40000, endpoint=False)
    r = np.hypot(x - 256, y - 256)
    star_r = 170 + 60 * np.cos(5 * t)
    shapes = {
        "disc with a hole": ((r < 200) & (r > 70),
                             np.concatenate([np.stack([256 + 200 * np.cos(t), 256 + 200 * np.sin(t)], 1),
                                             np.stack([256 + 70 * np.cos(t), 256 + 70 * np.sin(t)], 1)])),
        "five-pointed star": (r < 170 + 60 * np.cos(5 * np.arctan2(y - 256, x - 256)),
                              np.stack([256 + star_r * np.cos(t), 256 + star_r * np.sin(t)], 1)),
    }
    out = {}
    for name, (mask, true) in shapes.items():
        s = cutout.clip(cutout.grid_surface(np.zeros((n, n), np.float32)),
                        cutout.grid_alpha(mask.astype(np.float32), n, n).reshape(-1))
        out[name] = boundary_error(rim_points(s), true, n, side)
    return out


def non_manifold(mesh: Any) -> tuple[int, int]:
    import bmesh

    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        return sum(not e.is_manifold for e in bm.edges), sum(not v.is_manifold for v in bm.verts)
    finally:
        bm.free()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.py cutout", description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--picture", type=Path, help="render the README picture into this .jpg")
    args = ap.parse_args(argv)
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="onemin3d-bench-user-"))
    folder = Path(tempfile.mkdtemp(prefix="onemin3d-cutout-"))
    cut512, opaque512, depth512 = make_inputs(folder)

    print("cut-out boundary error, grid cells (max / mean) against the true outline:")
    e_max, e_mean = errors_on_photo(cut512, 512)
    print(f"  astronaut, 512² relief, head + shoulders silhouette: {e_max:.3f} / {e_mean:.3f}")
    for name, (e_max, e_mean) in errors_on_test_shapes().items():
        print(f"  {name}, 65² grid: {e_max:.3f} / {e_mean:.3f}")

    import bpy

    from onemin3d_addon.blender import scene_build as sb

    bpy.ops.wm.read_homefile(use_empty=True)
    solid = sb.import_result(depth512, cut512, "DISPLACEMENT", {"resolution": 512, "solid": True}).objects[0]
    edges, verts = non_manifold(solid.data)
    print(f"solid cut-out relief 512²: {len(solid.data.polygons)} faces, {edges} non-manifold edges, "
          f"{verts} non-manifold vertices")
    torn = sb.import_result(depth512, cut512, "DISPLACEMENT", {"resolution": 512, "solid": True,
                                                                "tear": 0.1}).objects[0]
    edges, verts = non_manifold(torn.data)
    print(f"solid cut-out relief 512², torn at 0.1: {len(torn.data.polygons)} faces, {edges} non-manifold "
          f"edges, {verts} non-manifold vertices")

    cut1k, _, depth1k = make_inputs(folder, scale=2)
    coll = bpy.data.collections.new("bench")
    times: dict[str, float] = {}
    for name, cutout in (("rectangle", False), ("cut out", True)):
        best = np.inf
        for _ in range(args.repeat):
            start = time.perf_counter()
            obj = sb.import_relief(cut1k, depth1k, collection=coll, resolution=1024, cutout=cutout)
            best = min(best, time.perf_counter() - start)
            mesh = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)
        times[name] = best
    print(f"import_relief 1024², file → object: cut out {times['cut out']:.3f} s, rectangle "
          f"{times['rectangle']:.3f} s: {times['cut out'] / times['rectangle']:.2f}× the rectangle's time")

    if args.picture is not None:
        bpy.ops.wm.read_homefile(use_empty=True)
        sheet = sb.import_result(depth512, opaque512, "DISPLACEMENT", {"resolution": 512, "strength": 0.2})
        cut = sb.import_result(depth512, cut512, "DISPLACEMENT", {"resolution": 512, "strength": 0.2})
        sheet.objects[0].location.x = -0.6
        cut.objects[0].location.x = 0.6
        blend = folder / "cutout.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        proc = subprocess.run([sys.executable, str(SCRIPTS / "render_docs.py"), str(blend), str(args.picture),
                               "--width", "1200", "--height", "560", "--samples", "48"], check=False)
        if proc.returncode:
            return 1
        print(f"wrote {args.picture}")
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(SCRIPTS), str(ROOT)]
    sys.exit(main(sys.argv[1:]))
