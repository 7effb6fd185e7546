"""The pinned bpy wheel imports, is the pinned version, and keeps its user folders where BLENDER_USER_RESOURCES says."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pinned_versions() -> set[str]:
    pins = set()
    for req in ROOT.glob("requirements*.txt"):
        for line in req.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*bpy\s*==\s*([0-9.]+)", line)
            if m:
                pins.add(m.group(1))
    return pins


@pytest.mark.smoke
def test_bpy_is_one_of_the_pinned_wheels_and_reports_that_version() -> None:
    import bpy

    installed = importlib.metadata.version("bpy")
    assert installed in _pinned_versions(), f"bpy {installed} is not pinned in requirements*.txt"
    assert bpy.app.version == tuple(int(p) for p in installed.split(".")), bpy.app.version_string
    if Path(sys.prefix).name == ".venv":  # the main test environment pins 5.0.1
        assert bpy.app.version == (5, 0, 1)


@pytest.mark.smoke
def test_blender_user_folders_live_under_blender_user_resources() -> None:
    import bpy

    user = Path(os.environ["BLENDER_USER_RESOURCES"]).resolve()
    assert Path(bpy.utils.resource_path("USER")).resolve() == user
    assert Path(bpy.utils.user_resource("CONFIG")).resolve().is_relative_to(user)
    assert Path(bpy.utils.user_resource("SCRIPTS")).resolve().is_relative_to(user)


@pytest.mark.smoke
def test_a_fresh_process_writes_its_preferences_only_into_its_own_user_folder(tmp_path: Path) -> None:
    user = tmp_path / "blender-user"
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent("""
        import bpy
        bpy.ops.wm.save_userpref()
        print("USER", bpy.utils.resource_path("USER"))
    """)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user), "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    assert f"USER {user}" in out.stdout
    assert list(user.rglob("userpref.blend")), "the preferences were not written into BLENDER_USER_RESOURCES"
    # Blender creates the (empty) freedesktop thumbnail folders under ~/.cache; nothing else may land in HOME.
    written = [p for p in home.rglob("*") if p.is_file()]
    assert not written, f"files were written into HOME: {written}"
    assert not (home / ".config" / "blender").exists()
