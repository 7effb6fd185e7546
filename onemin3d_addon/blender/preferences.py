"""Main thread only: the add-on's preferences (the class Blender draws and saves).

Secrets live here and nowhere else: the API key is an `AddonPreferences` PASSWORD field (or the
`ONEMIN_API_KEY` environment variable). Reading them into the frozen settings a job is built
from is `connection.py`'s (its names are re-exported here); a change that the running jobs must
follow is announced through `connection.settings_changed`, so this module imports no runtime.
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
import os
from typing import TYPE_CHECKING, Any

import bpy
from bpy.props import (
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.defaults import CONNECT_TIMEOUT, DEFAULT_BASE_URL, GENERATE_TIMEOUT, READ_TIMEOUT
from ..core.errors import get_logger
from . import connection, properties
from .connection import (  # re-exported: the names scripts and tests have used from here
    ADDON_ID,
    ENV_API_KEY,
    ENV_BASE_URL,
    IS_EXTENSION,
    MAX_PARALLEL_JOBS,
    api_key_source,
    connection_settings,
    default_result_folder,
    env_api_key,
    get_prefs,
    no_key_message,
    offline_message,
    online_access,
    parallel_jobs,
    require_sendable,
    result_folder,
)

if TYPE_CHECKING:
    from ..core.settings import ConnectionSettings as ConnectionSettings

log = get_logger(__name__)


def __getattr__(name: str) -> Any:
    # re-exported too, imported on first use (connection.py says why)
    if name == "ConnectionSettings":
        return connection.ConnectionSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")



def _parallel_changed(self: Any, context: Any) -> None:
    connection.settings_changed("parallel_jobs", context)


def _result_folder_changed(self: Any, context: Any) -> None:
    connection.settings_changed("result_folder", context)


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
        default=CONNECT_TIMEOUT, min=1.0, max=120.0, subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE',
    )
    generate_timeout: FloatProperty(  # type: ignore[valid-type]
        name="Generate",
        description="Seconds to wait for a synchronous generation to answer",
        default=GENERATE_TIMEOUT, min=10.0, max=1800.0, subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE',
    )
    read_timeout: FloatProperty(  # type: ignore[valid-type]
        name="Read",
        description="Seconds to wait for any other answer (upload, poll, download)",
        default=READ_TIMEOUT, min=5.0, max=600.0, subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE',
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


__all__ = [
    "ADDON_ID", "ENV_API_KEY", "ENV_BASE_URL", "IS_EXTENSION", "MAX_PARALLEL_JOBS", "ConnectionSettings",
    "OneMin3DPreferences", "api_key_source", "connection_settings", "default_result_folder", "env_api_key",
    "get_prefs", "no_key_message", "offline_message", "online_access", "parallel_jobs", "register",
    "require_sendable", "result_folder", "unregister",
]
