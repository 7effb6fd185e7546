"""Inside a real Blender window: drive the installed add-on's panel through its states and screenshot each.

    blender --python scripts/ui_drive.py -- --base-url URL --photo PHOTO --out DIR [--module bl_ext.user_default.onemin3d]

Run by scripts/ui_test.sh under a virtual screen (Xvfb), after `blender --command extension
install-file --enable` installed the built zip, against the stand-in (scripts/fake_onemin_server.py).
A chain of bpy.app.timers steps, each waiting for what a user would see before the next:

  offline    no key, online access off: the two warnings and their buttons; the tooltip of the
             greyed Generate button (the mouse is moved onto it with xdotool)
  ready      a key, online access on, a photo chosen
  running    Generate clicked for real (xdotool, on the button found on screen), the stand-in
             taking --hold seconds to generate: the stage, the progress bar, the cancel button
  imported   the relief in the scene, its Strength slider, the history with its thumbnail; then
             a second job, seen running at 2x
  failed     the stand-in refusing the key (401): the error and what to do, in the panel and in
             the history's details
  cost       Trellis and Remove Background set: the cost line reads 60,000 credits (through the
             panel's own cost_text); Stable Image: 20,000
  trellis    Generate clicked on screen with Trellis: a model imported, 40,000 credits charged
  remove-background  the removal and the generation charged (the stand-in's stats), the relief cut
  cutout     the photo with an analytic head-and-shoulders alpha (bench_cutout's), Solid: no vertex
             beyond the true outline by more than a grid cell, 0 non-manifold edges (bmesh)
  tear       a tear threshold: fewer faces than the first relief, made without one
  export     Export for Web / for AR on the cut-out relief, into the driver's temp folder: a
             non-empty GLB; a USDZ, or in a Blender built without USD its one-sentence refusal
  prefs      the add-on's preferences with no key and online access off
  options    the Options and Export sub-panels open, with every import option and both exports
each at the default sidebar width, and the text-heavy ones again at 2x UI scale. Screenshots are
taken of the whole screen with ImageMagick's `import` and cropped to the 3D view's right part
(the sidebar, with some of the viewport) or to the preferences window.

While the job runs, a 10 ms timer measures the longest gap between its calls (the longest time
the main thread was busy) during the network stages and the import; the Generate operator call
is timed. Writes DIR/ui.json, prints "RESULT {json}", and quits; the exit code is 1 if any step
failed (a Python error in Blender's output is caught by the caller).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import bpy
from bpy_extras import view3d_utils
from mathutils import Euler

TICK = 0.01
STEP_TIMEOUT = 60.0
NETWORK_STAGES = frozenset({"prepare", "upload", "generate", "poll", "download"})
#: a colour no theme uses, given for a moment to push buttons, so that Generate can be found on screen
MARKER = (1.0, 0.0, 1.0)

args: argparse.Namespace
report: dict[str, Any] = {"blender": bpy.app.version_string, "python": sys.version.split()[0], "shots": {},
                          "steps": [], "errors": []}


def parse_args() -> argparse.Namespace:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    ap = argparse.ArgumentParser(prog="ui_drive.py")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--module", default="bl_ext.user_default.onemin3d")
    ap.add_argument("--key", default="test-key-0123456789")
    ap.add_argument("--hold", type=float, default=6.0, help="seconds the stand-in takes to generate")
    return ap.parse_args(argv)


# --- the stand-in ---------------------------------------------------------------------------

def control(path: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(f"{args.base_url}/_control/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


# --- Blender's window -------------------------------------------------------------------------

def window() -> Any:
    return bpy.context.window_manager.windows[0]


def view3d() -> tuple[Any, Any, Any]:
    """(area, its sidebar region, the space) of the 3D view."""
    for area in window().screen.areas:
        if area.type == 'VIEW_3D':
            region = next(r for r in area.regions if r.type == 'UI')
            return area, region, area.spaces.active
    raise RuntimeError("no 3D view in the window")


def api() -> Any:
    """The installed extension's scripting API."""
    return importlib.import_module(args.module + ".api")


def prefs() -> Any:
    return bpy.context.preferences.addons[args.module].preferences


def state() -> Any:
    return bpy.context.window_manager.onemin3d


def redraw() -> None:
    for area in window().screen.areas:
        area.tag_redraw()
    with bpy.context.temp_override(window=window()):
        bpy.ops.wm.redraw_timer(type='DRAW_WIN_SWAP', iterations=1)


def set_ui_scale(scale: float) -> None:
    bpy.context.preferences.view.ui_scale = scale


def screen_rect(win: Any, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
    """A rectangle in the window's coordinates (origin bottom left) in the screen's (top left)."""
    screen_h = int(report["screen"][1])
    top = screen_h - (win.y + y + h)
    return max(0, win.x + x), max(0, top), w, h


def shoot(name: str, crop: tuple[int, int, int, int] | None, *, wait: bool = True) -> subprocess.Popen[bytes] | None:
    """Screenshot the whole screen with ImageMagick, cropped to `crop` (x, y, w, h from the top left)."""
    path = Path(args.out) / f"{name}.png"
    cmd = ["import", "-silent", "-window", "root"]
    if crop is not None:
        cmd += ["-crop", f"{crop[2]}x{crop[3]}+{crop[0]}+{crop[1]}", "+repage"]
    cmd.append(str(path))
    report["shots"][name] = str(path)
    proc = subprocess.Popen(cmd)
    if not wait:
        return proc
    if proc.wait(timeout=30) != 0:
        raise RuntimeError(f"import failed for {name}")
    return None


def sidebar_crop(extra: int = 420, height: int | None = None) -> tuple[int, int, int, int]:
    """The sidebar and `extra` pixels of the viewport left of it, from the top of the 3D view down
    `height` pixels (at 1x scale), or to its bottom."""
    area, region, _space = view3d()
    win = window()
    left = max(area.x, region.x - extra)
    h = area.height if height is None else min(area.height, int(height * bpy.context.preferences.system.ui_scale))
    return screen_rect(win, left, area.y + area.height - h, region.x + region.width - left, h)


def docs_crop(*, scene: bool = False) -> tuple[int, int, int, int]:
    """What the README shows: the sidebar's top, with the scene beside it if `scene`."""
    return sidebar_crop(extra=560 if scene else 0, height=640 if scene else 560)


def scroll_sidebar(clicks: int) -> None:
    """Turn the mouse wheel over the sidebar: down for clicks > 0, up for clicks < 0."""
    _area, region, _space = view3d()
    x, y, _w, _h = screen_rect(window(), region.x + region.width // 2, region.y + region.height // 2, 1, 1)
    xdotool("mousemove", x, y, "click", "--repeat", abs(clicks), "--delay", 30, "5" if clicks > 0 else "4")


def shoot_2x(name: str) -> Iterator[float]:
    """At 2x UI scale: the sidebar, then scrolled down to its end; back to 1x."""
    set_ui_scale(2.0)
    yield 1.0
    redraw()
    shoot(f"{name}-2x", sidebar_crop(extra=0))
    scroll_sidebar(25)
    yield 1.0
    redraw()
    shoot(f"{name}-2x-scrolled", sidebar_crop(extra=0))
    scroll_sidebar(-25)
    set_ui_scale(1.0)
    yield 1.0


def xdotool(*words: Any) -> None:
    subprocess.run(["xdotool", *map(str, words)], check=True, timeout=10)


def find_generate() -> tuple[int, int]:
    """The screen position of the Generate button's middle: push buttons are given a marker colour
    for one frame, the screen is shot, and the tallest run of rows with a wide marked button in
    the sidebar is taken."""
    import numpy as np

    theme = bpy.context.preferences.themes[0].user_interface.wcol_tool
    saved = tuple(theme.inner)
    theme.inner = (*MARKER, 1.0)
    try:
        redraw()
        _area, region, _space = view3d()
        crop = screen_rect(window(), region.x, region.y, region.width, region.height)
        shoot("_find", crop)
    finally:
        theme.inner = saved
        redraw()
    path = Path(args.out) / "_find.png"
    img = bpy.data.images.load(str(path))
    try:
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(img)
    path.unlink()
    report["shots"].pop("_find", None)
    rgb = px.reshape(h, w, 4)[::-1, :, :3]  # Blender's rows start at the bottom
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    # magenta, or faded towards the panel's grey when the button is greyed out (not the red of an alert)
    marked = (r - g > 0.2) & (b - g > 0.2) & (abs(r - b) < 0.08)
    # rows where a wide button is marked (the small icon buttons of an image selector are not);
    # Generate is the tallest run of them (its row is scaled 1.4x)
    wide = marked.sum(axis=1) > 0.4 * w
    runs: list[tuple[int, int]] = []
    for row in np.flatnonzero(wide):
        if runs and row == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], int(row))
        else:
            runs.append((int(row), int(row)))
    if not runs:
        raise RuntimeError("the Generate button was not found on screen")
    top, bottom = max(runs, key=lambda run: (run[1] - run[0], -run[0]))
    cols = np.flatnonzero(marked[top:bottom + 1].any(axis=0))
    return crop[0] + int(cols.mean()), crop[1] + (top + bottom) // 2


# --- the 10 ms timer --------------------------------------------------------------------------

class StallMeter:
    """A 10 ms timer; the longest gap between its calls is the longest the main thread was busy.

    Draw handlers on the 3D view's viewport and sidebar note when Blender redraws, so a gap can be
    told apart: one with a redraw in it (drawing the window: with software OpenGL on a virtual
    screen, that is most of it), or one without (the add-on's own work, such as pump())."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float, str]] = []  # (start, end, the job's stage when it ended)
        self.draws: list[float] = []
        self.last = 0.0
        self.running = False
        self.stage = ""
        self._handlers: list[tuple[str, Any]] = []

    def start(self) -> None:
        self.running = True
        for region in ('WINDOW', 'UI'):
            handle = bpy.types.SpaceView3D.draw_handler_add(self._drawn, (), region, 'POST_PIXEL')
            self._handlers.append((region, handle))
        self.last = time.perf_counter()
        bpy.app.timers.register(self._tick, first_interval=TICK)

    def stop(self) -> None:
        self.running = False
        for region, handle in self._handlers:
            bpy.types.SpaceView3D.draw_handler_remove(handle, region)
        self._handlers.clear()

    def _drawn(self) -> None:
        self.draws.append(time.perf_counter())

    def _tick(self) -> float | None:
        now = time.perf_counter()
        self.gaps.append((self.last, now, self.stage or job_stage()))
        self.last = time.perf_counter()  # what the line above costs is the meter's, not Blender's
        return TICK if self.running else None

    def longest(self, stages: Callable[[str], bool], *, redraw: bool | None = None) -> float:
        """The longest gap (s) that ended in one of `stages`; only those with (True) or without
        (False) a redraw in them, or all (None)."""
        def drew(start: float, end: float) -> bool:
            return any(start <= t <= end for t in self.draws)
        return max((end - start for start, end, stage in self.gaps
                    if stages(stage) and (redraw is None or drew(start, end) == redraw)), default=0.0)


meter = StallMeter()


def job_stage() -> str:
    """The newest job's stage ("click" before it exists), or how it ended ("imported", …)."""
    jobs = api().jobs()
    if len(jobs) <= jobs_before[0]:
        return "click"
    return str(jobs[-1].state if jobs[-1].done else jobs[-1].stage)


jobs_before = [0]


def seconds(status: str) -> int:
    """The seconds a status such as "Generating on 1min.ai… 3 s" counts; -1 for any other."""
    words = status.split()
    return int(words[-2]) if len(words) > 2 and words[-1] == "s" and words[-2].isdigit() else -1


def frame_in_free_part(obj: Any) -> Iterator[float]:
    """Aim the 3D view at `obj` from the front and above, so that it fills most of the part of the
    docs picture that the sidebar leaves free, in its middle. Measured on screen, in three steps:
    the view's matrices are brought up to date only when Blender draws it."""
    from mathutils import Vector

    area, sidebar, space = view3d()
    win = window()
    viewport = next(r for r in area.regions if r.type == 'WINDOW')
    r3d = space.region_3d
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    centre = sum(corners, Vector()) / len(corners)
    r3d.view_perspective = 'PERSP'
    r3d.view_rotation = Euler((math.radians(42), 0.0, 0.0)).to_quaternion()
    r3d.view_location = centre
    r3d.view_distance = max(obj.dimensions) * 2.0
    yield 0.5
    # the free part of the picture, in the viewport's own pixels (origin bottom left)
    x, y, w, h = docs_crop(scene=True)
    free_left = x - win.x - viewport.x
    free_right = screen_rect(win, sidebar.x, 0, 1, 1)[0] - win.x - viewport.x
    top = screen_rect(win, 0, viewport.y + viewport.height, 1, 1)[1]
    target = ((free_left + free_right) / 2, viewport.height - (y + h / 2 - top))
    points = [view3d_utils.location_3d_to_region_2d(viewport, r3d, c) for c in corners]
    width = max(p.x for p in points if p) - min(p.x for p in points if p)
    r3d.view_distance *= width / (0.8 * (free_right - free_left))
    yield 0.5
    seen = view3d_utils.region_2d_to_location_3d(viewport, r3d, target, centre)
    r3d.view_location = centre + (centre - seen)
    yield 0.5


# --- the new panel features (issues 15 and 16) -------------------------------------------------

def stand_in_stats() -> dict[str, Any]:
    with urllib.request.urlopen(f"{args.base_url}/_control/stats", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def addon_module(name: str) -> Any:
    """A module of the installed extension, e.g. "blender.panels"."""
    return importlib.import_module(f"{args.module}.{name}")


def temp_folder() -> Path:
    """The driver's own temp folder, beside the screenshots (ui_test.sh empties it for each run)."""
    folder = Path(args.out).parent / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def generate_on_screen(step: str) -> Generator[Callable[[], bool] | float, None, Any]:
    """Generate clicked on screen (as in `running`), then wait for the job to end; the job, imported."""
    x, y = find_generate()
    before = len(api().jobs())
    xdotool("mousemove", x, y, "click", "1")
    yield lambda: len(api().jobs()) > before and api().jobs()[-1].done
    xdotool("mousemove", x - 300, y)
    job = api().jobs()[-1]
    if job.state != "imported":
        raise RuntimeError(f"{step}: the job ended {job.state}: {job.error_message}")
    return job


def mesh_of(job: Any, step: str) -> Any:
    meshes = [ob for ob in job.objects if ob.type == 'MESH']
    if not meshes:
        raise RuntimeError(f"{step}: the job imported no mesh ({[ob.name for ob in job.objects]})")
    return meshes[0]


def show_only(objects: list[Any]) -> None:
    """Hide every other object, select these and make the first one active (as a user would, to look at it)."""
    layer = bpy.context.view_layer
    for ob in layer.objects:
        ob.hide_set(ob not in objects)
        ob.select_set(ob in objects)
    layer.objects.active = objects[0]


def non_manifold(mesh: Any) -> tuple[int, int]:
    """(edges, vertices) that are not manifold, as bmesh counts them."""
    import bmesh

    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        return sum(not e.is_manifold for e in bm.edges), sum(not v.is_manifold for v in bm.verts)
    finally:
        bm.free()


def grid_faces(obj: Any) -> int:
    """The face count of the relief's full rectangle (its grid's cells)."""
    grid = obj["onemin3d_relief_grid"]
    return (int(grid["rows"]) - 1) * (int(grid["cols"]) - 1)


def cutout_photo() -> tuple[Path, Any]:
    """The test photo with an analytic head-and-shoulders silhouette as its alpha (scripts/bench_cutout.py's),
    as an RGBA PNG in the temp folder; and that module (the silhouette and its true outline)."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_cutout as shape

    rgb = Image.open(args.photo).convert("RGB")
    w, h = rgb.size
    sub = 4  # the alpha supersampled 4×4, so that 0.5 is the true outline
    y, x = (np.mgrid[0:h * sub, 0:w * sub] + 0.5) / sub
    alpha = shape.silhouette(x * 512 / w, y * 512 / h).reshape(h, sub, w, sub).mean(axis=(1, 3))
    path = temp_folder() / "astronaut-cut.png"
    Image.fromarray(np.dstack([np.asarray(rgb), (alpha * 255).round().astype(np.uint8)]), "RGBA").save(path)
    return path, shape


def outline_error_cells(obj: Any, shape: Any) -> tuple[float, int]:
    """(how far, in grid cells, the relief's vertex farthest outside the silhouette lies beyond its true
    outline (0 when none is outside), how many vertices lie outside it)."""
    import numpy as np

    grid = obj["onemin3d_relief_grid"]
    width, height, cols = float(grid["width"]), float(grid["height"]), int(grid["cols"])
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    # the photo's pixels (of the 512-wide photo the silhouette is drawn on), y down
    px = (co[:, 0] + width / 2) / width * 512
    py = (height / 2 - co[:, 1]) / height * 512
    outside = ~shape.silhouette(px, py)
    if not outside.any():
        return 0.0, 0
    true = shape.contour()
    ox, oy = px[outside], py[outside]
    best = np.full(len(ox), np.inf)
    for chunk in np.array_split(true, max(1, len(true) // 2000)):
        best = np.minimum(best, np.hypot(ox[:, None] - chunk[None, :, 0], oy[:, None] - chunk[None, :, 1]).min(axis=1))
    cell = 512 / (cols - 1)
    return float(best.max() / cell), int(outside.sum())


def feature_steps(settings: Any, first_relief_faces: int) -> Generator[Callable[[], bool] | float, None, None]:
    """Issue 15's options and issue 16's exports, from the panel: each set on the panel's settings,
    Generate clicked on screen, the result checked and screenshotted."""
    win = window()
    found: dict[str, Any] = report.setdefault("features", {})
    panels = addon_module("blender.panels")
    photo = bpy.data.images.load(args.photo, check_existing=True)
    settings.source_type = 'IMAGE'
    settings.image = photo
    settings.import_mode = 'DISPLACEMENT'

    # the cost line, read through the function the panel draws it with
    report["steps"].append("cost")
    settings.model = 'trellis'
    settings.remove_background = True
    yield 1.0
    redraw()
    trellis_text, _short = panels.cost_text(settings, state().credits_left)
    shoot("cost", docs_crop())
    settings.model = 'stable-image'
    settings.remove_background = False
    yield 0.5
    redraw()
    stable_text, _short = panels.cost_text(settings, state().credits_left)
    found["cost"] = {"trellis_remove_background": trellis_text, "stable_image": stable_text}
    if not trellis_text.startswith("Cost: 60,000 credits") or not stable_text.startswith("Cost: 20,000 credits"):
        raise RuntimeError(f"cost: the sidebar reads {trellis_text!r} and {stable_text!r}")

    # Trellis: a model imported (the stand-in answers with a GLB)
    report["steps"].append("trellis")
    settings.model = 'trellis'
    settings.import_mode = 'AUTO'
    spent = stand_in_stats()["usedCredit"]
    job = yield from generate_on_screen("trellis")
    model = mesh_of(job, "trellis")
    spent = stand_in_stats()["usedCredit"] - spent
    found["trellis"] = {"import_kind": job.import_kind, "objects": [ob.name for ob in job.objects],
                        "credits": spent}
    if job.import_kind != "MODEL" or spent != 40_000:
        raise RuntimeError(f"trellis: imported as {job.import_kind}, {spent} credits charged (40,000 expected)")
    show_only(job.objects)
    yield from frame_in_free_part(model)
    redraw()
    shoot("trellis", docs_crop(scene=True))
    settings.model = 'stable-image'
    settings.import_mode = 'DISPLACEMENT'

    # Remove Background: the removal then the generation charged; the relief cut to the cut-out
    report["steps"].append("remove-background")
    settings.remove_background = True
    before = stand_in_stats()
    job = yield from generate_on_screen("remove-background")
    after = stand_in_stats()
    relief = mesh_of(job, "remove-background")
    spent = after["usedCredit"] - before["usedCredit"]
    sent = after["counts"].get("POST /api/features", 0) - before["counts"].get("POST /api/features", 0)
    faces = len(relief.data.polygons)
    found["remove_background"] = {"credits": spent, "features_posts": sent, "faces": faces,
                                  "full_rectangle_faces": grid_faces(relief),
                                  "credits_left_shown": state().credits_left}
    if spent != 40_000 or sent != 2:
        raise RuntimeError(f"remove-background: {spent} credits in {sent} requests (40,000 in 2 expected)")
    if faces >= 0.9 * grid_faces(relief):
        raise RuntimeError(f"remove-background: the relief is not cut ({faces} faces of {grid_faces(relief)})")
    show_only([relief])
    yield from frame_in_free_part(relief)
    redraw()
    shoot("remove-background", docs_crop(scene=True))
    settings.remove_background = False

    # Cut Out: a photo with alpha, solid: inside the silhouette, watertight
    report["steps"].append("cutout")
    path, shape = cutout_photo()
    settings.image = bpy.data.images.load(str(path), check_existing=True)
    settings.solid = True
    job = yield from generate_on_screen("cutout")
    cut = mesh_of(job, "cutout")
    beyond, outside = outline_error_cells(cut, shape)
    edges, verts = non_manifold(cut.data)
    faces = len(cut.data.polygons)
    found["cutout"] = {"faces": faces, "grid_faces": grid_faces(cut), "vertices_outside": outside,
                       "farthest_outside_cells": round(beyond, 3), "non_manifold_edges": edges,
                       "non_manifold_vertices": verts}
    if beyond > 1.0 or edges or not cut["onemin3d_relief_grid"]["cutout"]:
        raise RuntimeError(f"cutout: {found['cutout']}")
    show_only([cut])
    yield from frame_in_free_part(cut)
    redraw()
    shoot("cutout", docs_crop(scene=True))
    settings.solid = False
    settings.image = photo

    # Tear: fewer faces than the first relief, made without it
    report["steps"].append("tear")
    settings.tear = 0.02
    job = yield from generate_on_screen("tear")
    torn = mesh_of(job, "tear")
    found["tear"] = {"tear": 0.02, "faces": len(torn.data.polygons), "faces_without": first_relief_faces}
    if not 0 < len(torn.data.polygons) < first_relief_faces:
        raise RuntimeError(f"tear: {found['tear']}")
    settings.tear = 0.0

    # Export for Web / for AR, the cut-out relief selected (the sidebar's Export panel is seen open,
    # with its buttons, in the `options` step)
    report["steps"].append("export")
    show_only([cut])
    if not hasattr(bpy.types, "VIEW3D_PT_onemin3d_export"):
        raise RuntimeError("export: the sidebar's Export panel is not registered")
    found["export"] = {}
    area, region, _space = view3d()
    for name, suffix in (("export_web", ".web.glb"), ("export_usdz", ".usdz")):
        if not hasattr(bpy.types, f"ONEMIN3D_OT_{name}"):
            found["export"][name] = "not registered"
            continue
        out = temp_folder() / f"cut-relief{suffix}"
        try:
            with bpy.context.temp_override(window=win, area=area, region=region):
                result = getattr(bpy.ops.onemin3d, name)('EXEC_DEFAULT', filepath=str(out))
        except RuntimeError as err:  # the operator reported an error: what the user reads
            result, found["export"][f"{name}_message"] = {'CANCELLED'}, str(err)
        size = out.stat().st_size if out.is_file() else 0
        found["export"][name] = {"result": sorted(result), "bytes": size}
        if name == "export_usdz" and not getattr(bpy.app.build_options, "usd", True):
            # without USD it can only say so, in one sentence (a traceback in the log fails the run)
            if "without USD" not in found["export"].get(f"{name}_message", "") or size:
                raise RuntimeError(f"export: {name} in a Blender without USD gave {found['export']}")
            continue
        if result != {'FINISHED'} or size <= 0:
            raise RuntimeError(f"export: {name} gave {found['export'][name]}")
    yield 0.5


# --- the steps --------------------------------------------------------------------------------

def steps() -> Iterator[Callable[[], bool] | float | None]:
    """Each yield is what to wait for before going on: a number of seconds, or a condition."""
    report["screen"] = [int(s) for s in os.environ.get("UI_SCREEN", "1600x1200").split("x")]
    win = window()
    report["window"] = [win.x, win.y, win.width, win.height]
    area, region, space = view3d()
    # a clean scene: the default cube would stand in the relief
    for obj in list(bpy.data.objects):
        if obj.type == 'MESH':
            bpy.data.objects.remove(obj)
    space.show_region_ui = True
    yield 0.5
    area, region, space = view3d()
    if hasattr(region, "active_panel_category"):
        region.active_panel_category = "1min3d"
    report["sidebar_width"] = region.width
    report["ui_scale"] = bpy.context.preferences.system.ui_scale
    settings = bpy.context.scene.onemin3d
    settings.source_type = 'FILE'
    settings.filepath = args.photo
    settings.import_mode = 'DISPLACEMENT'
    p = prefs()
    p.base_url = args.base_url
    p.result_folder = str(Path(args.out).parent / "results")
    p.api_key = ""
    bpy.context.preferences.system.use_online_access = False
    yield 1.0

    # 1. no key and offline, at 1x and 2x; the greyed Generate button's tooltip
    report["steps"].append("offline")
    redraw()
    shoot("offline", sidebar_crop())
    yield from shoot_2x("offline")
    x, y = find_generate()
    report["generate_at"] = [x, y]
    xdotool("mousemove", x - 40, y)
    yield 0.3
    for dx in range(-8, 1, 2):  # hovering, as a hand does
        xdotool("mousemove", x + dx, y)
        yield 0.1
    yield 3.0  # the tooltip shows after a moment
    x0, y0, _w, h0 = docs_crop(scene=True)
    shoot("offline-tooltip", (x0, y0, report["screen"][0] - x0, h0))  # the tooltip reaches past the sidebar
    xdotool("mousemove", x - 300, y)

    # 2. ready, the photo now an image in the file (the panel shows its name)
    report["steps"].append("ready")
    settings.image = bpy.data.images.load(args.photo, check_existing=True)
    settings.source_type = 'IMAGE'
    p.api_key = args.key
    bpy.context.preferences.system.use_online_access = True
    yield 1.0
    redraw()
    shoot("ready", docs_crop())

    # 3. running: Generate clicked on screen, the stand-in taking its time
    report["steps"].append("running")
    control("latency", {"latency": args.hold})
    x, y = find_generate()
    jobs_before[0] = len(api().jobs())
    meter.stage = ""  # the meter follows the job's stage from now on
    meter.start()
    xdotool("mousemove", x, y, "click", "1")
    yield lambda: len(state().jobs) == 1 and job_stage() in {"generate", "poll"}
    yield lambda: len(state().jobs) == 1 and state().jobs[0].progress > 0.3 and seconds(state().jobs[0].status) >= 2
    xdotool("mousemove", x - 300, y)
    # Not blocking, so the meter goes on; the gap in which `import` is started (a fork of Blender)
    # is the driver's, not the add-on's: it is marked "shot", and left out.
    meter.stage = "shot"
    shot = shoot("running", docs_crop(), wait=False)
    yield 0.05
    meter.stage = ""
    jobs = api().jobs()
    yield lambda: jobs[-1].done and (shot is None or shot.poll() is not None)
    yield 0.3
    meter.stop()
    job = jobs[-1]
    report["job_state"] = job.state
    if job.state != "imported":
        raise RuntimeError(f"the job ended {job.state}: {job.error_message}")
    # the gap that ends with the job imported holds the import itself
    ms = [round((end - start) * 1000, 1) for start, end, _s in meter.gaps]

    def longest(stages: Callable[[str], bool], redraw: bool | None = None) -> float:
        return round(meter.longest(stages, redraw=redraw) * 1000, 1)

    def network(s: str) -> bool:
        return s in NETWORK_STAGES

    report["stall_ms"] = {
        "network": longest(network),
        "network_without_redraw": longest(network, False),
        "network_with_redraw": longest(network, True),
        "click": longest(lambda s: s in {"click", "queued"}),  # the click, the operator, a redraw
        "import": longest(lambda s: s == "imported"),
        "ticks": len(ms),
        "redraws": len(meter.draws),
        "median_tick": sorted(ms)[len(ms) // 2] if ms else 0.0,
        "top_without_redraw": sorted(((round((end - start) * 1000, 1), stage) for start, end, stage in meter.gaps
                                      if not any(start <= t <= end for t in meter.draws)), reverse=True)[:3],
        # the five longest, for a closer look: (ms, the stage, whether Blender redrew in it)
        "top": sorted(((round((end - start) * 1000, 1), stage, any(start <= t <= end for t in meter.draws))
                       for start, end, stage in meter.gaps), reverse=True)[:5],
    }
    redraw_ms = []
    for _ in range(3):
        start = time.perf_counter()
        redraw()
        redraw_ms.append((time.perf_counter() - start) * 1000)
    report["full_redraw_ms"] = round(min(redraw_ms), 1)  # what drawing the whole window costs here

    # 4. imported, with the history and the relief's slider
    report["steps"].append("imported")
    control("latency", {"latency": 0.0})
    state().history_index = 0
    obj = bpy.context.view_layer.objects.active
    report["active_object"] = obj.name if obj else None
    first_relief_faces = len(obj.data.polygons)  # made without a tear: the tear step's reference
    space.shading.type = 'SOLID'
    space.shading.color_type = 'TEXTURE'  # the photo on the relief, without a render engine
    space.overlay.show_floor = space.overlay.show_axis_x = space.overlay.show_axis_y = False
    # seen from the front and above, framed in the part of the viewport the sidebar leaves free
    yield from frame_in_free_part(obj)
    redraw()
    shoot("imported", docs_crop(scene=True))
    yield from shoot_2x("imported")

    # a second job, seen running at 2x (the first one's timings are not disturbed by it)
    report["steps"].append("running-2x")
    control("latency", {"latency": args.hold})
    set_ui_scale(2.0)
    area, region, space = view3d()
    with bpy.context.temp_override(window=win, area=area, region=region, onemin3d_settings=settings):
        bpy.ops.onemin3d.generate('INVOKE_DEFAULT')
    yield lambda: len(state().jobs) == 1 and seconds(state().jobs[0].status) >= 1
    redraw()
    shoot("running-2x", sidebar_crop(extra=0))
    yield lambda: api().jobs()[-1].done
    control("latency", {"latency": 0.0})
    set_ui_scale(1.0)
    yield 1.0

    # 5. failed: the key refused, the Generate call timed
    report["steps"].append("failed")
    control("fault", {"fault": "401", "stage": "upload"})
    area, region, space = view3d()
    with bpy.context.temp_override(window=win, area=area, region=region, onemin3d_settings=settings):
        start = time.perf_counter()
        bpy.ops.onemin3d.generate('INVOKE_DEFAULT')
        report["generate_call_ms"] = round((time.perf_counter() - start) * 1000, 1)
    yield lambda: bool(state().last_error) and not len(state().jobs)
    state().history_index = 0
    yield 1.0
    redraw()
    shoot("failed", sidebar_crop())
    yield from shoot_2x("failed")

    # the new options and exports, from the panel (issues 15 and 16)
    yield from feature_steps(settings, first_relief_faces)

    # 6. the preferences, no key and offline, at 1x and 2x
    report["steps"].append("prefs")
    p.api_key = ""
    bpy.context.preferences.system.use_online_access = False
    with bpy.context.temp_override(window=win):
        bpy.ops.preferences.addon_show(module=args.module)
    yield 1.5
    prefs_win = next((w for w in bpy.context.window_manager.windows if w != win), None)
    if prefs_win is None:
        raise RuntimeError("the preferences window did not open")
    # Blender opens it small; a taller window shows all of the add-on's preferences at 1x
    xdotool("search", "--sync", "--name", "Preferences", "windowmove", 0, 0, "windowsize", 1100, report["screen"][1])
    yield 1.5
    for scale, name in ((1.0, "prefs"), (2.0, "prefs-2x")):
        set_ui_scale(scale)
        yield 1.0
        redraw()
        shoot(name, screen_rect(prefs_win, 0, 0, prefs_win.width, prefs_win.height))
    # at 2x, the rest of them, scrolled down with the mouse wheel
    x, y, _w, _h = screen_rect(prefs_win, prefs_win.width // 2, prefs_win.height // 2, 1, 1)
    xdotool("mousemove", x, y)
    for _ in range(12):
        xdotool("click", "5")
    yield 1.0
    redraw()
    shoot("prefs-2x-scrolled", screen_rect(prefs_win, 0, 0, prefs_win.width, prefs_win.height))
    set_ui_scale(1.0)
    with bpy.context.temp_override(window=prefs_win):
        bpy.ops.wm.window_close()
    yield 0.5

    # 7. every option, in the Options sub-panel. It is closed by default and no click can find its
    #    header, so its panels are registered again with it open, and the file is read again: the
    #    sidebar then makes its panels anew, from their types.
    report["steps"].append("options")
    #    The Export panel (closed by default too) is opened the same way, and kept last.
    names = ("VIEW3D_PT_onemin3d_options", "VIEW3D_PT_onemin3d_relief", "VIEW3D_PT_onemin3d_history",
             "VIEW3D_PT_onemin3d_export")
    subpanels = [getattr(bpy.types, name) for name in names]
    for cls in reversed(subpanels):
        bpy.utils.unregister_class(cls)
    subpanels[0].bl_options = subpanels[-1].bl_options = set()
    for cls in subpanels:
        bpy.utils.register_class(cls)
    with bpy.context.temp_override(window=win):
        bpy.ops.wm.read_homefile()
    yield 1.0
    win = window()
    area, region, space = view3d()
    space.show_region_ui = True
    yield 0.5
    area, region, space = view3d()
    if hasattr(region, "active_panel_category"):
        region.active_panel_category = "1min3d"
    settings = bpy.context.scene.onemin3d
    settings.source_type = 'FILE'
    settings.filepath = args.photo
    settings.import_mode = 'AUTO'
    p.api_key = args.key
    bpy.context.preferences.system.use_online_access = True
    yield 1.0
    redraw()
    shoot("options", sidebar_crop())
    # the Export panel, last in the sidebar, with its two buttons
    scroll_sidebar(25)
    yield 1.0
    redraw()
    shoot("export", sidebar_crop())
    scroll_sidebar(-25)
    yield 0.5
    yield from shoot_2x("options")


def run() -> None:
    """Step through `steps()` from a timer, each step after what it waits for."""
    gen = steps()
    deadline = [0.0]
    waiting: list[Callable[[], bool] | None] = [None]

    def tick() -> float | None:
        try:
            if waiting[0] is not None:
                if not waiting[0]():
                    if time.monotonic() > deadline[0]:
                        raise TimeoutError(f"step {report['steps'][-1:]} waited more than {STEP_TIMEOUT} s")
                    return 0.05
                waiting[0] = None
            what = next(gen)
        except StopIteration:
            finish(0)
            return None
        except Exception:
            report["errors"].append(traceback.format_exc())
            traceback.print_exc()
            finish(1)
            return None
        if callable(what):
            waiting[0] = what
            deadline[0] = time.monotonic() + STEP_TIMEOUT
            return 0.05
        return float(what or 0.0)

    bpy.app.timers.register(tick, first_interval=1.0, persistent=True)  # it reads the file again


def finish(code: int) -> None:
    report["ok"] = code == 0
    out = Path(args.out)
    (out / "ui.json").write_text(json.dumps(report, indent=1))
    print("RESULT " + json.dumps({k: v for k, v in report.items() if k != "shots"}), flush=True)
    sys.stdout.flush()
    try:
        api().shutdown(timeout=2.0)
    finally:
        os._exit(code)  # quit now: no "save changes?" prompt, no preferences written


def main() -> None:
    global args
    args = parse_args()
    # A new user folder would show the splash screen over the window, and catch the first click.
    bpy.context.preferences.view.show_splash = False
    bpy.context.preferences.view.smooth_view = 0  # views change at once, not over a few frames
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if shutil.which("import") is None or shutil.which("xdotool") is None:
        raise SystemExit("ui_drive.py needs ImageMagick's import and xdotool on the PATH")
    run()


main()
