"""Main thread only: "Export for Web" (.glb) and "Export for AR" (.usdz): two operators with a file browser, their File › Export entries and the sidebar's Export panel.

They export the selected objects (else the active one) through `blender/export_web.py`, which
is imported when an export runs, not when the add-on is enabled.
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
import re
from pathlib import Path
from typing import Any

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from ..core.errors import NO_USD, Onemin3DError, get_logger, user_message

log = get_logger(__name__)

GENERIC_ERROR = "Unexpected internal error: see the system console for the details, and report it."


_usd_exporter: list[bool] = []  # found or not, once per session


def has_usd_exporter() -> bool:
    """Whether this Blender has its USD exporter (builds without USD have no `wm.usd_export`)."""
    if not _usd_exporter:
        exporter: Any = bpy.ops.wm.usd_export
        try:
            exporter.get_rna_type()
            _usd_exporter.append(True)
        except KeyError:
            _usd_exporter.append(False)
    return _usd_exporter[0]


def export_targets(context: Any) -> list[Any]:
    """What an export takes: the selected objects, else the active one."""
    selected = [o for o in getattr(context, "selected_objects", None) or [] if o is not None]
    if selected:
        return selected
    active = getattr(context, "active_object", None)
    return [active] if active is not None else []


def _default_name(context: Any) -> str:
    active = getattr(context, "active_object", None)
    stem = active.name if active is not None else (Path(bpy.data.filepath).stem or "untitled")
    return re.sub(r'[\\/:*?"<>|]+', "_", stem)


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{max(1, round(size / 1e3))} kB"


class _ExportBase(bpy.types.Operator, ExportHelper):  # type: ignore[misc, unused-ignore]  # 4.2's stubs: check() differs
    fmt = ""
    filename_ext = ""
    file_suffix = ""

    max_triangles: IntProperty(  # type: ignore[valid-type]
        name="Max Triangles", default=50_000, min=2, max=10_000_000,
        description="At most this many triangles per relief (its back and walls included)")
    max_error: FloatProperty(  # type: ignore[valid-type]
        name="Max Error", default=0.0, min=0.0, max=0.5, subtype='FACTOR', precision=3,
        description="Largest vertical error of a simplified relief, as a fraction of its depth "
                    "(0: the add-on's default, 1%)")
    texture_size: IntProperty(  # type: ignore[valid-type]
        name="Texture Size", default=2048, min=64, max=16384, subtype='PIXEL',
        description="Longest side of an exported texture; larger ones are exported from downsized copies")

    @classmethod
    def poll(cls, context: Any) -> bool:
        if not export_targets(context):
            cls.poll_message_set("Select the result to export (a relief, a plane or a model)")
            return False
        return True

    def invoke(self, context: Any, event: Any) -> Any:
        if not getattr(self, "filepath", ""):
            folder = Path(bpy.path.abspath("//")) if bpy.data.filepath else Path.home()
            self.filepath = str(folder / f"{_default_name(context)}{self.file_suffix}")  # ExportHelper's
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context: Any) -> Any:
        from . import export_web

        path = Path(bpy.path.abspath(str(getattr(self, "filepath", ""))))
        if not path.name.endswith(self.filename_ext):
            path = path.with_name(path.name + self.filename_ext)
        try:
            summary = export_web.export_file(export_targets(context), path, self.fmt,
                                             max_triangles=self.max_triangles,
                                             max_error=self.max_error or None, texture_size=self.texture_size)
        except Onemin3DError as err:
            self.report({'ERROR'}, user_message(err))
            return {'CANCELLED'}
        except Exception:
            log.exception("the %s export to %s failed", self.fmt, path)
            self.report({'ERROR'}, GENERIC_ERROR)
            return {'CANCELLED'}
        self.report({'INFO'}, f"Wrote {summary.path.name}: {summary.triangles:,} triangles, {_size(summary.path)}.")
        return {'FINISHED'}


class ONEMIN3D_OT_export_web(_ExportBase):
    """Export the selected result as a small GLB for web pages (<model-viewer>, three.js): reliefs simplified, textures at most 2048 px"""

    bl_idname = "onemin3d.export_web"
    bl_label = "Export for Web"
    bl_options = {'REGISTER'}

    fmt = "web"
    filename_ext = ".glb"
    file_suffix = ".web.glb"
    filter_glob: StringProperty(default="*.glb", options={'HIDDEN'})  # type: ignore[valid-type]


class ONEMIN3D_OT_export_usdz(_ExportBase):
    """Export the selected result as a USDZ for AR Quick Look on iPhone and iPad: reliefs simplified, textures packed"""

    bl_idname = "onemin3d.export_usdz"
    bl_label = "Export for AR"
    bl_options = {'REGISTER'}

    fmt = "usdz"
    filename_ext = ".usdz"
    file_suffix = ".usdz"
    filter_glob: StringProperty(default="*.usdz", options={'HIDDEN'})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: Any) -> bool:
        # Greyed out, with the reason as its tooltip, in a Blender built without USD (Debian's are),
        # rather than refusing after the file browser.
        if not has_usd_exporter():
            cls.poll_message_set(NO_USD)
            return False
        return super().poll(context)


class VIEW3D_PT_onemin3d_export(bpy.types.Panel):
    """Export the selected result for the web or for AR."""

    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "1min3d"
    bl_label = "Export"
    bl_parent_id = "VIEW3D_PT_onemin3d_main"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context: Any) -> None:
        layout: Any = self.layout
        col = layout.column(align=True)
        col.operator(ONEMIN3D_OT_export_web.bl_idname, text="Export for Web (.glb)", icon='WORLD')
        col.operator(ONEMIN3D_OT_export_usdz.bl_idname, text="Export for AR (.usdz)", icon='EXPORT')


def menu_file_export(self: Any, context: Any) -> None:
    self.layout.operator(ONEMIN3D_OT_export_web.bl_idname, text="Web GLB, simplified (1min3d) (.glb)")
    self.layout.operator(ONEMIN3D_OT_export_usdz.bl_idname, text="AR Quick Look (1min3d) (.usdz)")


classes = (ONEMIN3D_OT_export_web, ONEMIN3D_OT_export_usdz, VIEW3D_PT_onemin3d_export)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_export.append(menu_file_export)  # type: ignore[arg-type, unused-ignore]  # stub: Callable[[Context], None]


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(menu_file_export)  # type: ignore[arg-type, unused-ignore]  # stub: Callable[[Context], None]
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
