"""blender/connection.py: the one "may anything be sent?" guard, and preference changes reaching the runtime without an import of it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import addon_harness
import pytest
from addon_harness import set_online

from onemin3d_addon.core.errors import OfflineError, Onemin3DError

addon = addon_harness.addon
blender = addon_harness.blender

PACKAGE = Path(__file__).resolve().parents[2] / "onemin3d_addon"


def test_require_sendable_says_the_missing_key_first_then_online_access(addon: Any, monkeypatch: pytest.MonkeyPatch
                                                                        ) -> None:
    from onemin3d_addon.blender import connection

    connection.require_sendable()  # a key, online: nothing to say
    set_online(False)
    with pytest.raises(OfflineError, match="Online access is off"):
        connection.require_sendable()
    addon.api_key = ""
    with pytest.raises(Onemin3DError, match="No 1min.ai API key") as caught:
        connection.require_sendable()
    assert not isinstance(caught.value, OfflineError)
    monkeypatch.setenv("ONEMIN_API_KEY", "sk-from-the-environment")
    with pytest.raises(OfflineError):
        connection.require_sendable()
    set_online(True)
    connection.require_sendable()
    conn = connection.connection_settings()
    assert conn.key_source == "environment"
    # given settings are judged by their own key
    assert connection.sendable_problem(type(conn)(api_key="", key_source="", base_url="x")) is not None


def test_the_guard_is_written_once() -> None:
    """No module but connection.py decides "no key" or "offline" by itself."""
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "connection.py"
                 and re.search(r"no_key_message\(\)|offline_message\(\)", p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_a_preference_change_reaches_the_runtime(addon: Any) -> None:
    from onemin3d_addon.blender import runtime

    rt = runtime.get_runtime()
    addon.parallel_jobs = 3
    assert rt.runner.max_workers == 3
    addon.parallel_jobs = 2
    assert rt.runner.max_workers == 2
