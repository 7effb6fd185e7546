"""bpy-free: the web export's relief: its height grid simplified within an error bound, cut, torn and closed, as the arrays a mesh is written from.

`web_surface(heights, ...)` chains what the other core modules do on a triangle surface (points
(n, 2) in grid units (col, row), heights (n,), triangles (m, 3) counter-clockwise seen from +Z):

    core/simplify.simplify   adaptive RTIN triangulation, vertical error within `max_error`
    core/cutout clip         no triangle where the photo's alpha < 0.5 (crossings on the edges)
    core/cutout tear         no triangle over a height jump above `tear`
    core/cutout solidify     walls along every boundary edge and a flat back: watertight

and `cutout.surface_arrays` turns the result into the mesh's arrays (positions at the live
Strength with `lift`, edges, corners, faces, UVs turned for an EXIF-rotated photo). The vertices near a mask
boundary or a tear are kept at full resolution (`simplify(force=...)`), so the clipped boundary
stays within one grid cell of the full relief's.

The budget (`MAX_TRIANGLES`) holds for the whole exported relief, walls and back included: a
solid's top gets about half of it. Nothing here touches Blender.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from . import cutout, relief, simplify

Array = npt.NDArray[Any]

#: the web GLB's limits: triangles of one relief, and the long side of an embedded texture
MAX_TRIANGLES: Final = 50_000
MAX_TEXTURE_SIDE: Final = 2048
#: the web's vertical error bound, as a fraction of the relief's depth (the issue asks for 2%); the
#: RMS error is then about a third of it, and the bound is tightened until it is within RMS_TARGET
WEB_MAX_ERROR: Final = 0.01
#: the RMS vertical error a web relief is made within when the budget allows (the promise is 0.5%)
RMS_TARGET: Final = 0.004


def boundary_band(mask: Array) -> Array:
    """The grid vertices whose 3×3 neighbourhood holds both sides of `mask` (a bool grid)."""
    band = np.zeros(mask.shape, bool)
    padded = np.pad(mask, 1, mode="edge")
    rows, cols = mask.shape
    for dj in range(3):
        for di in range(3):
            band |= padded[dj:dj + rows, di:di + cols] != mask
    return band


def jump_band(heights: Array, threshold: float) -> Array:
    """The grid vertices next to a grid edge whose height jump exceeds `threshold`."""
    jump = np.zeros(heights.shape, bool)
    dx = np.abs(np.diff(heights, axis=1)) > threshold
    dy = np.abs(np.diff(heights, axis=0)) > threshold
    jump[:, :-1] |= dx
    jump[:, 1:] |= dx
    jump[:-1] |= dy
    jump[1:] |= dy
    band: Array = boundary_band(jump) | jump
    return band


def triangle_count(surface: cutout.Surface) -> int:
    """Triangles of a polygon surface once triangulated (a k-gon is k - 2)."""
    sizes: Array = surface.face_sizes
    return int((sizes - 2).sum())


def web_surface(heights: Array, *, alpha: Array | None = None, tear: float = 0.0, solid: bool = False,
                base: float = 0.0, max_error: float | None = None,
                max_triangles: int = MAX_TRIANGLES) -> cutout.Surface:
    """The relief's surface for the web, as a `core.cutout.Surface`.

    `heights` (rows, cols): the height grid, row 0 at the bottom, any unit (the relief's own:
    object units at Strength 1); `max_error` is a fraction of its range (the relief's depth).
    `alpha` (rows, cols) 0..1 cuts it at 0.5; `tear` (a fraction of the depth, 0 = off) tears
    it; `solid` closes it with a flat back `base` below z = 0 (its `z`). At most `max_triangles`
    triangles in all, back and walls included.
    """
    heights = np.asarray(heights, np.float32)
    lo, hi = float(heights.min()), float(heights.max())
    span = hi - lo if hi - lo > 1e-12 else 1.0
    unit = (heights - np.float32(lo)) * np.float32(1.0 / span)  # 0..1 of the depth, as simplify takes it
    force = np.zeros(heights.shape, bool)
    cut = alpha is not None and bool((np.asarray(alpha) < 0.5).any())
    if cut:
        force |= boundary_band(np.asarray(alpha) >= 0.5)
    if tear > 0.0:
        force |= jump_band(unit, tear)
    error = WEB_MAX_ERROR if max_error is None else max_error
    budget, previous, count = max_triangles, float("inf"), 0
    surface = cutout.triangle_surface(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 3), np.int32))
    for _ in range(8):
        simplified = simplify.simplify(unit, max_error=error, force=force if force.any() else None,
                                       max_triangles=budget)
        if max_error is None and float(simplified.max_error) <= error * (1 + 1e-6) and error > 1e-4 \
                and simplify.vertical_errors(simplified, unit)[1] > RMS_TARGET:
            error *= 0.7  # a rough field: the same bound leaves a larger RMS error, so tighten it
            continue
        surface = cutout.triangle_surface(simplified.points, lo + np.asarray(simplified.heights, np.float64) * span,
                                          simplified.triangles)
        if tear > 0.0:
            surface = cutout.tear(surface, tear * span)
        if cut:
            assert alpha is not None
            ij = np.rint(surface.points).astype(np.intp)
            surface = cutout.clip(surface, np.asarray(alpha, np.float32)[ij[:, 1], ij[:, 0]])
        if solid:
            surface = cutout.solidify(surface, base)
        count = triangle_count(surface)
        if count <= max_triangles or budget <= 2 or count >= 0.98 * previous:
            break  # within the budget, or at the floor the forced vertices set
        previous = count
        budget = max(2, int(budget * max_triangles / count * 0.97))
    rows, cols = heights.shape
    if count > max_triangles and force.any() and min(rows, cols) > 32:
        # An outline (or tear) so long that its full-resolution band alone is over the budget:
        # the same on a grid of half the resolution (the cut then within one of its cells).
        half_rows, half_cols = (rows + 1) // 2, (cols + 1) // 2
        half = web_surface(relief.area_resample(heights, half_rows, half_cols),
                           alpha=None if alpha is None else relief.area_resample(alpha, half_rows, half_cols),
                           tear=tear, solid=solid, base=base, max_error=max_error, max_triangles=max_triangles)
        scale = np.array([(cols - 1) / (half_cols - 1), (rows - 1) / (half_rows - 1)])
        return half._replace(points=half.points * scale)
    return surface


def fit_within(width: int, height: int, limit: int = MAX_TEXTURE_SIDE) -> tuple[int, int]:
    """(width, height) scaled down to at most `limit` on the long side (never up), aspect kept."""
    long_side = max(width, height)
    if long_side <= limit:
        return width, height
    scale = limit / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))
