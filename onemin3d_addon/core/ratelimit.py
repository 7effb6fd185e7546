"""bpy-free, thread-safe: a sliding-window request limiter, shared process-wide per API key and API origin.

1min.ai documents a limit of 180 requests per minute per key. Every `OneMinClient` takes a slot
from `limiter_for(key, origin)` before each request it sends to the API (uploads, generations,
status polls, retries included), so every job of the process, the add-on's parallel jobs and the
command line's alike, stays under it together. Downloads of results from the storage host do not
carry the key and are not counted.

The registry is keyed by a salted hash of the key (the salt is random per process), never by
the key itself: the key is not stored here, not logged, and not in any repr.

`ONEMIN3D_REQUESTS_PER_MINUTE` overrides the default budget (170, a margin under the documented
180 for requests the server may count that we do not see, such as a proxy's retries); 0 turns
the limiter off, for a plan with a higher limit or a local stand-in.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from .errors import get_logger

log = get_logger(__name__)

#: The documented limit is 180 per minute per key; keep a margin.
DEFAULT_LIMIT: Final = 170
DEFAULT_WINDOW: Final = 60.0
ENV_VAR: Final = "ONEMIN3D_REQUESTS_PER_MINUTE"
#: Longest single sleep while waiting: a cancel or a clock check is never further away than this.
_MAX_NAP: Final = 0.25


class RateLimiter:
    """At most `limit` acquisitions in any `window` seconds (a sliding-window log), thread-safe.

    A log rather than a refilling bucket: a bucket of capacity C refilled at r/s lets C + 60·r
    requests through in the first minute, while the log's guarantee is exactly the documented
    one, and a batch smaller than the limit is never slowed at all. `limit` 0 means no limit.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT, window: float = DEFAULT_WINDOW, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"limit must be a whole number of at least 0, not {limit!r}")
        if not window > 0:
            raise ValueError(f"window must be positive, not {window!r}")
        self.limit = limit
        self.window = float(window)
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds callers spent waiting, in total (for logs and benchmarks)

    def __repr__(self) -> str:
        return f"RateLimiter(limit={self.limit}, window={self.window:g})"

    def in_window(self) -> int:
        """How many acquisitions the current window holds."""
        with self._lock:
            self._expire_locked(self._clock())
            return len(self._sent)

    def acquire(self, cancel: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Take a slot, waiting as long as needed. False if `cancel` was set first, or after
        `timeout` seconds without a slot; nothing is taken then."""
        if self.limit == 0:
            return cancel is None or not cancel.is_set()
        deadline = None if timeout is None else time.monotonic() + timeout
        logged = False
        while True:
            if cancel is not None and cancel.is_set():
                return False
            with self._lock:
                now = self._clock()
                self._expire_locked(now)
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return True
                wait = self.window - (now - self._sent[0])
            if not logged:
                log.info("request budget of %d per %g s used up; waiting %.1f s", self.limit, self.window, wait)
                logged = True
            nap = min(max(wait, 0.001), _MAX_NAP)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                nap = min(nap, left)
            started = time.monotonic()
            if cancel is not None:
                cancel.wait(nap)
            else:
                time.sleep(nap)
            with self._lock:
                self.waited += time.monotonic() - started

    def _expire_locked(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()


_SALT: Final = secrets.token_bytes(16)
_registry: dict[tuple[str, str], RateLimiter] = {}
_registry_lock = threading.Lock()


def _fingerprint(api_key: str) -> str:
    return hashlib.blake2b(api_key.encode("utf-8"), key=_SALT, digest_size=16).hexdigest()


def default_limit() -> int:
    """The budget per minute: ONEMIN3D_REQUESTS_PER_MINUTE, else DEFAULT_LIMIT."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        log.warning("%s=%r is not a whole number; using %d", ENV_VAR, raw, DEFAULT_LIMIT)
        return DEFAULT_LIMIT
    return max(0, value)


def limiter_for(api_key: str, base_url: str = "") -> RateLimiter:
    """The process-wide limiter of this key at the origin of `base_url` (created on first use)."""
    parts = urlsplit(base_url)
    slot = (_fingerprint(api_key), f"{parts.scheme}://{parts.netloc}".lower())
    with _registry_lock:
        limiter = _registry.get(slot)
        if limiter is None:
            limiter = _registry[slot] = RateLimiter(default_limit(), DEFAULT_WINDOW)
        return limiter


def reset_registry() -> None:
    """Forget every shared limiter (tests; a changed ONEMIN3D_REQUESTS_PER_MINUTE)."""
    with _registry_lock:
        _registry.clear()
