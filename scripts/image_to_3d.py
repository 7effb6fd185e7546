#!/usr/bin/env python3
"""Headless batch converter: photos in, Blender scenes (plus exports and previews) out, via 1min.ai.

Runs three ways, with the same arguments:

    blender -c onemin3d ARGS                                # the installed extension
    blender -b --factory-startup --python-exit-code 1 --python scripts/image_to_3d.py -- ARGS
    python scripts/image_to_3d.py ARGS                      # with the bpy wheel installed

This file is a shim: the converter is the package's `onemin3d_addon.cli` (the scene finishing in
`onemin3d_addon.blender.finish`). It puts this repository on sys.path and calls `cli.main.main`.

Each image is a job of the add-on's scripting API (`onemin3d_addon.api.submit`): the same
runtime as in Blender's UI runs the pipeline in worker threads, journals every step in the
result folder's history, imports each result through `scene_build`, and cancels on Ctrl-C.
This script adds only what a batch needs on top: inputs, per-image .blend files or one grid
scene, exports, preview renders, --resume lookups, progress lines and the JSON report.
Requests are paced by the add-on's client (`core.ratelimit`), under 1min.ai's 180 a minute.

Generations are asynchronous by default (start, then poll): the generation's uuid is journalled
the moment 1min.ai answers, so after Ctrl-C, a crash or a fault --resume fetches the same
generation, free. --sync holds one long request instead; a generation cut off while it waits may
have been charged but cannot be fetched, so --resume refuses it (and names it) rather than pay
again, until --regenerate asks for a new one.

Exit codes: 0 every input converted; 1 some inputs failed (the others are still converted and
saved); 2 usage or configuration error (nothing was sent; the --json report, when asked for,
says why); 130 interrupted by Ctrl-C (what had finished is saved, and the report says what was
interrupted).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: under the blender executable, bpy is imported before --python scripts run; with the wheel it is not
_UNDER_BLENDER = "bpy" in sys.modules

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onemin3d_addon.cli import arguments  # noqa: E402  (bpy-free)


def script_argv(argv: Sequence[str] | None = None) -> list[str]:
    """The arguments meant for this script: after `--` under Blender, else argv[1:]."""
    return arguments.script_argv(sys.argv if argv is None else argv, Path(__file__))


def main(argv: Sequence[str] | None = None) -> int:
    from onemin3d_addon.cli.main import main as cli_main

    return cli_main(script_argv() if argv is None else argv, prog="image_to_3d", hermetic=not _UNDER_BLENDER)


def _exit_from_the_wheel(code: int) -> None:
    """End a bpy-wheel run without Python's finalisation: bpy 4.2's exit handlers free the
    add-ons' registered classes (the glTF exporter's panels) after the interpreter is gone, and
    segfault (exit 139) after a run that had succeeded. Everything is written and flushed first."""
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    code = main()
    if not _UNDER_BLENDER:
        _exit_from_the_wheel(code)
    sys.exit(code)
