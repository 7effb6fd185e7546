"""Main thread only: the add-on's preferences, and the frozen connection settings jobs are built from.

Secrets live here and nowhere else: the API key is an `AddonPreferences` PASSWORD field (or the
`ONEMIN_API_KEY` environment variable). `connection_settings()` copies what a job needs into a
frozen dataclass whose repr hides the key, so worker threads never read Blender data.
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from bpy.props import (
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.client import DEFAULT_BASE_URL, Timeouts
from ..core.errors import ONLINE_ACCESS_PATH, PREFS_PATH, get_logger, register_secret
from . import properties

log = get_logger(__name__)

#: The add-on's top-level package: "onemin3d_addon" from the source tree, and
#: "bl_ext.<repository>.onemin3d" once installed as an extension. `bl_idname` of the
#: preferences, the key of `context.preferences.addons`, and what `extension_path_user` takes.
ADDON_ID: str = (__package__ or "onemin3d_addon").rpartition(".")[0]
IS_EXTENSION: bool = ADDON_ID.startswith("bl_ext.")

ENV_API_KEY = "ONEMIN_API_KEY"
ENV_BASE_URL = "ONEMIN_API_BASE_URL"

MAX_PARALLEL_JOBS = 8


def _parallel_changed(self: Any, context: Any) -> None:
    # Late import: runtime imports this module.
    from . import runtime

    runtime.set_parallel_jobs(int(self.parallel_jobs))


def _result_folder_changed(self: Any, context: Any) -> None:
    from . import runtime

    runtime.result_folder_changed(context)


class OneMin3DPreferences(bpy.types.AddonPreferences):
    # Must equal the top-level package name, which differs between the source tree and an
    # installed extension (see ADDON_ID).
    bl_idname = ADDON_ID

    api_key: StringProperty(  # type: ignore[valid-type]
        name="API Key",
        description=(
            "Your 1min.ai API key. Stored only in Blender's preferences, never in a .blend. "
            f"Leave empty to use the {ENV_API_KEY} environment variable"
        ),
        subtype='PASSWORD',
        default="",
    )
    base_url: StringProperty(  # type: ignore[valid-type]
        name="Base URL",
        description=f"Address of the 1min.ai API (a gateway or proxy address also works). "
                    f"The {ENV_BASE_URL} environment variable overrides it",
        default=DEFAULT_BASE_URL,
    )
    request_mode: EnumProperty(  # type: ignore[valid-type]
        name="Request Mode",
        description="How to wait for 1min.ai while it generates",
        items=(
            ('SYNC', "Synchronous", "One long request that returns with the result. A job cut off while it waits "
                                    "(cancel, crash, time-out) may be charged but cannot be fetched, and it is "
                                    "never sent again on its own"),
            ('ASYNC', "Asynchronous", "Start the generation, then poll for the result (the default): a job that is "
                                      "cancelled, cut off or interrupted by a restart is fetched later, free, and "
                                      "no proxy time-out applies"),
        ),
        default='ASYNC',
    )
    connect_timeout: FloatProperty(  # type: ignore[valid-type]
        name="Connect",
        description="Seconds to wait for a connection to 1min.ai",
        default=Timeouts.connect, min=1.0, max=120.0, subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE',
    )
    generate_timeout: FloatProperty(  # type: ignore[valid-type]
        name="Generate",
        description="Seconds to wait for a synchronous generation to answer",
        default=Timeouts.generate, min=10.0, max=1800.0, subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE',
    )
    read_timeout: FloatProperty(  # type: ignore[valid-type]
        name="Read",
        description="Seconds to wait for any other answer (upload, poll, download)",
        default=Timeouts.read, min=5.0, max=600.0, subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE',
    )
    poll_deadline: FloatProperty(  # type: ignore[valid-type]
        name="Give Up After",
        description="Asynchronous mode: seconds after which a generation that is still running is given up "
                    "(it stays in the history and can be resumed)",
        default=900.0, min=30.0, max=7200.0, subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE',
    )
    parallel_jobs: IntProperty(  # type: ignore[valid-type]
        name="Parallel Jobs",
        description="How many images are sent to 1min.ai at the same time; the others wait their turn",
        default=2, min=1, max=MAX_PARALLEL_JOBS,
        update=_parallel_changed,
    )
    result_folder: StringProperty(  # type: ignore[valid-type]
        name="Result Folder",
        description="Where results and the job history are kept. Empty: the add-on's own user folder",
        subtype='DIR_PATH',
        default="",
        update=_result_folder_changed,
    )
    proxy_url: StringProperty(  # type: ignore[valid-type]
        name="Proxy",
        description="HTTP(S) proxy, e.g. http://proxy.example:3128. Empty: the usual HTTPS_PROXY/HTTP_PROXY "
                    "environment variables apply",
        default="",
    )
    ca_bundle: StringProperty(  # type: ignore[valid-type]
        name="CA Bundle",
        description="PEM file of extra certificate authorities, for proxies that inspect TLS. "
                    "Empty: the bundled certificates (or REQUESTS_CA_BUNDLE)",
        subtype='FILE_PATH',
        default="",
    )
    defaults: PointerProperty(  # type: ignore[valid-type]
        type=properties.OneMin3DImportOptions,
        name="Default Import Options",
        description="Used by File › Import, the Image Editor and scripts when they do not say otherwise",
    )

    def draw(self, context: Any) -> None:
        from functools import partial

        from . import panels  # panels imports this module

        # The preferences' region, or a window of their default size when there is none (a script).
        wrapped = partial(panels.wrapped, region_width=700)

        layout: Any = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        state = properties.window_state(context)
        # The add-on's box in the list of add-ons is narrower than the region by this much (1x scale).
        indent = 60

        col = layout.column(heading="1min.ai")
        row = col.row(align=True)
        row.prop(self, "api_key")
        row.operator("onemin3d.check_key", text="", icon='CHECKMARK')
        if not self.api_key:
            if os.environ.get(ENV_API_KEY, "").strip():
                wrapped(col, context, f"Using the key from the {ENV_API_KEY} environment variable",
                        icon='INFO', indent=indent)
            else:
                wrapped(col, context, f"No key: paste it above, or set {ENV_API_KEY}", icon='ERROR', indent=indent)
        if state is not None and state.key_message:
            icon: Any = {'VALID': 'CHECKMARK', 'INVALID': 'ERROR', 'CHECKING': 'SORTTIME'}.get(state.key_status, 'INFO')
            wrapped(col, context, state.key_message, icon=icon, indent=indent)
        col.prop(self, "base_url")
        env_url = os.environ.get(ENV_BASE_URL, "").strip()
        if env_url:
            wrapped(col, context, f"{ENV_BASE_URL} overrides it: {env_url}", icon='INFO', indent=indent)
        if not online_access():
            box = col.box()
            box.alert = True
            wrapped(box, context, "Online access is off, so nothing can be sent.", icon='ERROR', indent=indent)
            if not getattr(bpy.app, "online_access_override", False):
                box.operator("screen.userpref_show", text="Allow Online Access…", icon='PREFERENCES').section = 'SYSTEM'
            else:
                wrapped(box, context, "Blender was started with --offline-mode.", indent=indent)

        col = layout.column(heading="Requests")
        col.prop(self, "request_mode", expand=False)
        sub = col.column(align=True)
        sub.prop(self, "connect_timeout", text="Timeout Connect")
        sub.prop(self, "generate_timeout", text="Generate")
        sub.prop(self, "read_timeout", text="Read")
        if self.request_mode == 'ASYNC':
            sub.prop(self, "poll_deadline")
        col.prop(self, "parallel_jobs")

        col = layout.column(heading="Network")
        col.prop(self, "proxy_url")
        col.prop(self, "ca_bundle")

        col = layout.column(heading="Results")
        row = col.row(align=True)
        row.prop(self, "result_folder", placeholder=str(default_result_folder(create=False)))
        op = row.operator("wm.path_open", text="", icon='FILE_FOLDER')
        op.filepath = str(result_folder(self))

        layout.separator()
        layout.label(text="Default Import Options")
        properties.draw_import_options(layout, self.defaults, mode=self.defaults.import_mode)


classes = (OneMin3DPreferences,)
def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)


# --- reading the settings -------------------------------------------------------------------

def get_prefs(context: Any = None) -> OneMin3DPreferences | None:
    """The add-on's preferences, or None when the add-on is registered without an entry in
    `context.preferences.addons` (e.g. `register()` called directly by a script)."""
    prefs = (context or bpy.context).preferences
    addon = prefs.addons.get(ADDON_ID) if prefs is not None else None
    if addon is None:
        return None
    try:
        return addon.preferences  # type: ignore[no-any-return]
    except AttributeError:  # the entry exists but the class is not registered
        return None


def online_access() -> bool:
    """Blender's "Allow Online Access" (4.2+); older versions had no switch."""
    return bool(getattr(bpy.app, "online_access", True))


def env_api_key() -> str:
    return os.environ.get(ENV_API_KEY, "").strip()


def api_key_source(context: Any = None) -> str:
    """'preferences', 'environment', or '' when there is no key at all."""
    prefs = get_prefs(context)
    if prefs is not None and prefs.api_key.strip():
        return "preferences"
    if env_api_key():
        return "environment"
    return ""


def default_result_folder(*, create: bool = True) -> Path:
    """The extension's own user folder when installed as an extension, else a folder in
    Blender's user data files (both follow BLENDER_USER_RESOURCES)."""
    if IS_EXTENSION:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path="results", create=create))
    return Path(bpy.utils.user_resource('DATAFILES', path=os.path.join("onemin3d", "results"), create=create))


def result_folder(prefs: Any = None) -> Path:
    text = (getattr(prefs, "result_folder", "") or "").strip()
    if text:
        return Path(bpy.path.abspath(os.path.expanduser(text)))
    return default_result_folder()


@dataclass(frozen=True)
class ConnectionSettings:
    """What a job needs from the preferences, copied on the main thread at submit time."""

    api_key: str = field(repr=False)
    key_source: str
    base_url: str
    use_async: bool = True
    timeouts: Timeouts = Timeouts()
    poll_interval: float = 1.0
    poll_deadline: float = 900.0
    parallel_jobs: int = 2
    result_folder: Path = Path()
    proxy: str | None = None
    ca_bundle: str | None = None


def connection_settings(context: Any = None, *, api_key: str | None = None,
                        base_url: str | None = None) -> ConnectionSettings:
    """The effective settings: explicit arguments, then environment overrides, then preferences."""
    prefs = get_prefs(context)
    key_source = "argument" if api_key else api_key_source(context)
    if not api_key:
        api_key = (prefs.api_key.strip() if prefs is not None else "") or env_api_key()
    register_secret(api_key)
    url = (base_url or os.environ.get(ENV_BASE_URL, "").strip()
           or (prefs.base_url.strip() if prefs is not None else "") or DEFAULT_BASE_URL)
    if prefs is None:
        return ConnectionSettings(api_key=api_key, key_source=key_source, base_url=url.rstrip("/"),
                                  result_folder=result_folder(None))
    return ConnectionSettings(
        api_key=api_key,
        key_source=key_source,
        base_url=url.rstrip("/"),
        use_async=prefs.request_mode == 'ASYNC',
        timeouts=Timeouts(connect=prefs.connect_timeout, generate=prefs.generate_timeout,
                          read=prefs.read_timeout),
        poll_deadline=prefs.poll_deadline,
        parallel_jobs=int(prefs.parallel_jobs),
        result_folder=result_folder(prefs),
        proxy=prefs.proxy_url.strip() or None,
        ca_bundle=bpy.path.abspath(prefs.ca_bundle.strip()) if prefs.ca_bundle.strip() else None,
    )


def parallel_jobs(context: Any = None) -> int:
    prefs = get_prefs(context)
    return int(prefs.parallel_jobs) if prefs is not None else 2


def no_key_message() -> str:
    return f"No 1min.ai API key: set one in {PREFS_PATH}, or in the {ENV_API_KEY} environment variable."


def offline_message() -> str:
    if bpy.app.background:
        return ("Online access is off, so nothing was sent: start Blender with --online-mode, or set "
                "bpy.context.preferences.system.use_online_access = True in the script.")
    return f"Online access is off, so nothing was sent: turn on {ONLINE_ACCESS_PATH}."
