"""1min.ai Image to 3D: register()/unregister() of the Blender modules, in order; nothing happens at import.

Importing this package does not import bpy, so `onemin3d_addon.core` (and the scripts built on
it) work without Blender. The Blender modules are imported only when the add-on is registered.

There is no `bl_info`: the extension's identity and version live in blender_manifest.toml only
(Blender 4.2+ reads the manifest, and ignores a `bl_info` in an extension). From a source
checkout, enable it with `addon_utils.enable("onemin3d_addon")` with the repository on sys.path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .core.errors import get_logger  # bpy-free

log = get_logger(__name__)

#: Registered in this order, unregistered in reverse: property groups before the preferences
#: and operators that point at them; `blender -c onemin3d` (command); the runtime's lifecycle
#: last, so the runtime starts with everything in place and is the first to stop (cancelling jobs
#: and joining threads). `lifecycle` installs the runtime's callbacks without importing it: the
#: runtime is loaded on first use (scripts/bench.py startup).
_SUBMODULES = ("properties", "preferences", "operators", "panels", "export_ops", "command", "lifecycle")


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__package__}.blender.{name}") for name in _SUBMODULES]


def register() -> None:
    done: list[ModuleType] = []
    try:
        for module in _modules():
            module.register()
            done.append(module)
    except BaseException:
        # Leave Blender as it was: a half-registered add-on cannot be disabled cleanly.
        for module in reversed(done):
            try:
                module.unregister()
            except Exception:  # keep undoing; the original error is the one to report
                log.exception("could not undo the registration of %s", module.__name__)
        raise


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
