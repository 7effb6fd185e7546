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

from ..core import options as option_schema
from ..core import relief
from .build_common import (
    KIND_PROPERTY,
    UV_MAP_NAME,
    alignment,
    all_or_nothing,
    check_choice,
    image_info,
    image_material,
    load_image,
    place,
    select_if_in_view_layer,
    set_attribute,
    write_mesh,
)

SIZE_MODES = option_schema.choices("size_mode")
SHADERS = option_schema.choices("shader")


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
        hw, hh = w / 2.0, h / 2.0
        positions = np.array([(-hw, -hh, 0.0), (hw, -hh, 0.0), (hw, hh, 0.0), (-hw, hh, 0.0)], np.float32)
        write_mesh(mesh, positions, np.array([(0, 1), (1, 2), (2, 3), (3, 0)]), np.arange(4), np.arange(4),
                    np.zeros(1))
        u, v = relief.oriented_uv(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0]), info.orientation)
        set_attribute(mesh, UV_MAP_NAME, "FLOAT2", "CORNER", np.stack([u, v], axis=1))
        mesh.materials.append(material)
        mesh.update()

        obj = created.add(bpy.data.objects.new(name, mesh))
        obj[KIND_PROPERTY] = "PLANE"
        place(obj, alignment(align, created))
        collection.objects.link(obj)
        select_if_in_view_layer(collection, [obj])
        return obj

