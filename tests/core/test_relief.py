"""core.relief without Blender: a depth map read upright, exact area means, the grid's topology, UVs for every EXIF orientation, a watertight solid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from onemin3d_addon.core import relief
from onemin3d_addon.core.errors import ImportFailed

#: the Pillow transpose that shows a stored image upright, per EXIF orientation (as exif_transpose does)
_UPRIGHT = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
            7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
#: the inverse: stored pixels whose upright view is the given picture
_STORE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def _stored(upright: Image.Image, orientation: int) -> Image.Image:
    method = _STORE[orientation]
    return upright if method is None else upright.transpose(method)


def _with_exif(img: Image.Image, path: Path, orientation: int, fmt: str) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra: dict[str, Any] = {"WEBP": {"lossless": True}, "JPEG": {"quality": 95}}.get(fmt, {})
    img.save(path, fmt, exif=exif.tobytes(), **extra)
    return path


def _blob(w: int = 40, h: int = 30) -> np.ndarray:
    """A bright blob in the top-left quarter of a w×h depth map (Pillow's rows, top first)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.exp(-(((x - 0.25 * w) / (0.1 * w)) ** 2 + ((y - 0.25 * h) / (0.1 * w)) ** 2))


# --- EXIF orientation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_oriented_uv_finds_each_upright_point_in_the_stored_pixels_as_pillow_turns_them(orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    upright = Image.fromarray((rng.random((6, 9, 3)) * 255).astype(np.uint8))
    stored = _stored(upright, orientation)
    method = _UPRIGHT[orientation]
    assert np.array_equal(np.asarray(stored if method is None else stored.transpose(method)), np.asarray(upright))
    up, st = np.asarray(upright), np.asarray(stored)
    h, w = up.shape[:2]
    sh, sw = st.shape[:2]
    for row in range(h):
        for col in range(w):
            s = (col + 0.5) / w            # bottom-up UV of the pixel's centre in the upright image
            t = 1.0 - (row + 0.5) / h
            u, v = relief.oriented_uv(np.array(s), np.array(t), orientation)
            x, y = int(float(u) * sw), int((1.0 - float(v)) * sh)
            assert np.array_equal(st[y, x], up[row, col]), (orientation, row, col)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_depth_map_is_read_upright_whatever_its_exif_and_format(tmp_path: Path, fmt: str, orientation: int) -> None:
    upright = (_blob() * 255).astype(np.uint8)
    stored = _stored(Image.fromarray(upright, "L"), orientation)
    path = _with_exif(stored, tmp_path / f"depth.{fmt.lower()}", orientation, fmt)
    depth = relief.read_depth(path)
    assert depth.shape == upright.shape and depth.dtype == np.float32
    if fmt == "JPEG":  # lossy: the blob is where it belongs, within a few grey levels
        assert np.abs(depth - upright).mean() < 2.0 and np.abs(depth - upright).max() < 40
    else:
        np.testing.assert_array_equal(depth, upright)


def test_16_bit_and_rgb_depth_maps_read_as_the_same_heights_as_8_bit(tmp_path: Path) -> None:
    d = _blob()
    Image.fromarray((d * 255).astype(np.uint8)).save(tmp_path / "8.png")
    Image.fromarray((d * 65535).astype(np.uint16)).save(tmp_path / "16.png")
    Image.fromarray(np.repeat((d * 255).astype(np.uint8)[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    ref = relief.relief_heights(relief.read_depth(tmp_path / "8.png"), 16, 21)
    for name in ("16.png", "rgb.png"):
        np.testing.assert_allclose(relief.relief_heights(relief.read_depth(tmp_path / name), 16, 21), ref, atol=0.01)


def test_an_unreadable_or_missing_depth_map_is_an_import_failure_with_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ImportFailed, match="broken.png.*cannot be read"):
        relief.read_depth(tmp_path / "broken.png")
    with pytest.raises(ImportFailed, match="gone.png.*was not found"):
        relief.read_depth(tmp_path / "gone.png")


# --- heights and grid --------------------------------------------------------------------------------


def test_white_is_high_rows_run_bottom_up_and_heights_fill_zero_to_one() -> None:
    heights = relief.relief_heights(_blob(40, 30).astype(np.float32), 16, 21)
    assert heights.shape == (16, 21) and heights.dtype == np.float32
    assert heights.min() == 0.0 and heights.max() == pytest.approx(1.0)
    j, i = np.unravel_index(np.argmax(heights), heights.shape)
    assert i < 21 / 2 and j > 16 / 2, "the top-left blob must end in the last rows (Blender's top)"
    inverted = relief.relief_heights(_blob(40, 30).astype(np.float32), 16, 21, invert=True)
    np.testing.assert_allclose(inverted, 1.0 - heights, atol=1e-6)
    assert not relief.relief_heights(np.full((8, 8), 0.3, np.float32), 5, 5).any()  # flat stays flat


def test_grid_shape_follows_the_photos_aspect_and_is_capped_by_the_depth_maps_pixels() -> None:
    assert relief.grid_shape((400, 300), 64, (300, 400)) == (48, 64)
    assert relief.grid_shape((300, 400), 512, (40, 30)) == (41, 31)
    assert relief.grid_shape((1000, 10), 512, (10, 1000)) == (6, 512)


def test_plane_size_is_height_units_tall_or_factor_pixels_per_unit() -> None:
    assert relief.plane_size((400, 300), "ABSOLUTE", 1.0, 600.0) == pytest.approx((4 / 3, 1.0))
    assert relief.plane_size((400, 300), "DPBU", 1.0, 100.0) == pytest.approx((4.0, 3.0))


def _directed_edges(corner_verts: np.ndarray, face_starts: np.ndarray) -> list[tuple[int, int]]:
    ends = np.append(face_starts[1:], len(corner_verts))
    out = []
    for a, b in zip(face_starts, ends, strict=True):
        face = corner_verts[a:b].tolist()
        out += list(zip(face, face[1:] + face[:1], strict=True))
    return out


def test_the_solid_is_watertight_with_consistent_outward_faces_and_a_flat_back() -> None:
    rows, cols, width, height, base = 7, 9, 1.5, 1.0, 0.1
    heights = np.random.default_rng(5).random((rows, cols)).astype(np.float32) * 0.2
    a = relief.solid_arrays(rows, cols, width, height, heights, base)
    directed = _directed_edges(a["corner_verts"], a["face_starts"])
    assert len(set(directed)) == len(directed), "two faces run along an edge in the same direction"
    assert all((b, v) in set(directed) for v, b in directed), "an edge does not have two faces"
    # every corner's edge joins the corner's vertex and the next one
    edges = a["edges"]
    for (v0, v1), e in zip(directed, a["corner_edges"].tolist(), strict=True):
        assert {v0, v1} == set(edges[e].tolist())
    assert np.bincount(a["corner_edges"], minlength=len(edges)).tolist() == [2] * len(edges)
    co = a["positions"].astype(np.float64)
    co[:, 2] += a["heights"]  # what the modifier adds at Strength 1
    cv = a["corner_verts"]
    ends = np.append(a["face_starts"][1:], len(cv))
    volume = sum(np.dot(co[cv[s]], np.cross(co[cv[i]], co[cv[i + 1]]))
                 for s, e in zip(a["face_starts"], ends, strict=True) for i in range(s + 1, e - 1)) / 6
    assert volume > 0, "faces point inwards"
    assert np.allclose(co[rows * cols:, 2], -base)
    assert a["uv"].shape == (len(cv), 2) and a["sharp_face"].sum() == len(a["face_starts"]) - (rows - 1) * (cols - 1)


def test_the_open_grid_numbers_vertices_row_by_row_with_counter_clockwise_faces() -> None:
    a = relief.grid_arrays(3, 4, 3.0, 2.0)
    assert a["positions"][:4, 0].tolist() == [-1.5, -0.5, 0.5, 1.5] and a["positions"][4, 1] == -0.0
    assert a["corner_verts"][:4].tolist() == [0, 1, 5, 4]
    assert len(a["edges"]) == 3 * 3 + 4 * 2 and len(a["face_starts"]) == 2 * 3


# --- numpy sampling, unit level --------------------------------------------------------------------


def test_area_resample_takes_exact_box_means_not_nearest_pixels() -> None:
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (8, 8))  # 8×16, 1-pixel columns
    out = relief.area_resample(stripes, 5, 9)   # one vertex every 2 px: each box covers one of each
    np.testing.assert_allclose(out[:, 1:-1], 0.5, atol=1e-6)
    rng = np.random.default_rng(0)
    for shape, grids in (((7, 10), ((4, 5), (3, 11), (7, 10), (2, 2), (8, 11), (12, 30))),
                         ((8, 16), ((3, 5), (5, 9), (9, 17), (2, 3), (5, 5)))):  # whole-pixel cells too
        img = rng.random(shape).astype(np.float32)
        for rows, cols in grids:
            np.testing.assert_allclose(relief.area_resample(img, rows, cols), _exact_means(img, rows, cols),
                                       atol=2e-6, err_msg=f"{shape} → {rows}×{cols}")


def _exact_means(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Means over each vertex's cell, from the exact overlap of every pixel with every cell."""
    def weights(n: int, size: int) -> np.ndarray:
        step = size / (n - 1)
        lo = np.clip(np.arange(n) * step - step / 2, 0, size)[:, None]
        hi = np.clip(np.arange(n) * step + step / 2, 0, size)[:, None]
        p = np.arange(size)[None, :]
        overlap = np.clip(np.minimum(hi, p + 1) - np.maximum(lo, p), 0, None)
        return overlap / overlap.sum(axis=1, keepdims=True)

    h, w = img.shape
    return weights(rows, h) @ img.astype(np.float64) @ weights(cols, w).T


def _uv_by_formula(rows: int, cols: int, orientation: int, x_major: bool) -> np.ndarray:
    """quad_grid_uv written out the slow, obvious way: every corner's (s, t), then the EXIF turn."""
    faces = [(i, j) for i in range(cols - 1) for j in range(rows - 1)] if x_major else \
        [(i, j) for j in range(rows - 1) for i in range(cols - 1)]
    st = np.array([((i + di) / (cols - 1), (j + dj) / (rows - 1))
                   for i, j in faces for di, dj in ((0, 0), (1, 0), (1, 1), (0, 1))], np.float64)
    u, v = relief.oriented_uv(st[:, 0], st[:, 1], orientation)
    return np.stack([u, v], axis=1).reshape(-1)


@pytest.mark.parametrize(("rows", "cols"), [(2, 2), (2, 9), (9, 2), (3, 4), (40, 7), (5, 600)])
def test_quad_grid_uv_puts_every_corner_at_its_place_for_every_orientation_and_order(rows: int, cols: int) -> None:
    for orientation in range(1, 9):
        for x_major in (False, True):
            got = relief.quad_grid_uv(rows, cols, orientation, x_major=x_major)
            assert got.dtype == np.float32 and got.flags.c_contiguous
            np.testing.assert_allclose(got, _uv_by_formula(rows, cols, orientation, x_major), atol=1e-6,
                                       err_msg=f"{rows}×{cols}, orientation {orientation}, x_major {x_major}")
    exact = relief.quad_grid_uv(rows, cols).reshape(-1, 2)
    assert exact.min() == 0.0 and exact.max() == 1.0  # the corners land exactly on the image's


def test_banded_transpose_is_numpys_transpose() -> None:
    a = np.random.default_rng(3).random((130, 77)).astype(np.float32)
    t = relief.transposed(a)
    assert t.flags.c_contiguous and np.array_equal(t, a.T)


def test_gaussian_blur_is_normalised_and_its_fft_path_matches_the_direct_one() -> None:
    rng = np.random.default_rng(2)
    img = rng.random((60, 80)).astype(np.float32)
    assert relief.gaussian_blur(np.full((20, 20), 0.7, np.float32), 3.0) == pytest.approx(0.7, abs=1e-5)
    direct = relief.gaussian_blur(img, 6.0)   # 37 taps: shifted sums
    wide = relief.gaussian_blur(img, 7.5)     # 47 taps: FFT
    ref = np.array(img, np.float64)
    for sigma, got in ((6.0, direct), (7.5, wide)):
        r = int(np.ceil(3 * sigma))
        x = np.arange(-r, r + 1)
        k = np.exp(-0.5 * (x / sigma) ** 2)
        k /= k.sum()
        want = ref
        for axis in (0, 1):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (r, r)
            p = np.pad(want, pad, mode="symmetric")
            want = np.apply_along_axis(lambda v, k=k: np.convolve(v, k, mode="valid"), axis, p)
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"sigma {sigma}")
