"""core/web_relief without bpy: the web relief holds its triangle budget (walls and back included), its error bound, its cut and its watertightness."""

from __future__ import annotations

import numpy as np

from onemin3d_addon.core import cutout, simplify, web_relief


def _field(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    return (0.5 + 0.3 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.2 * (x > cols // 2)).astype(np.float32)


def _ring(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    r = np.hypot(x - cols / 2, y - rows / 2) / (min(rows, cols) / 2)
    return ((r < 0.85) & (r > 0.3)).astype(np.float32)


def _edge_uses(s: cutout.Surface) -> tuple[np.ndarray, np.ndarray]:
    a = s.corner_verts
    b = s.corner_verts[s.next_corner()]
    keys, counts = np.unique(np.stack([a, b], 1), axis=0, return_counts=True)
    return keys, counts


def test_the_top_is_within_the_bound_and_the_rms_target() -> None:
    h = _field(129, 193)
    s = web_relief.web_surface(h)
    tris = np.concatenate([s.corner_verts.reshape(-1, 3)])
    worst, rms = simplify.vertical_errors(simplify.Simplified(s.points, s.heights, tris, 0.0), h)
    span = float(h.max() - h.min())
    assert worst <= web_relief.WEB_MAX_ERROR * span * 1.0001 and rms <= web_relief.RMS_TARGET * span
    assert web_relief.triangle_count(s) < (128 * 192 * 2) // 4  # adaptive: far fewer than the grid's


def test_a_cut_out_solid_whose_outline_alone_is_over_the_budget_is_made_on_a_coarser_grid() -> None:
    rows, cols = 129, 161
    h, alpha = _field(rows, cols), _ring(rows, cols)
    full = web_relief.web_surface(h, alpha=alpha, solid=True, base=0.1)
    budget = web_relief.triangle_count(full) // 2
    s = web_relief.web_surface(h, alpha=alpha, solid=True, base=0.1, max_triangles=budget)
    assert web_relief.triangle_count(s) <= budget
    # still on the whole grid's frame (the same corners), still cut, still watertight
    assert s.points[:, 0].max() <= cols - 1 + 1e-9 and s.points[:, 1].max() <= rows - 1 + 1e-9
    centre = np.hypot(s.points[:, 0] - (cols - 1) / 2, s.points[:, 1] - (rows - 1) / 2)
    assert centre.min() > 0.2 * min(rows, cols) / 2  # the hole is there
    keys, counts = _edge_uses(s)
    assert (counts == 1).all()  # every directed edge once ...
    directed = {tuple(k) for k in keys}
    assert all((b, a) in directed for a, b in directed)  # ... and its reverse too: watertight
