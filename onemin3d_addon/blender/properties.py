"""Main thread only: the add-on's property groups: `Scene.onemin3d` (saved) and `WindowManager.onemin3d` (transient).

The import options are declared once, in `core/options.py`; `ImportOptionsMixin` turns them into
Blender properties, shared by the scene settings, the preferences' defaults and the generate
operator, so none of them can drift from the API's and the command line's.
No secret is ever stored here: the key lives only in the add-on preferences.
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
from typing import TYPE_CHECKING, Any

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

from ..core import options as _schema

# Blender 5.0 warns about "//" paths unless a property says it takes them; 4.2 has no such flag.
_BLEND_RELATIVE: set[str] = {'PATH_SUPPORTS_BLEND_RELATIVE'} if bpy.app.version >= (5, 0, 0) else set()

#: (value, label, description) of the import modes, as Blender's EnumProperty takes them
IMPORT_MODES = tuple((c.value, c.label, c.description) for c in _schema.MODE.choices)


def _blender_property(option: _schema.Option) -> Any:
    """The bpy property declaring `option` (core.options is the one place its wording and limits live)."""
    kw: dict[str, Any] = {"name": option.label, "description": option.description, "default": option.default}
    if option.kind is str:
        return EnumProperty(items=tuple((c.value, c.label, c.description) for c in option.choices), **kw)
    if option.kind is bool:
        return BoolProperty(**kw)
    for key, value in (("min", option.min), ("max", option.max), ("soft_max", option.soft_max)):
        if value is not None:
            kw[key] = int(value) if option.kind is int else float(value)
    kw.update(option.ui)
    return (IntProperty if option.kind is int else FloatProperty)(**kw)


class ImportOptionsMixin:
    """The options of `scene_build.import_result`, as Blender properties, built from core.options."""

    # Blender reads the class annotations as property declarations; these are core.options' own.
    __annotations__ = {option.name: _blender_property(option) for option in (_schema.MODE, *_schema.OPTIONS)}

    if TYPE_CHECKING:  # what the properties read as, for mypy only (never run: Blender sees the dict above)
        import_mode: str
        resolution: int
        strength: float
        invert: bool
        smooth: float
        solid: bool
        tear: float
        size_mode: str
        height: float
        factor: float
        shader: str
        use_alpha: bool
        cutout: bool
        interpolation: str
        relative: bool
        align: str
        target_size: float
        model: str
        remove_background: bool


#: The option names, in the order they are drawn; `import_mode` is passed separately.
OPTION_NAMES: tuple[str, ...] = _schema.NAMES
RELIEF_OPTIONS = _schema.RELIEF_NAMES
PLANE_OPTIONS = _schema.PLANE_NAMES
MODEL_OPTIONS = _schema.MODEL_NAMES
GENERATION_OPTIONS = _schema.GENERATION_NAMES


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


def draw_generation_options(layout: Any, owner: Any) -> None:
    """Draw what is generated (and paid for): the model, and background removal."""
    # "Photo" heads the Remove Background box (it acts on the photo): "Generate" read twice in the
    # sidebar, beside the box and on the button below it
    col = layout.column(heading="Photo", align=True)
    for name in GENERATION_OPTIONS:
        col.prop(owner, name)


def draw_import_options(layout: Any, owner: Any, *, mode: str, generation: bool = True) -> None:
    """Draw the options that matter for `mode` (AUTO can end in any of the three imports);
    `generation`: the model and background removal first (the sidebar draws them beside Generate)."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    if generation:
        draw_generation_options(layout, owner)
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
        col.prop(owner, "cutout")
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
