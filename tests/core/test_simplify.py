"""core.simplify without Blender: the adaptive RTIN triangulation is crack-free, counter-clockwise, within its error bound on several fields, keeps forced vertices at full resolution, fits a triangle budget, and holds issue 16's figures on a 1024 × 768 relief."""

from __future__ import annotations

import numpy as np
import pytest

from onemin3d_addon.core import simplify as simp


def _ramp(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return (0.6 * x / (cols - 1) + 0.4 * y / (rows - 1)).astype(np.float32)


def _step(rows: int, cols: int) -> np.ndarray:
    """Smooth hills with a sharp circular plateau and a diagonal cliff: the analytic field."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    x, y = x / (cols - 1), y / (rows - 1)
    z = 0.4 + 0.25 * np.sin(6 * x) * np.cos(4 * y) + 0.2 * (np.hypot(x - 0.4, y - 0.3) < 0.2) \
        + 0.15 * (x + 0.7 * y > 1.1)
    return ((z - z.min()) / (z.max() - z.min())).astype(np.float32)


def _noise(rows: int, cols: int) -> np.ndarray:
    """A ramp with a patch of white noise (small: every noisy vertex ends up a vertex)."""
    z = _ramp(rows, cols) * 0.2
    z[40:104, 50:114] += np.random.default_rng(3).random((64, 64)).astype(np.float32) * 0.04
    return z


def _signed_areas(s: simp.Simplified) -> np.ndarray:
    p = s.points[s.triangles]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def _check_mesh(s: simp.Simplified, rows: int, cols: int) -> None:
    """Integer points on the grid, every triangle counter-clockwise, the rectangle covered exactly
    once, every interior edge shared by exactly two triangles in opposite directions, boundary
    edges only on the grid's border, and no point left unused."""
    assert s.points.shape[1] == 2 and s.triangles.dtype == np.int32 and s.triangles.shape[1] == 3
    assert np.array_equal(s.points, np.round(s.points))
    assert s.points[:, 0].min() >= 0 and s.points[:, 0].max() <= cols - 1
    assert s.points[:, 1].min() >= 0 and s.points[:, 1].max() <= rows - 1
    areas = _signed_areas(s)
    assert (areas > 0).all()
    assert areas.sum() == pytest.approx((rows - 1) * (cols - 1))
    assert np.array_equal(np.unique(s.triangles), np.arange(len(s.points)))
    tris = s.triangles.astype(np.int64)
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    n = len(s.points)
    forward = directed[:, 0] * n + directed[:, 1]
    assert len(np.unique(forward)) == len(forward)          # no edge twice in one direction
    backward = directed[:, 1] * n + directed[:, 0]
    lonely = directed[~np.isin(forward, backward)]           # used by one triangle only
    a, b = s.points[lonely[:, 0]], s.points[lonely[:, 1]]
    on_border = ((a[:, 0] == b[:, 0]) & np.isin(a[:, 0], [0, cols - 1])) | \
                ((a[:, 1] == b[:, 1]) & np.isin(a[:, 1], [0, rows - 1]))
    assert on_border.all()
    assert np.abs(a - b).sum() == 2 * ((rows - 1) + (cols - 1))  # the border, once round


@pytest.mark.parametrize("shape", [(257, 257), (513, 257), (300, 200)])
def test_a_flat_field_is_two_triangles_per_tile(shape: tuple[int, int]) -> None:
    rows, cols = shape
    s = simp.simplify(np.full(shape, 0.3, np.float32), max_error=0.001, fit=False)
    _check_mesh(s, rows, cols)
    if (rows - 1) % 256 == 0 and (cols - 1) % 256 == 0:
        assert len(s.triangles) == 2 * ((rows - 1) // 256) * ((cols - 1) // 256)
    assert simp.vertical_errors(s, np.full(shape, 0.3, np.float32)) == (0.0, 0.0)


@pytest.mark.parametrize("field", [_ramp, _step, _noise])
@pytest.mark.parametrize("shape", [(257, 257), (150, 211)])
@pytest.mark.parametrize("bound", [0.02, 0.005])
def test_the_error_bound_holds_at_every_grid_vertex_and_the_mesh_is_crack_free(
        field: object, shape: tuple[int, int], bound: float) -> None:
    z = field(*shape)  # type: ignore[operator]
    s = simp.simplify(z, max_error=bound)
    _check_mesh(s, *shape)
    errors = simp.vertex_errors(s.points, s.heights, s.triangles, z)
    assert not np.isnan(errors).any()                        # every grid vertex is covered
    worst, rms = simp.vertical_errors(s, z)
    assert worst <= bound + 1e-6 and rms <= worst
    assert s.max_error == bound
    exact = simp.simplify(z, max_error=bound, fit=False)     # the grid's own heights at the vertices
    assert np.array_equal(exact.triangles, s.triangles)
    assert np.array_equal(exact.heights, z[exact.points[:, 1].astype(int), exact.points[:, 0].astype(int)])
    assert simp.vertical_errors(exact, z)[0] <= bound + 1e-6


def test_the_least_squares_fit_lowers_the_rms_error_and_keeps_the_bound() -> None:
    z = np.round(_step(257, 300) * 255) / 255 + (np.random.default_rng(9).random((257, 300)) * 0.004)
    grid_heights = simp.simplify(z, max_error=0.01, fit=False)
    fitted = simp.simplify(z, max_error=0.01)
    worst, rms = simp.vertical_errors(fitted, z)
    assert worst <= 0.01 + 1e-6
    assert rms < 0.8 * simp.vertical_errors(grid_heights, z)[1]


def test_it_is_adaptive_dense_where_the_surface_bends_and_sparse_where_it_is_flat() -> None:
    z = _step(513, 513)
    z[:, :256] = 0.5                                          # the left half flat
    s = simp.simplify(z, max_error=0.005, fit=False)
    centroid_x = s.points[s.triangles][:, :, 0].mean(axis=1)
    left, right = int((centroid_x < 224).sum()), int((centroid_x > 288).sum())  # off the seam
    assert right > 20 * left
    assert len(s.triangles) < 0.1 * 2 * 512 * 512            # far fewer than the full grid's


def test_a_ramp_needs_only_the_tiles() -> None:
    s = simp.simplify(_ramp(257, 257), max_error=1e-4, fit=False)
    assert len(s.triangles) <= 8


def test_forced_vertices_are_kept_and_a_forced_band_is_at_full_resolution() -> None:
    rows = cols = 257
    z = np.full((rows, cols), 0.5, np.float32)
    y, x = np.mgrid[0:rows, 0:cols]
    inside = np.hypot(x - 120.3, y - 131.7) < 70
    band = np.zeros_like(inside)                               # both sides of the mask's edge
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            band |= np.roll(np.roll(inside, dy, 0), dx, 1) != inside
    s = simp.simplify(z, force=band, fit=False)
    _check_mesh(s, rows, cols)
    kept = np.zeros((rows, cols), bool)
    kept[s.points[:, 1].astype(int), s.points[:, 0].astype(int)] = True
    assert kept[band].all()
    # every triangle the mask's edge crosses is a half cell: a clip stays within one cell
    tri_inside = inside[s.points[s.triangles][:, :, 1].astype(int), s.points[s.triangles][:, :, 0].astype(int)]
    crossing = tri_inside.any(axis=1) & ~tri_inside.all(axis=1)
    assert crossing.sum() > 100
    assert np.allclose(np.abs(_signed_areas(s))[crossing], 0.5)
    assert len(s.triangles) < 0.2 * 2 * 256 * 256             # and coarse away from it


@pytest.mark.parametrize("budget", [500, 3000])
def test_max_triangles_raises_the_threshold_just_enough(budget: int) -> None:
    z = _step(257, 300)
    free = simp.simplify(z, max_error=0.001, fit=False)
    assert len(free.triangles) > budget
    s = simp.simplify(z, max_error=0.001, max_triangles=budget, fit=False)
    _check_mesh(s, 257, 300)
    assert len(s.triangles) <= budget
    assert s.max_error > 0.001
    worst, _ = simp.vertical_errors(s, z)
    assert worst <= s.max_error + 1e-6
    # a budget the bound already meets changes nothing
    same = simp.simplify(z, max_error=0.001, max_triangles=len(free.triangles), fit=False)
    assert np.array_equal(same.triangles, free.triangles) and same.max_error == 0.001


def test_vertical_errors_interpolate_inside_the_triangles() -> None:
    z = np.zeros((3, 3), np.float32)
    z[1, 1] = 1.0
    points = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], np.float64)
    flat = np.zeros(4, np.float32)
    two = np.array([[0, 1, 2], [0, 2, 3]])
    assert simp.vertical_errors(type("S", (), {"points": points, "heights": flat, "triangles": two})(), z) == \
        pytest.approx((1.0, 1.0 / 3.0))
    half = simp.vertex_errors(points, flat, two[:1], z)       # one triangle covers 6 of 9 vertices
    assert int(np.isnan(half).sum()) == 3


def test_bad_input_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="2 × 2"):
        simp.simplify(np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="finite"):
        simp.simplify(np.full((5, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        simp.simplify(np.zeros((5, 5), np.float32), force=np.zeros((4, 4), bool))


def test_issue_16_figures_on_a_1024_relief_with_sharp_steps() -> None:
    """Grid 1024 × 768 (a 4:3 photo at resolution 1024), the default bound: at most 50,000
    triangles (a solid, twice the top plus its walls, too), max error ≤ 2 %, RMS ≤ 0.5 % of the depth.
    Without the least-squares fit, to stay quick: the fit keeps the triangles and the bound and only
    lowers the RMS (tested above); `scripts/bench.py export` measures the default."""
    z = np.round(_step(768, 1024) * 255) / 255               # in 8-bit steps, as a depth PNG holds it
    s = simp.simplify(z, fit=False)
    worst, rms = simp.vertical_errors(s, z)
    _check_mesh(s, 768, 1024)
    on_border = (s.points[:, 0] % 1023 == 0) | (s.points[:, 1] % 767 == 0)
    walls = 2 * int(on_border.sum())                          # two triangles per border edge
    assert 2 * len(s.triangles) + walls <= 50_000             # top, its flat copy, the walls
    assert worst <= simp.DEFAULT_MAX_ERROR + 1e-6 <= 0.02
    assert rms <= 0.005


def test_it_composes_with_the_cut_out_clip_and_the_solid() -> None:
    """simplify → core.cutout (clip at the alpha, solidify): still cut, every edge used twice in
    opposite directions, and the outline within one cell of the full grid's clip."""
    from onemin3d_addon.core import cutout

    rows, cols = 129, 161
    z = _step(rows, cols)
    y, x = np.mgrid[0:rows, 0:cols]
    alpha = np.clip(40.0 - np.hypot(x - 80.3, y - 61.7), 0.0, 1.0).astype(np.float32)
    mask = alpha >= 0.5
    band = np.zeros_like(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            band |= np.roll(np.roll(mask, dy, 0), dx, 1) != mask
    s = simp.simplify(z, max_error=0.01, force=band)
    ij = s.points.astype(int)
    top = cutout.clip(cutout.triangle_surface(s.points, s.heights, s.triangles), alpha[ij[:, 1], ij[:, 0]])
    full = cutout.clip(cutout.grid_surface(z), alpha.reshape(-1))
    assert len(top.face_starts) < len(full.face_starts) / 2      # triangles against quads
    # the same outline: the clipped boundary points are the full grid's
    assert np.abs(top.points.min(axis=0) - full.points.min(axis=0)).max() < 1e-9
    assert np.abs(top.points.max(axis=0) - full.points.max(axis=0)).max() < 1e-9
    assert (np.hypot(top.points[:, 0] - 80.3, top.points[:, 1] - 61.7) <= 40.5).all()
    solid = cutout.solidify(top, 0.05)
    nxt = solid.next_corner()
    edges = np.stack([solid.corner_verts, solid.corner_verts[nxt]], axis=1).astype(np.int64)
    n = len(solid.points)
    forward, backward = edges[:, 0] * n + edges[:, 1], edges[:, 1] * n + edges[:, 0]
    assert len(np.unique(forward)) == len(forward) and np.isin(forward, backward).all()
