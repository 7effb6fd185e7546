"""Main thread only: what the runtime shares with its registration (`lifecycle.py`) without either importing the other back: whether the add-on is registered, and the file handlers.

The handlers are installed at registration, before any runtime exists, and pass a file load or
save to the runtime once there is one: `runtime.py` attaches what they call (and how to peek at
and stop the runtime) when it is imported. Until then there is no runtime to tell. This module
imports nothing of the add-on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from .runtime import Runtime

#: Whether the add-on is registered: the runtime starts on first use only then (`runtime.get_runtime`).
registered = False

_file_loaded: Callable[[], None] | None = None
_file_saved: Callable[[], None] | None = None
_peek: Callable[[], Runtime | None] | None = None
_stop: Callable[[], None] | None = None


def attach(*, file_loaded: Callable[[], None], file_saved: Callable[[], None],
           peek: Callable[[], Runtime | None], stop: Callable[[], None]) -> None:
    """`runtime.py`, as it is imported: what the file handlers call, and how to peek at and stop it."""
    global _file_loaded, _file_saved, _peek, _stop
    _file_loaded, _file_saved, _peek, _stop = file_loaded, file_saved, peek, stop


def peek_runtime() -> Runtime | None:
    """The session's runtime, or None, without importing the runtime: None until something started it."""
    return _peek() if _peek is not None else None


def stop_runtime() -> None:
    """Stop the runtime if its module was imported (its jobs cancelled, its threads joined)."""
    if _stop is not None:
        _stop()


# Typed alias of the decorator that keeps a handler across file loads.
_persistent: Callable[[Callable[..., None]], Callable[..., None]] = bpy.app.handlers.persistent


@_persistent
def _on_load_post(*_args: Any) -> None:
    if _file_loaded is not None:
        _file_loaded()


@_persistent
def _on_save_post(*_args: Any) -> None:
    if _file_saved is not None:
        _file_saved()


def install_handlers() -> None:
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)
    if _on_save_post not in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.append(_on_save_post)


def remove_handlers() -> None:
    for handlers, fn in ((bpy.app.handlers.load_post, _on_load_post), (bpy.app.handlers.save_post, _on_save_post)):
        while fn in handlers:
            handlers.remove(fn)
