"""Main thread only: the connection settings (key, base URL, timeouts, result folder, proxy, CA bundle) and whether anything may be sent.

It reads the add-on preferences (`preferences.py`, which re-exports these names) and the
environment, and copies what a job needs into the frozen `ConnectionSettings`, whose repr hides
the key, so worker threads never read Blender data. `require_sendable()` is the one guard
before a request: online access on and a key. Preference changes that the running jobs follow
are announced here (`settings_changed`), and the runtime listens: this module imports neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..core.defaults import DEFAULT_BASE_URL
from ..core.errors import ONLINE_ACCESS_PATH, PREFS_PATH, OfflineError, Onemin3DError, register_secret

if TYPE_CHECKING:
    from ..core.settings import ConnectionSettings as ConnectionSettings

#: The add-on's top-level package: "onemin3d_addon" from the source tree, and
#: "bl_ext.<repository>.onemin3d" once installed as an extension. `bl_idname` of the
#: preferences, the key of `context.preferences.addons`, and what `extension_path_user` takes.
ADDON_ID: str = (__package__ or "onemin3d_addon").rpartition(".")[0]
IS_EXTENSION: bool = ADDON_ID.startswith("bl_ext.")

ENV_API_KEY = "ONEMIN_API_KEY"
ENV_BASE_URL = "ONEMIN_API_BASE_URL"

MAX_PARALLEL_JOBS = 8


# --- reading the settings -------------------------------------------------------------------

def get_prefs(context: Any = None) -> Any:
    """The add-on's preferences, or None when the add-on is registered without an entry in
    `context.preferences.addons` (e.g. `register()` called directly by a script)."""
    prefs = (context or bpy.context).preferences
    addon = prefs.addons.get(ADDON_ID) if prefs is not None else None
    if addon is None:
        return None
    try:
        return addon.preferences
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


def __getattr__(name: str) -> Any:
    # `ConnectionSettings` (core.settings, with the protocol's Timeouts) is imported on first use,
    # not when the add-on is enabled (scripts/bench.py startup)
    if name == "ConnectionSettings":
        from ..core.settings import ConnectionSettings

        return ConnectionSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connection_settings(context: Any = None, *, api_key: str | None = None,
                        base_url: str | None = None) -> ConnectionSettings:
    """The effective settings: explicit arguments, then environment overrides, then preferences."""
    from ..core.protocol import Timeouts
    from ..core.settings import ConnectionSettings

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


# --- may anything be sent? ------------------------------------------------------------------

def sendable_problem(conn: ConnectionSettings | None = None, *, context: Any = None) -> Onemin3DError | None:
    """Why no request may be made now, as the error to raise (no key first, then online access
    off: the order the panel says them in), or None. `conn`: the settings a job was given;
    without it, the preferences and the environment are read."""
    has_key = bool(conn.api_key) if conn is not None else bool(api_key_source(context))
    if not has_key:
        return Onemin3DError(no_key_message())
    if not online_access():
        return OfflineError(offline_message())
    return None


def require_sendable(conn: ConnectionSettings | None = None, *, context: Any = None) -> None:
    """The one guard before any request: raise `sendable_problem()`'s error, if any."""
    problem = sendable_problem(conn, context=context)
    if problem is not None:
        raise problem


# --- changes the running jobs follow --------------------------------------------------------

_listeners: list[Callable[[str, Any], None]] = []


def on_settings_changed(listener: Callable[[str, Any], None], *, remove: bool = False) -> None:
    """Add (or remove) a listener of `settings_changed(what, context)`; the runtime is one."""
    if remove:
        if listener in _listeners:
            _listeners.remove(listener)
    elif listener not in _listeners:
        _listeners.append(listener)


def settings_changed(what: str, context: Any = None) -> None:
    """A preference changed: "parallel_jobs" or "result_folder" (the preferences' update callbacks)."""
    for listener in list(_listeners):
        listener(what, context)
