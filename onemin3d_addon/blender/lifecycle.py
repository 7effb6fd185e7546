"""Main thread only: the runtime's registration, without loading the runtime: its file handlers, its start in the UI, and the preference changes it follows.

`runtime.py` (the jobs, the history, the pump) is imported on first use: by an operator, the
panel's first job, `api`, or the one-shot timer that starts it at the UI's first moment after
start-up. Registering the add-on installs only these small callbacks (`scripts/bench.py
startup`): the file handlers pass the event to the runtime when there is one (no runtime, nothing
to tell), and a preference change imports it, as the first use it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import bpy

from . import connection

if TYPE_CHECKING:
    from .runtime import Runtime

#: Whether the add-on is registered: the runtime starts on first use only then (`runtime.get_runtime`).
registered = False

_RUNTIME = f"{__package__}.runtime"


def _loaded_runtime() -> ModuleType | None:
    """The runtime module if something has imported it (else there is no runtime to tell)."""
    return sys.modules.get(_RUNTIME)


def _runtime() -> ModuleType:
    from . import runtime

    return runtime


def get_runtime(context: Any = None) -> Runtime:
    """`runtime.get_runtime()`: the session's runtime, the module imported and the runtime started on first use."""
    from .runtime import get_runtime

    return get_runtime(context)


def peek_runtime() -> Runtime | None:
    """`runtime.peek_runtime()` without importing the runtime: None until something has started it."""
    runtime = _loaded_runtime()
    return None if runtime is None else runtime.peek_runtime()


# Typed alias of the decorator that keeps a handler across file loads.
_persistent: Callable[[Callable[..., None]], Callable[..., None]] = bpy.app.handlers.persistent


@_persistent
def _on_load_post(*_args: Any) -> None:
    runtime = _loaded_runtime()
    if runtime is not None:
        runtime.on_file_loaded()


@_persistent
def _on_save_post(*_args: Any) -> None:
    runtime = _loaded_runtime()
    if runtime is not None:
        runtime.on_file_saved()


def install_handlers() -> None:
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)
    if _on_save_post not in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.append(_on_save_post)


def remove_handlers() -> None:
    for handlers, fn in ((bpy.app.handlers.load_post, _on_load_post), (bpy.app.handlers.save_post, _on_save_post)):
        while fn in handlers:
            handlers.remove(fn)


def _settings_changed(what: str, context: Any) -> None:
    """A preference the running jobs follow changed (see connection.settings_changed)."""
    _runtime().settings_changed(what, context)


def _start_in_ui() -> None:
    """The one-shot timer registration leaves: the UI's first moment after start-up starts the runtime."""
    if registered:
        _runtime().get_runtime()


def register() -> None:
    """Registration only: the runtime (its history, job threads and the resume of interrupted jobs)
    starts on first use, or in the UI at its first moment after start-up (a one-shot timer;
    `blender -b` and the bpy wheel run no timers, so there the first call that needs it starts
    it). Enabling the add-on so costs about what enabling glTF does (`scripts/bench.py startup`)."""
    global registered
    registered = True
    install_handlers()
    connection.on_settings_changed(_settings_changed)
    if not bpy.app.background:
        bpy.app.timers.register(_start_in_ui, first_interval=0.0)


def unregister() -> None:
    """Also stops the runtime, when there is one: its jobs are cancelled and its threads joined."""
    global registered
    registered = False
    if bpy.app.timers.is_registered(_start_in_ui):
        bpy.app.timers.unregister(_start_in_ui)
    remove_handlers()
    connection.on_settings_changed(_settings_changed, remove=True)
    runtime = _loaded_runtime()
    if runtime is not None:
        runtime.stop()
