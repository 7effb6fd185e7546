"""Main thread only: `blender -c onemin3d INPUT… [options]`, the batch converter of the installed extension.

Registered with `bpy.utils.register_cli_command` while the add-on is enabled (as Blender's own
Extensions add-on registers `blender -c extension`). The converter itself (`..cli`) is imported
only when the command runs, so enabling the add-on costs nothing for it.

The command runs under the user's preferences (key, result folder, proxy, CA bundle; the
environment variables are the fallback) and takes the same arguments and exit codes as
scripts/image_to_3d.py. Running it is consent to go online, unless Blender was started with
`--offline-mode`; Blender's own "Allow Online Access" preference is put back as it was afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from ..cli.inputs import Defaults

COMMAND = "onemin3d"
PROG = f"blender -c {COMMAND}"

_handles: list[Any] = []


def preference_defaults() -> Defaults:
    """The user's preferences as the converter's defaults (the key, the result folder only when
    the user chose one, the proxy and CA bundle)."""
    from ..cli.inputs import Defaults
    from . import preferences

    prefs = preferences.get_prefs()
    if prefs is None:
        return Defaults()
    folder = (prefs.result_folder or "").strip()
    bundle = (prefs.ca_bundle or "").strip()
    return Defaults(
        api_key=prefs.api_key.strip(),
        base_url=prefs.base_url.strip(),
        result_dir=Path(bpy.path.abspath(folder)).expanduser() if folder else None,
        proxy=prefs.proxy_url.strip() or None,
        ca_bundle=Path(bpy.path.abspath(bundle)).expanduser() if bundle else None,
    )


def run(argv: list[str]) -> int:
    """The command's function: Blender passes the arguments after `-c onemin3d`; returns the exit code."""
    from ..cli.main import main

    system = bpy.context.preferences.system  # type: ignore[union-attr]
    online = system.use_online_access
    try:
        return main(list(argv), prog=PROG, enable=False, defaults=preference_defaults())
    finally:
        # The run's consent to go online is for this run only: never left in the user's preferences.
        # (Read-only when Blender was started with --online-mode or --offline-mode: nothing to undo.)
        if system.use_online_access != online and not getattr(bpy.app, "online_access_override", False):
            system.use_online_access = online


def register() -> None:
    register_cli_command = getattr(bpy.utils, "register_cli_command", None)
    if register_cli_command is not None:  # Blender 4.2+
        _handles.append(register_cli_command(COMMAND, run))


def unregister() -> None:
    while _handles:
        bpy.utils.unregister_cli_command(_handles.pop())
