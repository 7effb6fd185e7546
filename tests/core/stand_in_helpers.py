"""Shared by the core tests that talk to the local stand-in: quick retries and timeouts, and a small photo to upload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from onemin3d_addon.core.client import RetryPolicy, Timeouts

#: Retries that wait hundredths of a second, so fault tests stay fast.
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, max_retry_after=0.3, not_found_retries=3)
#: Timeouts that end a stalled exchange in seconds, not minutes.
QUICK = Timeouts(connect=2.0, generate=10.0, read=5.0)


def write_photo(path: Path) -> Path:
    """A small photo-like JPEG at `path` (a lit disc on a noisy background), fine for upload as it is."""
    h, w = 512, 640
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[...] = (50, 60, 80)
    disc = (xx - 300) ** 2 + (yy - 240) ** 2 < 150**2
    img[disc] = (230, 220, 190)
    img += rng.normal(0, 8, img.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path
