"""bpy-free, imports nothing: the connection defaults the add-on's preferences are drawn with (the API's address, the timeouts).

They live apart from `core/protocol.py` (the wire format, which re-exports them) so that enabling
the add-on, which builds the preferences, does not load the protocol (`scripts/bench.py startup`).
"""

from __future__ import annotations

from typing import Final, NamedTuple

DEFAULT_BASE_URL: Final = "https://api.1min.ai"


# A NamedTuple rather than a frozen dataclass: a tenth of the cost to define. Build it with keywords.
class Timeouts(NamedTuple):
    """Seconds. `generate` is the read timeout of the synchronous generation POST."""

    connect: float = 10.0
    generate: float = 300.0
    read: float = 60.0
