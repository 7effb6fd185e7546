"""bpy-free, imports nothing: the connection defaults the add-on's preferences are drawn with (the API's address, the timeouts).

Plain constants, apart from `core/protocol.py` (the wire format, whose `Timeouts` takes its
defaults from here and which re-exports DEFAULT_BASE_URL): enabling the add-on builds the
preferences, and so loads this module, but neither the protocol nor any record class
(`scripts/bench.py startup`).
"""

from __future__ import annotations

from typing import Final

DEFAULT_BASE_URL: Final = "https://api.1min.ai"

#: Seconds: `Timeouts()`'s defaults (connect, the synchronous generation's read, any other read).
CONNECT_TIMEOUT: Final = 10.0
GENERATE_TIMEOUT: Final = 300.0
READ_TIMEOUT: Final = 60.0
