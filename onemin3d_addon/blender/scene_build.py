"""Main thread only: turns a result file into Blender data (textured plane, relief mesh or 3D model), all or nothing: `import_result` picks the builder.

`import_result(result_file, source_image, mode, options)` puts everything into one new
collection "1min3d <name>", linked to the scene only at the end. It is the one door the
runtime, the API and the scripts use; the builders it picks from each live in a file of their own:

* `build_plane.import_plane(image, collection=…)`: a 4-vertex plane showing the image;
* `build_relief.import_relief(color, depth, collection=…)`: a grid mesh raised by the depth map
  (its numbers come from the bpy-free core/relief.py), with a live Strength;
* `build_model.import_model(path, collection=…)`: glTF/GLB, OBJ, FBX, PLY, STL (or a zip holding
  one) through Blender's importers, reading only the result's own files;
* `build_common`: the all-or-nothing transaction, images, materials, placement they share.

Every name callers used from here before the split is still importable from here. Every entry
point is all or nothing: every datablock made before a failure is removed again, and the failure
is raised as `ImportFailed` with a sentence for the user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from ..core import options as option_schema
from ..core import results
from ..core.errors import ImportFailed, advised
from ..core.images import ImageInfo
from ..core.import_options import ImportOptions
from ..core.relief import (
    SOLID_BASE,
    area_resample,
    gaussian_blur,
    grid_arrays,
    grid_shape,
    quad_grid_uv,
    read_depth,
    relief_heights,
    solid_arrays,
)
from .build_common import (
    KIND_PROPERTY,
    UV_MAP_NAME,
    all_or_nothing,
    current_scene,
    current_view_layer,
    ensure_object_mode,
    image_info,
    select,
)
from .build_model import MODEL_SUFFIXES, import_model
from .build_plane import import_plane
from .build_relief import (
    RELIEF_HEIGHT_ATTRIBUTE,
    RELIEF_MODIFIER_NAME,
    RELIEF_NODE_GROUP_NAME,
    RELIEF_STRENGTH_INPUT,
    get_relief_strength,
    import_relief,
    relief_mesh,
    relief_modifier,
    relief_strength,
    relief_strength_path,
    set_relief_strength,
)

__all__ = [
    "ALIGNS", "COLLECTION_PREFIX", "INTERPOLATIONS", "KIND_PROPERTY", "MODES", "RELIEF_HEIGHT_ATTRIBUTE",
    "RELIEF_MODIFIER_NAME", "RELIEF_NODE_GROUP_NAME", "RELIEF_STRENGTH_INPUT", "SHADERS", "SIZE_MODES",
    "SOLID_BASE", "UV_MAP_NAME", "ImageInfo", "ImportOptions", "Imported", "area_resample", "gaussian_blur",
    "get_relief_strength", "grid_arrays", "grid_shape", "image_info", "import_model", "import_plane",
    "import_relief", "import_result", "quad_grid_uv", "read_depth", "relief_heights", "relief_mesh",
    "relief_modifier", "relief_strength", "relief_strength_path", "set_relief_strength", "solid_arrays",
]

COLLECTION_PREFIX = "1min3d "

MODES = option_schema.MODE.values
SIZE_MODES = option_schema.choices("size_mode")
SHADERS = option_schema.choices("shader")
INTERPOLATIONS = option_schema.choices("interpolation")
ALIGNS = option_schema.choices("align")


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
    with all_or_nothing(f"the result '{result.name}'") as created:
        if not result.is_file():
            raise advised(ImportFailed, f"The result file '{result.name}' was not found: ", "{redownload}.")
        kind = results.sniff_file(result)
        is_model = kind in results.MODEL_KINDS or (
            kind is None and (result.suffix.lower() in MODEL_SUFFIXES or result.suffix.lower() == ".zip"))
        ensure_object_mode()
        collection = created.add(bpy.data.collections.new(f"{COLLECTION_PREFIX}{label}"))
        plane_kw: dict[str, Any] = {"size_mode": opts.size_mode, "height": opts.height, "factor": opts.factor,
                    "shader": opts.shader, "use_alpha": opts.use_alpha, "interpolation": opts.interpolation,
                    "relative": opts.relative, "align": opts.align, "cutout": opts.cutout}
        if is_model:
            if mode != "AUTO":
                created.warn(f"The result is a 3D model, so it was imported as a model ({mode.lower()} "
                             "applies to image results).")
            objects = import_model(result, collection=collection, target_size=opts.target_size,
                                   name=label if source is not None else None)
            made = "MODEL"
        elif kind in results.IMAGE_KINDS or kind is None:
            grey = mode != "PLANE" and results.is_greyscale(result)
            if mode == "PLANE" or (mode == "AUTO" and not grey):
                # named after the photo, not the server's file ("…_3d_generated")
                objects = [import_plane(result, collection=collection, name=label if source is not None else None,
                                        **plane_kw)]
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
                                       solid=opts.solid, tear=opts.tear, name=f"{label} relief", **plane_kw)
                objects = [relief]
                made = "RELIEF"
        else:
            raise ImportFailed(f"'{result.name}' is neither an image nor a 3D model: generate the result again.")

        current_scene().collection.children.link(collection)
        select(objects)
        current_view_layer().update()
        return Imported(collection, list(objects), made, list(created.warnings))

