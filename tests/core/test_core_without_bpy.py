"""onemin3d_addon.core imports, every submodule of it, with bpy blocked (in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import importlib, json, pkgutil, sys
sys.modules["bpy"] = None          # any `import bpy` now raises ImportError
sys.modules["mathutils"] = None
sys.modules["bmesh"] = None
import onemin3d_addon.core as core
names = sorted(m.name for m in pkgutil.iter_modules(core.__path__, "onemin3d_addon.core."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names,
                  "blender": [m for m in ("bpy", "mathutils", "bmesh") if sys.modules.get(m) is not None]}))
"""


def test_core_and_every_submodule_import_with_bpy_blocked() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {f"onemin3d_addon.core.{p.stem}" for p in (ROOT / "onemin3d_addon" / "core").glob("*.py")
                if p.stem != "__init__"}
    assert set(report["modules"]) == expected
    assert {"onemin3d_addon.core.client", "onemin3d_addon.core.pipeline", "onemin3d_addon.core.errors"} <= expected
    assert report["blender"] == []
