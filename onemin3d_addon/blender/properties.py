"""Main thread only: the add-on's property groups: `Scene.onemin3d` (saved) and `WindowManager.onemin3d` (transient).

The import options are declared once, in `ImportOptionsMixin`, and shared by the scene
settings, the preferences' defaults and the generate operator, so the three never drift apart.
No secret is ever stored here: the key lives only in the add-on preferences.
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

# Blender 5.0 warns about "//" paths unless a property says it takes them; 4.2 has no such flag.
_BLEND_RELATIVE: set[str] = {'PATH_SUPPORTS_BLEND_RELATIVE'} if bpy.app.version >= (5, 0, 0) else set()

IMPORT_MODES = (
    ('AUTO', "Auto", "Pick from the result: a 3D model is imported as is, a depth map becomes a relief of "
                     "the photo, a colour image becomes a plane"),
    ('PLANE', "Plane", "Show the result image on a flat, textured plane"),
    ('DISPLACEMENT', "Relief", "Raise the photo into a relief mesh, using the result as a depth map"),
)


class ImportOptionsMixin:
    """The options of `scene_build.import_result`, as Blender properties."""

    import_mode: EnumProperty(  # type: ignore[valid-type]
        name="Mode", description="How the result is brought into the scene", items=IMPORT_MODES, default='AUTO',
    )
    # relief
    resolution: IntProperty(  # type: ignore[valid-type]
        name="Resolution", description="Vertices along the long side of the relief mesh",
        default=512, min=16, soft_max=2048, max=4096,
    )
    strength: FloatProperty(  # type: ignore[valid-type]
        name="Strength", description="Relief depth, as a fraction of the plane's width "
                                     "(it can be changed on the object afterwards)",
        default=0.15, min=0.0, soft_max=1.0, max=10.0, step=1, precision=3,
    )
    invert: BoolProperty(  # type: ignore[valid-type]
        name="Invert", description="Raise dark areas instead of bright ones", default=False,
    )
    smooth: FloatProperty(  # type: ignore[valid-type]
        name="Smooth", description="Blur the depth map by this many pixels first, to remove JPEG noise",
        default=0.0, min=0.0, soft_max=10.0, max=100.0, subtype='PIXEL',
    )
    solid: BoolProperty(  # type: ignore[valid-type]
        name="Solid", description="Close the relief with a flat back and side walls (watertight, printable)",
        default=False,
    )
    # plane
    size_mode: EnumProperty(  # type: ignore[valid-type]
        name="Size Mode", description="How the plane is sized",
        items=(
            ('ABSOLUTE', "Absolute", "Use the given height"),
            ('DPBU', "Pixels per Unit", "So many pixels per Blender unit"),
        ),
        default='ABSOLUTE',
    )
    height: FloatProperty(  # type: ignore[valid-type]
        name="Height", description="Height of the plane (or relief)", default=1.0, min=0.001, soft_max=100.0,
        subtype='DISTANCE', unit='LENGTH',
    )
    factor: FloatProperty(  # type: ignore[valid-type]
        name="Pixels per Unit", description="How many pixels make one Blender unit", default=600.0,
        min=1.0, soft_max=10000.0,
    )
    shader: EnumProperty(  # type: ignore[valid-type]
        name="Shader", description="The material's shader",
        items=(
            ('PRINCIPLED', "Principled", "Principled BSDF"),
            ('EMISSION', "Emission", "Emits the image's colours"),
            ('SHADELESS', "Shadeless", "Shows the image's colours unaffected by lighting"),
        ),
        default='PRINCIPLED',
    )
    use_alpha: BoolProperty(  # type: ignore[valid-type]
        name="Alpha", description="Use the image's alpha channel for transparency", default=True,
    )
    interpolation: EnumProperty(  # type: ignore[valid-type]
        name="Interpolation", description="Texture interpolation",
        items=(
            ('Linear', "Linear", "Linear interpolation"),
            ('Closest', "Closest", "No interpolation (sample the closest texel)"),
            ('Cubic', "Cubic", "Cubic interpolation"),
            ('Smart', "Smart", "Bicubic when magnifying, else mipmaps"),
        ),
        default='Linear',
    )
    relative: BoolProperty(  # type: ignore[valid-type]
        name="Relative Paths", description="Store image paths relative to the .blend file (when it is saved)",
        default=True,
    )
    align: EnumProperty(  # type: ignore[valid-type]
        name="Align", description="How the plane or relief is oriented",
        items=(
            ('Z_UP', "Z Up", "Lying flat, facing up"),
            ('CAMERA', "Face Camera", "Facing the active camera"),
            ('VIEW', "Face View", "Facing the 3D view"),
        ),
        default='Z_UP',
    )
    # model
    target_size: FloatProperty(  # type: ignore[valid-type]
        name="Size", description="A 3D model is scaled so that its longest side has this length",
        default=2.0, min=0.001, soft_max=100.0, subtype='DISTANCE', unit='LENGTH',
    )


#: The option names, in the order they are drawn; `import_mode` is passed separately.
OPTION_NAMES: tuple[str, ...] = (
    "resolution", "strength", "invert", "smooth", "solid",
    "size_mode", "height", "factor", "shader", "use_alpha", "interpolation", "relative", "align",
    "target_size",
)
RELIEF_OPTIONS = ("resolution", "strength", "invert", "smooth", "solid")
PLANE_OPTIONS = ("size_mode", "height", "factor", "shader", "use_alpha", "interpolation", "relative", "align")
MODEL_OPTIONS = ("target_size",)


def options_of(owner: Any) -> dict[str, Any]:
    """The import options held by `owner` (any holder of ImportOptionsMixin) as plain values."""
    return {name: getattr(owner, name) for name in OPTION_NAMES}


def copy_options(src: Any, dst: Any, *, only_unset: bool = False) -> None:
    """Copy mode and options from one holder to another; with `only_unset`, keep what an
    operator caller set explicitly."""
    for name in ("import_mode", *OPTION_NAMES):
        if only_unset and dst.properties.is_property_set(name):
            continue
        setattr(dst, name, getattr(src, name))


def draw_import_options(layout: Any, owner: Any, *, mode: str) -> None:
    """Draw the options that matter for `mode` (AUTO can end in any of the three imports)."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    if mode in {'AUTO', 'DISPLACEMENT'}:
        col = layout.column(heading="Relief", align=True)
        for name in RELIEF_OPTIONS:
            col.prop(owner, name)
    col = layout.column(heading="Plane" if mode == 'PLANE' else "Size", align=True)
    col.prop(owner, "size_mode")
    col.prop(owner, "height" if owner.size_mode == 'ABSOLUTE' else "factor")
    col.prop(owner, "align")
    if mode in {'AUTO', 'PLANE', 'DISPLACEMENT'}:
        col = layout.column(heading="Material", align=True)
        col.prop(owner, "shader")
        col.prop(owner, "use_alpha")
        col.prop(owner, "interpolation")
        col.prop(owner, "relative")
    if mode == 'AUTO':
        layout.column(heading="3D Model").prop(owner, "target_size")


class OneMin3DImportOptions(ImportOptionsMixin, bpy.types.PropertyGroup):
    """Import mode and options (the preferences' defaults)."""


class OneMin3DSceneSettings(ImportOptionsMixin, bpy.types.PropertyGroup):
    """Per-scene settings of the sidebar panel; saved with the .blend."""

    source_type: EnumProperty(  # type: ignore[valid-type]
        name="Source", description="Where the photo comes from",
        items=(
            ('IMAGE', "Image", "An image already in this .blend file"),
            ('FILE', "File", "An image file on disk"),
        ),
        default='IMAGE',
    )
    image: PointerProperty(  # type: ignore[valid-type]
        name="Image", description="The photo to turn into 3D", type=bpy.types.Image,
    )
    filepath: StringProperty(  # type: ignore[valid-type]
        name="File", description="The photo to turn into 3D", subtype='FILE_PATH', default="",
        options=_BLEND_RELATIVE,
    )


class OneMin3DJobItem(bpy.types.PropertyGroup):
    """A running job, as the panel shows it (written by runtime.pump on change only)."""

    job_id: StringProperty()  # type: ignore[valid-type]
    state: StringProperty()  # type: ignore[valid-type]
    stage: StringProperty()  # type: ignore[valid-type]
    status: StringProperty()  # type: ignore[valid-type]
    progress: FloatProperty(min=0.0, max=1.0, subtype='FACTOR')  # type: ignore[valid-type]
    cancelling: BoolProperty()  # type: ignore[valid-type]


class OneMin3DHistoryItem(bpy.types.PropertyGroup):
    """One journalled job, as the history list shows it (the JSON on disk is the truth)."""

    entry_id: StringProperty()  # type: ignore[valid-type]
    state: StringProperty()  # type: ignore[valid-type]
    stage: StringProperty()  # type: ignore[valid-type]
    source_path: StringProperty()  # type: ignore[valid-type]
    result_file: StringProperty()  # type: ignore[valid-type]
    result_kind: StringProperty()  # type: ignore[valid-type]
    blend_file: StringProperty()  # type: ignore[valid-type]
    import_mode: StringProperty()  # type: ignore[valid-type]
    error: StringProperty()  # type: ignore[valid-type]
    created: FloatProperty()  # type: ignore[valid-type]
    credits_left: IntProperty(default=-1)  # type: ignore[valid-type]
    other_file: BoolProperty()  # type: ignore[valid-type]
    result_exists: BoolProperty()  # type: ignore[valid-type]


class OneMin3DWindowState(bpy.types.PropertyGroup):
    """Transient state: running jobs, the history list, the last error, credits, key check."""

    jobs: CollectionProperty(type=OneMin3DJobItem)  # type: ignore[valid-type]
    history: CollectionProperty(type=OneMin3DHistoryItem)  # type: ignore[valid-type]
    history_index: IntProperty(name="History", default=0)  # type: ignore[valid-type]
    last_error: StringProperty(name="Last Error")  # type: ignore[valid-type]
    last_error_job: StringProperty()  # type: ignore[valid-type]
    credits_left: IntProperty(name="Credits Left", default=-1)  # type: ignore[valid-type]
    key_status: EnumProperty(  # type: ignore[valid-type]
        items=(
            ('UNKNOWN', "Unknown", ""),
            ('CHECKING', "Checking", ""),
            ('VALID', "Valid", ""),
            ('INVALID', "Invalid", ""),
            ('ERROR', "Error", ""),
        ),
        default='UNKNOWN',
    )
    key_message: StringProperty()  # type: ignore[valid-type]


classes = (
    OneMin3DImportOptions,
    OneMin3DSceneSettings,
    OneMin3DJobItem,
    OneMin3DHistoryItem,
    OneMin3DWindowState,
)



def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    # One pointer per ID type (the stubs know neither attribute, nor that PointerProperty returns).
    bpy.types.Scene.onemin3d = PointerProperty(  # type: ignore[attr-defined, func-returns-value, unused-ignore]
        type=OneMin3DSceneSettings)
    bpy.types.WindowManager.onemin3d = PointerProperty(  # type: ignore[attr-defined, func-returns-value, unused-ignore]
        type=OneMin3DWindowState)


def unregister() -> None:
    del bpy.types.WindowManager.onemin3d  # type: ignore[attr-defined]
    del bpy.types.Scene.onemin3d  # type: ignore[attr-defined]
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)


def window_state(context: Any = None) -> OneMin3DWindowState | None:
    """`WindowManager.onemin3d`, or None while the add-on is not registered."""
    wm = getattr(context or bpy.context, "window_manager", None)
    return getattr(wm, "onemin3d", None)


def scene_settings(context: Any = None) -> OneMin3DSceneSettings | None:
    scene = getattr(context or bpy.context, "scene", None)
    return getattr(scene, "onemin3d", None)
