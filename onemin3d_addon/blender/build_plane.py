"""Main thread only: `import_plane`, a 4-vertex plane showing an image, with the options of Blender's own "Import Images as Planes".

The size comes from the file header (core.images), so the image datablock stays lazily loaded:
nothing is decoded until something draws it. EXIF orientation is honoured through the UVs
(Blender shows the image as stored), so a photo shows upright.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np

from ..core import cutout as cut
from ..core import images, relief
from ..core import options as option_schema
from ..core.relief import Array
from .build_common import (
    KIND_PROPERTY,
    Created,
    alignment,
    all_or_nothing,
    check_choice,
    image_info,
    image_material,
    load_image,
    place,
    select_if_in_view_layer,
    write_arrays,
)

SIZE_MODES = option_schema.choices("size_mode")
SHADERS = option_schema.choices("shader")
#: vertices on the long side of the grid a cut-out plane is clipped from (its material's alpha
#: draws the exact edge; the mesh only drops what is transparent, within 1/256 of the size)
PLANE_CUT_RESOLUTION = 257


def import_plane(image_path: str | os.PathLike[str], *, collection: bpy.types.Collection,
                 size_mode: str = "ABSOLUTE", height: float = 1.0, factor: float = 600.0,
                 shader: str = "PRINCIPLED", use_alpha: bool = True, interpolation: str = "Linear",
                 relative: bool = True, align: str = "Z_UP", emit_strength: float = 1.0,
                 cutout: bool = True, name: str | None = None) -> bpy.types.Object:
    """A 4-vertex plane showing the image, in `collection`, at the 3D cursor.

    Sized from the header (ABSOLUTE: `height` units tall; DPBU: `factor` pixels per unit) in
    the image's upright aspect; the image datablock stays unloaded. Alpha is wired when the
    image has an alpha channel and `use_alpha` is on. `align`: Z_UP, CAMERA or VIEW. `cutout`:
    where the image has alpha below 0.5 the mesh is cut away (a flat grid clipped to the outline).
    """
    path = Path(image_path)
    with all_or_nothing(f"the image '{path.name}'") as created:
        check_choice("size_mode", size_mode, SIZE_MODES)
        check_choice("shader", shader, SHADERS)
        info = image_info(path)
        name = name or path.stem
        w, h = relief.plane_size(info.upright_size, size_mode, height, factor)
        image = load_image(path, created, relative=relative)
        alpha = use_alpha and info.has_alpha
        material = image_material(name, image, created, shader=shader, alpha=alpha,
                                   interpolation=interpolation, emit_strength=emit_strength)

        mesh = created.add(bpy.data.meshes.new(name))
        arrays = _cut_outline(path, info, w, h, created) if cutout and info.has_alpha else None
        write_arrays(mesh, _quad(w, h, info.orientation) if arrays is None else arrays)
        mesh.materials.append(material)
        mesh.update()

        obj = created.add(bpy.data.objects.new(name, mesh))
        obj[KIND_PROPERTY] = "PLANE"
        place(obj, alignment(align, created))
        collection.objects.link(obj)
        select_if_in_view_layer(collection, [obj])
        return obj


def _quad(width: float, height: float, orientation: int) -> dict[str, Array]:
    """The plane's 4-vertex mesh arrays, its UVs turned by the EXIF `orientation`."""
    hw, hh = width / 2.0, height / 2.0
    u, v = relief.oriented_uv(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0]), orientation)
    return {"positions": np.array([(-hw, -hh, 0.0), (hw, -hh, 0.0), (hw, hh, 0.0), (-hw, hh, 0.0)], np.float32),
            "edges": np.array([(0, 1), (1, 2), (2, 3), (3, 0)]), "corner_verts": np.arange(4),
            "corner_edges": np.arange(4), "face_starts": np.zeros(1), "uv": np.stack([u, v], axis=1)}


def _cut_outline(path: Path, info: images.ImageInfo, width: float, height: float,
                 created: Created) -> dict[str, Array] | None:
    """The plane's mesh arrays cut to the image's alpha, or None when nothing is transparent."""
    alpha = cut.read_alpha(path)
    if alpha is None:
        return None
    rows, cols = relief.grid_shape(info.upright_size, PLANE_CUT_RESOLUTION, (alpha.shape[0], alpha.shape[1]))
    on_grid = cut.grid_alpha(alpha, rows, cols)
    if not (on_grid >= 0.5).any():
        created.warn(f"The image '{path.name}' is transparent everywhere, so the plane was not cut out.")
        return None
    surface = cut.clip(cut.grid_surface(np.zeros((rows, cols), np.float32)), on_grid.reshape(-1))
    return cut.surface_arrays(surface, rows, cols, width, height, info.orientation)
