"""core.cutout without Blender: a relief clipped to the photo's alpha (smooth boundary within a cell of the true contour, holes kept, nothing moved), torn at depth jumps, closed into a watertight solid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onemin3d_addon.core import cutout, relief
from onemin3d_addon.core.cutout import Surface

#: analytic masks on an upright image of SIDE² pixels, in pixel units (x right, y down)
SIDE = 512


def _disc_with_hole(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (px, > 0 inside) to a disc of radius 200 with a hole of radius 70."""
    r = np.hypot(x - 256.0, y - 256.0)
    return np.minimum(200.0 - r, r - 70.0)


def _concave(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth concave star: r < 170 + 60 cos(5θ) (the signed value is a radial distance)."""
    dx, dy = x - 256.0, y - 256.0
    return 170.0 + 60.0 * np.cos(5.0 * np.arctan2(dy, dx)) - np.hypot(dx, dy)


def _alpha(shape: object) -> np.ndarray:
    """The mask at full resolution, pixel centres, 0 or 1 (top row first)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64) + 0.5
    return (shape(x, y) > 0).astype(np.float32)  # type: ignore[operator]


def _cut(shape: object, n: int = 65) -> tuple[Surface, np.ndarray]:
    alpha_grid = cutout.grid_alpha(_alpha(shape), n, n)
    heights = np.zeros((n, n), np.float32)
    return cutout.clip(cutout.grid_surface(heights), alpha_grid.reshape(-1)), alpha_grid


def _edge_use(s: Surface) -> tuple[np.ndarray, np.ndarray]:
    """Per directed edge (a, b) of every face, and how many faces use each undirected edge."""
    a = s.corner_verts
    b = s.corner_verts[s.next_corner()]
    return np.stack([a, b], axis=1), cutout._undirected(s)[2]


def _boundary_points(s: Surface) -> np.ndarray:
    _, edges, counts = cutout._undirected(s)
    return np.unique(edges[counts == 1].reshape(-1))


def _to_pixels(points: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid (col, row bottom-up) -> image pixels (x, y top-down); vertex k sits at k/(n-1) of the image."""
    scale = SIDE / (n - 1)
    return points[:, 0] * scale, SIDE - points[:, 1] * scale


@pytest.mark.parametrize("shape", [_disc_with_hole, _concave])
def test_the_boundary_follows_the_true_contour_within_a_grid_cell(shape: object) -> None:
    n = 65
    s, _ = _cut(shape, n)
    rim = _boundary_points(s)
    x, y = _to_pixels(s.points[rim], n)
    if shape is _concave:  # radial distance is not euclidean: measure against a dense contour instead
        theta = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
        r = 170.0 + 60.0 * np.cos(5.0 * theta)
        cx, cy = 256.0 + r * np.cos(theta), 256.0 + r * np.sin(theta)
        err = np.min(np.hypot(x[:, None] - cx[None], y[:, None] - cy[None]), axis=1)
    else:
        err = np.abs(_disc_with_hole(x, y))
    err_cells = err / (SIDE / (n - 1))
    assert err_cells.max() < 0.5 and err_cells.mean() < 0.2
    # and the other way: every point of the true outline has a rim point within one cell
    if shape is _concave:
        true_x, true_y = cx, cy
    else:
        theta = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
        true_x = 256.0 + np.concatenate([200 * np.cos(theta), 70 * np.cos(theta)])
        true_y = 256.0 + np.concatenate([200 * np.sin(theta), 70 * np.sin(theta)])
    gap = np.min(np.hypot(true_x[:, None] - x[None], true_y[:, None] - y[None]), axis=1) / (SIDE / (n - 1))
    assert gap.max() < 1.0
    # smooth, not a staircase: the rim points are crossings between grid points, not grid points
    on_grid = np.all(np.abs(s.points[rim] - np.rint(s.points[rim])) < 1e-9, axis=1)
    assert on_grid.mean() < 0.1


def test_holes_in_the_mask_are_holes_in_the_mesh_and_nothing_is_kept_outside() -> None:
    n = 65
    s, alpha_grid = _cut(_disc_with_hole, n)
    x, y = _to_pixels(s.points, n)
    r = np.hypot(x - 256.0, y - 256.0)
    assert r.min() > 70.0 - SIDE / (n - 1) and r.max() < 200.0 + SIDE / (n - 1)
    # no corner where alpha < 0.5: grid points kept are inside, crossings sit on the 0.5 level
    on_grid = np.all(s.points == np.rint(s.points), axis=1)
    grid_alpha = alpha_grid[s.points[on_grid, 1].astype(int), s.points[on_grid, 0].astype(int)]
    assert grid_alpha.min() >= 0.5
    # two boundary loops (outer rim and hole): Euler characteristic of an annulus is 0
    _, edges, _ = cutout._undirected(s)
    assert len(s.points) - len(edges) + len(s.face_starts) == 0


def test_inner_cells_stay_quads_and_no_point_is_unused_or_moved() -> None:
    n = 33
    rng = np.random.default_rng(1)
    heights = rng.random((n, n)).astype(np.float32)
    alpha_grid = cutout.grid_alpha(_alpha(_disc_with_hole), n, n)
    s = cutout.clip(cutout.grid_surface(heights), alpha_grid.reshape(-1))
    used = np.zeros(len(s.points), bool)
    used[s.corner_verts] = True
    assert used.all()
    assert np.count_nonzero(s.face_sizes == 4) > 0.8 * len(s.face_starts)
    full = relief.grid_arrays(n, n, 2.0, 2.0)["positions"]
    arrays = cutout.surface_arrays(s, n, n, 2.0, 2.0)
    on_grid = np.all(s.points == np.rint(s.points), axis=1)
    idx = (s.points[on_grid, 1] * n + s.points[on_grid, 0]).astype(int)
    np.testing.assert_allclose(arrays["positions"][on_grid], full[idx], atol=1e-6)
    np.testing.assert_array_equal(arrays["heights"][on_grid], heights.reshape(-1)[idx])
    # the UV of a kept grid point is the full rectangle's
    np.testing.assert_allclose(arrays["uv"][0], [s.points[s.corner_verts[0], 0] / (n - 1),
                                                 s.points[s.corner_verts[0], 1] / (n - 1)], atol=1e-6)


def test_no_bowtie_point_even_where_a_tear_leaves_faces_touching_at_a_corner() -> None:
    s = cutout.grid_surface(np.zeros((3, 3), np.float32))
    s = cutout.keep_faces(s, np.eye(2, dtype=bool).reshape(-1))  # two faces touching at the centre only
    assert len(s.points) == 7
    split = cutout.split_bowties(s)
    assert len(split.points) == 8 and len(np.unique(split.corner_verts)) == 8


@pytest.mark.parametrize("triangles", [False, True])
def test_clipping_by_noise_leaves_no_bowtie_point(triangles: bool) -> None:
    """Random alpha (saddles everywhere): each boundary point still has exactly two boundary edges."""
    n = 24
    s = cutout.grid_surface(np.zeros((n, n), np.float32))
    if triangles:
        q = s.corner_verts.reshape(-1, 4)
        s = cutout.triangle_surface(s.points, s.heights, np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]))
    alpha = np.random.default_rng(3).random(n * n)
    clipped = cutout.clip(s, alpha)
    _, edges, counts = cutout._undirected(clipped)
    assert counts.max() <= 2
    touches = np.bincount(edges[counts == 1].reshape(-1), minlength=len(clipped.points))
    assert set(np.unique(touches)) <= {0, 2}
    assert len(cutout.split_bowties(clipped).points) == len(clipped.points)


def test_tear_removes_exactly_the_faces_over_a_step() -> None:
    rows, cols = 6, 8
    heights = np.zeros((rows, cols), np.float32)
    heights[:, 4:] = 1.0   # a jump between columns 3 and 4
    heights[:, :4] = np.linspace(0.0, 0.2, 4)  # a gentle slope stays
    s = cutout.tear(cutout.grid_surface(heights), 0.5)
    assert len(s.face_starts) == (rows - 1) * (cols - 2)
    xs = s.points[s.corner_verts].reshape(-1, 4, 2)[:, :, 0]
    assert not np.any((xs.min(axis=1) == 3) & (xs.max(axis=1) == 4))
    assert len(cutout.tear(cutout.grid_surface(heights), 1.0).face_starts) == (rows - 1) * (cols - 1)


@pytest.mark.parametrize("how", ["rectangle", "cut", "cut and torn", "triangles"])
def test_a_solid_is_watertight_and_consistently_oriented(how: str) -> None:
    n = 33
    y, x = np.mgrid[0:n, 0:n]
    heights = ((x > n // 2) * 0.8 + 0.1 * np.sin(y / 3.0)).astype(np.float32)
    s = cutout.grid_surface(heights)
    if how == "triangles":  # a top made of triangles (what a simplified web mesh is)
        q = s.corner_verts.reshape(-1, 4)
        s = cutout.triangle_surface(s.points, s.heights, np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]))
    if how != "rectangle":
        s = cutout.clip(s, cutout.grid_alpha(_alpha(_disc_with_hole), n, n).reshape(-1))
    if how == "cut and torn":
        s = cutout.tear(s, 0.5)
    solid = cutout.solidify(s, 0.05)
    directed, uses = _edge_use(solid)
    assert np.all(uses == 2)  # every edge used by exactly two faces
    keys = directed[:, 0].astype(np.int64) * len(solid.points) + directed[:, 1]
    assert len(np.unique(keys)) == len(keys)  # each direction once: the two uses run opposite ways
    _, edges, _ = cutout._undirected(solid)
    chi = len(solid.points) - len(edges) + len(solid.face_starts)
    loops = {"rectangle": 1, "cut": 2, "cut and torn": None, "triangles": 2}[how]
    if loops is not None:  # a closed surface of genus g: χ = 2 - 2g, a hole through it is one genus
        assert chi == 2 - 2 * (loops - 1)
    assert chi % 2 == 0
    arrays = cutout.surface_arrays(solid, n, n, 1.0, 1.0)
    assert arrays["positions"][:, 2].min() == pytest.approx(-0.05)
    assert arrays["sharp_face"].sum() == len(solid.face_starts) - len(s.face_starts)
    # outward: the signed volume of the closed mesh, lifted, is positive
    pos = cutout.surface_arrays(solid, n, n, 1.0, 1.0, lift=0.2)["positions"].astype(np.float64)
    fan = [(solid.corner_verts[st], solid.corner_verts[st + i], solid.corner_verts[st + i + 1])
           for st, size in zip(solid.face_starts, solid.face_sizes, strict=True) for i in range(1, size - 1)]
    tri = pos[np.array(fan)]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert volume > 0


def test_the_alpha_is_read_upright_and_only_when_something_is_transparent(tmp_path: Path) -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:5, :10, 3] = 0  # transparent top-left corner
    Image.fromarray(rgba).save(tmp_path / "a.png")
    alpha = cutout.read_alpha(tmp_path / "a.png")
    assert alpha is not None and alpha.shape == (20, 30) and alpha[0, 0] == 0.0 and alpha[-1, -1] == 1.0
    grid = cutout.grid_alpha(alpha, 21, 31)
    assert grid[-1, 0] == 0.0 and grid[0, -1] == 1.0  # rows bottom-up: the top-left is the last row
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    assert cutout.read_alpha(tmp_path / "rgb.png") is None
    keyed = Image.fromarray(np.where(rgba[..., 3:] == 0, 7, 200).astype(np.uint8)[..., 0], "L")
    keyed.save(tmp_path / "keyed.png", transparency=7)  # a grey PNG with a transparent colour
    keyed_alpha = cutout.read_alpha(tmp_path / "keyed.png")
    assert keyed_alpha is not None and keyed_alpha[0, 0] == 0.0 and keyed_alpha[-1, -1] == 1.0
    keyed.convert("P").save(tmp_path / "palette.png", transparency=7)
    palette_alpha = cutout.read_alpha(tmp_path / "palette.png")
    assert palette_alpha is not None and palette_alpha[0, 0] == 0.0
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert cutout.read_alpha(tmp_path / "opaque.png") is None
    # EXIF orientation 6 (stored rotated): the upright alpha is what is read
    stored = Image.fromarray(np.dstack([rgba[..., :3], _corner()])).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rot.png", exif=exif.tobytes())
    rot = cutout.read_alpha(tmp_path / "rot.png")
    assert rot is not None and rot.shape == (20, 30) and rot[0, 0] == 0.0 and rot[-1, -1] == 1.0


def _corner() -> np.ndarray:
    a = np.full((20, 30), 255, np.uint8)
    a[:5, :10] = 0
    return a
