"""Main thread only: what the plane, relief and model builders share: all-or-nothing imports, image datablocks, materials, mesh writing, placement and selection.

`all_or_nothing(what)` is the transaction every builder runs in: each datablock made inside it
(`created.add`, or `created.diff()` around an importer that exists only as an operator) is
removed again on any failure, which is raised as `ImportFailed` with a sentence for the user.
Nested use joins the outer import, so `import_result` owns the clean-up of the builders it calls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import bpy
import numpy as np
import numpy.typing as npt
from mathutils import Quaternion, Vector

from ..core import images
from ..core import options as option_schema
from ..core.errors import ImageError, ImportFailed, Onemin3DError, get_logger
from . import compat

log = get_logger(__name__)

Array = npt.NDArray[Any]
_ID = TypeVar("_ID")

UV_MAP_NAME = "UVMap"
#: custom property on the objects the builders make: "PLANE", "RELIEF" or "MODEL"
KIND_PROPERTY = "onemin3d_kind"


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


def alive(id_block: Any) -> bool:
    try:
        id_block.name  # noqa: B018 - a removed ID raises ReferenceError here
    except ReferenceError:
        return False
    return True


class Created:
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
        living = [i for i in self.ids if alive(i)]
        if living:
            bpy.data.batch_remove(living)
        self.ids.clear()


_transactions: list[Created] = []


@contextlib.contextmanager
def all_or_nothing(what: str) -> Iterator[Created]:
    """Run an import; on any failure remove what it made and raise ImportFailed.

    Nested use joins the outer import: the outermost one owns the clean-up.
    """
    if _transactions:
        yield _transactions[-1]
        return
    created = Created()
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
        raise ImportFailed(f"Blender could not import {what} ({short(exc)}): the result is kept, "
                           "so try importing it again or open the file by hand.") from exc
    finally:
        _transactions.pop()


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"



# --- images ----------------------------------------------------------------------------------


def image_info(path: str | os.PathLike[str]) -> images.ImageInfo:
    """Stored size, alpha and EXIF orientation of the image at `path`, from its header only
    (core.images' one reader: the upload and the texture agree on which way is up)."""
    try:
        return images.image_info(path)
    except ImageError as exc:
        raise ImportFailed(exc.message, detail=exc.detail) from exc


def load_image(path: Path, created: Created, *, relative: bool, non_color: bool = False) -> Any:
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



# --- materials ----------------------------------------------------------------------------


def _new_material(name: str, created: Created) -> Any:
    material: Any = created.add(bpy.data.materials.new(name))
    compat.ensure_node_tree(material).nodes.clear()
    return material


def image_material(name: str, image: Any, created: Created, *, shader: str = "PRINCIPLED",
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



# --- placement and selection --------------------------------------------------------------


def current_scene() -> Any:
    scene = bpy.context.scene
    if scene is None:
        raise ImportFailed("There is no open scene to import into: open or create a scene, then try again.")
    return scene


def current_view_layer() -> Any:
    view_layer = bpy.context.view_layer
    if view_layer is None:
        raise ImportFailed("The scene has no view layer to import into: add one, then try again.")
    return view_layer


def evaluated_depsgraph() -> Any:
    """The view layer's depsgraph, evaluated.

    Not `context.evaluated_depsgraph_get`: it releases the GIL, then reads the context, and
    under `context.temp_override` (how the add-on imports from its timer) that read is a Python
    dict lookup without the GIL. With another Python thread running (a download, the history
    writer) it crashed bpy 5.0.1 within 90 s in every run of a stress loop.
    `view_layer.update()` takes what it needs before releasing the GIL.
    """
    view_layer = current_view_layer()
    view_layer.update()
    return view_layer.depsgraph


def cursor_location() -> Vector:
    return Vector(current_scene().cursor.location)


def alignment(align: str, created: Created) -> Quaternion | None:
    """The rotation that makes a +Z-facing plane face the camera or the view (None: stay Z-up)."""
    align = align_name(align)
    if align == "CAMERA":
        camera = current_scene().camera
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


def place(obj: bpy.types.Object, rotation: Quaternion | None) -> None:
    obj.location = cursor_location()
    if rotation is not None:
        obj.rotation_euler = rotation.to_euler("XYZ")


def ensure_object_mode() -> None:
    if bpy.context.mode != "OBJECT" and bpy.context.object is not None:
        bpy.ops.object.mode_set(mode="OBJECT")


def select_if_in_view_layer(collection: bpy.types.Collection, objects: Sequence[bpy.types.Object]) -> None:
    """Select a builder's objects when its collection is already in the scene (import_result
    links its collection last, and selects then)."""
    scene = bpy.context.scene
    if scene is not None and objects and (collection == scene.collection
                                          or collection in scene.collection.children_recursive):
        select(objects)


def select(objects: Sequence[bpy.types.Object]) -> None:
    view_layer = current_view_layer()
    for obj in list(view_layer.objects.selected):
        if obj is not None:  # 4.2 can list an object removed since the last view layer sync as None
            obj.select_set(False)
    for obj in objects:
        obj.select_set(True)
    roots = [o for o in objects if o.parent is None] or list(objects)
    if roots:
        view_layer.objects.active = roots[0]



# --- mesh writing -------------------------------------------------------------------------


def write_mesh(mesh: bpy.types.Mesh, positions: Array, edges: Array, corner_verts: Array,
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


def write_arrays(mesh: bpy.types.Mesh, arrays: dict[str, Array], *, heights_attribute: str | None = None) -> None:
    """A mesh from the arrays core/relief.py and core/cutout.py make (positions, edges, corner_verts,
    corner_edges, face_starts, uv, and heights and sharp_face when there): the topology, the UV map,
    the heights as the point attribute `heights_attribute` when one is named, and the sharp faces
    when any face is sharp. The arrays are popped as they are written (a 2049² relief's UVs alone
    are 134 MB)."""
    write_mesh(mesh, arrays.pop("positions"), arrays.pop("edges"), arrays.pop("corner_verts"),
               arrays.pop("corner_edges"), arrays.pop("face_starts"))
    set_attribute(mesh, UV_MAP_NAME, "FLOAT2", "CORNER", arrays.pop("uv"))
    heights = arrays.pop("heights", None)
    if heights_attribute is not None and heights is not None:
        set_attribute(mesh, heights_attribute, "FLOAT", "POINT", heights)
    del heights
    sharp = arrays.pop("sharp_face", None)
    if sharp is not None and sharp.any():
        set_attribute(mesh, "sharp_face", "BOOLEAN", "FACE", sharp)


def _flat(a: Array, dtype: Any) -> Array:
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def set_attribute(mesh: bpy.types.Mesh, name: str, data_type: str, domain: str, values: Array) -> Any:
    attrs: Any = mesh.attributes
    attr = attrs.get(name)
    if attr is None:
        attr = attrs.new(name, data_type, domain)
    key = "vector" if data_type in {"FLOAT2", "FLOAT_VECTOR"} else "value"
    dtype = {"FLOAT": np.float32, "FLOAT2": np.float32, "FLOAT_VECTOR": np.float32, "BOOLEAN": bool,
             "INT": np.int32}[data_type]
    attr.data.foreach_set(key, _flat(values, dtype))
    return attr


def check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def align_name(align: str) -> str:
    return option_schema.get("align").aliases.get(align, align)  # Blender's own operator calls it CAM

