"""Main thread only: `import_relief`, a grid mesh raised by a depth map and coloured by the photo, and the live Strength of the reliefs it made.

The heights and UVs are computed bpy-free (core/relief.py). The flat grid and a per-vertex
height attribute are written once; a Geometry Nodes modifier lifts the vertices, so the relief
depth stays one slider ("Strength") after import. The open relief takes its topology from a
Geometry Nodes Grid (C++, threaded); the watertight `solid` relief is written with numpy through
the attribute API. Never `from_pydata`, never per-vertex Python, never Blender computing edges.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..core import cutout as cut
from ..core import options as option_schema
from ..core import relief
from ..core.errors import ImportFailed
from ..core.relief import (
    SOLID_BASE,
    Array,
    grid_shape,
    quad_grid_uv,
    read_depth,
    relief_heights,
    solid_arrays,
)
from . import compat
from .build_common import (
    KIND_PROPERTY,
    UV_MAP_NAME,
    Created,
    alignment,
    all_or_nothing,
    check_choice,
    current_scene,
    evaluated_depsgraph,
    image_info,
    image_material,
    load_image,
    place,
    select_if_in_view_layer,
    set_attribute,
    write_arrays,
)

#: the relief modifier, its node group, and the one input the UI shows as the strength slider
RELIEF_MODIFIER_NAME = "1min3d Relief"
RELIEF_NODE_GROUP_NAME = "1min3d Relief"
RELIEF_STRENGTH_INPUT = "Strength"
#: per-vertex relief height at Strength 1 (object units: the depth map's 0..1 times the plane width)
RELIEF_HEIGHT_ATTRIBUTE = "onemin3d_height"
#: custom property of a relief: its grid and how it was made, so an export can rebuild it (export_web)
RELIEF_GRID_PROPERTY = "onemin3d_relief_grid"

SIZE_MODES = option_schema.choices("size_mode")

_RELIEF_GROUP_VERSION = 1


def _grid_builder_group(rows: int, cols: int, width: float, height: float, created: Created) -> Any:
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
                          created: Created) -> bpy.types.Mesh:
    """The flat grid with zeroed UV map and height layers, made by a Geometry Nodes Grid
    (threaded C++ topology).

    A temporary object carries the node tree for one evaluation; `new_from_object` then shares
    the evaluated arrays with the new mesh (implicit sharing: no copy).
    """
    group = _grid_builder_group(rows, cols, width, height, created)
    carrier_mesh = created.add(bpy.data.meshes.new(".1min3d grid carrier"))
    carrier = created.add(bpy.data.objects.new(".1min3d grid carrier", carrier_mesh))
    current_scene().collection.objects.link(carrier)
    try:
        carrier_mod: Any = carrier.modifiers.new("grid", "NODES")
        carrier_mod.node_group = group
        mesh = created.add(bpy.data.meshes.new_from_object(carrier.evaluated_get(evaluated_depsgraph())))
    finally:
        bpy.data.batch_remove([carrier, carrier_mesh, group])
    # Let the depsgraph drop the carrier's evaluated copy now: while it lives it shares the
    # arrays, and the first write access to the mesh (even reading vertices[0]) would copy them.
    evaluated_depsgraph()
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
        return relief.transposed(heights).reshape(-1), quad_grid_uv(rows, cols, orientation, x_major=True)
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
    u, v = relief.oriented_uv(s[corner_verts], t[corner_verts], orientation)
    return ordered, np.stack([u, v], axis=1).astype(np.float32).reshape(-1)


def _relief_node_group(created: Created) -> Any:
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
                base: float = 0.0, orientation: int = 1, alpha: Array | None = None,
                tear: float = 0.0) -> bpy.types.Mesh:
    """The relief's mesh from a grid of heights (rows bottom-up, object units at Strength 1).

    Open: the topology and the layers come from a Geometry Nodes Grid; numpy fills the UVs and
    the heights (the "onemin3d_height" attribute); positions stay flat (the modifier lifts them).
    Solid: everything is written with numpy, walls and a flat back `base` below z=0 included.
    Cut out (`alpha`: the photo's alpha on the grid, rows bottom-up) or torn (`tear` > 0: faces
    spanning a height jump above it go, in the heights' units): core/cutout.py's surface, written
    with numpy, walls following every boundary when solid.
    """
    rows, cols = heights.shape
    with all_or_nothing(f"the relief mesh '{name}'") as created:
        if alpha is not None or tear > 0.0:
            mesh = created.add(bpy.data.meshes.new(name))
            _write_surface(mesh, _cut_surface(heights, alpha, tear, solid, base), rows, cols, width, height,
                           orientation)
        elif solid:
            mesh = created.add(bpy.data.meshes.new(name))
            arrays = solid_arrays(rows, cols, width, height, heights, base)
            uv = arrays.pop("uv")
            u, v = relief.oriented_uv(uv[:, 0], uv[:, 1], orientation)
            del uv
            arrays["uv"] = np.stack([u, v], axis=1)
            del u, v
            write_arrays(mesh, arrays, heights_attribute=RELIEF_HEIGHT_ATTRIBUTE)
        else:
            mesh = _grid_mesh_from_nodes(name, rows, cols, width, height, created)
            layout = _grid_layout(mesh, rows, cols, width, height)
            ordered, uv = _grid_heights_and_uv(mesh, np.asarray(heights, np.float32), width, height,
                                               orientation, layout)
            set_attribute(mesh, UV_MAP_NAME, "FLOAT2", "CORNER", uv)
            del uv
            set_attribute(mesh, RELIEF_HEIGHT_ATTRIBUTE, "FLOAT", "POINT", ordered)
        return mesh


def _cut_surface(heights: Array, alpha: Array | None, tear: float, solid: bool, base: float) -> cut.Surface:
    surface = cut.grid_surface(heights)
    if alpha is not None:  # first: the alpha has one value per grid point
        surface = cut.clip(surface, alpha.reshape(-1))
    if tear > 0.0:
        surface = cut.tear(surface, tear)
    if not len(surface.face_starts):
        raise ImportFailed("Nothing of the relief is left once cut out and torn: raise Tear (or set it to 0), "
                           "or turn Cut Out off.")
    return cut.solidify(surface, base) if solid else surface


def _write_surface(mesh: bpy.types.Mesh, surface: cut.Surface, rows: int, cols: int, width: float, height: float,
                   orientation: int) -> None:
    write_arrays(mesh, cut.surface_arrays(surface, rows, cols, width, height, orientation),
                 heights_attribute=RELIEF_HEIGHT_ATTRIBUTE)


def import_relief(color_image: str | os.PathLike[str], depth_image: str | os.PathLike[str], *,
                  collection: bpy.types.Collection, resolution: int = 512, strength: float = 0.15,
                  invert: bool = False, smooth: float = 0.0, solid: bool = False,
                  size_mode: str = "ABSOLUTE", height: float = 1.0, factor: float = 600.0,
                  base: float = SOLID_BASE, shader: str = "PRINCIPLED", use_alpha: bool = True,
                  interpolation: str = "Linear", relative: bool = True, align: str = "Z_UP",
                  cutout: bool = True, tear: float = 0.0, name: str | None = None) -> bpy.types.Object:
    """A relief of `color_image` raised by `depth_image`, in `collection`, at the 3D cursor.

    At most `resolution` vertices on the long side, in the colour image's upright aspect;
    heights area-averaged from the depth map (white is near and raised; `invert` flips),
    optionally blurred by `smooth` pixels; `strength` is the relief depth as a fraction of the
    width, kept live as the "Strength" input of the "1min3d Relief" modifier. `solid` closes it
    into a watertight, printable solid with a flat back `base` × width below the lowest point.
    `cutout`: where `color_image` has alpha below 0.5 the relief is cut away (a smooth outline,
    holes kept, walls following it when solid). `tear`: faces spanning a depth jump above this
    fraction of the relief depth are removed (0: off).
    """
    color_path, depth_path = Path(color_image), Path(depth_image)
    with all_or_nothing(f"the relief of '{depth_path.name}'") as created:
        check_choice("size_mode", size_mode, SIZE_MODES)
        info = image_info(color_path)
        name = name or f"{color_path.stem} relief"
        width, plane_height = relief.plane_size(info.upright_size, size_mode, height, factor)

        image = load_image(color_path, created, relative=relative)
        material: Any = image_material(name, image, created, shader=shader,
                                        alpha=use_alpha and info.has_alpha, interpolation=interpolation)
        depth_datablock = load_image(depth_path, created, relative=relative, non_color=True)
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
        alpha = None
        if cutout and info.has_alpha:
            photo_alpha = cut.read_alpha(color_path)
            if photo_alpha is not None:
                alpha = cut.grid_alpha(photo_alpha, rows, cols)
                del photo_alpha
                if not (alpha >= 0.5).any():
                    created.warn(f"The photo '{color_path.name}' is transparent everywhere, so the relief was "
                                 "not cut out.")
                    alpha = None

        mesh = relief_mesh(name, heights, width=width, height=plane_height, solid=solid, base=base * width,
                           orientation=info.orientation, alpha=alpha, tear=tear * width)
        del heights
        mesh.materials.append(material)
        mesh.update()

        obj = created.add(bpy.data.objects.new(name, mesh))
        obj[KIND_PROPERTY] = "RELIEF"
        obj[RELIEF_GRID_PROPERTY] = {"rows": rows, "cols": cols, "width": width, "height": plane_height,
                                     "orientation": info.orientation, "invert": invert, "smooth": smooth,
                                     "solid": solid, "base": base * width, "cutout": alpha is not None,
                                     "tear": tear}
        mod: Any = obj.modifiers.new(RELIEF_MODIFIER_NAME, "NODES")
        mod.node_group = _relief_node_group(created)
        set_relief_strength(obj, strength)
        place(obj, alignment(align, created))
        collection.objects.link(obj)
        select_if_in_view_layer(collection, [obj])
        return obj

