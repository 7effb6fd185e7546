"""Test helpers for the in-Blender tier: enable the add-on for real, point it at the stand-in, drive jobs.

The add-on is enabled the way Blender does it (addon_utils.enable with default_set), so its
preferences exist; every test gets its own result folder. Timers never fire in the bpy wheel:
jobs are driven by calling the runtime's pump() on this, the main thread, as api.pump() does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MODULE = "onemin3d_addon"


def run_script_child(script: str, spec: dict[str, Any], user_dir: Path) -> dict[str, Any]:
    """Run `script` (a test module that is also its child's script) in a fresh, isolated Python
    (`-I`, no ONEMIN_ or PYTHON variables, `user_dir` as the Blender user folder), `spec` as JSON
    on its stdin; its last `RESULT {json}` line, with its "stdout" and "stderr" added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEMIN_", "PYTHON"))}
    env["BLENDER_USER_RESOURCES"] = str(user_dir)
    proc = subprocess.run([sys.executable, "-I", script], input=json.dumps(spec), env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"child failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["stdout"], result["stderr"] = proc.stdout, proc.stderr
    return result


def addon_enabled() -> bool:
    import addon_utils

    return bool(addon_utils.check(MODULE)[1])


def enable() -> Any:
    import addon_utils

    mod = addon_utils.enable(MODULE, default_set=True, handle_error=_raise)
    assert mod is not None, "the add-on did not enable"
    return mod


def disable() -> None:
    import addon_utils

    addon_utils.disable(MODULE, default_set=True, handle_error=_raise)


def _raise(exc: BaseException) -> None:
    raise exc


def prefs() -> Any:
    import bpy

    return bpy.context.preferences.addons[MODULE].preferences


def set_online(on: bool) -> None:
    import bpy

    bpy.context.preferences.system.use_online_access = on
    assert bpy.app.online_access is on


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("onemin3d-") and t.is_alive()]


def make_photo(path: Path, size: tuple[int, int] = (640, 512), seed: int = 1) -> Path:
    """A small photo-like JPEG (a lit sphere on a gradient), at least 512 px as the API requires."""
    import numpy as np
    from PIL import Image

    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r = w * 0.5, h * 0.5, min(w, h) * 0.35
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / r
    sphere = np.clip(1.0 - d, 0.0, 1.0) ** 0.5
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 4.0, (h, w))
    rgb = np.stack([
        60 + 150 * sphere + 30 * x / w + noise,
        40 + 120 * sphere + 40 * y / h + noise,
        90 + 80 * sphere + noise,
    ], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=90)
    return path


def pump_until(predicate: Callable[[], bool], timeout: float = 30.0, *, ticks: list[float] | None = None,
               interval: float = 0.01) -> None:
    """Call the runtime's pump() as Blender's timer would, until `predicate()` holds.
    With `ticks`, every tick's duration (seconds) is appended to it."""
    from onemin3d_addon.blender import runtime

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        start = time.perf_counter()
        runtime.pump()
        if ticks is not None:
            ticks.append(time.perf_counter() - start)
        time.sleep(interval)


@pytest.fixture
def blender() -> Iterator[Any]:
    """A fresh, empty Blender file, with online access on (the wheel starts with it off)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    set_online(True)
    yield bpy
    set_online(True)


@pytest.fixture
def addon(blender: Any, tmp_path: Path, stand_in: Any, api_key: str, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Any]:
    """The add-on enabled, its key set, talking to the stand-in, with a result folder of its own."""
    monkeypatch.delenv("ONEMIN_API_KEY", raising=False)
    monkeypatch.delenv("ONEMIN_API_BASE_URL", raising=False)
    if addon_enabled():
        disable()
    enable()
    p = prefs()
    p.api_key = api_key
    p.base_url = stand_in.base_url
    p.result_folder = str(tmp_path / "results")
    p.parallel_jobs = 2
    p.request_mode = 'SYNC'
    try:
        yield p
    finally:
        if addon_enabled():
            disable()
        assert not worker_threads(), f"threads left after unregister: {worker_threads()}"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return make_photo(tmp_path / "photos" / "dress.jpg")
