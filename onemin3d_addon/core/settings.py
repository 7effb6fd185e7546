"""bpy-free: `ConnectionSettings`, what a job needs from the preferences (key, base URL, timeouts, result folder, proxy, CA bundle), frozen.

`blender/connection.py` copies the preferences into it on the main thread, so worker threads
never read Blender data. It lives here, imported on first use, rather than in connection.py,
which enabling the add-on loads (`scripts/bench.py startup`); connection and preferences still
answer to the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .protocol import Timeouts


class ConnectionSettings(NamedTuple):
    """What a job needs from the preferences, copied on the main thread at submit time; its repr
    leaves the key out. Build it with keywords, change it with `_replace`."""

    api_key: str
    key_source: str
    base_url: str
    use_async: bool = True
    timeouts: Timeouts = Timeouts()
    poll_interval: float = 1.0
    poll_deadline: float = 900.0
    parallel_jobs: int = 2
    result_folder: Path = Path()
    proxy: str | None = None
    ca_bundle: str | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._asdict().items() if name != "api_key")
        return f"{type(self).__name__}({shown})"
