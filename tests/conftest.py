"""Shared test set-up: a hermetic Blender user folder and the local 1min.ai stand-in."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Before anything imports bpy: keep Blender's user folders out of the home directory.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="onemin3d-blender-user-"))

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
