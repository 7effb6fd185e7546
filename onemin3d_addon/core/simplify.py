"""bpy-free: the relief's height grid simplified within a vertical error bound: an adaptive right-triangulated irregular network (RTIN) in numpy.

`simplify(heights, max_error=...)` returns a triangle surface (points (n, 2) in grid units
(col, row), integers; heights (n,); triangles (m, 3) int32, counter-clockwise seen from +Z), dense
where the relief bends and sparse where it is flat, and whose vertical error is at most
`max_error` at every grid vertex (`vertical_errors` measures it). It composes with core/cutout
(clip, tear, solidify, surface_arrays) as any triangle surface does.

The algorithm (RTIN, as mapbox's "martini", here exact and vectorised per level):

* The grid is covered by square tiles of T = 2^k cells (T chosen so that the tiles overhang the
  grid by at most a quarter of its area; the overhang repeats the border heights). Each tile is
  halved by a diagonal; each triangle splits at the midpoint of its long edge (hypotenuse) into
  two, down to half cells. Every grid vertex other than a tile corner is the midpoint of exactly
  one "diamond" (the one or two triangles sharing a hypotenuse), so one error array covers all
  tiles and a shared tile edge splits the same way on both sides.
* The error of a diamond is the largest vertical distance between a grid vertex strictly inside
  its triangles (or on their hypotenuse) and the triangles' planes: exact, not just the midpoint
  as martini measures it. Each level is a batch of equal-shaped triangles, so their planes are one
  matrix product of the corner heights with fixed barycentric weights (no per-triangle Python).
* Errors propagate from children to parents (a diamond's error is at least those of the four
  diamonds its triangles split into), so the triangles kept at a threshold form a conforming mesh:
  no cracks, no T-junctions. A triangle is kept unsplit when its diamond's error is at most the
  threshold; its leg vertices were measured by the finer diamonds, whose errors its own bounds.
  Hence **the bound holds by construction**: every grid vertex is within `max_error` of the
  triangle over it. `simplify` still measures it afterwards (`vertex_errors`, a numpy rasteriser
  with barycentric interpolation) and splits any triangle over it until it holds.
* When the grid is not a whole number of tiles, the network covers the overhang too and the
  triangles across the grid's border are cut there (`_clip`). Their edges run along the axes or
  the diagonals, so every cut falls on a grid vertex, shared by both triangles of a cut edge: no
  crack, integer points still. A cut piece takes the grid's heights where it crosses the border,
  so its error is measured apart; where it is over the bound, its triangle is split and the
  network extracted again (half cells never cross an integer line, so this ends).
* `force` marks vertices that must be kept (error +inf before propagation); a band two vertices
  wide across a mask's boundary (core/web_relief.boundary_band) then has every triangle crossing
  it no larger than a half cell, so a clip at the mask stays within one cell.
* The vertex heights are then fitted to the grid in the least-squares sense (`fit_heights`:
  conjugate gradients on the normal equations of the barycentric weights, as Blender's quadric
  Decimate in effect places its vertices), the corners of any triangle the fit takes over the
  bound going back to the grid's heights: the RMS error falls by about a third on the
  stand-in's 8-bit depth maps, whose terraces the fit averages out, and the bound still holds.
* `max_triangles`: a conforming triangulation of the rectangle with V vertices, B of them on its
  border, has 2V - B - 2 triangles (Euler). So the count at any threshold is read off the sorted
  vertex errors, and the smallest threshold within the budget is found by bisection over them
  (no trial extractions); the cut pieces add a few, so the budget shrinks by the excess and the
  search runs again until the count fits.

Figures (grid 1024 × 768, the stand-in's depth maps of the example photos and an analytic field
with sharp steps; `scripts/bench.py export` prints them): at DEFAULT_MAX_ERROR = 1% of the depth
the tops take 1,600 to 8,100 triangles (the stepped field about 17,000), the maximum error is 1%
and the RMS about 0.21% (0.33 to 0.35% without the fit). At 1.5% the RMS without the fit was
0.50 to 0.52%, over the 0.5% target: hence 1%.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

#: the default vertical error bound, as a fraction of the relief depth (heights run 0..1)
DEFAULT_MAX_ERROR: Final = 0.01
#: tiles may overhang the grid by at most this fraction of its area (else smaller tiles)
_MAX_OVERHANG: Final = 0.25
#: pairs (triangle, grid vertex) tested per chunk by the rasteriser
_CHUNK: Final = 1 << 22


class Simplified(NamedTuple):
    """A triangle surface on the height grid: points (n, 2) float64 (col, row), integers;
    heights (n,) float32; triangles (m, 3) int32 counter-clockwise seen from +Z; `max_error` the
    threshold it holds (the requested one, or higher when `max_triangles` asked for it)."""

    points: Array
    heights: Array
    triangles: Array
    max_error: float


# --- public -------------------------------------------------------------------------------------


def simplify(heights: Array, *, max_error: float = DEFAULT_MAX_ERROR, force: Array | None = None,
             max_triangles: int | None = None, fit: bool = True) -> Simplified:
    """An adaptive triangulation of `heights` ((rows, cols), row 0 at the bottom) whose vertical
    error is at most `max_error` (the heights' units) at every grid vertex.

    `force` (rows, cols) bool: vertices always kept. `max_triangles`: when the bound needs more
    triangles, the threshold rises to the smallest one within the budget (the result's
    `max_error` says which); never fewer than the tiles' corners and the forced vertices allow.
    `fit`: the vertex heights are then least-squares fitted to the grid within the bound
    (`fit_heights`: a lower RMS error); without it they are the grid's own heights.
    """
    z = np.ascontiguousarray(heights, np.float32)
    if z.ndim != 2 or min(z.shape) < 2:
        raise ValueError(f"simplify needs a grid of at least 2 × 2 heights, not {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("simplify needs finite heights")
    if force is not None and np.shape(force) != z.shape:
        raise ValueError(f"force has the shape {np.shape(force)}, not the heights' {z.shape}")
    net = _Network(z)
    forced = None if force is None else np.asarray(force, bool)
    extra = np.zeros(net.z.shape, bool)   # hypotenuse midpoints split to meet the bound
    threshold = max(0.0, float(max_error))
    budget = max_triangles
    for _ in range(200):
        errors = net.errors(forced, extra)
        if budget is not None:
            threshold = max(threshold, net.threshold_for(errors, budget))
        inside, straddling = net.extract(errors, threshold)
        pieces, source = _clip(straddling, net.w, net.h)
        # The clipped pieces take the grid's heights where they cross the border, so the bound
        # is not theirs by construction: split their triangle where a piece is over it.
        corners = pieces.reshape(-1, 2).astype(np.float64)
        piece_err = _triangle_errors(corners, z[pieces[..., 1], pieces[..., 0]].reshape(-1),
                                     np.arange(3 * len(pieces)).reshape(-1, 3), z)
        bad = np.unique(source[piece_err > _over(threshold)])
        if bad.size:
            mids = (straddling[bad, 0] + straddling[bad, 1]) // 2
            extra[mids[:, 1], mids[:, 0]] = True
            continue
        surface = net.surface(np.concatenate([inside, pieces]))
        if budget is not None and max_triangles is not None and len(surface.triangles) > max_triangles \
                and budget > 2:
            budget = max(2, budget - (len(surface.triangles) - max_triangles))
            continue
        surface = surface._replace(max_error=threshold)
        # The bound, measured at every grid vertex: on the fitted heights (the fit keeps it
        # when the grid's heights do), else, or if they fail, on the grid's heights.
        candidates = [surface._replace(heights=fit_heights(surface, z, threshold))] if fit else []
        for candidate in [*candidates, surface]:
            worst = _triangle_errors(candidate.points, candidate.heights, candidate.triangles, z)
            over = worst > _over(threshold)
            if not over.any():
                return candidate
        # Not expected (the bound holds by construction), but if rounding ever breaks it: split
        # each triangle over the bound at its hypotenuse's midpoint and extract again.
        mids = _hypotenuse_midpoints(surface.points[surface.triangles[over]])
        extra[mids[:, 1], mids[:, 0]] = True
    raise RuntimeError("simplify could not meet its error bound")  # pragma: no cover


def vertex_errors(points: Array, heights: Array, triangles: Array, grid: Array) -> Array:
    """|grid - surface| at every grid vertex (rows, cols), NaN where no triangle covers it.

    `points` (n, 2) (col, row) in grid units (any floats), `heights` (n,), `triangles` (m, 3).
    Each triangle's grid vertices (its bounding box, tested with barycentric coordinates) get the
    plane's height; a vertex on an edge shared by several triangles keeps the largest error.
    """
    grid = np.asarray(grid, np.float64)
    out = np.full(grid.size, -1.0)
    for tri, vertex, u, v in _covered(points, triangles, grid.shape):
        value = _interpolate(heights, triangles, tri, u, v)
        np.maximum.at(out, vertex, np.abs(grid.reshape(-1)[vertex] - value))
    out[out < 0.0] = np.nan
    return out.reshape(grid.shape)


def vertical_errors(surface: Any, heights: Array) -> tuple[float, float]:
    """(max, RMS) vertical error of `surface` (points, heights, triangles) against the height
    grid `heights`, over the grid vertices it covers (NaN, NaN if it covers none)."""
    errors = vertex_errors(surface.points, surface.heights, _faces(surface), heights)
    covered = errors[~np.isnan(errors)]
    if covered.size == 0:
        return math.nan, math.nan
    return float(covered.max()), float(np.sqrt(np.mean(covered ** 2)))


# --- the network --------------------------------------------------------------------------------


def _tile_size(w: int, h: int) -> int:
    """The largest power of two whose tiles cover w × h cells overhanging by at most _MAX_OVERHANG."""
    area = w * h
    t = 1 << max(1, (max(w, h) - 1).bit_length())
    while t > 2:
        if math.ceil(w / t) * math.ceil(h / t) * t * t <= (1.0 + _MAX_OVERHANG) * area:
            return t
        t //= 2
    return 2


class _Network:
    """The RTIN of one height grid: the padded grid, its own (unpropagated) errors per vertex."""

    def __init__(self, z: Array) -> None:
        self.rows, self.cols = z.shape
        self.w, self.h = self.cols - 1, self.rows - 1
        self.t = _tile_size(self.w, self.h)
        self.nx = -(-self.w // self.t) * self.t
        self.ny = -(-self.h // self.t) * self.t
        self.z = np.pad(z, ((0, self.ny - self.h), (0, self.nx - self.w)), mode="edge")
        self.own = self._own_errors()

    # error of every diamond, level by level --------------------------------------------------

    def _own_errors(self) -> Array:
        z, t = self.z, self.t
        own = np.zeros(z.shape, np.float32)
        s = 2
        while s <= t:
            eh, ev = self._edge_level(s)
            own[0::s, s // 2::s] = eh
            own[s // 2::s, 0::s] = ev
            own[s // 2::s, s // 2::s] = self._square_level(s)
            s *= 2
        return own

    def _blocks(self, s: int) -> tuple[Array, Array]:
        """The s × s blocks of the grid (their far edges belong to the next block), flattened to
        (blocks, s*s), and their corners (blocks, 4): (0,0), (s,0), (0,s), (s,s) as (x, y)."""
        z = self.z
        by, bx = self.ny // s, self.nx // s
        blocks = z[:-1, :-1].reshape(by, s, bx, s).transpose(0, 2, 1, 3).reshape(by * bx, s * s)
        corners = np.stack([z[0:-1:s, 0:-1:s], z[0:-1:s, s::s], z[s::s, 0:-1:s], z[s::s, s::s]],
                           axis=-1).reshape(by * bx, 4)
        return blocks, corners

    def _edge_level(self, s: int) -> tuple[Array, Array]:
        """Errors of the diamonds around the midpoints of the s-long edges: (horizontal edges
        (ny/s + 1, nx/s), vertical edges (ny/s, nx/s + 1))."""
        z, h = self.z, s // 2
        by, bx = self.ny // s, self.nx // s
        blocks, corners = self._blocks(s)
        nodes = np.concatenate([corners, z[h::s, h::s].reshape(-1, 1)], axis=1)  # + the centre
        dy, dx = np.divmod(np.arange(s * s), s)
        below_main, above_main = dy < dx, dy > dx
        below_anti, above_anti = dy < s - dx, dy > s - dx
        # the block's four triangles around its centre, each with its hypotenuse on one edge
        parts = {"bottom": (below_main & below_anti, (0, 1, 4)), "right": (below_main & above_anti, (1, 3, 4)),
                 "top": (above_main & above_anti, (3, 2, 4)), "left": (above_main & below_anti, (2, 0, 4))}
        node_xy = np.array([(0, 0), (s, 0), (0, s), (s, s), (h, h)], np.float64)
        err = {}
        for name, (mask, corner_ids) in parts.items():
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                err[name] = np.zeros((by, bx), np.float32)
                continue
            weights = np.zeros((idx.size, 5), np.float64)
            weights[:, list(corner_ids)] = _barycentric(np.stack([dx[idx], dy[idx]], 1), node_xy[list(corner_ids)])
            plane = nodes @ weights.astype(np.float32).T
            err[name] = np.abs(blocks[:, idx] - plane).max(axis=1).reshape(by, bx)
        eh = np.zeros((by + 1, bx), np.float32)
        eh[:-1] = err["bottom"]
        eh[1:] = np.maximum(eh[1:], err["top"])
        eh[-1] = np.maximum(eh[-1], _edge_errors(z[-1], s))
        ev = np.zeros((by, bx + 1), np.float32)
        ev[:, :-1] = err["left"]
        ev[:, 1:] = np.maximum(ev[:, 1:], err["right"])
        ev[:, -1] = np.maximum(ev[:, -1], _edge_errors(z[:, -1], s))
        return eh, ev

    def _square_level(self, s: int) -> Array:
        """Errors of the diamonds around the centres of the s × s blocks (the two halves of the
        block on either side of its diagonal: (0,0)-(s,s) where the block's (i + j) is even, else
        (s,0)-(0,s)), over the block's vertices off its edges."""
        by, bx = self.ny // s, self.nx // s
        blocks, corners = self._blocks(s)
        dy, dx = np.divmod(np.arange(s * s), s)
        inner = np.flatnonzero((dx > 0) & (dy > 0))
        xy = np.stack([dx[inner], dy[inner]], 1).astype(np.float64)
        node_xy = np.array([(0, 0), (s, 0), (0, s), (s, s)], np.float64)
        out = np.zeros(by * bx, np.float32)
        if inner.size == 0:
            return out.reshape(by, bx)
        iy, ix = np.divmod(np.arange(by * bx), bx)
        even = (iy + ix) % 2 == 0
        for diag_even, halves in ((True, ((0, 1, 3), (0, 3, 2))), (False, ((0, 1, 2), (1, 3, 2)))):
            sel = even == diag_even
            if not sel.any():
                continue
            weights = np.zeros((inner.size, 4), np.float64)
            first = (xy[:, 1] <= xy[:, 0]) if diag_even else (xy[:, 0] + xy[:, 1] <= s)
            for part, ids in zip((first, ~first), halves, strict=True):
                weights[np.ix_(part, ids)] = _barycentric(xy[part], node_xy[list(ids)])
            plane = corners[sel] @ weights.astype(np.float32).T
            out[sel] = np.abs(blocks[sel][:, inner] - plane).max(axis=1)
        return out.reshape(by, bx)

    # propagation, extraction, counting ----------------------------------------------------------

    def errors(self, force: Array | None, extra: Array | None = None) -> Array:
        """The propagated errors: forced vertices (`force` on the grid, `extra` on the padded
        grid) and the tiles' corners at +inf; every diamond at least its children."""
        e = self.own.copy()
        if force is not None:
            e[:self.rows, :self.cols][force] = np.inf
        if extra is not None:
            e[extra] = np.inf
        e[::self.t, ::self.t] = np.inf
        s = 2
        while s <= self.t:
            h, q = s // 2, s // 4
            if q:
                # an edge midpoint's four children: the centres of the h-blocks touching it
                for y0, x0 in ((0, h), (h, 0)):  # horizontal, then vertical edges
                    ys, xs = np.arange(y0, self.ny + 1, s), np.arange(x0, self.nx + 1, s)
                    target = e[y0::s, x0::s]
                    for oy in (-q, q):
                        for ox in (-q, q):
                            cy, cx = ys + oy, xs + ox
                            vy, vx = (cy >= 0) & (cy <= self.ny), (cx >= 0) & (cx <= self.nx)
                            child = e[np.ix_(cy[vy], cx[vx])]
                            sub = target[np.ix_(vy, vx)]
                            target[np.ix_(vy, vx)] = np.maximum(sub, child)
            # a centre's four children: the midpoints of its block's edges
            centre = e[h::s, h::s]
            for child in (e[0:-1:s, h::s], e[s::s, h::s], e[h::s, 0:-1:s], e[h::s, s::s]):
                np.maximum(centre, child, out=centre)
            s *= 2
        return e

    def _domain(self, errors: Array) -> tuple[Array, Array]:
        """The sorted errors of the grid's vertices, and of those on its border."""
        dom = errors[:self.rows, :self.cols]
        border = np.concatenate([dom[0], dom[-1], dom[1:-1, 0], dom[1:-1, -1]])
        return np.sort(dom.reshape(-1)), np.sort(border)

    def count(self, errors: Array, threshold: float) -> int:
        """Triangles kept at `threshold`: 2V - B - 2 for V kept vertices, B of them on the border."""
        inside, border = self._domain(errors)
        return self._count_sorted(inside, border, threshold)

    @staticmethod
    def _count_sorted(inside: Array, border: Array, threshold: float) -> int:
        v = inside.size - int(np.searchsorted(inside, threshold, side="right"))
        b = border.size - int(np.searchsorted(border, threshold, side="right"))
        return 2 * v - b - 2

    def threshold_for(self, errors: Array, max_triangles: int) -> float:
        """The smallest threshold whose triangles fit `max_triangles` (or the one that keeps only
        what is forced): bisection over the vertices' errors, counted by Euler's formula."""
        inside, border = self._domain(errors)
        finite = np.unique(inside[np.isfinite(inside)])
        candidates = np.concatenate([[0.0], finite])
        lo, hi = 0, len(candidates) - 1
        if self._count_sorted(inside, border, float(candidates[hi])) > max_triangles:
            return float(candidates[hi])
        while lo < hi:
            mid = (lo + hi) // 2
            if self._count_sorted(inside, border, float(candidates[mid])) <= max_triangles:
                hi = mid
            else:
                lo = mid + 1
        return float(candidates[lo])

    def extract(self, errors: Array, threshold: float) -> tuple[Array, Array]:
        """The kept triangles (m, 3, 2) as (x, y) corners: those inside the grid, counter-clockwise,
        and those across its border (hypotenuse first, as (a, b, apex))."""
        t = self.t
        ty, tx = np.divmod(np.arange((self.ny // t) * (self.nx // t)), self.nx // t)
        x0, y0 = tx * t, ty * t
        even = (tx + ty) % 2 == 0
        p00 = np.stack([x0, y0], 1)
        p10, p01, p11 = p00 + (t, 0), p00 + (0, t), p00 + (t, t)
        # two triangles per tile (hypotenuse a-b, apex c), on the diagonal the error pass used
        a = np.concatenate([np.where(even[:, None], p00, p10), np.where(even[:, None], p11, p01)])
        b = np.concatenate([np.where(even[:, None], p11, p01), np.where(even[:, None], p00, p10)])
        c = np.concatenate([np.where(even[:, None], p10, p11), np.where(even[:, None], p01, p00)])
        done = []
        while len(a):
            m2 = a + b
            whole = (m2 % 2 == 0).all(axis=1)
            m = m2 // 2
            split = whole.copy()
            split[whole] = errors[m[whole, 1], m[whole, 0]] > threshold
            keep = ~split
            done.append(np.stack([a[keep], b[keep], c[keep]], axis=1))
            a, b, c, m = a[split], b[split], c[split], m[split]
            a, b, c = np.concatenate([c, b]), np.concatenate([a, c]), np.concatenate([m, m])
        tris = np.concatenate(done)
        inside = (tris[:, :, 0].max(axis=1) <= self.w) & (tris[:, :, 1].max(axis=1) <= self.h)
        outside = (tris[:, :, 0].min(axis=1) >= self.w) | (tris[:, :, 1].min(axis=1) >= self.h)
        return _counter_clockwise(tris[inside]), tris[~inside & ~outside]

    def surface(self, tris: Array) -> Simplified:
        key = tris[:, :, 1].astype(np.int64) * self.cols + tris[:, :, 0]
        used, inverse = np.unique(key.reshape(-1), return_inverse=True)
        row, col = np.divmod(used, self.cols)
        points = np.stack([col, row], axis=1).astype(np.float64)
        heights = self.z[row, col].astype(np.float32)
        return Simplified(points, heights, inverse.reshape(-1, 3).astype(np.int32), 0.0)


# --- helpers ------------------------------------------------------------------------------------


def _over(threshold: float) -> float:
    """Errors above this break the bound `threshold` (float32 heights: a hair of slack)."""
    return threshold + 1e-6 * max(1.0, threshold)


def _counter_clockwise(tris: Array) -> Array:
    """(m, 3, 2) corners, the clockwise triangles turned round."""
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    clockwise = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
    tris[clockwise, 1:] = tris[clockwise, :0:-1]
    out: Array = tris
    return out


def _clip(tris: Array, w: int, h: int) -> tuple[Array, Array]:
    """The triangles across the grid's border cut to x <= w, y <= h, as counter-clockwise
    triangles (a fan of each cut polygon) and the index of the triangle each came from.

    An RTIN triangle's edges run along the axes or the diagonals, so an edge crosses an integer
    line at a grid vertex: the cut polygons have integer corners, and an edge shared by two
    triangles is cut at the same vertex in both (no crack). Only the few triangles across the
    border go through this loop.
    """
    pieces: list[tuple[int, int]] = []
    source: list[int] = []
    for k, tri in enumerate(tris.tolist()):
        poly = [(int(x), int(y)) for x, y in tri]
        for axis, limit in ((0, w), (1, h)):
            poly = _clip_polygon(poly, axis, limit)
        poly = _without_collinear(poly)
        for i in range(1, len(poly) - 1):
            pieces += [poly[0], poly[i], poly[i + 1]]
            source.append(k)
    out = np.asarray(pieces, np.int64).reshape(-1, 3, 2)
    return _counter_clockwise(out), np.asarray(source, np.int64)


def _clip_polygon(poly: list[tuple[int, int]], axis: int, limit: int) -> list[tuple[int, int]]:
    """Sutherland–Hodgman: the part of a convex polygon where coordinate `axis` <= limit."""
    out: list[tuple[int, int]] = []
    for i, p in enumerate(poly):
        q = poly[(i + 1) % len(poly)]
        if p[axis] <= limit:
            out.append(p)
        if (p[axis] < limit) != (q[axis] < limit) and p[axis] != limit and q[axis] != limit:
            other = 1 - axis
            d_other = (q[other] - p[other]) * (limit - p[axis])
            span = q[axis] - p[axis]
            cut = [0, 0]
            cut[axis], cut[other] = limit, p[other] + d_other // span
            if d_other % span:
                raise ValueError("an RTIN edge crosses the border between grid vertices")
            out.append((cut[0], cut[1]))
    return out


def _without_collinear(poly: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The polygon without repeated corners and corners on a straight line between their neighbours."""
    changed = True
    while changed and len(poly) >= 3:
        changed = False
        for i in range(len(poly)):
            a, b, c = poly[i - 1], poly[i], poly[(i + 1) % len(poly)]
            if (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) == 0:
                poly = poly[:i] + poly[i + 1:]
                changed = True
                break
    return poly if len(poly) >= 3 else []


def _edge_errors(line: Array, s: int) -> Array:
    """Per s-long segment of a row of heights: the largest distance of its inner vertices from
    the straight line between its ends."""
    n = (len(line) - 1) // s
    if s < 2:
        return np.zeros(n, np.float32)
    seg = np.lib.stride_tricks.as_strided(line, (n, s + 1), (line.strides[0] * s, line.strides[0]))
    frac = (np.arange(1, s, dtype=np.float32) / np.float32(s))[None, :]
    chord = seg[:, :1] + (seg[:, -1:] - seg[:, :1]) * frac
    out: Array = np.abs(seg[:, 1:-1] - chord).max(axis=1)
    return out


def _barycentric(p: Array, tri: Array) -> Array:
    """Barycentric coordinates (k, 3) of the points p (k, 2) in the triangle tri (3, 2)."""
    a, b, c = tri
    m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]], np.float64)
    uv = np.linalg.solve(m, (p - a).T).T
    out: Array = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
    return out


def _hypotenuse_midpoints(corners: Array) -> Array:
    """The grid vertex at the middle of each triangle's longest edge ((k, 3, 2) corners in)."""
    c = np.asarray(corners, np.int64)
    edges = np.stack([c[:, 1] - c[:, 0], c[:, 2] - c[:, 1], c[:, 0] - c[:, 2]], 1)
    longest = np.argmax((edges ** 2).sum(axis=2), axis=1)
    k = np.arange(len(c))
    start, end = c[k, longest], c[k, (longest + 1) % 3]
    out: Array = (start + end) // 2
    return out


def _faces(surface: Any) -> Array:
    tris = getattr(surface, "triangles", None)
    if tris is None:
        tris = surface.faces
    out: Array = np.asarray(tris).reshape(-1, 3)
    return out


def _covered(points: Array, triangles: Array, shape: tuple[int, ...]) -> Iterator[tuple[Array, Array, Array, Array]]:
    """(triangle, flat grid vertex, its barycentric u and v) for every grid vertex inside (or on
    the edge of) a triangle, in chunks of at most about _CHUNK pairs."""
    rows, cols = shape
    pts = np.asarray(points, np.float64)
    tris = np.asarray(triangles, np.int64).reshape(-1, 3)
    if len(tris) == 0:
        return
    corners = pts[tris]                                     # (m, 3, 2)
    eps = 1e-7
    lo = np.clip(np.ceil(corners.min(axis=1) - eps), 0, [cols - 1, rows - 1]).astype(np.int64)
    hi = np.clip(np.floor(corners.max(axis=1) + eps), -1, [cols - 1, rows - 1]).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)
    count = span[:, 0] * span[:, 1]
    a = corners[:, 0]
    e1, e2 = corners[:, 1] - a, corners[:, 2] - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-12
    count[~ok] = 0
    ends = np.cumsum(count)
    start = 0
    while start < len(tris):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + _CHUNK, side="right"))
        stop = max(stop, start + 1)
        sel = np.arange(start, stop)
        n = count[sel]
        tri = np.repeat(sel, n)
        if tri.size:
            offset = np.arange(tri.size) - np.repeat(np.cumsum(n) - n, n)
            dy, dx = np.divmod(offset, span[tri, 0])
            gx, gy = lo[tri, 0] + dx, lo[tri, 1] + dy
            px, py = gx - a[tri, 0], gy - a[tri, 1]
            inv = 1.0 / det[tri]
            u = (px * e2[tri, 1] - py * e2[tri, 0]) * inv
            v = (py * e1[tri, 0] - px * e1[tri, 1]) * inv
            tol = 1e-9
            inside = (u >= -tol) & (v >= -tol) & (u + v <= 1.0 + tol)
            tri, u, v = tri[inside], u[inside], v[inside]
            yield tri, gy[inside] * cols + gx[inside], u, v
        start = stop


def _triangle_errors(points: Array, heights: Array, triangles: Array, grid: Array) -> Array:
    """The largest vertical error of each triangle over the grid vertices it covers."""
    g = np.asarray(grid, np.float64).reshape(-1)
    out = np.zeros(len(triangles))
    for tri, vertex, u, v in _covered(points, triangles, np.shape(grid)):
        np.maximum.at(out, tri, np.abs(g[vertex] - _interpolate(heights, triangles, tri, u, v)))
    return out


def _interpolate(heights: Array, triangles: Array, tri: Array, u: Array, v: Array) -> Array:
    """The heights of the triangles `tri` at their barycentric (u, v)."""
    zc = np.asarray(heights, np.float64)[np.asarray(triangles, np.int64)[tri]]
    out: Array = zc[:, 0] + u * (zc[:, 1] - zc[:, 0]) + v * (zc[:, 2] - zc[:, 0])
    return out


def fit_heights(surface: Simplified, grid: Array, bound: float, iterations: int = 12) -> Array:
    """Vertex heights (n,) float32 that bring `surface` closer to `grid` in the least-squares
    sense while every grid vertex stays within `bound` of it.

    The heights minimising the RMS error solve AᵀA h = Aᵀz, A holding each grid vertex's
    barycentric weights (three per row): `iterations` of Jacobi-preconditioned conjugate
    gradients. Where a grid vertex ends over the bound, the corners of its triangle keep the
    grid's heights, repeated until none is over: the bound always holds.
    """
    z = np.asarray(grid, np.float64).reshape(-1)
    tris = np.asarray(surface.triangles, np.int64)
    n = len(surface.points)
    seen = np.zeros(z.size, bool)
    parts: tuple[list[Array], list[Array], list[Array], list[Array]] = ([], [], [], [])
    for tri, vertex, u, v in _covered(surface.points, tris, np.shape(grid)):
        vertex, first = np.unique(vertex, return_index=True)    # a vertex on a shared edge once
        new = ~seen[vertex]
        vertex, first = vertex[new], first[new]
        seen[vertex] = True
        parts[0].append(vertex)
        parts[1].append(tris[tri[first]])
        parts[2].append(np.stack([1.0 - u[first] - v[first], u[first], v[first]], axis=1))
        parts[3].append(tri[first])
    h0 = np.asarray(surface.heights, np.float64)
    if not parts[0] or n == 0:
        return np.asarray(surface.heights, np.float32)
    g, p, w = np.concatenate(parts[0]), np.concatenate(parts[1]), np.concatenate(parts[2])
    flat_p = p.reshape(-1)

    def apply(h: Array) -> Array:
        out: Array = (w * h[p]).sum(axis=1)
        return out

    def apply_t(r: Array) -> Array:
        out: Array = np.bincount(flat_p, (w * r[:, None]).reshape(-1), minlength=n)
        return out

    r0 = z[g] - apply(h0)                    # the residual at the grid's heights
    diag = np.bincount(flat_p, (w * w).reshape(-1), minlength=n)
    diag[diag <= 0.0] = 1.0
    x = np.zeros(n)                          # the change of the heights
    r = apply_t(r0)
    y = r / diag
    d = y.copy()
    ry = float(r @ y)
    for _ in range(iterations):
        q = apply_t(apply(d))
        dq = float(d @ q)
        if dq <= 0.0 or ry <= 1e-30:
            break
        step = ry / dq
        x += step * d
        r -= step * q
        y = r / diag
        ry, previous = float(r @ y), ry
        d = y + (ry / previous) * d
    # A few grid vertices end over the bound: their triangles' corners go back to the grid's
    # heights, and again for the triangles that change makes go over, until none is (at worst
    # every corner is back: the grid's heights, within the bound).
    tri_of = np.concatenate(parts[3])
    while True:
        over = np.abs(r0 - apply(x)) > bound
        if not over.any():
            break
        x[tris[tri_of[over]].reshape(-1)] = 0.0
    out: Array = (h0 + x).astype(np.float32)
    return out
