"""What the imports are called: a plane, a relief and a model take the photo's name, not the server's file name."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from onemin3d_addon.blender import scene_build as sb

Blend = Any  # tests/blender/conftest.py: the empty_blend fixture's value
SERVER_NAME = "2026_12_02_10_11_12_123_3d_generated"


def _png(path: Any, rgb: bool = True) -> Any:
    rng = np.random.default_rng(5)
    pixels = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels if rgb else pixels[..., 0]).save(path)
    return path


@pytest.mark.smoke
def test_a_plane_is_named_after_the_photo(empty_blend: Blend) -> None:
    result = _png(empty_blend.tmp / f"{SERVER_NAME}.png")
    photo = _png(empty_blend.tmp / "dress.jpg")
    made = sb.import_result(result, photo, "PLANE")
    assert [o.name for o in made.objects] == ["dress"]
    assert made.collection.name == "1min3d dress"


def test_a_plane_without_a_photo_keeps_the_results_name(empty_blend: Blend) -> None:
    result = _png(empty_blend.tmp / f"{SERVER_NAME}.png")
    made = sb.import_result(result, None, "PLANE")
    assert [o.name for o in made.objects] == [SERVER_NAME]


@pytest.mark.smoke
def test_a_relief_is_named_after_the_photo(empty_blend: Blend) -> None:
    result = _png(empty_blend.tmp / f"{SERVER_NAME}.png", rgb=False)
    photo = _png(empty_blend.tmp / "dress.jpg")
    made = sb.import_result(result, photo, "DISPLACEMENT", {"resolution": 32})
    assert [o.name for o in made.objects] == ["dress relief"]


@pytest.mark.smoke
def test_a_model_is_named_after_the_photo(empty_blend: Blend) -> None:
    from fake_onemin_server import RESULT_TYPES, compute_result

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(3).random((128, 128, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    result = empty_blend.tmp / f"{SERVER_NAME}.{RESULT_TYPES['glb'][0]}"
    result.write_bytes(compute_result("glb", buf.getvalue()))
    made = sb.import_result(result, empty_blend.tmp / "shoe.png", "AUTO")
    tops = [o for o in made.objects if o.parent is None or o.parent not in made.objects]
    assert tops and all(o.name.split(".")[0] == "shoe" for o in tops), [o.name for o in made.objects]
    assert not any(SERVER_NAME in o.name for o in made.objects)
