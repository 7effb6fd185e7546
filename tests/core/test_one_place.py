"""Facts the package states once: the photo suffixes (core.options), the result size cap (core.results)."""

from __future__ import annotations

import re
from pathlib import Path

from onemin3d_addon.core import images, options, results

PACKAGE = Path(__file__).resolve().parents[2] / "onemin3d_addon"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_one_list_of_photo_suffixes_and_no_gif_which_blender_cannot_show() -> None:
    assert images.IMAGE_SUFFIXES == tuple(s.lower() for s in images.IMAGE_SUFFIXES)
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"} <= set(images.IMAGE_SUFFIXES)
    assert ".gif" not in images.IMAGE_SUFFIXES
    lists = [name for name, text in _sources().items() if re.search(r"""["']\.tga["']""", text)]
    assert lists == ["core/options.py"], f"another list of image suffixes in {lists}"
    assert images.IMAGE_SUFFIXES is options.IMAGE_SUFFIXES


def test_the_result_size_cap_is_written_once() -> None:
    cap = re.compile(r"512\s*\*\s*1024\s*\*\s*1024|536870912|1\s*<<\s*29")
    assert results.MAX_RESULT_BYTES == 512 * 1024 * 1024
    written = [name for name, text in _sources().items() if cap.search(text)]
    assert written == ["core/results.py"], f"the 512 MiB cap is written again in {written}"
