"""Enabling the add-on loads no HTTP stack and no Pillow (they belong to the first job), and starts no job machinery: checked in a fresh process, never timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import bpy, addon_utils
watched = ("requests", "urllib3", "PIL", "charset_normalizer", "logging", "onemin3d_addon.core.client",
           "onemin3d_addon.core.pipeline", "onemin3d_addon.core.jobs", "onemin3d_addon.core.history")
before = {name for name in watched if name in sys.modules}
mod = addon_utils.enable("onemin3d_addon", default_set=True)
from onemin3d_addon.blender import runtime
print("RESULT " + json.dumps({
    "enabled": mod is not None,
    "before": sorted(before),
    "loaded": sorted(name for name in watched if name in sys.modules and name not in before),
    "runtime_started": runtime.peek_runtime() is not None,
}), flush=True)
"""


@pytest.mark.smoke
def test_enabling_the_add_on_loads_no_http_stack_no_pillow_and_no_job_machinery() -> None:
    env = dict(os.environ, BLENDER_USER_RESOURCES=tempfile.mkdtemp(prefix="onemin3d-startup-"))
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT)], capture_output=True, text=True, env=env,
                          timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    seen = json.loads(lines[-1][len("RESULT "):])
    assert seen["enabled"]
    # Blender ships no Pillow; some versions load requests themselves before any add-on (the bpy
    # 5.2 wheel does), and then only what enabling adds is ours to check
    assert "PIL" not in seen["before"], "the probe must start without Pillow"
    assert seen["loaded"] == [], f"enabling the add-on loaded {seen['loaded']}"
    assert not seen["runtime_started"], "the runtime starts on first use, not at registration"
