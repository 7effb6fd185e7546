"""Main thread only: the View3D sidebar "1min3d" tab: source, mode, model, options, Generate with its cost and the credits left, running jobs, last error and history.

Panels only read state (Scene.onemin3d, WindowManager.onemin3d, the preferences); they never
start work or touch the network. History thumbnails come from one bpy.utils.previews
collection, created at the first thumbnail while registered and removed in unregister().
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

import bpy

from ..core.options import IMAGE_SUFFIXES as _IMAGE_SUFFIXES
from . import connection, properties
from .operators import PANEL_CONTEXT_MEMBER

_previews: Any = None
_registered = False
_no_thumbnail: set[str] = set()

_IMAGE_KINDS = frozenset({"png", "jpeg", "webp"})

STATE_LABELS = {
    "queued": ("Queued", 'SORTTIME'),
    "running": ("Running", 'PLAY'),
    "importing": ("Importing", 'IMPORT'),
    "imported": ("Imported", 'CHECKMARK'),
    "done": ("Ready", 'FILE_TICK'),
    "failed": ("Failed", 'ERROR'),
    "cancelled": ("Cancelled", 'CANCEL'),
}


def thumbnail_icon(item: Any) -> int:
    """A preview icon of the entry's photo (or image result), 0 when there is none."""
    global _previews
    if _previews is None:
        if not _registered:
            return 0
        from bpy.utils import previews  # on first use: enabling the add-on does not load it

        _previews = previews.new()
    key = item.entry_id
    if key in _previews:
        return int(_previews[key].icon_id)
    if key in _no_thumbnail:
        return 0
    candidates = [item.source_path]
    if item.result_kind in _IMAGE_KINDS:
        candidates.append(item.result_file)
    for path in candidates:
        if path and os.path.splitext(path)[1].lower() in _IMAGE_SUFFIXES and os.path.isfile(path):
            return int(_previews.load(key, path, 'IMAGE').icon_id)
    _no_thumbnail.add(key)
    return 0


#: The 3D view sidebar's default width at 1x scale (its category tabs included), for a draw without a region.
DEFAULT_REGION_WIDTH = 280
#: What a label's text does not get of its region's width at 1x scale: the category tabs, the
#: panel's and a box's margins, the icon and its gap (measured on Blender 4.3 and 5.2's sidebar).
_LABEL_CHROME = 98
#: Breaks a word that is wider than a line on its own (a long file name or URL); compiled on first
#: use (by `re`'s cache), not when the add-on is enabled.
_HARD_BREAK = r"(?<=[/\\_.\-])"


def ui_scale(context: Any) -> float:
    """The interface's scale factor (UI scale times the display's DPI); 1 without a window."""
    prefs = getattr(context, "preferences", None)
    scale = float(getattr(getattr(prefs, "system", None), "ui_scale", 0.0) or 0.0)
    if scale <= 0.0:  # no window (blender -b): the user's UI scale alone
        scale = float(getattr(getattr(prefs, "view", None), "ui_scale", 1.0) or 1.0)
    return scale


def text_width(context: Any, *, indent: float = 0.0, region_width: int = DEFAULT_REGION_WIDTH
               ) -> tuple[float, float]:
    """(pixels a label's text may take, the label font's size in pixels) in this region;
    `region_width` (at 1x scale) stands in for a region when there is none."""
    scale = ui_scale(context)
    region = getattr(context, "region", None)
    width = float(region.width) if region is not None and region.width > 1 else region_width * scale
    prefs = getattr(context, "preferences", None)
    styles = getattr(prefs, "ui_styles", None)
    points = float(styles[0].widget.points) if styles else 11.0
    return max(width - (_LABEL_CHROME + indent) * scale, 40.0 * scale), points * scale


@functools.lru_cache(maxsize=512)
def wrap_text(text: str, width: float, size: float) -> tuple[str, ...]:
    """`text` in lines no wider than `width` pixels in Blender's UI font at `size` pixels."""
    import blf

    font: Any = blf  # fake-bpy-module types blf.dimensions as returning None
    font.size(0, size)

    def fits(line: str) -> bool:
        return bool(font.dimensions(0, line)[0] <= width)

    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            if fits(word):
                continue
            # wider than a line on its own: break it after / _ . - where it can, else anywhere
            line = ""
            for piece in re.split(_HARD_BREAK, word):
                if fits(line + piece):
                    line += piece
                    continue
                if line:
                    lines.append(line)
                while not fits(piece):
                    cut = next((i for i in range(len(piece) - 1, 1, -1) if fits(piece[:i])), 1)
                    lines.append(piece[:cut])
                    piece = piece[cut:]
                line = piece
        lines.append(line)
    return tuple(lines)


def wrapped(layout: Any, context: Any, text: str, *, icon: str = 'NONE', indent: float = 0.0,
            region_width: int = DEFAULT_REGION_WIDTH) -> None:
    """Draw `text` over as many labels as the region's width needs (a label never wraps by itself,
    it cuts its middle out), the icon on the first; `indent`: extra margin at 1x scale."""
    col = layout.column(align=True)
    for i, line in enumerate(wrap_text(text, *text_width(context, indent=indent, region_width=region_width))):
        col.label(text=line, icon=icon if i == 0 else 'BLANK1')


def draw_access_status(layout: Any, context: Any) -> bool:
    """Say where the key comes from and whether anything can be sent, each with the button that
    fixes it; True when all is well."""
    source = connection.api_key_source(context)
    ok = True
    if not source:
        box = layout.box()
        box.alert = True
        wrapped(box, context, f"No API key: paste yours in the preferences, or set {connection.ENV_API_KEY}.",
                icon='ERROR')
        op = box.operator("preferences.addon_show", text="Open Add-on Preferences", icon='PREFERENCES')
        op.module = connection.ADDON_ID
        ok = False
    elif source == "environment":
        wrapped(layout, context, f"Using the API key from {connection.ENV_API_KEY}.", icon='INFO', indent=-12)
    if not connection.online_access():
        box = layout.box()
        box.alert = True
        if getattr(bpy.app, "online_access_override", False):
            # --offline-mode: the preference cannot turn it on until Blender is restarted
            wrapped(box, context, "Online access is off: Blender was started with --offline-mode.", icon='ERROR')
        else:
            wrapped(box, context, "Online access is off, so nothing can be sent.", icon='ERROR')
            # As Blender's Extensions panel does: Preferences › System, where Network is.
            op = box.operator("screen.userpref_show", text="Allow Online Access…", icon='PREFERENCES')
            op.section = 'SYSTEM'
        ok = False
    return ok


def _draw_progress(layout: Any, item: Any) -> None:
    if hasattr(layout, "progress"):  # UILayout.progress exists from Blender 4.0
        layout.progress(factor=item.progress, type='BAR', text=item.status)
    else:
        layout.label(text=f"{item.status} {int(item.progress * 100)}%")


def cost_text(settings: Any, credits_left: int) -> tuple[str, bool]:
    """What Generate will cost with `settings`' model and background removal, beside the credits
    left when they are known ("Cost: 40,000 credits · 1,234,000 left"), and whether that is more
    than is left."""
    from ..core import prices
    from ..core.options import api_model

    price = prices.cost(api_model(settings.model), bool(settings.remove_background))
    if credits_left < 0:
        return f"Cost: {price.text}", False
    short = price.credits is not None and price.credits > credits_left
    return f"Cost: {price.text} · {credits_left:,} left", short


def draw_cost(layout: Any, settings: Any, credits_left: int) -> None:
    text, short = cost_text(settings, credits_left)
    row = layout.row()
    row.alert = short  # red: not enough credits left for it
    row.label(text=text, icon='FUND')


class VIEW3D_PT_onemin3d_main(bpy.types.Panel):
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "1min3d"
    bl_label = "Image to 3D (1min.ai)"

    def draw(self, context: Any) -> None:
        layout: Any = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = properties.scene_settings(context)
        state = properties.window_state(context)
        if settings is None or state is None:
            layout.label(text="The add-on is not fully registered.", icon='ERROR')
            return

        draw_access_status(layout, context)

        col = layout.column()
        col.row().prop(settings, "source_type", expand=True)
        if settings.source_type == 'IMAGE':
            col.template_ID(settings, "image", open="image.open")
        else:
            col.prop(settings, "filepath")
        col.prop(settings, "import_mode")
        properties.draw_generation_options(layout, settings)

        row = layout.row()
        row.scale_y = 1.4
        # The operator reads the source, mode and options from this pointer; its poll() also
        # uses it to say "no image chosen" (a File › Import call opens the file browser instead).
        row.context_pointer_set(PANEL_CONTEXT_MEMBER, settings)
        row.operator("onemin3d.generate", text="Generate", icon='MESH_GRID')
        draw_cost(layout, settings, state.credits_left)

        if len(state.jobs):
            box = layout.box()
            header = box.row()
            header.label(text=f"Running ({len(state.jobs)})", icon='SORTTIME')
            if len(state.jobs) > 1:
                header.operator("onemin3d.cancel", text="Cancel All", icon='CANCEL').job_id = ""
            for item in state.jobs:
                col = box.column(align=True)
                row = col.row(align=True)
                row.label(text=item.name, icon='IMAGE_DATA')
                sub = row.row(align=True)
                sub.enabled = not item.cancelling
                sub.operator("onemin3d.cancel", text="", icon='X').job_id = item.job_id
                _draw_progress(col, item)

        if state.last_error:
            box = layout.box()
            box.alert = True
            wrapped(box, context, state.last_error, icon='ERROR')


class VIEW3D_PT_onemin3d_options(bpy.types.Panel):
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "1min3d"
    bl_label = "Options"
    bl_parent_id = "VIEW3D_PT_onemin3d_main"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context: Any) -> None:
        settings = properties.scene_settings(context)
        if settings is not None:
            layout: Any = self.layout
            properties.draw_import_options(layout, settings, mode=settings.import_mode, generation=False)


class VIEW3D_PT_onemin3d_relief(bpy.types.Panel):
    """The active relief's live depth: the same Strength slider on every Blender version."""

    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "1min3d"
    bl_label = "Active Relief"
    bl_parent_id = "VIEW3D_PT_onemin3d_main"

    @classmethod
    def poll(cls, context: Any) -> bool:
        from .scene_build import relief_modifier

        obj = getattr(context, "active_object", None)
        return obj is not None and relief_modifier(obj) is not None

    def draw(self, context: Any) -> None:
        from .scene_build import relief_strength

        layout: Any = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        slot = relief_strength(context.active_object)
        if slot is not None:
            layout.prop(slot.owner, slot.prop, text="Strength")


class ONEMIN3D_UL_history(bpy.types.UIList):
    """The journalled jobs, newest first, with a thumbnail of the photo."""

    def draw_item(self, context: Any, layout: Any, data: Any, item: Any, icon: int | None, active_data: Any,
                  active_property: str | None, index: int | None = 0, flt_flag: int | None = 0) -> None:
        thumb = thumbnail_icon(item)
        label, state_icon = STATE_LABELS.get(item.state, (item.state.capitalize(), 'QUESTION'))
        if item.other_file:
            label, state_icon = "Other file", 'FILE_BLEND'
        if self.layout_type in {'DEFAULT', 'COMPACT'}:
            row = layout.row(align=True)
            if thumb:
                row.label(text=item.name, icon_value=thumb)
            else:
                row.label(text=item.name, icon='IMAGE_DATA')
            row.label(text=label, icon=state_icon)
        else:
            layout.alignment = 'CENTER'
            if thumb:
                layout.label(text="", icon_value=thumb)
            else:
                layout.label(text="", icon=state_icon)


class VIEW3D_PT_onemin3d_history(bpy.types.Panel):
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "1min3d"
    bl_label = "History"
    bl_parent_id = "VIEW3D_PT_onemin3d_main"

    def draw(self, context: Any) -> None:
        layout: Any = self.layout
        state = properties.window_state(context)
        if state is None:
            return
        if not len(state.history):
            wrapped(layout, context, "No jobs yet: each result is kept here.", icon='INFO', indent=-12)
            layout.operator("onemin3d.open_result_folder", icon='FILE_FOLDER')
            return
        row = layout.row()
        row.template_list("ONEMIN3D_UL_history", "", state, "history", state, "history_index", rows=4)
        col = row.column(align=True)
        col.operator("onemin3d.reimport", text="", icon='IMPORT').entry_id = ""
        col.operator("onemin3d.remove_history", text="", icon='TRASH').entry_id = ""
        col.separator()
        col.operator("onemin3d.open_result_folder", text="", icon='FILE_FOLDER')

        if not 0 <= state.history_index < len(state.history):
            return
        item = state.history[state.history_index]
        box = layout.box()
        col = box.column(align=True)
        label, icon = STATE_LABELS.get(item.state, (item.state.capitalize(), 'QUESTION'))
        wrapped(col, context, f"{item.name}: {label}", icon=icon)
        if item.other_file:
            made_for = bpy.path.basename(item.blend_file) or "an unsaved file"
            wrapped(col, context, f"Made for {made_for}: Re-import brings it into this file.", icon='FILE_BLEND')
        if item.error:
            wrapped(col, context, item.error, icon='ERROR')
        if item.result_file:
            if item.result_exists:
                wrapped(col, context, f"Result: {bpy.path.basename(item.result_file)} ({item.result_kind})",
                        icon='FILE')
            else:
                wrapped(col, context, "The result file is missing from disk.", icon='ERROR')
        if item.credits_left >= 0:
            col.label(text=f"Credits left then: {item.credits_left:,}", icon='BLANK1')


classes = (
    VIEW3D_PT_onemin3d_main,
    VIEW3D_PT_onemin3d_options,
    VIEW3D_PT_onemin3d_relief,
    ONEMIN3D_UL_history,
    VIEW3D_PT_onemin3d_history,
)



def register() -> None:
    global _registered
    for cls in classes:
        bpy.utils.register_class(cls)
    _registered = True
    _no_thumbnail.clear()


def unregister() -> None:
    global _previews, _registered
    _registered = False
    if _previews is not None:
        from bpy.utils import previews

        previews.remove(_previews)
        _previews = None
    _no_thumbnail.clear()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
