"""Enabling the add-on loads no HTTP stack and no Pillow (they belong to the first job), and starts no job machinery: checked in a fresh process, never timed.

What registration must not import is pinned here (`NOT_AT_REGISTRATION`); what it costs is
scripts/bench.py startup's (issue 13).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Modules enabling the add-on must not import: each is loaded where it is first needed (a job,
#: the first draw of a thumbnail, the command line, a file written), never at registration.
NOT_AT_REGISTRATION = (
    # the HTTP stack and Pillow: the first job's
    "requests", "urllib3", "PIL", "charset_normalizer",
    # the standard library's heavier corners: logging (errors.get_logger looks loggers up on first
    # use); tempfile, which loads shutil, bz2 and lzma (an image written for a job); html (an error page)
    "logging", "tempfile", "shutil", "html",
    # the job machinery and what it reads and writes
    "onemin3d_addon.core.client", "onemin3d_addon.core.pipeline", "onemin3d_addon.core.jobs",
    "onemin3d_addon.core.history", "onemin3d_addon.core.journal", "onemin3d_addon.core.prices",
    # the wire format and the connection settings a job is given (the preferences take their
    # defaults from core.defaults)
    "onemin3d_addon.core.protocol", "onemin3d_addon.core.settings", "onemin3d_addon.core.import_options",
    # the runtime (lifecycle installs its handlers and timer, which import it on first use) and its view
    "onemin3d_addon.blender.runtime", "onemin3d_addon.blender.wm_view",
    # building and finishing a result in the scene
    "onemin3d_addon.blender.scene_build", "onemin3d_addon.blender.finish",
    # the thumbnails' preview collection: made at the first thumbnail drawn
    "bpy.utils.previews",
    # the scripting door and the batch converter (`blender -c onemin3d` imports it when it runs)
    "onemin3d_addon.api", "onemin3d_addon.cli",
)

_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import bpy, addon_utils
watched = json.loads(sys.argv[2])
before = {name for name in watched if name in sys.modules}
mod = addon_utils.enable("onemin3d_addon", default_set=True)
loaded = sorted(name for name in watched if name in sys.modules and name not in before)
# the add-on's file handlers, called as after a file load or save: with no runtime, nothing to tell
ours = [h for h in (*bpy.app.handlers.load_post, *bpy.app.handlers.save_post)
        if getattr(h, "__module__", "").startswith("onemin3d_addon")]
for handler in ours:
    handler(None)
handlers_loaded_runtime = "onemin3d_addon.blender.runtime" in sys.modules
from onemin3d_addon.blender import runtime
print("RESULT " + json.dumps({
    "enabled": mod is not None,
    "before": sorted(before),
    "loaded": loaded,
    "runtime_started": runtime.peek_runtime() is not None,
    "handlers": len(ours),
    "handlers_loaded_runtime": handlers_loaded_runtime,
}), flush=True)
"""


@pytest.mark.smoke
def test_enabling_the_add_on_loads_no_http_stack_no_pillow_and_no_job_machinery() -> None:
    env = dict(os.environ, BLENDER_USER_RESOURCES=tempfile.mkdtemp(prefix="onemin3d-startup-"))
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT), json.dumps(NOT_AT_REGISTRATION)],
                          capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    seen = json.loads(lines[-1][len("RESULT "):])
    assert seen["enabled"]
    # Blender ships no Pillow; some versions load requests themselves before any add-on (the bpy
    # 5.2 wheel does), and then only what enabling adds is ours to check
    assert "PIL" not in seen["before"], "the probe must start without Pillow"
    assert seen["loaded"] == [], f"enabling the add-on loaded {seen['loaded']}"
    assert not seen["runtime_started"], "the runtime starts on first use, not at registration"
    assert seen["handlers"] == 2, "one load_post and one save_post handler"
    assert not seen["handlers_loaded_runtime"], "a file load or save before any job loads no runtime"
