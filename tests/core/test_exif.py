"""core.images' one EXIF reader: every format and orientation gives the stored size (as Blender shows it), the upright size (as uploaded) and upright pixels."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from onemin3d_addon.core import images, relief

#: stored pixels whose upright view (EXIF applied, as Pillow's exif_transpose does) is the given picture
_STORE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
UPRIGHT_W, UPRIGHT_H = 900, 600


def quadrants(w: int = UPRIGHT_W, h: int = UPRIGHT_H) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right, as a viewer shows it."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2, : w // 2], rgb[: h // 2, w // 2:] = RED, GREEN
    rgb[h // 2:, : w // 2], rgb[h // 2:, w // 2:] = BLUE, WHITE
    return Image.fromarray(rgb)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _late_exif_png(img: Image.Image, path: Path, orientation: int) -> Path:
    """A PNG whose eXIf chunk comes after the pixels (as some tools write it)."""
    img.save(path, "PNG")
    data = path.read_bytes()
    body = _exif(orientation)
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    iend = data.rindex(b"IEND") - 4
    path.write_bytes(data[:iend] + chunk + data[iend:])
    return path


def stored_pixels(orientation: int, mode: str = "RGB") -> Image.Image:
    """The quadrant picture as a file stores it when its EXIF `orientation` shows it upright."""
    method = _STORE[orientation]
    upright = quadrants().convert(mode)
    return upright if method is None else upright.transpose(method)


def stored_file(tmp_path: Path, form: str, orientation: int, mode: str = "RGB") -> Path:
    """The quadrant picture stored so that its EXIF `orientation` shows it upright, in `form`."""
    img = stored_pixels(orientation, mode)
    path = tmp_path / f"photo-{orientation}.{form.split('-')[0]}"
    extra: dict[str, Any] = {"jpg": {"quality": 95}, "webp": {"lossless": True}}.get(path.suffix[1:], {})
    if form == "png-late":
        return _late_exif_png(img, path, orientation)
    img.save(path, exif=_exif(orientation), **extra)
    return path


def _corner(img: Image.Image, x: float, y: float) -> tuple[int, ...]:
    w, h = img.size
    return tuple(img.convert("RGB").getpixel((int(x * (w - 1)), int(y * (h - 1)))))  # type: ignore[arg-type]


def _close(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(abs(int(p) - int(q)) <= 40 for p, q in zip(a, b, strict=True))


FORMS = ["tif", "tif-L", "jpg", "png", "png-late", "webp"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_header_gives_the_stored_size_the_orientation_and_the_upright_size(tmp_path: Path, form: str,
                                                                          orientation: int) -> None:
    path = stored_file(tmp_path, form, orientation, "L" if form.endswith("-L") else "RGB")
    info = images.image_info(path)
    turned = orientation in (5, 6, 7, 8)
    assert info.orientation == orientation
    assert (info.width, info.height) == ((UPRIGHT_H, UPRIGHT_W) if turned else (UPRIGHT_W, UPRIGHT_H))
    assert info.upright_size == (UPRIGHT_W, UPRIGHT_H) == images.image_size(path, oriented=True)
    assert images.image_size(path) == (info.width, info.height)
    with Image.open(path) as img:
        assert images.exif_orientation(img, path) == orientation


def test_a_tiff_with_orientation_6_is_900_by_600_upright_and_600_by_900_as_stored(tmp_path: Path) -> None:
    """The disagreement of issue 13: one reader said 900×600, the other 600×900."""
    path = stored_file(tmp_path, "tif", 6)
    info = images.image_info(path)
    assert (info.width, info.height) == (600, 900) and info.upright_size == (900, 600)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_upload_is_upright_and_the_uvs_find_the_same_colours_in_the_stored_pixels(
        tmp_path: Path, form: str, orientation: int) -> None:
    path = stored_file(tmp_path, form, orientation, "L" if form.endswith("-L") else "RGB")
    prepared = images.prepare(path, work_dir=tmp_path / "work")
    info = images.image_info(path)
    stored = stored_pixels(orientation).convert("RGB")  # what the file holds, and Blender shows
    assert stored.size == (info.width, info.height)
    grey = form.endswith("-L")
    with Image.open(prepared.path) as up:
        assert up.size == (prepared.width, prepared.height) == info.upright_size
        for (s, t), colour in {(0.1, 0.9): RED, (0.9, 0.9): GREEN, (0.1, 0.1): BLUE, (0.9, 0.1): WHITE}.items():
            u, v = relief.oriented_uv(np.array(s), np.array(t), orientation)
            assert _corner(stored, float(u), 1.0 - float(v)) == colour, (orientation, s, t)
            seen = _corner(up, s, 1.0 - t)
            if grey:  # the upload is grey: the same luma as the colour
                luma = round(0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2])
                assert abs(seen[0] - luma) <= 8, (orientation, s, t, seen)
            else:
                assert _close(seen, colour), (orientation, s, t, seen)
