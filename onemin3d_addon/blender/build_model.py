"""Main thread only: `import_model`, a 3D model (glTF/GLB, OBJ, FBX, PLY, STL, or a zip holding one) through Blender's importers, read only from the result's own files, then scaled and placed.

A result may be hostile: before an importer runs, every file the model names is checked by
core.model_refs and dropped unless the result brought it; right after, any datablock the
importer made from a file outside the result is removed (`_drop_outside_files`), the only line
of defence for FBX. Then the importer's wrapper empties go, and the model is scaled to
`target_size` on its longest side and stood on the 3D cursor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

from ..core import model_refs, results
from ..core.errors import ImportFailed, get_logger
from .build_common import (
    KIND_PROPERTY,
    Created,
    alive,
    all_or_nothing,
    current_view_layer,
    cursor_location,
    ensure_object_mode,
    select_if_in_view_layer,
    short,
)

log = get_logger(__name__)


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
#: the suffixes of the models Blender's importers take here
MODEL_SUFFIXES = frozenset(_IMPORTERS)


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


def import_model(path: str | os.PathLike[str], *, collection: bpy.types.Collection, target_size: float = 2.0,
                 name: str | None = None) -> list[bpy.types.Object]:
    """Import a 3D model (or a zip holding one) into `collection`; return its objects. `name`:
    what its top objects are called (the photo's name), else what the importer called them.

    The importer reads only files that came with the result: before it runs, every file the
    model names (glTF uris, OBJ mtllib, MTL texture maps) is checked by core.model_refs and
    dropped, with a warning, unless it is one of the result's own files; right after it runs,
    any datablock it made from a file outside the result is removed (`_drop_outside_files`).

    The objects are found by comparing bpy.data before and after Blender's importer; the
    glTF importer's wrapper empties are removed (their children keep their transforms); the
    model is scaled uniformly so its longest side is `target_size` and stands with the centre
    of its base on the 3D cursor.
    """
    path = Path(path)
    with all_or_nothing(f"the model '{path.name}'") as created:
        model, suffix, extracted = _model_file(path)
        if extracted is not None:  # the add-on's own extracted copy: checked in place
            checked = model_refs.check_model(model, root=_extract_folder(path), files=extracted, fmt=suffix)
        else:  # a lone file in the shared result folder brought nothing else with it
            checked = model_refs.check_model(model, root=model.parent, files=[model],
                                             out_dir=_checked_folder(model), fmt=suffix)
        for warning in checked.warnings:
            created.warn(warning)
        ensure_object_mode()
        with created.diff() as new_ids:
            try:
                outcome = _IMPORTERS[suffix](checked.path)
            except RuntimeError as exc:  # the importer's own error report
                raise ImportFailed(f"Blender's importer could not read '{model.name}' ({short(exc)}): "
                                   "the file may be damaged, so generate the result again.") from exc
        # At once, before anything can pack, draw or save what the importer loaded.
        _drop_outside_files(new_ids, checked, model, created, embedded_pixels=suffix == ".fbx")
        if "FINISHED" not in outcome:
            raise ImportFailed(f"Blender's importer refused '{model.name}': the file may be damaged, "
                               "so generate the result again.")
        objects = [i for i in new_ids if isinstance(i, bpy.types.Object)]
        if not objects:
            raise ImportFailed(f"'{model.name}' holds no objects to import: generate the result again.")
        current_view_layer().update()
        world = {o.session_uid: o.matrix_world.copy() for o in objects}
        objects = _remove_wrappers(objects, world)
        for obj in objects:
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
            collection.objects.link(obj)
        leftovers = [i for i in new_ids if isinstance(i, bpy.types.Collection) and alive(i)]
        if leftovers:  # a collection the importer made for the scene: now empty
            bpy.data.batch_remove(leftovers)
        _fit_to_cursor(objects, world, target_size)
        for obj in objects:
            if obj.parent is None or obj.parent not in objects:
                obj[KIND_PROPERTY] = "MODEL"
                if name:  # the model's top objects take the photo's name ("dress", "dress.001", …)
                    obj.name = name
        select_if_in_view_layer(collection, objects)
        return objects


#: the datablocks that read a file (`filepath`), by ID type, and what a user calls each
_FILE_BACKED = {"IMAGE": "texture", "MOVIECLIP": "movie clip", "SOUND": "sound", "LIBRARY": "linked library",
                "VOLUME": "volume", "FONT": "font", "CACHEFILE": "cache file", "TEXT": "text"}


def _drop_outside_files(new_ids: list[Any], checked: Any, model: Path, created: Created, *,
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
        new_ids[:] = [i for i in new_ids if alive(i)]


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
    fit = Matrix.Translation(cursor_location().to_tuple()) @ Matrix.Scale(scale, 4) @ Matrix.Translation((-anchor).to_tuple())
    members = {o.session_uid for o in objects}
    for obj in objects:
        if obj.parent is None or obj.parent.session_uid not in members:
            obj.matrix_world = fit @ world[obj.session_uid]

