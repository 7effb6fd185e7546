"""Reliability-tier fixtures: the add-on enabled once per module (`reliability_addon`), an empty file per cell (`fresh_file`), a shared photo.

Enabling the add-on once per module keeps a matrix of a hundred cells fast; each cell still gets
an empty file and its own stand-in and result folder. At the end of the module the add-on is
disabled, and no add-on thread may outlive that. The helpers the tests share (fast settings,
thread baselines, datablock and file checks, run_job) are in reliability_harness.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_harness import addon_harness, make_photo, prefs, set_online

# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reliability_addon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The add-on enabled once for the module, online, with a key; cells pass base_url/result_dir per job."""
    import bpy
    from fake_onemin_server import DEFAULT_API_KEY

    saved_env = {k: os.environ.pop(k, None) for k in ("ONEMIN_API_KEY", "ONEMIN_API_BASE_URL")}
    bpy.ops.wm.read_homefile(use_empty=True)
    set_online(True)
    if addon_harness.addon_enabled():
        addon_harness.disable()
    addon_harness.enable()
    p = prefs()
    p.api_key = DEFAULT_API_KEY
    p.base_url = "http://127.0.0.1:9"  # every cell passes its own stand-in's address
    p.result_folder = str(tmp_path_factory.mktemp("reliability-results"))
    p.parallel_jobs = 2
    p.request_mode = 'SYNC'
    try:
        yield p
    finally:
        if addon_harness.addon_enabled():
            addon_harness.disable()
        for k, v in saved_env.items():
            if v is not None:
                os.environ[k] = v
        left = [t.name for t in addon_harness.worker_threads()]
        assert not left, f"add-on threads left after unregister: {left}"


@pytest.fixture
def fresh_file(reliability_addon: Any) -> Iterator[Any]:
    """An empty Blender file for one cell (the add-on stays enabled); request mode reset to SYNC."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    set_online(True)
    reliability_addon.request_mode = 'SYNC'
    yield bpy
    reliability_addon.request_mode = 'SYNC'


@pytest.fixture(scope="module")
def module_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small photo (640×512 JPEG) shared by a module's cells: the source is only read."""
    return make_photo(tmp_path_factory.mktemp("photos") / "dress.jpg")
