"""Main thread only: the public scripting API: generate() (blocking), submit() (non-blocking), pump(), jobs().

    from onemin3d_addon import api          # or: from bl_ext.user_default.onemin3d import api
    objects = api.generate("/photos/dress.jpg", mode="displacement", strength=0.2)

    job = api.submit("/photos/shoe.png")    # returns at once
    while not job.done:
        api.pump()                          # the UI's timer does this; scripts and -b call it
        time.sleep(0.05)
    print(job.state, job.objects)

The same pipeline, history and rules as the add-on's UI: the key comes from the argument, the
add-on's preferences or ONEMIN_API_KEY; nothing is sent while Blender's online access is off.
Works with the add-on enabled or not (then the defaults and environment variables apply).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy

from .blender import preferences, properties, runtime
from .blender.runtime import Job
from .core import options as options_schema
from .core.errors import Cancelled, ImageError, Onemin3DError, user_message
from .core.import_options import ImportOptions
from .core.protocol import RetryPolicy, Timeouts

__all__ = ["Job", "export_usdz", "export_web", "generate", "get_strength", "jobs", "pump", "set_strength",
           "shutdown", "submit", "wait"]

#: Keyword arguments of submit() that are not import options.
_JOB_KEYWORDS = frozenset({
    "use_async", "result_dir", "parallel", "import_result", "name", "scene", "timeouts",
    "max_side", "allow_upscale", "poll_interval", "poll_deadline", "proxy", "ca_bundle",
    "retry", "max_download_bytes", "resume", "metadata",
})


def _default_options() -> dict[str, Any]:
    prefs = preferences.get_prefs()
    if prefs is not None:
        return properties.options_of(prefs.defaults)
    return dict(options_schema.defaults())  # the add-on is not enabled: the schema's own defaults


def _mode(mode: str) -> str:
    return options_schema.check_mode(mode)  # AUTO, PLANE, DISPLACEMENT (or RELIEF), any case


def _image_path(image: Any, folder: Path) -> tuple[Path, str]:
    if isinstance(image, bpy.types.Image):
        from .blender.operators import source_to_file

        return source_to_file(image, folder), Path(image.name).stem
    path = Path(os.fspath(image)).expanduser()
    if not path.is_file():
        raise ImageError(f"The image file {path} does not exist: check the path (a relative one starts from "
                         f"{Path.cwd()}), or pass an image of bpy.data.images.")
    return path, path.stem


def submit(image: Any, *, mode: str = "auto", api_key: str | None = None, base_url: str | None = None,
           **options: Any) -> Job:
    """Start turning `image` (a path or a bpy.types.Image) into 3D, and return at once.

    `options` are the options of core.options (resolution, strength, invert, smooth, solid,
    size_mode, height, factor, shader, use_alpha, interpolation, relative, align, target_size;
    model: "stable-image" (the default) or "trellis" (also spelt "Qubico/trellis"), and
    remove_background: True to cut the subject out first, a second paid request; what they cost
    is core.prices.cost(model, remove_background)) and these job settings: use_async (default: the preferences' Request Mode, Asynchronous unless changed:
    start the generation, then poll, so a cancelled or interrupted job keeps its uuid and is
    fetched later, free; False: one long synchronous request), result_dir, parallel,
    import_result (False: download only), name, scene, timeouts (core.client.Timeouts), retry
    (core.client.RetryPolicy), max_side, allow_upscale, poll_interval (the first wait between
    polls; it grows ×1.5 up to 10 s), poll_deadline, proxy, ca_bundle, max_download_bytes, resume
    (a core.pipeline.Checkpoint an earlier run left: a result file, or a generation's uuid;
    nothing is paid twice: a generation that was sent but never answered is refused with
    UnansweredGeneration), metadata (a JSON-able dict journalled with the history entry).
    Raises OfflineError when online access is off, and Onemin3DError when there is no key:
    nothing is sent then.
    """
    unknown = set(options) - set(properties.OPTION_NAMES) - _JOB_KEYWORDS
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}; import options are "
                        f"{', '.join(properties.OPTION_NAMES)}")
    job_kw = {k: options.pop(k) for k in list(options) if k in _JOB_KEYWORDS}
    # bad names or values fail here, not later; choices come back in their canonical spelling
    import_options = ImportOptions.from_mapping({**_default_options(), **options}).as_dict()
    conn = preferences.connection_settings(api_key=api_key, base_url=base_url)
    changes: dict[str, Any] = {}
    if "use_async" in job_kw:
        changes["use_async"] = bool(job_kw["use_async"])
    if job_kw.get("result_dir"):
        changes["result_folder"] = Path(os.fspath(job_kw["result_dir"])).expanduser().resolve()
    if job_kw.get("parallel"):
        changes["parallel_jobs"] = max(1, min(preferences.MAX_PARALLEL_JOBS, int(job_kw["parallel"])))
    if isinstance(job_kw.get("timeouts"), Timeouts):
        changes["timeouts"] = job_kw["timeouts"]
    for key in ("poll_interval", "poll_deadline"):
        if job_kw.get(key) is not None:
            changes[key] = float(job_kw[key])
    for key in ("proxy", "ca_bundle"):
        if job_kw.get(key):
            changes[key] = str(job_kw[key])
    if changes:
        conn = conn._replace(**changes)

    scene = job_kw.get("scene")
    scene_name = scene if isinstance(scene, str) else getattr(scene, "name", None)
    if scene_name is None:
        scene_name = getattr(getattr(bpy.context, "scene", None), "name", None)

    rt = runtime.get_runtime()
    path, default_name = _image_path(image, conn.result_folder)
    return rt.submit(path, conn=conn, mode=_mode(mode), options=import_options,
                     name=job_kw.get("name") or default_name, scene_name=scene_name,
                     auto_import=bool(job_kw.get("import_result", True)),
                     max_side=job_kw.get("max_side"), allow_upscale=job_kw.get("allow_upscale"),
                     retry=job_kw["retry"] if isinstance(job_kw.get("retry"), RetryPolicy) else None,
                     max_download_bytes=(int(job_kw["max_download_bytes"])
                                         if job_kw.get("max_download_bytes") else None),
                     resume=job_kw.get("resume"), metadata=job_kw.get("metadata"))


def generate(image: Any, *, mode: str = "auto", api_key: str | None = None, base_url: str | None = None,
             timeout: float | None = None, **options: Any) -> list[Any]:
    """Turn `image` into 3D and return the objects created, blocking until the import is done.

    Takes the arguments of submit(). Raises the job's error (an Onemin3DError subclass: use
    core.errors.user_message(err) for a sentence to show), Cancelled when cancelled (Ctrl-C
    cancels the job, then re-raises KeyboardInterrupt), TimeoutError after `timeout` seconds.
    """
    job = submit(image, mode=mode, api_key=api_key, base_url=base_url, **options)
    wait([job], timeout=timeout)
    if job.state == "imported":
        return job.objects
    if job.error is not None:
        # The script sees the one sentence the panel shows (not the server's raw text, such as
        # "API Key has been deleted: [HTTP_EXCEPTION]"); that text stays in `.message`.
        err = job.error
        err.args = (user_message(err),)
        raise err
    if job.state == "cancelled":
        raise Cancelled("The job was cancelled.")
    if not options.get("import_result", True):
        return []
    raise Onemin3DError(f"The result was not imported (it was made for another file); it is kept "
                        f"in the history: {job.result_file}")


def pump(wait: float = 0.0) -> bool:
    """Apply what the jobs reported (progress, results to import) on this, the main thread.
    Returns True while jobs are still running. The add-on's timer calls it in the UI; under
    `blender -b` or the bpy wheel timers never fire, so call it yourself. `wait`: seconds to
    wait for a first report when there is none yet (a loop then needs no sleep of its own).
    One call imports at most one result, so a caller can act on each import before the next."""
    rt = runtime.peek_runtime()
    if rt is None:
        return False
    rt.pump(budget=max(runtime.TICK_BUDGET, wait), block=max(0.0, wait))
    return rt.busy()


def shutdown(timeout: float = 5.0) -> bool:
    """Cancel every running job and write the history, for a script that is about to exit.
    Async generations already started stay resumable. True if every thread ended in time."""
    rt = runtime.peek_runtime()
    if rt is None:
        return True
    return rt.shutdown(timeout=timeout)


def wait(jobs_: list[Job] | None = None, timeout: float | None = None) -> None:
    """Pump until the given jobs (default: all of this session's) have ended."""
    rt = runtime.peek_runtime()
    if rt is None:
        return
    rt.wait(list(rt.jobs.values()) if jobs_ is None else jobs_, timeout=timeout)


def jobs() -> list[Job]:
    """This session's jobs, oldest first (running and finished)."""
    rt = runtime.peek_runtime()
    return list(rt.jobs.values()) if rt is not None else []



def get_strength(obj: Any) -> float:
    """The live relief depth of a relief this add-on made (a fraction of its width).

    Raises ValueError when `obj` is not such a relief. Works on every supported Blender: the
    Strength is a Geometry Nodes modifier input, stored differently from 5.2 on.
    """
    from .blender.build_relief import get_relief_strength

    value = get_relief_strength(obj)
    if value is None:
        raise ValueError(f"'{obj.name}' is not a relief made by this add-on")
    return value


def set_strength(obj: Any, value: float) -> None:
    """Change a relief's depth live, as the Strength slider does (a fraction of its width)."""
    from .blender.build_relief import set_relief_strength

    set_relief_strength(obj, value)


def export_web(target: Any, path: str | os.PathLike[str], **options: Any) -> Any:
    """Write `target` (an object, a collection, or a list of them) to `path` (.glb) for web viewers
    such as <model-viewer> and three.js, and return what was written (an ExportSummary: path,
    triangles, objects, reliefs, downsized textures).

    A relief of this add-on is rebuilt from its heights at its live Strength, simplified to at
    most 50,000 triangles within 1% of its depth, and stays cut out and solid as imported; a
    model or plane is passed through, modifiers applied. Textures are embedded as JPEG at most
    2048 px on the long side, from copies: the scene is left as it was. Options: max_triangles,
    max_error (a fraction of the depth), texture_size, image_format ("JPEG", "WEBP", "AUTO"),
    jpeg_quality. Raises ExportError with a sentence for the user.
    """
    from .blender.export_web import export_web as export

    return export(target, path, **options)


def export_usdz(target: Any, path: str | os.PathLike[str], **options: Any) -> Any:
    """Write `target` to `path` (.usdz) for AR Quick Look on iPhone and iPad: the same simplified
    reliefs and downsized textures as export_web, packed into one file. Options: max_triangles,
    max_error, texture_size."""
    from .blender.export_web import export_usdz as export

    return export(target, path, **options)
