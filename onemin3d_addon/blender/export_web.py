"""Main thread only: `export_web` (a GLB for <model-viewer> and three.js) and `export_usdz` (AR Quick Look), made from temporary copies that are removed again.

A relief of this add-on is rebuilt from its height grid, simplified within an error bound
(core/web_relief: simplify, cut by the photo's alpha, torn, closed when solid), at its live
Strength and with its object's transform. Everything else (a model, a plane) is passed through
with its modifiers applied. Textures longer than `texture_size` on a side are exported from
downsized copies; the user's images, materials and meshes are never changed. The temporary
objects go into a temporary collection, are the only selection while the exporter runs, and
everything new in bpy.data is removed afterwards (the exporters' own leftovers too), with the
selection and active object put back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..core import cutout, relief, web_relief
from ..core.errors import NO_USD, Onemin3DError, get_logger
from ..core.relief import Array
from .build_common import (
    KIND_PROPERTY,
    Created,
    alive,
    current_scene,
    current_view_layer,
    ensure_object_mode,
    write_arrays,
)
from .build_relief import RELIEF_GRID_PROPERTY, RELIEF_HEIGHT_ATTRIBUTE, get_relief_strength

log = get_logger(__name__)

DEPTH_NODE_NAME = "Depth (Non-Color)"
#: preferred glTF image formats, best first, among those the running exporter offers
WEB_IMAGE_FORMATS = ("JPEG", "WEBP")
JPEG_QUALITY = 85


class ExportError(Onemin3DError):
    """An export could not be made (the message says what to do)."""


@dataclass
class ExportSummary:
    """What an export wrote: the file, its triangles, the reliefs it rebuilt and the textures it shrank."""

    path: Path
    triangles: int = 0
    objects: int = 0
    reliefs: int = 0
    downsized: list[str] = field(default_factory=list)
    image_format: str = ""


# --- what to export ------------------------------------------------------------------------------


def objects_of(target: Any) -> list[Any]:
    """The objects of an Object, a Collection, or an iterable of them (each object once, in order)."""
    if target is None:
        return []
    if isinstance(target, bpy.types.Collection):
        items: Iterable[Any] = target.all_objects
    elif isinstance(target, bpy.types.Object):
        items = [target]
    else:
        items = [o for t in target for o in objects_of(t)]
    seen: dict[Any, None] = {}
    for obj in items:
        seen.setdefault(obj, None)
    return list(seen)


def is_relief(obj: Any) -> bool:
    data = getattr(obj, "data", None)
    return (obj.type == "MESH" and obj.get(KIND_PROPERTY) == "RELIEF" and data is not None
            and RELIEF_HEIGHT_ATTRIBUTE in data.attributes)


# --- the relief's grid -----------------------------------------------------------------------------


@dataclass
class ReliefGrid:
    """A relief's height grid (object units at Strength 1, row 0 at the bottom) and its layout."""

    heights: Array
    width: float
    height: float
    orientation: int = 1
    solid: bool = False
    base: float = 0.0
    alpha: Array | None = None
    tear: float = 0.0


def _record(obj: Any) -> dict[str, Any]:
    raw = obj.get(RELIEF_GRID_PROPERTY)
    if raw is None:
        return {}
    try:
        return {k: raw[k] for k in raw.keys()}
    except (AttributeError, TypeError):
        return {}


def _image_nodes(obj: Any) -> tuple[Any, Any]:
    """(colour image, depth image) of the relief's material, either None if not found."""
    color = depth = None
    for mat in obj.data.materials:
        tree = getattr(mat, "node_tree", None)
        if tree is None:
            continue
        for node in tree.nodes:
            if node.type != "TEX_IMAGE" or node.image is None:
                continue
            if node.name == DEPTH_NODE_NAME:
                depth = depth or node.image
            elif any(link.is_valid for out in node.outputs for link in out.links):
                color = color or node.image
    return color, depth


@contextlib.contextmanager
def _image_file(image: Any) -> Iterator[Path | None]:
    """A file holding `image`'s bytes: its own file, or its packed bytes in a temporary one."""
    if image is None:
        yield None
        return
    packed = getattr(image, "packed_file", None)
    if packed is not None:
        fd, name = tempfile.mkstemp(suffix=Path(image.filepath or "packed.png").suffix or ".png")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(bytes(packed.data))
            yield Path(name)
        finally:
            os.unlink(name)
        return
    path = Path(bpy.path.abspath(image.filepath, library=image.library))
    yield path if path.is_file() else None


def _grid_from_mesh(mesh: Any, record: dict[str, Any]) -> tuple[Array, float, float] | None:
    """The height grid read off the mesh's own vertices, if every grid vertex is there (an
    uncut relief: the open grid, or a solid's top)."""
    n = len(mesh.vertices)
    if n < 4:
        return None
    flat = np.empty(n * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", flat)
    co: Array = flat.reshape(-1, 3)
    h = np.empty(n, np.float32)
    mesh.attributes[RELIEF_HEIGHT_ATTRIBUTE].data.foreach_get("value", h)
    top = np.abs(co[:, 2]) < 1e-6  # the modifier lifts them: the mesh's own positions are flat
    x, y = co[top, 0], co[top, 1]
    if "cols" in record:
        cols, rows = int(record["cols"]), int(record["rows"])
        width, height = float(record["width"]), float(record["height"])
    else:
        cols, rows = len(np.unique(np.round(x, 5))), len(np.unique(np.round(y, 5)))
        width, height = float(np.ptp(x)), float(np.ptp(y))
    if rows < 2 or cols < 2 or width <= 0 or height <= 0:
        return None
    fi = (x + width / 2) / width * (cols - 1)
    fj = (y + height / 2) / height * (rows - 1)
    i, j = np.rint(fi).astype(np.intp), np.rint(fj).astype(np.intp)
    on_grid = (np.abs(fi - i) < 1e-3) & (np.abs(fj - j) < 1e-3) & (i >= 0) & (i < cols) & (j >= 0) & (j < rows)
    grid = np.full((rows, cols), np.nan, np.float32)
    grid[j[on_grid], i[on_grid]] = h[top][on_grid]
    if np.isnan(grid).any():
        return None
    return grid, width, height


def _alpha_grid(path: Path, rows: int, cols: int) -> Array | None:
    """The photo's alpha (0..1) area-averaged onto the grid, row 0 at the bottom; None without alpha."""
    alpha = cutout.read_alpha(path)
    return None if alpha is None else cutout.grid_alpha(alpha, rows, cols)


def relief_grid(obj: Any) -> ReliefGrid:
    """The height grid of a relief of this add-on, from its mesh, else from its depth map."""
    record = _record(obj)
    mesh = obj.data
    color, depth = _image_nodes(obj)
    found = _grid_from_mesh(mesh, record)
    if found is None and record and depth is not None:
        rows, cols = int(record["rows"]), int(record["cols"])
        with _image_file(depth) as depth_path:
            if depth_path is not None:
                grid = relief.relief_heights(relief.read_depth(depth_path), rows, cols,
                                             invert=bool(record.get("invert", False)),
                                             smooth=float(record.get("smooth", 0.0)))
                found = grid * np.float32(record["width"]), float(record["width"]), float(record["height"])
    if found is None:
        raise ExportError(f"The relief '{obj.name}' cannot be rebuilt for the web (its mesh was changed and "
                          "its depth map is missing): import it again, or export it as GLB.")
    heights, width, height = found
    rows, cols = heights.shape
    alpha = None
    if record.get("cutout", False):  # the import cut it to the photo's alpha: so does the export
        with _image_file(color) as color_path:
            if color_path is not None:
                alpha = _alpha_grid(color_path, rows, cols)
    solid = bool(record.get("solid", _looks_solid(mesh)))
    base = float(record.get("base", relief.SOLID_BASE * width)) if solid else 0.0
    tear = float(record.get("tear", 0.0))
    return ReliefGrid(heights, width, height, int(record.get("orientation", 1)), solid, base, alpha, tear)


def _looks_solid(mesh: Any) -> bool:
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", co)
    return bool((co[2::3] < -1e-6).any())


def web_relief_mesh(obj: Any, name: str, *, max_triangles: int, max_error: float | None,
                    created: Created) -> Any:
    """A new mesh of the relief `obj` as it looks now (its Strength), simplified for the web."""
    grid = relief_grid(obj)
    strength = get_relief_strength(obj)
    surface = web_relief.web_surface(grid.heights, alpha=grid.alpha, solid=grid.solid, base=grid.base,
                                     tear=grid.tear, max_error=max_error, max_triangles=max_triangles)
    if not len(surface.face_starts):
        raise ExportError(f"Nothing of the relief '{obj.name}' is left once cut out and torn: lower its Tear, "
                          "or import it without Cut Out.")
    rows, cols = grid.heights.shape
    arrays = cutout.surface_arrays(surface, rows, cols, grid.width, grid.height, grid.orientation,
                                   lift=1.0 if strength is None else strength)
    mesh = created.add(bpy.data.meshes.new(name))
    write_arrays(mesh, arrays)
    for mat in obj.data.materials:
        mesh.materials.append(mat)
    mesh.update()
    return mesh


# --- textures ------------------------------------------------------------------------------------


class _Textures:
    """Materials whose images are longer than `limit`, swapped for copies using downsized image copies."""

    def __init__(self, limit: int, created: Created) -> None:
        self.limit, self.created = limit, created
        self.images: dict[Any, Any] = {}
        self.materials: dict[Any, Any] = {}
        self.downsized: list[str] = []

    def _small(self, image: Any) -> Any:
        if image in self.images:
            return self.images[image]
        small = image
        w, h = (int(v) for v in image.size)
        target = web_relief.fit_within(w, h, self.limit)
        if w and h and target != (w, h):
            small = self.created.add(image.copy())
            small.scale(*target)
            self.downsized.append(f"{image.name} {w}×{h} → {target[0]}×{target[1]}")
        self.images[image] = small
        return small

    def material(self, mat: Any, *, opaque: bool = False) -> Any:
        """`mat`, or a copy with downsized images; `opaque`: a copy that ignores the images'
        alpha too (a cut-out relief is cut by its geometry: its texture can be a JPEG)."""
        if mat is None or (mat, opaque) in self.materials:
            return self.materials.get((mat, opaque))
        out = mat
        tree = getattr(mat, "node_tree", None)
        nodes = [n for n in tree.nodes if n.type == "TEX_IMAGE" and n.image is not None] if tree else []
        swaps = {n.name: self._small(n.image) for n in nodes}
        alpha = opaque and any(n.outputs["Alpha"].is_linked for n in nodes)
        if alpha or any(swaps[n.name] is not n.image for n in nodes):
            out = self.created.add(mat.copy())
            for node in out.node_tree.nodes:
                if node.name in swaps:
                    node.image = swaps[node.name]
                    if opaque:
                        for link in list(node.outputs["Alpha"].links):
                            target = link.to_socket
                            out.node_tree.links.remove(link)
                            if hasattr(target, "default_value"):
                                target.default_value = 1.0  # alpha (or a mix factor) of a fully opaque pixel
        self.materials[(mat, opaque)] = out
        return out


# --- temporary copies ----------------------------------------------------------------------------


@dataclass
class _Prepared:
    objects: list[Any]
    triangles: int
    reliefs: int
    downsized: list[str]
    #: a model's or plane's material shows an image's alpha (a relief is cut by geometry instead)
    alpha: bool = False


def _shows_alpha(mat: Any) -> bool:
    tree = getattr(mat, "node_tree", None)
    return tree is not None and any(
        node.type == "TEX_IMAGE" and node.image is not None and node.outputs["Alpha"].is_linked
        for node in tree.nodes)


def _triangles(obj: Any) -> int:
    from .build_common import evaluated_depsgraph

    ev = obj.evaluated_get(evaluated_depsgraph())
    mesh = ev.to_mesh()
    try:
        mesh.calc_loop_triangles()
        return len(mesh.loop_triangles)
    finally:
        ev.to_mesh_clear()


@contextlib.contextmanager
def _prepared(target: Any, *, max_triangles: int, max_error: float | None, texture_size: int
              ) -> Iterator[_Prepared]:
    """Temporary export copies of `target`'s mesh objects, the only selection meanwhile; on
    leaving, everything made in between is removed and the selection is put back."""
    sources = [o for o in objects_of(target) if o.type == "MESH"]
    if not sources:
        raise ExportError("There is nothing to export: select a result (a relief, plane or model), or pass "
                          "its object or collection.")
    ensure_object_mode()
    scene, view_layer = current_scene(), current_view_layer()
    selected = [o for o in view_layer.objects.selected if o is not None]
    active = view_layer.objects.active
    created = Created()
    try:
        with created.diff():
            textures = _Textures(texture_size, created)
            coll = created.add(bpy.data.collections.new(".1min3d export"))
            scene.collection.children.link(coll)
            copies, reliefs, alpha = [], 0, False
            for src in sources:
                if is_relief(src):
                    data = web_relief_mesh(src, f"{src.name} web", max_triangles=max_triangles,
                                           max_error=max_error, created=created)
                    copy = created.add(bpy.data.objects.new(src.name, data))
                    reliefs += 1
                else:  # its own modifiers come along: the exporter applies them
                    data = created.add(src.data.copy())
                    copy = created.add(src.copy())
                    copy.data = data
                    copy.parent = None
                for index, mat in enumerate(data.materials):
                    alpha = alpha or (not is_relief(src) and _shows_alpha(mat))
                    swapped = textures.material(mat, opaque=is_relief(src))
                    if swapped is not mat:
                        data.materials[index] = swapped
                copy.matrix_world = src.matrix_world.copy()
                coll.objects.link(copy)
                copies.append(copy)
            for obj in list(view_layer.objects.selected):
                if obj is not None:
                    obj.select_set(False)
            for copy in copies:
                copy.select_set(True)
            view_layer.objects.active = copies[0]
            yield _Prepared(copies, sum(_triangles(c) for c in copies), reliefs, textures.downsized, alpha)
    finally:
        made = list({id(i): i for i in created.ids if alive(i)}.values())
        if made:
            bpy.data.batch_remove(made)
        for obj in selected:
            if alive(obj) and obj.name in view_layer.objects:
                obj.select_set(True)
        if active is None or (alive(active) and active.name in view_layer.objects):
            view_layer.objects.active = active


def _operator_properties(op: Any) -> dict[str, Any]:
    """{identifier: rna property} of an operator, to feature-detect its options."""
    return {p.identifier: p for p in op.get_rna_type().properties}


def _enum_items(prop: Any) -> set[str]:
    return {item.identifier for item in prop.enum_items} if prop is not None and prop.type == "ENUM" else set()


def _checked_path(path: str | os.PathLike[str], suffix: str) -> Path:
    target = Path(os.fspath(path)).expanduser()
    if target.suffix.lower() != suffix:
        raise ExportError(f"The file name '{target.name}' does not end in {suffix}: give a path ending in "
                          f"{suffix}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.resolve()


# --- the two exports ------------------------------------------------------------------------------


def export_web(target: Any, path: str | os.PathLike[str], *, max_triangles: int = web_relief.MAX_TRIANGLES,
               max_error: float | None = None, texture_size: int = web_relief.MAX_TEXTURE_SIDE,
               image_format: str | None = None, jpeg_quality: int = JPEG_QUALITY) -> ExportSummary:
    """Write `target` (an object, a collection, or a list of them) as a GLB for web viewers.

    Reliefs are simplified to at most `max_triangles` each, within `max_error` (a fraction of
    the relief's depth; default: core/web_relief's); textures are embedded at most
    `texture_size` px on the long side, as `image_format` ("JPEG", "WEBP", "AUTO"; default:
    JPEG, or WebP when a model's or plane's material shows an image's alpha, which JPEG drops).
    """
    op = bpy.ops.export_scene.gltf
    props = _operator_properties(op)
    offered = _enum_items(props.get("export_image_format"))
    wanted = image_format.upper() if image_format else ""
    if offered and wanted and wanted not in offered:
        raise ExportError(f"This Blender's glTF exporter cannot write {wanted} images: choose one of "
                          f"{', '.join(sorted(offered))}.")
    target_path = _checked_path(path, ".glb")
    kwargs: dict[str, Any] = {"filepath": str(target_path), "export_format": "GLB", "use_selection": True,
                              "export_apply": True}
    optional = {"export_jpeg_quality": jpeg_quality,
                "export_image_quality": jpeg_quality, "export_animations": False, "export_extras": False,
                "export_cameras": False, "export_lights": False, "export_yup": True,
                "export_texcoords": True, "export_normals": True, "export_materials": "EXPORT",
                "export_attributes": False, "will_save_settings": False}
    kwargs.update({k: v for k, v in optional.items() if k in props})
    with _prepared(target, max_triangles=max_triangles, max_error=max_error, texture_size=texture_size) as prep:
        if not wanted:
            choices = WEB_IMAGE_FORMATS[::-1] if prep.alpha else WEB_IMAGE_FORMATS
            wanted = next((f for f in choices if f in offered), "AUTO")
        if offered:
            kwargs["export_image_format"] = wanted
        _run(op, kwargs, target_path, "glTF")
        return ExportSummary(target_path, prep.triangles, len(prep.objects), prep.reliefs, prep.downsized,
                             wanted if offered else "")


def export_usdz(target: Any, path: str | os.PathLike[str], *, max_triangles: int = web_relief.MAX_TRIANGLES,
                max_error: float | None = None, texture_size: int = web_relief.MAX_TEXTURE_SIDE) -> ExportSummary:
    """Write `target` as a USDZ for AR Quick Look (iPhone, iPad), textures packed inside.

    The same copies as `export_web`: simplified reliefs, downsized textures, modifiers applied;
    Y up and metres, as AR Quick Look expects.
    """
    op = bpy.ops.wm.usd_export
    try:
        props = _operator_properties(op)
    except KeyError:  # a Blender built without USD (Debian's 4.3 and 5.2 are): no exporter to call
        raise ExportError(NO_USD) from None
    target_path = _checked_path(path, ".usdz")
    kwargs: dict[str, Any] = {"filepath": str(target_path), "selected_objects_only": True}
    optional: dict[str, Any] = {
        "export_materials": True, "export_uvmaps": True, "export_normals": True, "export_animation": False,
        "generate_preview_surface": True, "export_textures": True, "overwrite_textures": True,
        "evaluation_mode": "RENDER", "triangulate_meshes": True, "export_lights": False, "export_cameras": False,
        "relative_paths": True, "convert_orientation": True, "export_global_forward_selection": "NEGATIVE_Z",
        "export_global_up_selection": "Y"}
    modes = _enum_items(props.get("export_textures_mode"))
    if "NEW" in modes:  # 5.0+: the textures are written next to the file (packed into a .usdz)
        optional["export_textures_mode"] = "NEW"
    sizes = _enum_items(props.get("usdz_downscale_size"))
    if str(texture_size) in sizes:
        optional["usdz_downscale_size"] = str(texture_size)
    elif "CUSTOM" in sizes:
        optional["usdz_downscale_size"] = "CUSTOM"
        optional["usdz_downscale_custom_size"] = texture_size
    kwargs.update({k: v for k, v in optional.items() if k in props})
    with _prepared(target, max_triangles=max_triangles, max_error=max_error, texture_size=texture_size) as prep:
        _run(op, kwargs, target_path, "USD")
        return ExportSummary(target_path, prep.triangles, len(prep.objects), prep.reliefs, prep.downsized)


def _run(op: Any, kwargs: dict[str, Any], target: Path, what: str) -> None:
    before = target.stat().st_mtime_ns if target.exists() else None
    result = op(**kwargs)
    if "FINISHED" not in result or not target.is_file() or (before is not None
                                                             and target.stat().st_mtime_ns == before):
        raise ExportError(f"Blender's {what} exporter wrote nothing to {target}: see the system console for "
                          "its message, and check that the folder is writable.")


def export_file(target: Any, path: str | os.PathLike[str], fmt: str, **kwargs: Any) -> ExportSummary:
    """`export_web` for fmt "web", `export_usdz` for "usdz"."""
    if fmt == "web":
        return export_web(target, path, **kwargs)
    if fmt == "usdz":
        return export_usdz(target, path, **kwargs)
    raise ValueError(fmt)


__all__: Sequence[str] = ("ExportError", "ExportSummary", "export_file", "export_usdz", "export_web",
                          "relief_grid")
