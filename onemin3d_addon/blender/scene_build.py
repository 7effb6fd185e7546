"""Main thread only: turns a result file into Blender data (textured plane, relief mesh or 3D model), all or nothing.

Four entry points:

* `import_plane(image, collection=…)`: a 4-vertex plane showing the image, with the options of
  Blender's own "Import Images as Planes". The image size comes from the file header, so the
  image stays lazily loaded (nothing is decoded until something draws it).
* `import_relief(color, depth, collection=…)`: a grid mesh displaced by the depth map, coloured
  by the photo. The flat grid and a per-vertex height attribute are written once; a Geometry
  Nodes modifier lifts the vertices, so the relief depth stays one slider ("Strength") after
  import. The open relief takes its topology from a Geometry Nodes Grid (C++, threaded); the
  watertight `solid` relief is written with numpy through the attribute API. Never `from_pydata`,
  never per-vertex Python, never Blender computing edges.
* `import_model(path, collection=…)`: glTF/GLB, OBJ, FBX, PLY, STL (or a zip holding one) through
  Blender's importers, then moved, scaled and placed.
* `import_result(result_file, source_image, mode, options)`: picks one of the above and puts
  everything into one new collection "1min3d <name>", linked to the scene only at the end.

Every entry point is all or nothing: every datablock made before a failure is removed again,
and the failure is raised as `ImportFailed` with a sentence for the user.

Blender's pixel rows start at the bottom, Pillow's at the top; EXIF orientation is honoured
through the UVs (Blender itself ignores it), so a photo shows upright and matches a depth map
computed from the upright photo.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import bpy
import numpy as np
import numpy.typing as npt
from mathutils import Matrix, Quaternion, Vector
from PIL import Image, ImageOps

from ..core import options as option_schema
from ..core import results
from ..core.errors import ImportFailed, Onemin3DError, get_logger
from ..core.options import ImportOptions
from . import compat

log = get_logger(__name__)

Array = npt.NDArray[Any]
_ID = TypeVar("_ID")

COLLECTION_PREFIX = "1min3d "
#: the relief modifier, its node group, and the one input the UI shows as the strength slider
RELIEF_MODIFIER_NAME = "1min3d Relief"
RELIEF_NODE_GROUP_NAME = "1min3d Relief"
RELIEF_STRENGTH_INPUT = "Strength"
#: per-vertex relief height at Strength 1 (object units: the depth map's 0..1 times the plane width)
RELIEF_HEIGHT_ATTRIBUTE = "onemin3d_height"
UV_MAP_NAME = "UVMap"
#: custom property on the objects this module makes: "PLANE", "RELIEF" or "MODEL"
KIND_PROPERTY = "onemin3d_kind"
#: thickness of a solid relief's base below its lowest point, as a fraction of the plane width
SOLID_BASE = 0.05

MODES = option_schema.MODE.values
SIZE_MODES = option_schema.choices("size_mode")
SHADERS = option_schema.choices("shader")
INTERPOLATIONS = option_schema.choices("interpolation")
ALIGNS = option_schema.choices("align")

_RELIEF_GROUP_VERSION = 1
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the stored image's UV for a point (s, t) of the upright image (both
# bottom-up, 0..1): u = u_off + u_sign * (s, t)[u_src], v likewise. Checked against
# Pillow's ImageOps.exif_transpose for all eight values (see tests/blender/test_scene_build.py).
_ORIENT_UV: dict[int, tuple[int, float, float, int, float, float]] = {
    1: (0, 1.0, 0.0, 1, 1.0, 0.0), 2: (0, -1.0, 1.0, 1, 1.0, 0.0),
    3: (0, -1.0, 1.0, 1, -1.0, 1.0), 4: (0, 1.0, 0.0, 1, -1.0, 1.0),
    5: (1, -1.0, 1.0, 0, -1.0, 1.0), 6: (1, -1.0, 1.0, 0, 1.0, 0.0),
    7: (1, 1.0, 0.0, 0, 1.0, 0.0), 8: (1, 1.0, 0.0, 0, -1.0, 1.0),
}
# Gaussian kernels wider than this many taps are applied through the FFT instead (same result).
_MAX_DIRECT_TAPS = 41


# --- options and results ---------------------------------------------------------------------


@dataclass
class Imported:
    """What one `import_result` made: iterating it yields the new objects."""

    collection: bpy.types.Collection
    objects: list[bpy.types.Object]
    kind: str                       # "PLANE" | "RELIEF" | "MODEL"
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[bpy.types.Object]:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _align_name(align: str) -> str:
    return option_schema.get("align").aliases.get(align, align)  # Blender's own operator calls it CAM


# --- all or nothing --------------------------------------------------------------------------


_ID_COLLECTIONS: tuple[str, ...] = ()


def _id_collection_names() -> tuple[str, ...]:
    """The bpy.data collections that hold IDs (meshes, images, node_groups, actions, ...)."""
    global _ID_COLLECTIONS
    if _ID_COLLECTIONS:
        return _ID_COLLECTIONS
    names = []
    for prop in bpy.types.BlendData.bl_rna.properties:
        if prop.type != "COLLECTION" or prop.identifier in {"window_managers", "workspaces", "screens"}:
            continue
        struct: Any = getattr(prop, "fixed_type", None)
        # 5.3's `bpy.data.all_ids` is typed as the abstract ID: a view over the others, not a kind
        if _is_id_struct(struct) and struct.identifier != "ID":
            names.append(prop.identifier)
    _ID_COLLECTIONS = tuple(names)
    return _ID_COLLECTIONS


def _is_id_struct(struct: Any) -> bool:
    while struct is not None:
        if getattr(struct, "identifier", None) == "ID":
            return True
        struct = getattr(struct, "base", None)
    return False


def _alive(id_block: Any) -> bool:
    try:
        id_block.name  # noqa: B018 - a removed ID raises ReferenceError here
    except ReferenceError:
        return False
    return True


class _Created:
    """The datablocks made during one import, so a failure can remove them all."""

    def __init__(self) -> None:
        self.ids: list[Any] = []
        self.warnings: list[str] = []

    def add(self, id_block: _ID) -> _ID:
        self.ids.append(id_block)
        return id_block

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    @contextlib.contextmanager
    def diff(self) -> Iterator[list[Any]]:
        """Track every ID that appears inside the block (importers that exist only as operators)."""
        names = _id_collection_names()
        before = {name: {i.session_uid for i in getattr(bpy.data, name)} for name in names}
        new: list[Any] = []
        try:
            yield new
        finally:
            for name in names:
                seen = before[name]
                for id_block in getattr(bpy.data, name):
                    if id_block.session_uid not in seen:
                        new.append(id_block)
            self.ids.extend(new)

    def rollback(self) -> None:
        alive = [i for i in self.ids if _alive(i)]
        if alive:
            bpy.data.batch_remove(alive)
        self.ids.clear()


_transactions: list[_Created] = []


@contextlib.contextmanager
def _all_or_nothing(what: str) -> Iterator[_Created]:
    """Run an import; on any failure remove what it made and raise ImportFailed.

    Nested use joins the outer import: the outermost one owns the clean-up.
    """
    if _transactions:
        yield _transactions[-1]
        return
    created = _Created()
    _transactions.append(created)
    try:
        yield created
    except BaseException as exc:
        try:
            created.rollback()
        except (RuntimeError, ReferenceError) as cleanup_exc:  # never hide the first failure
            log.error("could not remove what the failed import made: %s", cleanup_exc)
        if isinstance(exc, ImportFailed) or not isinstance(exc, Exception):
            raise
        if isinstance(exc, Onemin3DError):
            raise ImportFailed(exc.message, detail=exc.detail) from exc
        log.error("%s failed", what, exc_info=True)
        raise ImportFailed(f"Blender could not import {what} ({_short(exc)}): the result is kept, "
                           "so try importing it again or open the file by hand.") from exc
    finally:
        _transactions.pop()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"


# --- images ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    """What the file header says about an image; no pixel is decoded."""

    width: int                 # as stored (as Blender shows it)
    height: int
    has_alpha: bool
    orientation: int           # EXIF orientation, 1 when absent

    @property
    def upright_size(self) -> tuple[int, int]:
        """The size as a photo viewer shows it (EXIF rotation applied)."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def image_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Size, alpha and orientation of the image at `path`, from its header only."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
            orientation = _orientation(img)
    except FileNotFoundError as exc:
        raise ImportFailed(f"The image '{Path(path).name}' was not found: check that the file still exists.") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImportFailed(f"'{Path(path).name}' is not a readable image ({_short(exc)}): "
                           "generate the result again or choose another image.") from exc
    if w <= 0 or h <= 0:
        raise ImportFailed(f"'{Path(path).name}' is an empty image: choose another image.")
    return ImageInfo(w, h, alpha, orientation)


def _orientation(img: Image.Image) -> int:
    # Only EXIF that came with the header: Pillow's PNG getexif() would decode the whole image
    # to look for an eXIf chunk after the pixels, and that is exactly what must not happen here.
    raw = img.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    try:
        exif.load(raw)
        value = int(exif.get(_EXIF_ORIENTATION, 1))
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        return 1
    return value if value in _ORIENT_UV else 1


def _load_image(path: Path, created: _Created, *, relative: bool, non_color: bool = False) -> Any:
    """The image datablock for `path`, lazily loaded (an existing one for the same file is reused)."""
    count = len(bpy.data.images)
    image: Any = bpy.data.images.load(str(path), check_existing=True)
    is_new = len(bpy.data.images) > count
    if non_color and not is_new and image.colorspace_settings.name != "Non-Color":
        # Someone loaded this file as colour: changing theirs would change their look.
        image = bpy.data.images.load(str(path), check_existing=False)
        is_new = True
    if not is_new:
        return image
    created.add(image)
    if non_color:
        image.colorspace_settings.name = "Non-Color"
    if _use_relative_paths(relative):
        try:
            image.filepath = bpy.path.relpath(str(path))
        except ValueError:  # another drive on Windows: there is no relative path
            pass
    return image


def _use_relative_paths(requested: bool) -> bool:
    """Relative only when asked, allowed by Preferences › File Paths, and the .blend is saved."""
    prefs = bpy.context.preferences
    allowed = prefs is None or prefs.filepaths.use_relative_paths
    return bool(requested and allowed and bpy.data.filepath)


# --- materials ---------------------------------------------------------------------------------


def _new_material(name: str, created: _Created) -> Any:
    material: Any = created.add(bpy.data.materials.new(name))
    compat.ensure_node_tree(material).nodes.clear()
    return material


def _image_material(name: str, image: Any, created: _Created, *, shader: str = "PRINCIPLED",
                    alpha: bool = False, interpolation: str = "Linear", emit_strength: float = 1.0) -> Any:
    """Image Texture → shader → Material Output, wired like Blender's "Import Images as Planes"."""
    material = _new_material(name, created)
    tree: Any = material.node_tree
    nodes, links = tree.nodes, tree.links
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (400, 0)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = interpolation
    tex.location = (-500, 0)
    tex.show_texture = True
    if shader == "SHADELESS":
        # The camera sees the image's colours exactly; bounces and shadows see a diffuse surface.
        diffuse = nodes.new("ShaderNodeBsdfDiffuse")
        emission = nodes.new("ShaderNodeEmission")
        light_path = nodes.new("ShaderNodeLightPath")
        mix = nodes.new("ShaderNodeMixShader")
        diffuse.location, emission.location, light_path.location, mix.location = (-150, -50), (-150, -180), \
            (-150, 250), (100, 0)
        links.new(tex.outputs["Color"], diffuse.inputs["Color"])
        links.new(tex.outputs["Color"], emission.inputs["Color"])
        links.new(light_path.outputs["Is Camera Ray"], mix.inputs["Fac"])
        links.new(diffuse.outputs[0], mix.inputs[1])
        links.new(emission.outputs[0], mix.inputs[2])
        surface = mix
        if alpha:
            transparent = nodes.new("ShaderNodeBsdfTransparent")
            cutout = nodes.new("ShaderNodeMixShader")
            transparent.location, cutout.location = (100, 150), (250, 0)
            links.new(tex.outputs["Alpha"], cutout.inputs["Fac"])
            links.new(transparent.outputs[0], cutout.inputs[1])
            links.new(mix.outputs[0], cutout.inputs[2])
            surface = cutout
        links.new(surface.outputs[0], out.inputs["Surface"])
    else:
        # Principled BSDF v2 socket names ("Emission Color", "Specular IOR Level"): 4.0 and later.
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        bsdf.location = (-100, 0)
        if shader == "EMISSION":
            bsdf.inputs["Base Color"].default_value = (0.0, 0.0, 0.0, 1.0)
            bsdf.inputs["Specular IOR Level"].default_value = 0.0
            bsdf.inputs["Emission Strength"].default_value = emit_strength
            links.new(tex.outputs["Color"], bsdf.inputs["Emission Color"])
        else:
            links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        if alpha:
            links.new(tex.outputs["Alpha"], bsdf.inputs["Alpha"])
        links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    if alpha and hasattr(material, "surface_render_method"):
        material.surface_render_method = "DITHERED"  # EEVEE (4.2+): alpha-tested look, correct sorting
    return material


# --- placement ---------------------------------------------------------------------------------


def _scene() -> Any:
    scene = bpy.context.scene
    if scene is None:
        raise ImportFailed("There is no open scene to import into: open or create a scene, then try again.")
    return scene


def _view_layer() -> Any:
    view_layer = bpy.context.view_layer
    if view_layer is None:
        raise ImportFailed("The scene has no view layer to import into: add one, then try again.")
    return view_layer


def _evaluated_depsgraph() -> Any:
    """The view layer's depsgraph, evaluated.

    Not `context.evaluated_depsgraph_get`: it releases the GIL, then reads the context, and
    under `context.temp_override` (how the add-on imports from its timer) that read is a Python
    dict lookup without the GIL. With another Python thread running (a download, the history
    writer) it crashed bpy 5.0.1 within 90 s in every run of a stress loop.
    `view_layer.update()` takes what it needs before releasing the GIL.
    """
    view_layer = _view_layer()
    view_layer.update()
    return view_layer.depsgraph


def _cursor_location() -> Vector:
    return Vector(_scene().cursor.location)


def _alignment(align: str, created: _Created) -> Quaternion | None:
    """The rotation that makes a +Z-facing plane face the camera or the view (None: stay Z-up)."""
    align = _align_name(align)
    if align == "CAMERA":
        camera = _scene().camera
        if camera is None:
            created.warn("There is no active camera to face, so the import lies flat (Z up).")
            return None
        rotation: Quaternion = camera.matrix_world.decompose()[1]
        return rotation
    if align == "VIEW":
        region = _region_3d()
        if region is None:
            # Headless (blender -b, the bpy wheel): there is no view to face.
            log.info("no 3D view to face: the import lies flat (Z up)")
            return None
        view: Quaternion = region.view_rotation.copy()
        return view
    return None


def _region_3d() -> Any:
    """The 3D view the user is looking at: the one the operator runs in, else the largest one
    in the active window. None in background mode: a saved screen nobody sees is no view."""
    region = getattr(bpy.context, "region_data", None)
    if region is not None and hasattr(region, "view_rotation"):
        return region
    if bpy.app.background:
        return None
    wm = bpy.context.window_manager
    window = bpy.context.window or (wm.windows[0] if wm is not None and len(wm.windows) else None)
    if window is None or window.screen is None:
        return None
    views = [a for a in window.screen.areas if a.type == "VIEW_3D"]
    if not views:
        return None
    space: Any = max(views, key=lambda a: a.width * a.height).spaces.active
    return space.region_3d


def _place(obj: bpy.types.Object, rotation: Quaternion | None) -> None:
    obj.location = _cursor_location()
    if rotation is not None:
        obj.rotation_euler = rotation.to_euler("XYZ")


def _plane_size(upright: tuple[int, int], size_mode: str, height: float, factor: float) -> tuple[float, float]:
    w, h = upright
    if size_mode == "DPBU":
        return w / factor, h / factor
    return height * w / h, height


def _oriented_uv(s: Array, t: Array, orientation: int) -> tuple[Array, Array]:
    u_src, u_sign, u_off, v_src, v_sign, v_off = _ORIENT_UV[orientation]
    st = (s, t)
    return u_off + u_sign * st[u_src], v_off + v_sign * st[v_src]


# --- mesh writing --------------------------------------------------------------------------------


def _write_mesh(mesh: bpy.types.Mesh, positions: Array, edges: Array, corner_verts: Array,
                corner_edges: Array, face_starts: Array) -> None:
    """Topology and positions through the attribute API (exact dtypes, so foreach_set copies in C)."""
    mesh.vertices.add(len(positions))
    mesh.edges.add(len(edges))
    mesh.loops.add(len(corner_verts))
    mesh.polygons.add(len(face_starts))
    attrs: Any = mesh.attributes
    attrs["position"].data.foreach_set("vector", _flat(positions, np.float32))
    attrs[".edge_verts"].data.foreach_set("value", _flat(edges, np.int32))
    attrs[".corner_vert"].data.foreach_set("value", _flat(corner_verts, np.int32))
    attrs[".corner_edge"].data.foreach_set("value", _flat(corner_edges, np.int32))
    mesh.polygons.foreach_set("loop_start", _flat(face_starts, np.int32))
    for name in (".select_vert", ".select_edge", ".select_poly"):
        layer = attrs.get(name)
        if layer is not None:
            attrs.remove(layer)


def _flat(a: Array, dtype: Any) -> Array:
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def _set_attribute(mesh: bpy.types.Mesh, name: str, data_type: str, domain: str, values: Array) -> Any:
    attrs: Any = mesh.attributes
    attr = attrs.get(name)
    if attr is None:
        attr = attrs.new(name, data_type, domain)
    key = "vector" if data_type in {"FLOAT2", "FLOAT_VECTOR"} else "value"
    dtype = {"FLOAT": np.float32, "FLOAT2": np.float32, "FLOAT_VECTOR": np.float32, "BOOLEAN": bool,
             "INT": np.int32}[data_type]
    attr.data.foreach_set(key, _flat(values, dtype))
    return attr


# --- 1. textured plane ---------------------------------------------------------------------------


def import_plane(image_path: str | os.PathLike[str], *, collection: bpy.types.Collection,
                 size_mode: str = "ABSOLUTE", height: float = 1.0, factor: float = 600.0,
                 shader: str = "PRINCIPLED", use_alpha: bool = True, interpolation: str = "Linear",
                 relative: bool = True, align: str = "Z_UP", emit_strength: float = 1.0,
                 name: str | None = None) -> bpy.types.Object:
    """A 4-vertex plane showing the image, in `collection`, at the 3D cursor.

    Sized from the header (ABSOLUTE: `height` units tall; DPBU: `factor` pixels per unit) in
    the image's upright aspect; the image datablock stays unloaded. Alpha is wired when the
    image has an alpha channel and `use_alpha` is on. `align`: Z_UP, CAMERA or VIEW.
    """
    path = Path(image_path)
    with _all_or_nothing(f"the image '{path.name}'") as created:
        _check_choice("size_mode", size_mode, SIZE_MODES)
        _check_choice("shader", shader, SHADERS)
        info = image_info(path)
        name = name or path.stem
        w, h = _plane_size(info.upright_size, size_mode, height, factor)
        image = _load_image(path, created, relative=relative)
        alpha = use_alpha and info.has_alpha
        material = _image_material(name, image, created, shader=shader, alpha=alpha,
                                   interpolation=interpolation, emit_strength=emit_strength)

        mesh = created.add(bpy.data.meshes.new(name))
        hw, hh = w / 2.0, h / 2.0
        positions = np.array([(-hw, -hh, 0.0), (hw, -hh, 0.0), (hw, hh, 0.0), (-hw, hh, 0.0)], np.float32)
        _write_mesh(mesh, positions, np.array([(0, 1), (1, 2), (2, 3), (3, 0)]), np.arange(4), np.arange(4),
                    np.zeros(1))
        u, v = _oriented_uv(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0]), info.orientation)
        _set_attribute(mesh, UV_MAP_NAME, "FLOAT2", "CORNER", np.stack([u, v], axis=1))
        mesh.materials.append(material)
        mesh.update()

        obj = created.add(bpy.data.objects.new(name, mesh))
        obj[KIND_PROPERTY] = "PLANE"
        _place(obj, _alignment(align, created))
        collection.objects.link(obj)
        _select_if_in_view_layer(collection, [obj])
        return obj


# --- 2. relief: depth sampling (numpy) -----------------------------------------------------------


def read_depth(path: str | os.PathLike[str]) -> Array:
    """The depth map as float32 rows, top row first (Pillow's order), upright; colour → luminance."""
    try:
        with Image.open(path) as src:
            img = ImageOps.exif_transpose(src) if _orientation(src) != 1 else src
            img.load()
            if img.mode == "F":
                depth = np.asarray(img, dtype=np.float32)
            elif img.mode.startswith("I"):
                depth = np.asarray(img).astype(np.float32)   # 16-bit PNG depth keeps its precision
            elif img.mode == "L":
                depth = np.asarray(img, dtype=np.float32)
            else:
                depth = np.asarray(img.convert("L"), dtype=np.float32)  # ITU-R 601 luma
    except FileNotFoundError as exc:
        raise ImportFailed(f"The depth map '{Path(path).name}' was not found: check that the file still exists.") \
            from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImportFailed(f"The depth map '{Path(path).name}' cannot be read ({_short(exc)}): "
                           "it may be damaged, so generate the result again.") from exc
    if depth.ndim != 2 or min(depth.shape) < 1:
        raise ImportFailed(f"The depth map '{Path(path).name}' holds no pixels: generate the result again.")
    return depth


def gaussian_blur(a: Array, sigma: float) -> Array:
    """A separable Gaussian blur (sigma in pixels, edges mirrored) in numpy; float32 out."""
    a = np.asarray(a, dtype=np.float32)
    if sigma <= 0.0:
        return a
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        a = _convolve_axis(a, kernel, axis)
    return a


def _convolve_axis(a: Array, kernel: Array, axis: int) -> Array:
    radius = len(kernel) // 2
    n = a.shape[axis]
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(a, pad, mode="symmetric")
    if len(kernel) > _MAX_DIRECT_TAPS:
        # Wide kernels: one FFT per row instead of hundreds of shifted passes.
        size = padded.shape[axis] + len(kernel) - 1
        fast = 1 << (size - 1).bit_length()
        spectrum = np.fft.rfft(padded, fast, axis=axis) * np.fft.rfft(kernel, fast).reshape(
            (-1, 1) if axis == 0 else (1, -1))
        full = np.fft.irfft(spectrum, fast, axis=axis)
        start = 2 * radius
        return np.ascontiguousarray(np.take(full, np.arange(start, start + n), axis=axis), dtype=np.float32)
    out = np.zeros_like(a)
    tmp = np.empty_like(a)
    for i, weight in enumerate(kernel):
        window = padded[i:i + n] if axis == 0 else padded[:, i:i + n]
        np.multiply(window, np.float32(weight), out=tmp)
        out += tmp
    return out


def area_resample(a: Array, rows: int, cols: int) -> Array:
    """Average `a` over the cell of each vertex of a rows×cols grid spanning it edge to edge.

    Vertex k of n sits at k/(n-1) of the image; it takes the exact mean of the pixels in the
    box one grid step wide around it (clipped at the borders), fractional pixels weighted by
    their covered area. Box filters are separable: two 1D passes, the long one first.
    """
    a = np.asarray(a, dtype=np.float32)
    return _box_axis(_box_axis(a, cols, axis=1), rows, axis=0)


def _box_axis(a: Array, n: int, axis: int) -> Array:
    length = a.shape[axis]
    step = length / (n - 1)
    centres = np.arange(n, dtype=np.float64) * step
    lo = np.clip(centres - step / 2.0, 0.0, length)
    hi = np.clip(centres + step / 2.0, 0.0, length)
    shape = (1, -1) if axis == 1 else (-1, 1)
    whole = round(step)
    if abs(step - whole) < 1e-9 and (whole == 1 or (whole % 2 == 0 and whole <= 16)):
        return _box_axis_whole(a, n, whole, axis)
    if step < 1.0:
        # More vertices than pixels: the boxes are narrower than a pixel, so a prefix sum
        # interpolated at the box ends gives the exact area mean.
        zero = np.zeros((1, a.shape[1]) if axis == 0 else (a.shape[0], 1))
        prefix = np.concatenate([zero, np.cumsum(a, axis=axis, dtype=np.float64)], axis=axis)

        def integral(x: Array) -> Array:
            i = np.minimum(x.astype(np.intp), length - 1)
            out: Array = np.take(prefix, i, axis=axis) + (x - i).reshape(shape) * np.take(a, i, axis=axis)
            return out

        means: Array = ((integral(hi) - integral(lo)) / (hi - lo).reshape(shape)).astype(np.float32)
        return means
    # Adjacent boxes tile the row: sum the whole pixels of each box in one reduceat pass, then
    # add the covered part of the pixel cut by its left end and remove the uncovered part of
    # the pixel cut by its right end.
    start = np.ceil(lo).astype(np.intp)
    sums = np.add.reduceat(a, np.minimum(start, length - 1), axis=axis)
    empty = start >= length  # the last box when it ends inside the last pixel
    if empty.any():
        if axis == 0:
            sums[empty] = 0.0
        else:
            sums[:, empty] = 0.0
    cut_lo = np.minimum(np.floor(lo).astype(np.intp), length - 1)
    cut_hi = np.minimum(np.floor(hi).astype(np.intp), length - 1)
    sums += (start - lo).astype(np.float32).reshape(shape) * np.take(a, cut_lo, axis=axis)
    sums -= (np.ceil(hi) - hi).astype(np.float32).reshape(shape) * np.take(a, cut_hi, axis=axis)
    sums *= (1.0 / (hi - lo)).astype(np.float32).reshape(shape)
    return sums


def _box_axis_whole(a: Array, n: int, step: int, axis: int) -> Array:
    """_box_axis when a cell is exactly one pixel or an even number of pixels wide (an image of
    2^k pixels on a grid of 2^j + 1 vertices): sums of strided slices, same result, faster."""

    def cut(start: int, stop: int | None, stride: int = 1) -> Array:
        view: Array = a[start:stop:stride] if axis == 0 else a[:, start:stop:stride]
        return view

    length = a.shape[axis]
    out_shape = (n, a.shape[1]) if axis == 0 else (a.shape[0], n)
    out = np.empty(out_shape, np.float32)
    first, last, inner = (out[0], out[-1], out[1:-1]) if axis == 0 else (out[:, 0], out[:, -1], out[:, 1:-1])
    if step == 1:  # each box is half of two neighbouring pixels
        first[...] = cut(0, 1).reshape(first.shape)
        last[...] = cut(length - 1, None).reshape(last.shape)
        np.add(cut(0, length - 1), cut(1, None), out=inner)
        inner *= np.float32(0.5)
        return out
    half = step // 2
    first[...] = cut(0, half).mean(axis=axis)
    last[...] = cut(length - half, None).mean(axis=axis)
    inner[...] = 0.0
    for j in range(step):
        inner += cut(half + j, half + j + (n - 2) * step, step)
    inner *= np.float32(1.0 / step)
    return out


def relief_heights(depth: Array, rows: int, cols: int, *, invert: bool = False,
                   smooth: float = 0.0) -> Array:
    """Grid heights in 0..1, row 0 at the bottom (Blender's order): white is near, so it is high.

    Blur (`smooth` pixels), area-average to the grid, stretch to the full 0..1 range so that
    `strength` alone sets the relief depth, then flip to bottom-up rows.
    """
    grid = area_resample(gaussian_blur(depth, smooth), rows, cols)[::-1]
    lo, hi = float(grid.min()), float(grid.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros((rows, cols), np.float32)
    grid = (grid - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    if invert:
        grid = np.float32(1.0) - grid
    return np.ascontiguousarray(grid, dtype=np.float32)


def grid_shape(upright: tuple[int, int], resolution: int, depth_shape: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the relief grid: `resolution` vertices on the long side at most, and
    never more than the depth map has pixels (+1), in the colour image's aspect."""
    w, h = upright
    depth_long = max(depth_shape)
    n_long = max(2, min(int(resolution), depth_long + 1))
    n_short = max(2, int(round((n_long - 1) * min(w, h) / max(w, h))) + 1)
    return (n_short, n_long) if w >= h else (n_long, n_short)


# --- 2. relief: topology -------------------------------------------------------------------------


def grid_arrays(rows: int, cols: int, width: float, height: float) -> dict[str, Array]:
    """The flat grid in numpy: vertex (i, j) is j*cols + i, x right, y up, faces counter-clockwise
    seen from +Z. Edges: every row's horizontal edges, then every column's vertical ones."""
    v = np.arange(rows * cols, dtype=np.int32).reshape(rows, cols)
    positions = np.zeros((rows, cols, 3), np.float32)
    positions[:, :, 0] = np.linspace(-width / 2.0, width / 2.0, cols, dtype=np.float32)[None, :]
    positions[:, :, 1] = np.linspace(-height / 2.0, height / 2.0, rows, dtype=np.float32)[:, None]
    n_h = rows * (cols - 1)
    n_edges = n_h + cols * (rows - 1)
    edges = np.empty((n_edges, 2), np.int32)
    eh = edges[:n_h].reshape(rows, cols - 1, 2)
    eh[..., 0], eh[..., 1] = v[:, :-1], v[:, 1:]
    ev = edges[n_h:].reshape(rows - 1, cols, 2)
    ev[..., 0], ev[..., 1] = v[:-1], v[1:]
    corner_verts = np.empty((rows - 1, cols - 1, 4), np.int32)
    corner_verts[..., 0], corner_verts[..., 1] = v[:-1, :-1], v[:-1, 1:]
    corner_verts[..., 2], corner_verts[..., 3] = v[1:, 1:], v[1:, :-1]
    h_index = np.arange(n_h, dtype=np.int32).reshape(rows, cols - 1)
    v_index = np.arange(n_h, n_edges, dtype=np.int32).reshape(rows - 1, cols)
    corner_edges = np.empty((rows - 1, cols - 1, 4), np.int32)
    corner_edges[..., 0], corner_edges[..., 1] = h_index[:-1], v_index[:, 1:]
    corner_edges[..., 2], corner_edges[..., 3] = h_index[1:], v_index[:, :-1]
    n_faces = (rows - 1) * (cols - 1)
    face_starts = np.arange(0, 4 * n_faces, 4, dtype=np.int32)
    return {"positions": positions.reshape(-1, 3), "edges": edges, "corner_verts": corner_verts.reshape(-1),
            "corner_edges": corner_edges.reshape(-1), "face_starts": face_starts,
            "uv": quad_grid_uv(rows, cols).reshape(-1, 2)}


def quad_grid_uv(rows: int, cols: int, orientation: int = 1, *, x_major: bool = False) -> Array:
    """Per-corner UVs of a rows×cols quad grid, flat float32 (u, v) pairs.

    Face (i, j) has the corners (i, j), (i+1, j), (i+1, j+1), (i, j+1): i counts columns
    left to right, j rows bottom-up; faces are numbered row by row, or column by column when
    `x_major` (the Grid node's order). UV (0, 0) is the bottom-left corner, (1, 1) the top-right,
    exactly; `orientation` (EXIF) then turns them to show a rotated photo upright.

    Written in slabs of about 1 MiB that stay in cache while each component is filled:
    twice as fast as filling the whole array component by component.
    """
    s = np.linspace(0.0, 1.0, cols, dtype=np.float32)
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)
    s4 = np.stack([s[:-1], s[1:], s[1:], s[:-1]], axis=1)  # (cols-1, 4 corners)
    t4 = np.stack([t[:-1], t[:-1], t[1:], t[1:]], axis=1)  # (rows-1, 4 corners)
    if x_major:  # faces: outer index, then inner
        outer, inner = s4, t4
        u, v = _oriented_uv(s4[:, None, :], t4[None, :, :], orientation)
    else:
        outer, inner = t4, s4
        u, v = _oriented_uv(s4[None, :, :], t4[:, None, :], orientation)
    uv = np.empty((len(outer), len(inner), 4, 2), np.float32)
    step = max(1, (1 << 20) // (len(inner) * 32))
    for k, comp in enumerate((np.asarray(u, np.float32), np.asarray(v, np.float32))):
        on_outer = comp.shape[0] == len(outer) and comp.shape[1] == 1 and len(inner) > 1
        for o0 in range(0, len(outer), step):
            slab = uv[o0:o0 + step, :, :, k]
            if on_outer:  # one value per (face row, corner): fill along the row
                for c in range(4):
                    slab[:, :, c] = comp[o0:o0 + step, :, c]
            else:         # the same values for every face row: copy the row
                slab[...] = comp[0] if comp.shape[0] == 1 else comp[o0:o0 + step]
    flat: Array = uv.reshape(-1)
    return flat


def _transposed(a: Array, step: int = 64) -> Array:
    """`a.T` as a new C-contiguous array, copied in bands that stay in cache (2× numpy's copy)."""
    out = np.empty((a.shape[1], a.shape[0]), a.dtype)
    for r in range(0, a.shape[0], step):
        out[:, r:r + step] = a[r:r + step].T
    return out


def _ring(rows: int, cols: int) -> tuple[Array, Array]:
    """The grid's boundary, counter-clockwise from the bottom-left corner seen from +Z:
    vertex indices and, for the edge from ring[k] to ring[k+1], its index in grid_arrays' edges."""
    n_h = rows * (cols - 1)
    i = np.arange(cols - 1)
    j = np.arange(rows - 1)
    verts = np.concatenate([
        i,                                   # bottom row, left to right
        (cols - 1) + j * cols,               # right column, upwards
        (rows - 1) * cols + (cols - 1 - i),  # top row, right to left
        (rows - 1 - j) * cols,               # left column, downwards
    ])
    edges = np.concatenate([
        i,                                   # (i, 0) -> (i+1, 0)
        n_h + j * cols + (cols - 1),         # (cols-1, j) -> (cols-1, j+1)
        (rows - 1) * (cols - 1) + (cols - 2 - i),  # (i+1, top) -> (i, top)
        n_h + (rows - 2 - j) * cols,         # (0, j+1) -> (0, j)
    ])
    return verts.astype(np.int32), edges.astype(np.int32)


def solid_arrays(rows: int, cols: int, width: float, height: float, heights: Array, base: float
                 ) -> dict[str, Array]:
    """grid_arrays closed into a watertight solid: side walls down to a flat back `base` below
    z=0 (a triangle fan around the back's centre: flat, manifold, no degenerate triangles)."""
    top = grid_arrays(rows, cols, width, height)
    ring_v, ring_e = _ring(rows, cols)
    r = len(ring_v)
    n_top, n_top_edges = rows * cols, len(top["edges"])
    back = n_top + np.arange(r, dtype=np.int32)
    centre = n_top + r
    k = np.arange(r, dtype=np.int32)
    k1 = (k + 1) % r
    positions = np.empty((n_top + r + 1, 3), np.float32)
    positions[:n_top] = top["positions"]
    positions[n_top:centre, :2] = top["positions"][ring_v, :2]
    positions[n_top:, 2] = -base
    positions[centre, :2] = 0.0
    # edges: the grid's, then top-to-back verticals, the back's rim, and the fan's spokes
    walls_e, rim_e, spoke_e = n_top_edges, n_top_edges + r, n_top_edges + 2 * r
    edges = np.concatenate([
        top["edges"],
        np.stack([ring_v, back], axis=1),
        np.stack([back, back[k1]], axis=1),
        np.stack([np.full(r, centre, np.int32), back], axis=1),
    ]).astype(np.int32)
    # wall k: (ring[k+1], ring[k], back[k], back[k+1]) faces outwards; fan k: (centre, back[k+1], back[k])
    wall_v = np.stack([ring_v[k1], ring_v, back, back[k1]], axis=1)
    wall_e = np.stack([ring_e, walls_e + k, rim_e + k, walls_e + k1], axis=1)
    fan_v = np.stack([np.full(r, centre, np.int32), back[k1], back], axis=1)
    fan_e = np.stack([spoke_e + k1, rim_e + k, spoke_e + k], axis=1)
    n_top_faces = len(top["face_starts"])
    corner_verts = np.concatenate([top["corner_verts"], wall_v.reshape(-1), fan_v.reshape(-1)]).astype(np.int32)
    corner_edges = np.concatenate([top["corner_edges"], wall_e.reshape(-1), fan_e.reshape(-1)]).astype(np.int32)
    face_starts = np.concatenate([
        top["face_starts"],
        4 * n_top_faces + 4 * k,
        4 * n_top_faces + 4 * r + 3 * k,
    ]).astype(np.int32)
    # UVs: the walls and the back repeat the colour of the rim they hang from
    ring_uv = np.stack([(ring_v % cols) / (cols - 1), (ring_v // cols) / (rows - 1)], axis=1).astype(np.float32)
    wall_uv = ring_uv[np.stack([k1, k, k, k1], axis=1)].reshape(-1, 2)
    fan_uv = np.concatenate([np.full((r, 1, 2), 0.5, np.float32), ring_uv[k1][:, None], ring_uv[k][:, None]],
                            axis=1).reshape(-1, 2)
    uv = np.concatenate([top["uv"], wall_uv, fan_uv]).astype(np.float32)
    heights_all = np.zeros(n_top + r + 1, np.float32)
    heights_all[:n_top] = heights.reshape(-1)
    sharp = np.concatenate([np.zeros(n_top_faces, bool), np.ones(2 * r, bool)])
    return {"positions": positions, "edges": edges, "corner_verts": corner_verts, "corner_edges": corner_edges,
            "face_starts": face_starts, "uv": uv, "heights": heights_all, "sharp_face": sharp}


def _grid_builder_group(rows: int, cols: int, width: float, height: float, created: _Created) -> Any:
    """A throw-away Geometry Nodes tree: Grid → the UV map and height layers, zeroed → output.

    numpy fills both layers next. Geometry Nodes allocates them here because it faults their
    fresh pages in on every core; a layer added from Python does so on one (2.3× slower for
    the 134 MB UV map of a 2049² grid).
    """
    group: Any = created.add(bpy.data.node_groups.new(".1min3d grid builder", "GeometryNodeTree"))  # type: ignore[arg-type, unused-ignore]
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes: Any = group.nodes
    links: Any = group.links
    grid = nodes.new("GeometryNodeMeshGrid")
    grid.inputs["Size X"].default_value = width
    grid.inputs["Size Y"].default_value = height
    grid.inputs["Vertices X"].default_value = cols
    grid.inputs["Vertices Y"].default_value = rows
    geometry = grid.outputs["Mesh"]
    for name, data_type, domain in ((UV_MAP_NAME, "FLOAT2", "CORNER"), (RELIEF_HEIGHT_ATTRIBUTE, "FLOAT", "POINT")):
        store = nodes.new("GeometryNodeStoreNamedAttribute")
        store.data_type = data_type
        store.domain = domain
        store.inputs["Name"].default_value = name
        links.new(geometry, store.inputs["Geometry"])
        geometry = store.outputs["Geometry"]
    links.new(geometry, nodes.new("NodeGroupOutput").inputs[0])
    return group


def _grid_mesh_from_nodes(name: str, rows: int, cols: int, width: float, height: float,
                          created: _Created) -> bpy.types.Mesh:
    """The flat grid with zeroed UV map and height layers, made by a Geometry Nodes Grid
    (threaded C++ topology).

    A temporary object carries the node tree for one evaluation; `new_from_object` then shares
    the evaluated arrays with the new mesh (implicit sharing: no copy).
    """
    group = _grid_builder_group(rows, cols, width, height, created)
    carrier_mesh = created.add(bpy.data.meshes.new(".1min3d grid carrier"))
    carrier = created.add(bpy.data.objects.new(".1min3d grid carrier", carrier_mesh))
    _scene().collection.objects.link(carrier)
    try:
        carrier_mod: Any = carrier.modifiers.new("grid", "NODES")
        carrier_mod.node_group = group
        mesh = created.add(bpy.data.meshes.new_from_object(carrier.evaluated_get(_evaluated_depsgraph())))
    finally:
        bpy.data.batch_remove([carrier, carrier_mesh, group])
    # Let the depsgraph drop the carrier's evaluated copy now: while it lives it shares the
    # arrays, and the first write access to the mesh (even reading vertices[0]) would copy them.
    _evaluated_depsgraph()
    mesh.name = name
    mesh.materials.clear()  # the evaluated mesh comes with an empty slot
    sharp = mesh.attributes.get("sharp_face")
    if sharp is not None:  # the Grid node makes flat faces; a relief is smooth
        mesh.attributes.remove(sharp)
    if len(mesh.vertices) != rows * cols or len(mesh.polygons) != (rows - 1) * (cols - 1):
        raise RuntimeError(f"the Grid node made {len(mesh.vertices)} vertices, not {rows * cols}")
    return mesh


def _grid_layout(mesh: bpy.types.Mesh, rows: int, cols: int, width: float, height: float) -> str | None:
    """How the Grid node numbered the grid: "x-major" (vertex (i, j) = i*rows + j, faces column by
    column: Blender 3.0 to 5.0 at least), "row-major" (like grid_arrays), or None if neither.

    A handful of vertex and corner reads settle it; a layout this does not know falls back to
    working everything out from the mesh's own arrays.
    """
    dx, dy = width / (cols - 1), height / (rows - 1)

    def vertex_at(index: int, i: int, j: int) -> bool:
        co = mesh.vertices[index].co
        return abs(co.x - (i * dx - width / 2)) < dx * 0.25 and abs(co.y - (j * dy - height / 2)) < dy * 0.25

    def corners_match(expected: Any) -> bool:  # expected(face) -> the face's 4 vertices
        faces = {0, min(1, n_faces - 1), n_faces - 1}
        return all([mesh.loops[f * 4 + k].vertex_index for k in range(4)] == expected(f) for f in faces)

    n_faces = (rows - 1) * (cols - 1)
    if vertex_at(1, 0, 1) and vertex_at(rows, 1, 0) and corners_match(
            lambda f: [(v := f // (rows - 1) * rows + f % (rows - 1)), v + rows, v + rows + 1, v + 1]):
        return "x-major"
    if vertex_at(1, 1, 0) and vertex_at(cols, 0, 1) and corners_match(
            lambda f: [(v := f // (cols - 1) * cols + f % (cols - 1)), v + 1, v + cols + 1, v + cols]):
        return "row-major"
    return None


def _grid_heights_and_uv(mesh: bpy.types.Mesh, heights: Array, width: float, height: float,
                         orientation: int, layout: str | None) -> tuple[Array, Array]:
    """`heights` (rows bottom-up) in the mesh's vertex order, and its per-corner UVs."""
    rows, cols = heights.shape
    if layout == "x-major":
        return _transposed(heights).reshape(-1), quad_grid_uv(rows, cols, orientation, x_major=True)
    if layout == "row-major":
        return np.ascontiguousarray(heights).reshape(-1), quad_grid_uv(rows, cols, orientation)
    attrs: Any = mesh.attributes
    flat = np.empty(len(mesh.vertices) * 3, np.float32)
    attrs["position"].data.foreach_get("vector", flat)
    co = flat.reshape(-1, 3)
    s = (co[:, 0] + np.float32(width / 2)) / np.float32(width)
    t = (co[:, 1] + np.float32(height / 2)) / np.float32(height)
    del co, flat
    i = np.rint(s * (cols - 1)).astype(np.intp).clip(0, cols - 1)
    j = np.rint(t * (rows - 1)).astype(np.intp).clip(0, rows - 1)
    ordered = np.ascontiguousarray(heights[j, i], np.float32)
    del i, j
    corner_verts = np.empty(len(mesh.loops), np.int32)
    attrs[".corner_vert"].data.foreach_get("value", corner_verts)
    u, v = _oriented_uv(s[corner_verts], t[corner_verts], orientation)
    return ordered, np.stack([u, v], axis=1).astype(np.float32).reshape(-1)


def _relief_node_group(created: _Created) -> Any:
    """The shared modifier tree: offset every vertex up by its height attribute times Strength."""
    existing: Any
    for existing in bpy.data.node_groups:
        if existing.get("onemin3d_relief_version") == _RELIEF_GROUP_VERSION and \
                existing.bl_idname == "GeometryNodeTree":
            return existing
    group: Any = created.add(bpy.data.node_groups.new(RELIEF_NODE_GROUP_NAME, "GeometryNodeTree"))  # type: ignore[arg-type, unused-ignore]
    group["onemin3d_relief_version"] = _RELIEF_GROUP_VERSION
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    strength = iface.new_socket(RELIEF_STRENGTH_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    strength.description = "Relief depth, as a fraction of the plane's width"
    strength.default_value = 0.15
    strength.min_value = 0.0
    strength.max_value = 10.0
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    if hasattr(group, "is_modifier"):
        group.is_modifier = True
    nodes: Any = group.nodes
    links: Any = group.links
    g_in, g_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    attr = nodes.new("GeometryNodeInputNamedAttribute")
    attr.data_type = "FLOAT"
    attr.inputs["Name"].default_value = RELIEF_HEIGHT_ATTRIBUTE
    scale = nodes.new("ShaderNodeMath")
    scale.operation = "MULTIPLY"
    offset = nodes.new("ShaderNodeCombineXYZ")
    move = nodes.new("GeometryNodeSetPosition")
    g_in.location, attr.location, scale.location = (-600, 0), (-600, -200), (-400, -150)
    offset.location, move.location, g_out.location = (-200, -150), (0, 0), (200, 0)
    links.new(attr.outputs["Attribute"], scale.inputs[0])
    links.new(g_in.outputs[RELIEF_STRENGTH_INPUT], scale.inputs[1])
    links.new(scale.outputs[0], offset.inputs["Z"])
    links.new(g_in.outputs["Geometry"], move.inputs["Geometry"])
    links.new(offset.outputs[0], move.inputs["Offset"])
    links.new(move.outputs["Geometry"], g_out.inputs["Geometry"])
    return group


def _strength_identifier(group: Any) -> str:
    return str(group.interface.items_tree[RELIEF_STRENGTH_INPUT].identifier)


def relief_modifier(obj: bpy.types.Object) -> Any:
    """The relief's Geometry Nodes modifier on `obj`, or None."""
    mod = obj.modifiers.get(RELIEF_MODIFIER_NAME)
    if mod is None or mod.type != "NODES" or mod.node_group is None:
        return None
    if RELIEF_STRENGTH_INPUT not in mod.node_group.interface.items_tree:
        return None
    return mod


def relief_strength(obj: bpy.types.Object) -> compat.ModifierInput | None:
    """The relief's live Strength input on `obj` (None when `obj` is not a relief of this add-on).

    The one way to read, write or draw the Strength on every Blender version: `.get()`,
    `.set(value)`, and `layout.prop(slot.owner, slot.prop, text="Strength")`.
    """
    mod = relief_modifier(obj)
    if mod is None:
        return None
    try:
        return compat.modifier_input(mod, _strength_identifier(mod.node_group))
    except KeyError:
        return None


def relief_strength_path(obj: bpy.types.Object) -> tuple[Any, str] | None:
    """(owner, property) for `layout.prop(owner, prop, text="Strength")`, or None."""
    slot = relief_strength(obj)
    return None if slot is None else (slot.owner, slot.prop)


def get_relief_strength(obj: bpy.types.Object) -> float | None:
    slot = relief_strength(obj)
    return None if slot is None else float(slot.get())


def set_relief_strength(obj: bpy.types.Object, value: float) -> None:
    """Change the relief depth of an imported relief (a fraction of its width), live."""
    slot = relief_strength(obj)
    if slot is None:
        raise ValueError(f"'{obj.name}' is not a relief made by this add-on")
    slot.set(float(value))
    obj.update_tag()


def relief_mesh(name: str, heights: Array, *, width: float, height: float, solid: bool = False,
                base: float = 0.0, orientation: int = 1) -> bpy.types.Mesh:
    """The relief's mesh from a grid of heights (rows bottom-up, object units at Strength 1).

    Open: the topology and the layers come from a Geometry Nodes Grid; numpy fills the UVs and
    the heights (the "onemin3d_height" attribute); positions stay flat (the modifier lifts them).
    Solid: everything is written with numpy, walls and a flat back `base` below z=0 included.
    """
    rows, cols = heights.shape
    with _all_or_nothing(f"the relief mesh '{name}'") as created:
        if solid:
            mesh = created.add(bpy.data.meshes.new(name))
            arrays = solid_arrays(rows, cols, width, height, heights, base)
            _write_mesh(mesh, arrays.pop("positions"), arrays.pop("edges"), arrays.pop("corner_verts"),
                        arrays.pop("corner_edges"), arrays.pop("face_starts"))
            uv = arrays.pop("uv")
            u, v = _oriented_uv(uv[:, 0], uv[:, 1], orientation)
            del uv
            _set_attribute(mesh, UV_MAP_NAME, "FLOAT2", "CORNER", np.stack([u, v], axis=1))
            del u, v
            _set_attribute(mesh, RELIEF_HEIGHT_ATTRIBUTE, "FLOAT", "POINT", arrays.pop("heights"))
            _set_attribute(mesh, "sharp_face", "BOOLEAN", "FACE", arrays.pop("sharp_face"))
        else:
            mesh = _grid_mesh_from_nodes(name, rows, cols, width, height, created)
            layout = _grid_layout(mesh, rows, cols, width, height)
            ordered, uv = _grid_heights_and_uv(mesh, np.asarray(heights, np.float32), width, height,
                                               orientation, layout)
            _set_attribute(mesh, UV_MAP_NAME, "FLOAT2", "CORNER", uv)
            del uv
            _set_attribute(mesh, RELIEF_HEIGHT_ATTRIBUTE, "FLOAT", "POINT", ordered)
        return mesh


# --- 2. relief ---------------------------------------------------------------------------------------


def import_relief(color_image: str | os.PathLike[str], depth_image: str | os.PathLike[str], *,
                  collection: bpy.types.Collection, resolution: int = 512, strength: float = 0.15,
                  invert: bool = False, smooth: float = 0.0, solid: bool = False,
                  size_mode: str = "ABSOLUTE", height: float = 1.0, factor: float = 600.0,
                  base: float = SOLID_BASE, shader: str = "PRINCIPLED", use_alpha: bool = True,
                  interpolation: str = "Linear", relative: bool = True, align: str = "Z_UP",
                  name: str | None = None) -> bpy.types.Object:
    """A relief of `color_image` raised by `depth_image`, in `collection`, at the 3D cursor.

    At most `resolution` vertices on the long side, in the colour image's upright aspect;
    heights area-averaged from the depth map (white is near and raised; `invert` flips),
    optionally blurred by `smooth` pixels; `strength` is the relief depth as a fraction of the
    width, kept live as the "Strength" input of the "1min3d Relief" modifier. `solid` closes it
    into a watertight, printable solid with a flat back `base` × width below the lowest point.
    """
    color_path, depth_path = Path(color_image), Path(depth_image)
    with _all_or_nothing(f"the relief of '{depth_path.name}'") as created:
        _check_choice("size_mode", size_mode, SIZE_MODES)
        info = image_info(color_path)
        name = name or f"{color_path.stem} relief"
        width, plane_height = _plane_size(info.upright_size, size_mode, height, factor)

        image = _load_image(color_path, created, relative=relative)
        material: Any = _image_material(name, image, created, shader=shader,
                                        alpha=use_alpha and info.has_alpha, interpolation=interpolation)
        depth_datablock = _load_image(depth_path, created, relative=relative, non_color=True)
        depth_node: Any = material.node_tree.nodes.new("ShaderNodeTexImage")
        depth_node.image = depth_datablock
        depth_node.name = depth_node.label = "Depth (Non-Color)"
        depth_node.location = (-500, -320)  # kept for bump or masks; nothing reads it by default

        depth = read_depth(depth_path)
        rows, cols = grid_shape(info.upright_size, resolution, (depth.shape[0], depth.shape[1]))
        dh, dw = depth.shape
        up_w, up_h = info.upright_size
        if abs(dw / dh - up_w / up_h) > 0.02 * (up_w / up_h):
            created.warn(f"The depth map is {dw}×{dh} but the photo is {up_w}×{up_h}: the depth was "
                         "stretched to the photo.")
        heights = relief_heights(depth, rows, cols, invert=invert, smooth=smooth)
        del depth
        if not heights.any():
            created.warn("The depth map is flat (one grey level), so the relief is flat.")
        heights *= np.float32(width)  # attribute = height at Strength 1

        mesh = relief_mesh(name, heights, width=width, height=plane_height, solid=solid, base=base * width,
                           orientation=info.orientation)
        del heights
        mesh.materials.append(material)
        mesh.update()

        obj = created.add(bpy.data.objects.new(name, mesh))
        obj[KIND_PROPERTY] = "RELIEF"
        mod: Any = obj.modifiers.new(RELIEF_MODIFIER_NAME, "NODES")
        mod.node_group = _relief_node_group(created)
        set_relief_strength(obj, strength)
        _place(obj, _alignment(align, created))
        collection.objects.link(obj)
        _select_if_in_view_layer(collection, [obj])
        return obj


# --- 3. 3D model -------------------------------------------------------------------------------------


def _import_gltf(path: Path) -> Any:
    op: Any = bpy.ops.import_scene.gltf
    known = op.get_rna_type().properties.keys()
    kwargs: dict[str, Any] = {"filepath": str(path)}
    # The glTF importer's options differ between versions: 5.0 adds import_scene_as_collection
    # (on by default: it would wrap the scene in a collection of its own) and
    # import_select_created_objects; 4.2 has neither. Only pass what this version knows.
    if "import_scene_as_collection" in known:
        kwargs["import_scene_as_collection"] = False
    if "import_select_created_objects" in known:
        kwargs["import_select_created_objects"] = False
    return op(**kwargs)


def _import_obj(path: Path) -> Any:
    return bpy.ops.wm.obj_import(filepath=str(path))


def _import_fbx(path: Path) -> Any:
    return bpy.ops.import_scene.fbx(filepath=str(path))


def _import_ply(path: Path) -> Any:
    return bpy.ops.wm.ply_import(filepath=str(path))


def _import_stl(path: Path) -> Any:
    return bpy.ops.wm.stl_import(filepath=str(path))


_IMPORTERS = {".glb": _import_gltf, ".gltf": _import_gltf, ".obj": _import_obj, ".fbx": _import_fbx,
              ".ply": _import_ply, ".stl": _import_stl}
_KIND_SUFFIX = {"glb": ".glb", "gltf": ".gltf"}


def _ensure_object_mode() -> None:
    if bpy.context.mode != "OBJECT" and bpy.context.object is not None:
        bpy.ops.object.mode_set(mode="OBJECT")


def _extract_folder(zip_path: Path) -> Path:
    # Beside the zip, so OBJ/MTL textures that Blender references (not packed) stay on disk.
    return zip_path.with_name(f"{zip_path.stem}_files")


def _checked_folder(model: Path) -> Path:
    # Checked copies of a lone model (its external references dropped) go beside it, never over it.
    return model.with_name(f"{model.name}_checked")


def _model_file(path: Path) -> tuple[Path, str, list[Path] | None]:
    """The file to hand to an importer, its suffix, and the files extracted with it (None: not a zip);
    a zip is extracted safely first."""
    kind = results.sniff_file(path)
    extracted: list[Path] | None = None
    if kind == "zip" or (kind is None and path.suffix.lower() == ".zip"):
        folder = _extract_folder(path)
        extracted = results.safe_extract_zip(path, folder)
        model = results.find_model_in_dir(folder)
        if model is None:
            raise ImportFailed(f"The archive '{path.name}' holds no 3D model (glTF, GLB, OBJ, FBX, PLY or STL): "
                               "generate the result again.")
        path, kind = model, results.sniff_file(model)
    suffix = _KIND_SUFFIX.get(kind or "", path.suffix.lower())
    if suffix not in _IMPORTERS:
        raise ImportFailed(f"'{path.name}' is not a 3D model Blender can import here "
                           "(glTF, GLB, OBJ, FBX, PLY or STL).")
    return path, suffix, extracted


def import_model(path: str | os.PathLike[str], *, collection: bpy.types.Collection, target_size: float = 2.0
                 ) -> list[bpy.types.Object]:
    """Import a 3D model (or a zip holding one) into `collection`; return its objects.

    The importer reads only files that came with the result: before it runs, every file the
    model names (glTF uris, OBJ mtllib, MTL texture maps) is checked by core.model_refs and
    dropped, with a warning, unless it is one of the result's own files; right after it runs,
    any datablock it made from a file outside the result is removed (`_drop_outside_files`).

    The objects are found by comparing bpy.data before and after Blender's importer; the
    glTF importer's wrapper empties are removed (their children keep their transforms); the
    model is scaled uniformly so its longest side is `target_size` and stands with the centre
    of its base on the 3D cursor.
    """
    from ..core import model_refs  # here, not at the top: this region is the model import's own

    path = Path(path)
    with _all_or_nothing(f"the model '{path.name}'") as created:
        model, suffix, extracted = _model_file(path)
        if extracted is not None:  # the add-on's own extracted copy: checked in place
            checked = model_refs.check_model(model, root=_extract_folder(path), files=extracted, fmt=suffix)
        else:  # a lone file in the shared result folder brought nothing else with it
            checked = model_refs.check_model(model, root=model.parent, files=[model],
                                             out_dir=_checked_folder(model), fmt=suffix)
        for warning in checked.warnings:
            created.warn(warning)
        _ensure_object_mode()
        with created.diff() as new_ids:
            try:
                outcome = _IMPORTERS[suffix](checked.path)
            except RuntimeError as exc:  # the importer's own error report
                raise ImportFailed(f"Blender's importer could not read '{model.name}' ({_short(exc)}): "
                                   "the file may be damaged, so generate the result again.") from exc
        # At once, before anything can pack, draw or save what the importer loaded.
        _drop_outside_files(new_ids, checked, model, created, embedded_pixels=suffix == ".fbx")
        if "FINISHED" not in outcome:
            raise ImportFailed(f"Blender's importer refused '{model.name}': the file may be damaged, "
                               "so generate the result again.")
        objects = [i for i in new_ids if isinstance(i, bpy.types.Object)]
        if not objects:
            raise ImportFailed(f"'{model.name}' holds no objects to import: generate the result again.")
        _view_layer().update()
        world = {o.session_uid: o.matrix_world.copy() for o in objects}
        objects = _remove_wrappers(objects, world)
        for obj in objects:
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
            collection.objects.link(obj)
        leftovers = [i for i in new_ids if isinstance(i, bpy.types.Collection) and _alive(i)]
        if leftovers:  # a collection the importer made for the scene: now empty
            bpy.data.batch_remove(leftovers)
        _fit_to_cursor(objects, world, target_size)
        for obj in objects:
            if obj.parent is None or obj.parent not in objects:
                obj[KIND_PROPERTY] = "MODEL"
        _select_if_in_view_layer(collection, objects)
        return objects


#: the datablocks that read a file (`filepath`), by ID type, and what a user calls each
_FILE_BACKED = {"IMAGE": "texture", "MOVIECLIP": "movie clip", "SOUND": "sound", "LIBRARY": "linked library",
                "VOLUME": "volume", "FONT": "font", "CACHEFILE": "cache file", "TEXT": "text"}


def _drop_outside_files(new_ids: list[Any], checked: Any, model: Path, created: _Created, *,
                        embedded_pixels: bool) -> None:
    """Remove every datablock the importer just made from a file the result did not bring.

    The second line of defence after core.model_refs, and the only one for FBX (no hook): an
    image, movie clip, sound, library, volume, font, cache file or text whose path (made
    absolute, links resolved) is not one of the result's files is removed, with a warning,
    before anything can pack it. An FBX image whose pixels the file itself embeds (already
    packed from the model's own bytes) is kept, its stale path pointed into the result's folder.
    """
    doomed: list[Any] = []
    for id_block in new_ids:
        filepath = getattr(id_block, "filepath", None)
        if not isinstance(filepath, str) or not filepath or filepath == "<builtin>":
            continue
        resolved = bpy.path.abspath(filepath, library=getattr(id_block, "library", None))
        reason = checked.refusal(resolved)
        if reason is None:
            continue
        if (embedded_pixels and isinstance(id_block, bpy.types.Image) and id_block.packed_file is not None):
            name = Path(filepath.replace("\\", "/")).name or id_block.name
            id_block.filepath_raw = str(checked.root / name)
            log.info("%s: kept the embedded pixels of '%s' and pointed it into the result's folder",
                     model.name, filepath)
            continue
        what = _FILE_BACKED.get(getattr(id_block, "id_type", ""), "file")
        created.warn(f"Ignored the {what} '{filepath}' in {model.name}: {reason}.")
        doomed.append(id_block)
    if doomed:
        bpy.data.batch_remove(doomed)
        new_ids[:] = [i for i in new_ids if _alive(i)]


def _remove_wrappers(objects: list[bpy.types.Object], world: dict[int, Matrix]) -> list[bpy.types.Object]:
    """Drop the importer's grouping empties (no animation, instancing or constraints), keeping
    every other object exactly where it was in the world. `world` holds the matrices from before."""
    doomed = {o.session_uid for o in objects
              if o.type == "EMPTY" and o.animation_data is None and o.instance_type == "NONE"
              and not o.constraints}
    if not doomed or len(doomed) == len(objects):
        return objects
    keep = [o for o in objects if o.session_uid not in doomed]
    for obj in keep:
        parent = obj.parent
        if parent is None or parent.session_uid not in doomed:
            continue
        while parent is not None and parent.session_uid in doomed:
            parent = parent.parent
        obj.parent = parent
        obj.matrix_parent_inverse = Matrix.Identity(4)
        parent_world = Matrix.Identity(4) if parent is None else world.get(parent.session_uid, parent.matrix_world)
        obj.matrix_basis = parent_world.inverted() @ world[obj.session_uid]
    bpy.data.batch_remove([o for o in objects if o.session_uid in doomed])
    return keep


def _fit_to_cursor(objects: list[bpy.types.Object], world: dict[int, Matrix], target_size: float) -> None:
    """Scale the model uniformly to `target_size` on its longest side and stand it on the cursor."""
    points = []
    for obj in objects:
        m = np.array(world[obj.session_uid], dtype=np.float64)
        data: Any = obj.data
        if obj.type == "MESH" and len(data.vertices):
            co = np.empty(len(data.vertices) * 3, np.float32)
            data.attributes["position"].data.foreach_get("vector", co)
            local = co.reshape(-1, 3).astype(np.float64)
        elif obj.type in {"CURVE", "SURFACE", "FONT", "META", "VOLUME", "POINTCLOUD", "CURVES"}:
            local = np.array([tuple(c) for c in obj.bound_box], np.float64)
        else:
            continue
        points.append(local @ m[:3, :3].T + m[:3, 3])
    if points:
        pts = np.concatenate(points)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    else:  # only empties, cameras or lights: use their origins
        origins = np.array([world[o.session_uid].translation.to_tuple() for o in objects])
        lo, hi = origins.min(axis=0), origins.max(axis=0)
    extent = float((hi - lo).max())
    scale = target_size / extent if extent > 1e-12 else 1.0
    anchor = Vector(((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, lo[2]))
    fit = Matrix.Translation(_cursor_location().to_tuple()) @ Matrix.Scale(scale, 4) @ Matrix.Translation((-anchor).to_tuple())
    members = {o.session_uid for o in objects}
    for obj in objects:
        if obj.parent is None or obj.parent.session_uid not in members:
            obj.matrix_world = fit @ world[obj.session_uid]


# --- 4. dispatcher -----------------------------------------------------------------------------------


def import_result(result_file: str | os.PathLike[str], source_image: str | os.PathLike[str] | None = None,
                  mode: str = "AUTO", options: Mapping[str, Any] | ImportOptions | None = None) -> Imported:
    """Bring one result into the scene, in a new collection "1min3d <source name>"; all or nothing.

    AUTO: a model → import_model; a greyscale image (a depth map) → import_relief with the
    source photo as colour; a colour image → import_plane of the result. PLANE always shows the
    result image. DISPLACEMENT raises the photo by the result (a colour result by its luminance,
    with a warning). The collection is linked to the scene only when everything is built; on
    any failure everything made so far is removed and ImportFailed is raised.
    """
    opts = ImportOptions.from_mapping(options)
    mode = option_schema.check_mode(mode)
    result = Path(result_file)
    source = Path(source_image) if source_image else None
    label = (source or result).stem
    with _all_or_nothing(f"the result '{result.name}'") as created:
        if not result.is_file():
            raise ImportFailed(f"The result file '{result.name}' was not found: re-download it from the history.")
        kind = results.sniff_file(result)
        is_model = kind in results.MODEL_KINDS or (
            kind is None and (result.suffix.lower() in _IMPORTERS or result.suffix.lower() == ".zip"))
        _ensure_object_mode()
        collection = created.add(bpy.data.collections.new(f"{COLLECTION_PREFIX}{label}"))
        plane_kw: dict[str, Any] = {"size_mode": opts.size_mode, "height": opts.height, "factor": opts.factor,
                    "shader": opts.shader, "use_alpha": opts.use_alpha, "interpolation": opts.interpolation,
                    "relative": opts.relative, "align": opts.align}
        if is_model:
            if mode != "AUTO":
                created.warn(f"The result is a 3D model, so it was imported as a model ({mode.lower()} "
                             "applies to image results).")
            objects = import_model(result, collection=collection, target_size=opts.target_size)
            made = "MODEL"
        elif kind in results.IMAGE_KINDS or kind is None:
            grey = mode != "PLANE" and results.is_greyscale(result)
            if mode == "PLANE" or (mode == "AUTO" and not grey):
                objects = [import_plane(result, collection=collection, **plane_kw)]
                made = "PLANE"
            else:
                if not grey:
                    created.warn("The result is a colour image, not a depth map: its brightness was used "
                                 "as depth.")
                color = source if source is not None and source.is_file() else result
                if color is result and source is not None:
                    created.warn(f"The photo '{source.name}' was not found, so the relief shows the depth map.")
                relief = import_relief(color, result, collection=collection, resolution=opts.resolution,
                                       strength=opts.strength, invert=opts.invert, smooth=opts.smooth,
                                       solid=opts.solid, name=f"{label} relief", **plane_kw)
                objects = [relief]
                made = "RELIEF"
        else:
            raise ImportFailed(f"'{result.name}' is neither an image nor a 3D model: generate the result again.")

        _scene().collection.children.link(collection)
        _select(objects)
        _view_layer().update()
        return Imported(collection, list(objects), made, list(created.warnings))


def _select_if_in_view_layer(collection: bpy.types.Collection, objects: Sequence[bpy.types.Object]) -> None:
    """Select a builder's objects when its collection is already in the scene (import_result
    links its collection last, and selects then)."""
    scene = bpy.context.scene
    if scene is not None and objects and (collection == scene.collection
                                          or collection in scene.collection.children_recursive):
        _select(objects)


def _select(objects: Sequence[bpy.types.Object]) -> None:
    view_layer = _view_layer()
    for obj in list(view_layer.objects.selected):
        if obj is not None:  # 4.2 can list an object removed since the last view layer sync as None
            obj.select_set(False)
    for obj in objects:
        obj.select_set(True)
    roots = [o for o in objects if o.parent is None] or list(objects)
    if roots:
        view_layer.objects.active = roots[0]
