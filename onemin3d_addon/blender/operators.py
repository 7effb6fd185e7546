"""Main thread only: the add-on's operators (generate, cancel, re-import, remove from history, check key) and menu entries.

Operators copy what a job needs into frozen settings and hand it to the runtime; they never
wait on the network in the UI. Under `blender -b` (and the bpy wheel) generate runs the same
pipeline and returns after the import, so scripts can call it like any importer.
Our errors are reported with `user_message()`; anything unexpected is logged with its
traceback and reported generically. The last error is also kept for the panel.
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, StringProperty

from ..core.errors import ImageError, Onemin3DError, get_logger, user_message
from ..core.options import IMAGE_SUFFIXES
from . import connection, lifecycle, properties  # not the runtime: it is imported on first use (lifecycle)

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems

    from .runtime import Job
else:
    OperatorReturnItems = str
#: What execute() and invoke() return.
Status = set[OperatorReturnItems]

log = get_logger(__name__)

GENERIC_ERROR = "Unexpected internal error: see the system console for the details, and report it."

#: Image files the file browser shows (what Blender reads; the pipeline converts the rest).
IMAGE_EXTENSIONS = IMAGE_SUFFIXES  # the one list, in core.images

#: Context member the sidebar panel sets on its Generate button (layout.context_pointer_set):
#: the scene settings to take the source, mode and options from.
PANEL_CONTEXT_MEMBER = "onemin3d_settings"


def set_last_error(context: Any, message: str) -> None:
    state = properties.window_state(context)
    if state is not None:
        state.last_error = message
    rt = lifecycle.peek_runtime()
    if rt is not None:
        rt.last_error = message


def _report_error(op: Any, context: Any, err: Onemin3DError | None) -> Status:
    """Report our error (or, with None, an unexpected one the caller has logged) and cancel."""
    message = user_message(err) if err is not None else GENERIC_ERROR
    op.report({'ERROR'}, message)
    set_last_error(context, message)
    return {'CANCELLED'}


def disabled_reason(context: Any) -> str | None:
    """Why nothing can be sent right now (no key, online access off), or None."""
    problem = connection.sendable_problem(context=context)
    return str(problem) if problem is not None else None


def settings_source(settings: Any) -> Any:
    """The image datablock or file path chosen in the scene settings, or None."""
    if settings.source_type == 'IMAGE':
        return settings.image
    path = settings.filepath.strip()
    return bpy.path.abspath(path) if path else None


def source_to_file(image: Any, folder: Path) -> Path:
    """A file on disk holding `image` (an Image datablock): its own file when that is saved and
    unchanged, else a PNG written into `folder/sources` (packed, generated, painted images)."""
    if image.source in {'FILE', 'SEQUENCE'} and not image.packed_file and not image.is_dirty:
        path = Path(bpy.path.abspath(image.filepath, library=image.library))
        if image.filepath and path.is_file():
            return path
    folder = folder / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    stem = bpy.path.clean_name(Path(image.name).stem) or "image"
    if image.packed_file and not image.is_dirty:
        # The packed bytes are the original file: keep them as they are, no re-encode.
        import tempfile  # on first use: it loads shutil, bz2 and lzma, too much for enabling the add-on

        suffix = Path(image.filepath).suffix.lower() or ".png"
        fd, name = tempfile.mkstemp(prefix=f"{stem}-", suffix=suffix, dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(image.packed_file.data)
        return Path(name)
    return _write_pixels_png(image, folder, stem)


def _write_pixels_png(image: Any, folder: Path, stem: str) -> Path:
    """Write the pixels Blender holds for `image` as an 8-bit PNG, without touching the
    datablock (Image.save would repoint it at the new file)."""
    import tempfile

    import numpy as np
    from PIL import Image as PILImage

    width, height = image.size[:]
    if not width or not height or len(image.pixels) == 0:
        raise ImageError(f"The image '{image.name}' has no pixels Blender can read: save it to a file first.")
    channels = image.channels
    px = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(height, width, channels)[::-1]  # Blender's rows start at the bottom
    if image.is_float and image.colorspace_settings.name not in {'Non-Color', 'Raw'}:
        # Float buffers are scene-linear: encode them as sRGB like any photo.
        rgb = np.clip(px[..., :3], 0.0, 1.0)
        px[..., :3] = np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    data = (np.clip(px, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if channels == 1:
        pil = PILImage.fromarray(data[..., 0], "L")
    elif channels == 3:
        pil = PILImage.fromarray(data, "RGB")
    else:
        pil = PILImage.fromarray(data[..., :4], "RGBA")
    fd, name = tempfile.mkstemp(prefix=f"{stem}-", suffix=".png", dir=folder)
    os.close(fd)
    pil.save(name, "PNG")
    return Path(name)


class ONEMIN3D_OT_generate(properties.ImportOptionsMixin, bpy.types.Operator):
    """Send a photo to 1min.ai and bring the 3D result into the scene (a relief, a textured plane or a 3D model). The work runs in the background; the result is kept in the history"""

    bl_idname = "onemin3d.generate"
    bl_label = "Image to 3D (1min.ai)"
    # No UNDO here: the import happens later, in its own undo step, and a redo panel that
    # re-ran this operator would pay for a new generation.
    bl_options = {'REGISTER'}

    filepath: StringProperty(  # type: ignore[valid-type]
        name="File Path", description="The photo to send", subtype='FILE_PATH', options={'SKIP_SAVE'},
    )
    files: CollectionProperty(  # type: ignore[valid-type]
        type=bpy.types.OperatorFileListElement, options={'HIDDEN', 'SKIP_SAVE'},
    )
    directory: StringProperty(subtype='DIR_PATH', options={'HIDDEN', 'SKIP_SAVE'})  # type: ignore[valid-type]
    filter_glob: StringProperty(  # type: ignore[valid-type]
        default=";".join(f"*{ext}" for ext in IMAGE_EXTENSIONS), options={'HIDDEN'},
    )
    filter_image: BoolProperty(default=True, options={'HIDDEN', 'SKIP_SAVE'})  # type: ignore[valid-type]
    filter_folder: BoolProperty(default=True, options={'HIDDEN', 'SKIP_SAVE'})  # type: ignore[valid-type]
    image_name: StringProperty(  # type: ignore[valid-type]
        name="Image", description="Name of an image in this .blend file to send", options={'HIDDEN', 'SKIP_SAVE'},
    )
    wait: EnumProperty(  # type: ignore[valid-type]
        name="Wait",
        description="Whether to return only after the import",
        items=(
            ('AUTO', "Auto", "Wait in background mode (blender -b), return at once in the UI"),
            ('WAIT', "Wait", "Return after the import"),
            ('RETURN', "Return", "Return at once; the result arrives later"),
        ),
        default='AUTO', options={'HIDDEN', 'SKIP_SAVE'},
    )

    @classmethod
    def poll(cls, context: Any) -> bool:
        reason = disabled_reason(context)
        if reason is None:
            settings = getattr(context, PANEL_CONTEXT_MEMBER, None)
            if settings is not None and not settings_source(settings):
                reason = ("No image chosen: pick an image (or an image file) above."
                          if settings.source_type == 'IMAGE' else "No image file chosen: pick one above.")
        if reason is not None:
            cls.poll_message_set(reason)
            return False
        return True

    def invoke(self, context: Any, event: Any) -> Status:
        self._apply_default_options(context)
        if (getattr(context, PANEL_CONTEXT_MEMBER, None) is not None or self.image_name
                or self.filepath or self.files or bpy.app.background):
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def draw(self, context: Any) -> None:
        layout: Any = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(self, "import_mode")
        properties.draw_import_options(layout, self, mode=self.import_mode)

    def _apply_default_options(self, context: Any) -> None:
        prefs = connection.get_prefs(context)
        if prefs is not None:
            properties.copy_options(prefs.defaults, self, only_unset=True)

    def _sources(self, context: Any, folder: Path) -> list[tuple[Path, str]]:
        """(file to send, display name) for each job: files + directory, filepath, a named
        image, then the panel's (or scene's) settings."""
        if self.files and self.directory and any(f.name for f in self.files):
            return [(Path(self.directory) / f.name, Path(f.name).stem) for f in self.files if f.name]
        if self.filepath:
            path = Path(bpy.path.abspath(self.filepath))
            return [(path, path.stem)]
        if self.image_name:
            image = bpy.data.images.get(self.image_name)
            if image is None:
                raise ImageError(f"There is no image named '{self.image_name}' in this file.")
            return [(source_to_file(image, folder), Path(image.name).stem)]
        settings = getattr(context, PANEL_CONTEXT_MEMBER, None) or properties.scene_settings(context)
        source = settings_source(settings) if settings is not None else None
        if source is None:
            raise ImageError("No image chosen: pick an image in View3D › Sidebar › 1min3d, or pass filepath=….")
        if isinstance(source, str):
            path = Path(source)
            return [(path, path.stem)]
        return [(source_to_file(source, folder), Path(source.name).stem)]

    def execute(self, context: Any) -> Status:
        try:
            connection.require_sendable(context=context)
            panel_settings = getattr(context, PANEL_CONTEXT_MEMBER, None)
            if panel_settings is not None:
                mode, options = panel_settings.import_mode, properties.options_of(panel_settings)
            else:
                self._apply_default_options(context)
                mode, options = self.import_mode, properties.options_of(self)
            conn = connection.connection_settings(context)
            rt = lifecycle.get_runtime(context)
            sources = self._sources(context, conn.result_folder)
            for path, _name in sources:
                if not path.is_file():
                    raise ImageError(f"The image file {path} does not exist.")
            jobs = [rt.submit(path, conn=conn, mode=mode, options=options, name=name,
                              scene_name=context.scene.name if context.scene else None)
                    for path, name in sources]
            set_last_error(context, "")
            wait = self.wait == 'WAIT' or (self.wait == 'AUTO' and bpy.app.background)
            if not wait:
                what = f"'{jobs[0].name}'" if len(jobs) == 1 else f"{len(jobs)} images"
                self.report({'INFO'}, f"Sent {what} to 1min.ai: follow it in View3D › Sidebar › 1min3d.")
                return {'FINISHED'}
            rt.wait(jobs)
        except Onemin3DError as err:
            return _report_error(self, context, err)
        except OSError as exc:
            return _report_error(self, context, Onemin3DError(
                f"Could not prepare the image ({exc.strerror or exc}): check the file and the result folder."))
        except Exception:
            log.exception("onemin3d.generate failed unexpectedly")
            return _report_error(self, context, None)
        return self._report_waited(context, jobs)

    def _report_waited(self, context: Any, jobs: "list[Job]") -> Status:
        imported = [j for j in jobs if j.state == "imported"]
        failed = [j for j in jobs if j.state == "failed"]
        for job in failed:
            self.report({'ERROR'}, f"{job.name}: {job.error_message}")
        if failed:
            set_last_error(context, f"{failed[-1].name}: {failed[-1].error_message}")
        for job in jobs:
            for warning in job.warnings:
                self.report({'WARNING'}, f"{job.name}: {warning}")
            if job.state in {"done", "cancelled"}:
                self.report({'WARNING'}, f"{job.name}: {job.state}, not imported; it is in the history.")
        if imported:
            count = sum(len(j.object_names) for j in imported)
            self.report({'INFO'}, f"Imported {len(imported)} result(s), {count} object(s).")
            return {'FINISHED'}
        return {'CANCELLED'}


class ONEMIN3D_OT_cancel(bpy.types.Operator):
    """Stop a running 1min.ai job (or all of them). A generation already started on 1min.ai may still cost credits"""

    bl_idname = "onemin3d.cancel"
    bl_label = "Cancel 1min.ai Job"
    bl_options = {'REGISTER'}

    job_id: StringProperty(  # type: ignore[valid-type]
        name="Job", description="The job to cancel; empty cancels every job", options={'SKIP_SAVE'},
    )

    @classmethod
    def poll(cls, context: Any) -> bool:
        rt = lifecycle.peek_runtime()
        if rt is None or not any(not j.done for j in rt.jobs.values()):
            cls.poll_message_set("No 1min.ai job is running.")
            return False
        return True

    def execute(self, context: Any) -> Status:
        try:
            count = lifecycle.get_runtime(context).cancel(self.job_id or None)
        except Onemin3DError as err:
            return _report_error(self, context, err)
        except Exception:
            log.exception("%s failed unexpectedly", self.bl_idname)
            return _report_error(self, context, None)
        if not count:
            self.report({'WARNING'}, "That job has already finished.")
            return {'CANCELLED'}
        self.report({'INFO'}, f"Cancelling {count} job(s).")
        return {'FINISHED'}


def _entry_id(op: Any, context: Any) -> str:
    if op.entry_id:
        return str(op.entry_id)
    state = properties.window_state(context)
    if state is not None and 0 <= state.history_index < len(state.history):
        return str(state.history[state.history_index].entry_id)
    raise Onemin3DError("No history entry selected: pick one in the list.")


class ONEMIN3D_OT_reimport(bpy.types.Operator):
    """Import a result from the history again, from the file on disk: no credits. A paid result whose file is gone or damaged is downloaded again first, free"""

    bl_idname = "onemin3d.reimport"
    bl_label = "Re-import 1min.ai Result"
    bl_options = {'REGISTER', 'UNDO'}

    entry_id: StringProperty(  # type: ignore[valid-type]
        name="Entry", description="The history entry; empty: the one selected in the list", options={'SKIP_SAVE'},
    )
    import_mode: EnumProperty(  # type: ignore[valid-type]
        name="Mode", description="How to import it",
        items=(('SAME', "As Before", "The mode the job was started with"), *properties.IMPORT_MODES),
        default='SAME',
    )

    @classmethod
    def poll(cls, context: Any) -> bool:
        state = properties.window_state(context)
        if state is None or not len(state.history):
            cls.poll_message_set("The history is empty.")
            return False
        return True

    def execute(self, context: Any) -> Status:
        try:
            entry_id = _entry_id(self, context)
            mode = None if self.import_mode == 'SAME' else self.import_mode
            rt = lifecycle.get_runtime(context)
            objects = rt.reimport(entry_id, mode=mode, scene_name=context.scene.name if context.scene else None)
        except Onemin3DError as err:
            return _report_error(self, context, err)
        except Exception:
            log.exception("%s failed unexpectedly", self.bl_idname)
            return _report_error(self, context, None)
        job = rt.jobs.get(entry_id)
        if not objects and job is not None and not job.done:
            self.report({'INFO'}, f"Downloading the result of '{job.name}' again from 1min.ai (free): it is "
                                  "imported when it arrives.")
            return {'FINISHED'}
        self.report({'INFO'}, f"Re-imported {len(objects)} object(s).")
        return {'FINISHED'}


class ONEMIN3D_OT_remove_history(bpy.types.Operator):
    """Remove a job from the 1min.ai history. Its result files are kept unless you choose to delete them"""

    bl_idname = "onemin3d.remove_history"
    bl_label = "Remove from 1min.ai History"
    bl_options = {'REGISTER'}

    entry_id: StringProperty(  # type: ignore[valid-type]
        name="Entry", description="The history entry; empty: the one selected in the list", options={'SKIP_SAVE'},
    )
    delete_files: BoolProperty(  # type: ignore[valid-type]
        name="Delete Result Files",
        description="Also delete the downloaded result from disk (it was paid for: it cannot be re-imported after)",
        default=False, options={'SKIP_SAVE'},
    )

    @classmethod
    def poll(cls, context: Any) -> bool:
        return ONEMIN3D_OT_reimport.poll(context)

    def invoke(self, context: Any, event: Any) -> Status:
        return context.window_manager.invoke_props_dialog(self)  # type: ignore[no-any-return]

    def draw(self, context: Any) -> None:
        layout: Any = self.layout
        layout.prop(self, "delete_files")

    def execute(self, context: Any) -> Status:
        try:
            entry_id = _entry_id(self, context)
            lifecycle.get_runtime(context).remove_entry(entry_id, delete_files=self.delete_files)
        except Onemin3DError as err:
            return _report_error(self, context, err)
        except Exception:
            log.exception("%s failed unexpectedly", self.bl_idname)
            return _report_error(self, context, None)
        return {'FINISHED'}


class ONEMIN3D_OT_check_key(bpy.types.Operator):
    """Ask 1min.ai whether the API key is valid. It costs no credits"""

    bl_idname = "onemin3d.check_key"
    bl_label = "Check 1min.ai API Key"
    bl_options = {'REGISTER'}

    @classmethod
    def poll(cls, context: Any) -> bool:
        reason = disabled_reason(context)
        if reason is not None:
            cls.poll_message_set(reason)
            return False
        return True

    def execute(self, context: Any) -> Status:
        try:
            connection.require_sendable(context=context)
            conn = connection.connection_settings(context)
            status, message = lifecycle.get_runtime(context).check_key(conn, wait=bpy.app.background)
        except Onemin3DError as err:
            return _report_error(self, context, err)
        except Exception:
            log.exception("%s failed unexpectedly", self.bl_idname)
            return _report_error(self, context, None)
        if status == 'VALID':
            self.report({'INFO'}, message)
        elif status == 'CHECKING':
            self.report({'INFO'}, "Checking the key with 1min.ai…")
        else:
            self.report({'ERROR'}, message)
            return {'CANCELLED'}
        return {'FINISHED'}


class ONEMIN3D_OT_open_result_folder(bpy.types.Operator):
    """Open the folder where the results and the job history are kept"""

    bl_idname = "onemin3d.open_result_folder"
    bl_label = "Open 1min.ai Result Folder"

    def execute(self, context: Any) -> Status:
        folder = connection.result_folder(connection.get_prefs(context))
        bpy.ops.wm.path_open(filepath=str(folder))
        return {'FINISHED'}


# --- menu entries ------------------------------------------------------------------------------

def menu_file_import(self: Any, context: Any) -> None:
    self.layout.operator(ONEMIN3D_OT_generate.bl_idname, text="Image to 3D (1min.ai)", icon='IMAGE_DATA')


def menu_image_editor(self: Any, context: Any) -> None:
    image = getattr(context.space_data, "image", None)
    layout = self.layout
    layout.separator()
    row = layout.row()
    row.enabled = image is not None
    op = row.operator(ONEMIN3D_OT_generate.bl_idname, text="Image to 3D (1min.ai)", icon='MESH_GRID')
    if image is not None:
        op.image_name = image.name


classes = (
    ONEMIN3D_OT_generate,
    ONEMIN3D_OT_cancel,
    ONEMIN3D_OT_reimport,
    ONEMIN3D_OT_remove_history,
    ONEMIN3D_OT_check_key,
    ONEMIN3D_OT_open_result_folder,
)



def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_file_import)  # type: ignore[arg-type, unused-ignore]  # stub: Callable[[Context], None]
    bpy.types.IMAGE_MT_image.append(menu_image_editor)  # type: ignore[arg-type, unused-ignore]  # stub: Callable[[Context], None]


def unregister() -> None:
    bpy.types.IMAGE_MT_image.remove(menu_image_editor)  # type: ignore[arg-type, unused-ignore]  # stub: Callable[[Context], None]
    bpy.types.TOPBAR_MT_file_import.remove(menu_file_import)  # type: ignore[arg-type, unused-ignore]  # stub: Callable[[Context], None]
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)


