"""bpy-free: the check of BACKGROUND_REMOVER's answer (a paid, hostile file) before it is used.

The client already refused anything over the download size limit or of an unknown kind; here the
downloaded cut-out must be an image (PNG, JPEG or WebP by its bytes), decode whole within
Pillow's decompression-bomb limit, and show a subject. What is done when it falls short:

* not an image, damaged, or a bomb → `ResultError`: the record is journalled, so it is
  downloaded again, free (the removal is never paid twice);
* an image with no alpha channel (or one that is opaque everywhere) → used as it is, with a
  warning: the 3D model gets it, the relief or plane is textured with it and not cut;
* an alpha channel with no pixel at or above half opacity (nothing left of the subject) →
  `ResultError`: turn off Remove background for this photo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import results
from .errors import ResultError, advised, get_logger

log = get_logger(__name__)

_IMAGE_KINDS = frozenset({"png", "jpg", "jpeg", "webp"})


@dataclass(frozen=True)
class Cutout:
    """What the check found in a downloaded cut-out."""

    path: Path
    width: int
    height: int
    has_alpha: bool  # an alpha channel with at least one pixel below half opacity
    subject: float  # the share of pixels at or above half opacity (1.0 without alpha)


def check_cutout(path: str | os.PathLike[str]) -> Cutout:
    """Check the cut-out at `path` (see the module doc); ResultError when it cannot be used."""
    from PIL import Image

    from .images import decode_errors, open_image

    src = Path(os.fsdecode(path))
    kind = results.sniff_file(src) if src.is_file() else None
    if kind not in _IMAGE_KINDS:
        raise advised(ResultError, f"The background removal's result {src.name} is not an image "
                      f"({kind or 'unreadable'}): ", "download it again, free, {download_again}.")
    try:
        with open_image(src) as img:
            img.load()
            size = img.size
            alpha = img.getchannel("A") if "A" in img.getbands() else None
            if alpha is None and img.mode == "P" and "transparency" in img.info:
                alpha = img.convert("RGBA").getchannel("A")
            histogram = alpha.histogram() if alpha is not None else None
    except Image.DecompressionBombError as exc:
        raise advised(ResultError, f"The background removal's result {src.name} claims too many pixels "
                      "and was refused: ", "turn off Remove background for this photo.") from exc
    except decode_errors() as exc:
        raise advised(ResultError, f"The background removal's result {src.name} is damaged ({exc}): ",
                      "download it again, free, {download_again}.") from exc
    width, height = size
    if width <= 0 or height <= 0:
        raise advised(ResultError, f"The background removal's result {src.name} has no pixels: ",
                      "turn off Remove background for this photo.")
    if histogram is None or sum(histogram[:128]) == 0:
        log.warning("the cut-out %s has no transparent pixel: it is used as it is, and nothing is cut",
                    src.name)
        return Cutout(src, width, height, has_alpha=False, subject=1.0)
    kept = sum(histogram[128:])
    if kept == 0:
        raise advised(ResultError, f"The background removal left nothing of the subject in {src.name}: ",
                      "turn off Remove background for this photo, or choose one where the subject "
                      "stands out from its background.")
    return Cutout(src, width, height, has_alpha=True, subject=kept / (width * height))
