"""Shared test set-up: a hermetic Blender user folder and the local 1min.ai stand-in."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fake_onemin_server import FakeOneMinServer

# Before anything imports bpy: keep Blender's user folders out of the home directory.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="onemin3d-blender-user-"))

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


# bpy 4.2's wheel segfaults (exit 139) in Python's finalisation after a glTF export, with every
# test passed and atexit's handlers run (the converter's shim ends its runs the same way, see
# scripts/image_to_3d.py). There, the test process ends with pytest's own exit status once its
# report is written. Later wheels exit normally: a crash at exit there still shows.
_session_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    bpy = sys.modules.get("bpy")
    version = getattr(getattr(bpy, "app", None), "version", None)
    if bpy is None or not _session_status or not isinstance(version, tuple) or version >= (4, 3, 0):
        return
    import atexit
    import logging

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_session_status[-1])


@pytest.fixture
def api_key() -> str:
    """The key the stand-in accepts: recognisable, so leak checks can search for it."""
    from fake_onemin_server import DEFAULT_API_KEY

    return DEFAULT_API_KEY


@pytest.fixture
def stand_in(api_key: str) -> Iterator[FakeOneMinServer]:
    """A started local stand-in of the 1min.ai API on a free port (no latency, depth results).

    Tune it per test: `stand_in.latency = 1.0`, `stand_in.result = "glb"`,
    `stand_in.inject("429", stage="poll")`; it is stopped and its files deleted afterwards.
    """
    from fake_onemin_server import FakeOneMinServer

    server = FakeOneMinServer(api_key=api_key).start()
    try:
        yield server
    finally:
        server.close()
