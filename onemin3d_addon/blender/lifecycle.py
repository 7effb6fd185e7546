"""Main thread only: the runtime's registration, without loading the runtime: its file handlers, its start in the UI, and the preference changes it follows.

`runtime.py` (the jobs, the history, the pump) is imported on first use: by an operator, the
panel's first job, `api`, or the one-shot timer that starts it at the UI's first moment after
start-up. Registering the add-on installs only small callbacks (`scripts/bench.py startup`): the
file handlers (`runtime_state.py`) pass the event to the runtime when there is one (no runtime,
nothing to tell), and a preference change imports it, as the first use it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bpy

from . import connection, runtime_state

if TYPE_CHECKING:
    from .runtime import Runtime


def get_runtime(context: Any = None) -> Runtime:
    """`runtime.get_runtime()`: the session's runtime, the module imported and the runtime started on first use."""
    from .runtime import get_runtime

    return get_runtime(context)


def peek_runtime() -> Runtime | None:
    """`runtime.peek_runtime()` without importing the runtime: None until something has started it."""
    return runtime_state.peek_runtime()


def _settings_changed(what: str, context: Any) -> None:
    """A preference the running jobs follow changed (see connection.settings_changed)."""
    from .runtime import settings_changed

    settings_changed(what, context)


def _start_in_ui() -> None:
    """The one-shot timer registration leaves: the UI's first moment after start-up starts the runtime."""
    if runtime_state.registered:
        get_runtime()


def register() -> None:
    """Registration only: the runtime (its history, job threads and the resume of interrupted jobs)
    starts on first use, or in the UI at its first moment after start-up (a one-shot timer;
    `blender -b` and the bpy wheel run no timers, so there the first call that needs it starts
    it). Enabling the add-on so costs about what enabling glTF does (`scripts/bench.py startup`)."""
    runtime_state.registered = True
    runtime_state.install_handlers()
    connection.on_settings_changed(_settings_changed)
    if not bpy.app.background:
        bpy.app.timers.register(_start_in_ui, first_interval=0.0)


def unregister() -> None:
    """Also stops the runtime, when there is one: its jobs are cancelled and its threads joined."""
    runtime_state.registered = False
    if bpy.app.timers.is_registered(_start_in_ui):
        bpy.app.timers.unregister(_start_in_ui)
    runtime_state.remove_handlers()
    connection.on_settings_changed(_settings_changed, remove=True)
    runtime_state.stop_runtime()
