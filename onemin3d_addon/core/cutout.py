"""bpy-free: cut-out and torn reliefs in numpy: a surface clipped by the photo's alpha, torn at depth jumps, closed into a watertight solid, and turned into the arrays `blender/build_relief.py` writes.

A *surface* (`Surface`) is a polygon mesh on the relief grid:

* `points`: float64 (n, 2), (col, row) in grid units: col 0..cols-1 left to right, row 0..rows-1
  bottom-up (Blender's order, as `core/relief.py`'s heights); grid points sit at integers,
  clip crossings between them;
* `heights`: float32 (n,), the relief height (at Strength 1, whatever unit the caller uses);
* `corner_verts` int32 (k,) and `face_starts` int32 (m,): each face's corners, counter-clockwise
  seen from +Z, face f being corner_verts[face_starts[f]:face_starts[f+1]];
* `z` (n,) or None: a flat offset (a solid's back sits at -base); `sharp` (m,) bool or None.

The contract (issue 16's web export calls these on an RTIN triangle surface too):

* `grid_surface(heights) -> Surface`: the rows×cols quad grid of `heights` (rows bottom-up),
  numbered as `relief.grid_arrays` (vertex (i, j) = j*cols + i, faces row by row);
* `triangle_surface(points, heights, triangles) -> Surface`: any triangle surface ((m, 3) int);
* `clip(surface, alpha, level=0.5) -> Surface`: keep where the per-point `alpha` (n,) is at least
  `level`; a face crossing it is cut where the linear interpolation along each edge crosses
  `level` (marching squares/triangles), one crossing point per edge shared by both neighbours;
  a quad with both diagonals' corners on different sides keeps its saddle joined. Faces wholly
  inside keep their corners (quads stay quads) and come first; unused points are dropped; no
  point moves; a surface without bowtie points stays without.
* `tear(surface, threshold) -> Surface`: drop the faces whose height range exceeds `threshold`.
* `split_bowties(surface) -> Surface`: give each fan of faces touching only at a point its own
  copy of that point (`tear` already does it).
* `solidify(surface, base) -> Surface`: close any top surface (clipped, torn, simplified) into a
  watertight solid: the top, a flattened copy at z = -base with its faces reversed (heights 0,
  sharp), and a wall quad along every boundary edge (sharp). Every edge is used by exactly two
  faces, in opposite directions.
* `surface_arrays(surface, rows, cols, width, height, orientation=1, lift=0.0) -> dict`: the
  arrays of `build_common.write_mesh` and the mesh's layers: positions (n, 3) float32 (x, y from
  the grid centred on the origin, exactly where `relief.grid_arrays` puts them; z = `z` +
  `lift` × heights: 0 for Blender, whose modifier lifts by the heights; the relief depth for a
  baked export), edges (e, 2), corner_verts, corner_edges, face_starts, uv (k, 2) (the photo's UV,
  turned by the EXIF `orientation` as `relief.oriented_uv`), heights (n,), sharp_face (m,).
* `read_alpha(path) -> Array | None` and `grid_alpha(alpha, rows, cols) -> Array`: a photo's
  alpha (0..1, upright, top row first) when some pixel is below 0.5, and its area average on the
  grid's vertices (rows bottom-up), as `relief.relief_heights` resamples the depth.

Usage (a cut-out solid): `s = clip(grid_surface(h), grid_alpha(a, rows, cols).ravel())`,
`s = solidify(s, base)`, `arrays = surface_arrays(s, rows, cols, width, height)`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import images
from .relief import area_resample, oriented_uv

Array = npt.NDArray[Any]

#: a crossing never sits closer to a grid point than this fraction of its edge: no zero-length edges
_MIN_T = 1e-3


class Surface(NamedTuple):
    """A polygon surface on the relief grid (see the module docstring)."""

    points: Array
    heights: Array
    corner_verts: Array
    face_starts: Array
    z: Array | None = None
    sharp: Array | None = None

    @property
    def face_sizes(self) -> Array:
        sizes: Array = np.diff(np.append(self.face_starts, len(self.corner_verts))).astype(np.int32)
        return sizes

    def next_corner(self) -> Array:
        """For each corner, the index of the next corner of its face."""
        nxt = np.arange(1, len(self.corner_verts) + 1, dtype=np.int64)
        sizes = self.face_sizes
        nxt[self.face_starts + sizes - 1] = self.face_starts
        return nxt


def grid_surface(heights: Array) -> Surface:
    """The quad grid of `heights` (rows, cols), rows bottom-up, numbered as relief.grid_arrays."""
    rows, cols = heights.shape
    jj, ii = np.mgrid[0:rows, 0:cols]
    points = np.stack([ii.reshape(-1), jj.reshape(-1)], axis=1).astype(np.float64)
    v = np.arange(rows * cols, dtype=np.int32).reshape(rows, cols)
    cv = np.empty((rows - 1, cols - 1, 4), np.int32)
    cv[..., 0], cv[..., 1], cv[..., 2], cv[..., 3] = v[:-1, :-1], v[:-1, 1:], v[1:, 1:], v[1:, :-1]
    n_faces = (rows - 1) * (cols - 1)
    return Surface(points, np.asarray(heights, np.float32).reshape(-1).copy(), cv.reshape(-1),
                   np.arange(0, 4 * n_faces, 4, dtype=np.int32))


def triangle_surface(points: Array, heights: Array, triangles: Array) -> Surface:
    """A surface of triangles ((m, 3) point indices, counter-clockwise seen from +Z)."""
    tris = np.asarray(triangles, np.int32).reshape(-1, 3)
    return Surface(np.asarray(points, np.float64).reshape(-1, 2), np.asarray(heights, np.float32).reshape(-1),
                   tris.reshape(-1).copy(), np.arange(0, 3 * len(tris), 3, dtype=np.int32))


def _face_of_corner(s: Surface) -> Array:
    return np.repeat(np.arange(len(s.face_starts)), s.face_sizes)


def keep_faces(s: Surface, keep: Array) -> Surface:
    """The faces where `keep` (m,) is true, without the points no face uses any more."""
    keep = np.asarray(keep, bool)
    sizes = s.face_sizes[keep]
    cv = s.corner_verts[np.repeat(keep, s.face_sizes)]
    starts = np.zeros(len(sizes), np.int32)
    if len(sizes):
        starts[1:] = np.cumsum(sizes)[:-1]
    sharp = None if s.sharp is None else s.sharp[keep]
    return _drop_unused(Surface(s.points, s.heights, cv, starts, s.z, sharp))


def _drop_unused(s: Surface) -> Surface:
    used = np.zeros(len(s.points), bool)
    used[s.corner_verts] = True
    if used.all():
        return s
    remap = np.cumsum(used, dtype=np.int64) - 1
    return Surface(s.points[used], s.heights[used], remap[s.corner_verts].astype(np.int32), s.face_starts,
                   None if s.z is None else s.z[used], s.sharp)


def clip(s: Surface, alpha: Array, level: float = 0.5) -> Surface:
    """`s` cut to where `alpha` (one value per point) is at least `level` (see the module docstring).

    Faces wholly inside are kept as they are (first, in their order), then the faces the level
    crosses, clipped: only those go through the general (slower) path. A surface without bowtie
    points stays without: every face around a point inside keeps the point and the part of each
    of its edges next to it, so the fan stays linked, and a crossing lies on one edge only.
    """
    alpha = np.asarray(alpha, np.float64).reshape(-1)
    if len(alpha) != len(s.points):
        raise ValueError(f"alpha has {len(alpha)} values for {len(s.points)} points")
    if not len(s.corner_verts):
        return s
    inside = alpha >= level
    cv = s.corner_verts
    sizes = s.face_sizes
    count = np.add.reduceat(inside[cv].astype(np.int32), s.face_starts)
    full = count == sizes
    partial = (count > 0) & ~full
    corners = np.flatnonzero(np.repeat(partial, sizes))  # the corners of the faces the level crosses
    a = cv[corners].astype(np.int64)
    b = cv[s.next_corner()[corners]].astype(np.int64)
    vin = inside[a]
    cross = vin != inside[b]
    n = len(s.points)
    # one crossing point per edge crossed, found from the edge's lower-numbered end on both sides
    lo, hi = np.minimum(a[cross], b[cross]), np.maximum(a[cross], b[cross])
    keys, which = np.unique(lo * n + hi, return_inverse=True)
    e_lo, e_hi = keys // n, keys % n
    t = np.clip((level - alpha[e_lo]) / (alpha[e_hi] - alpha[e_lo]), _MIN_T, 1.0 - _MIN_T)
    new_points = s.points[e_lo] + t[:, None] * (s.points[e_hi] - s.points[e_lo])
    new_heights = (s.heights[e_lo] + t * (s.heights[e_hi] - s.heights[e_lo])).astype(np.float32)
    crossing = np.full(len(corners), -1, np.int64)
    crossing[cross] = n + which.reshape(-1)
    # each corner emits itself when inside, then its edge's crossing when the edge is crossed
    slots = np.stack([np.where(vin, a, -1), crossing], axis=1)
    emitted = slots >= 0
    part_sizes = sizes[partial]
    part_starts = np.zeros(len(part_sizes), np.int64)
    part_starts[1:] = np.cumsum(part_sizes)[:-1]
    clipped_sizes = np.add.reduceat(emitted.sum(axis=1), part_starts) if len(corners) else part_sizes
    out_sizes = np.concatenate([sizes[full], clipped_sizes])
    starts = np.zeros(len(out_sizes), np.int64)
    starts[1:] = np.cumsum(out_sizes)[:-1]
    out_cv = np.concatenate([cv[np.repeat(full, sizes)], slots[emitted].astype(np.int32)])
    z = None if s.z is None else np.concatenate([s.z, s.z[e_lo] + t * (s.z[e_hi] - s.z[e_lo])])
    sharp = None if s.sharp is None else np.concatenate([s.sharp[full], s.sharp[partial]])
    return _drop_unused(Surface(np.concatenate([s.points, new_points]), np.concatenate([s.heights, new_heights]),
                                out_cv.astype(np.int32), starts.astype(np.int32), z, sharp))


def tear(s: Surface, threshold: float) -> Surface:
    """`s` without the faces whose corners' heights differ by more than `threshold`."""
    h = s.heights[s.corner_verts]
    span = np.maximum.reduceat(h, s.face_starts) - np.minimum.reduceat(h, s.face_starts) \
        if len(h) else np.zeros(0, np.float32)
    return split_bowties(keep_faces(s, span <= threshold))


def _undirected(s: Surface) -> tuple[Array, Array, Array]:
    """Per corner, its edge (corner → next corner) as an index into the unique undirected edges;
    the unique edges (e, 2); how many corners use each."""
    a = s.corner_verts.astype(np.int64)
    b = s.corner_verts[s.next_corner()].astype(np.int64)
    n = max(len(s.points), 1)
    keys, inverse, counts = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_inverse=True,
                                      return_counts=True)
    edges = np.stack([keys // n, keys % n], axis=1)
    return inverse.reshape(-1), edges, counts


def split_bowties(s: Surface) -> Surface:
    """Give every fan of faces meeting another only at a point its own copy of that point."""
    if not len(s.corner_verts):
        return s
    edge_of, edges, counts = _undirected(s)
    boundary = edges[counts == 1]
    touches = np.bincount(boundary.reshape(-1), minlength=len(s.points))
    suspects = np.flatnonzero(touches > 2)
    if not len(suspects):
        return s
    cv = s.corner_verts.copy()
    nxt = s.next_corner()
    prev = np.empty_like(nxt)
    prev[nxt] = np.arange(len(nxt))
    flagged = np.zeros(len(s.points), bool)
    flagged[suspects] = True
    corners = np.flatnonzero(flagged[cv])
    corners = corners[np.argsort(cv[corners], kind="stable")]
    points, heights = [s.points], [s.heights]
    zs = [] if s.z is None else [s.z]
    extra = len(s.points)
    groups = np.split(corners, np.flatnonzero(np.diff(cv[corners])) + 1)
    for group in groups:
        fans = _fans(group, cv, nxt, prev)
        v = int(cv[group[0]])
        for members in fans[1:]:
            cv[members] = extra
            points.append(s.points[v:v + 1])
            heights.append(s.heights[v:v + 1])
            if s.z is not None:
                zs.append(s.z[v:v + 1])
            extra += 1
    return Surface(np.concatenate(points), np.concatenate(heights), cv, s.face_starts,
                   None if s.z is None else np.concatenate(zs), s.sharp)


def _fans(group: Array, cv: Array, nxt: Array, prev: Array) -> list[list[int]]:
    """The corners `group` of one point, split into fans: corners linked through a shared
    neighbour point (a shared edge) are one fan. Union-find; a bowtie point has few corners."""
    parent = list(range(len(group)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_neighbour: dict[int, int] = {}
    for k, c in enumerate(group):
        for w in (int(cv[nxt[c]]), int(cv[prev[c]])):
            if w in by_neighbour:
                parent[find(k)] = find(by_neighbour[w])
            else:
                by_neighbour[w] = k
    fans: dict[int, list[int]] = {}
    for k, c in enumerate(group):
        fans.setdefault(find(k), []).append(int(c))
    return [fans[root] for root in sorted(fans)]


def solidify(s: Surface, base: float) -> Surface:
    """`s` closed into a watertight solid with a flat back `base` below z=0 (module docstring)."""
    n, m = len(s.points), len(s.face_starts)
    sizes = s.face_sizes
    # back: every face reversed, on the copies n..2n-1
    face = _face_of_corner(s)
    pos = np.arange(len(s.corner_verts)) - s.face_starts[face]
    back_cv = s.corner_verts[s.face_starts[face] + sizes[face] - 1 - pos] + n
    # walls along every edge used by one face: (b, a, a', b') for the top's a → b
    edge_of, _, counts = _undirected(s)
    rim = np.flatnonzero(counts[edge_of] == 1)
    a = s.corner_verts[rim]
    b = s.corner_verts[s.next_corner()[rim]]
    wall_cv = np.stack([b, a, a + n, b + n], axis=1).reshape(-1)
    k_top = len(s.corner_verts)
    corner_verts = np.concatenate([s.corner_verts, back_cv, wall_cv]).astype(np.int32)
    face_starts = np.concatenate([s.face_starts, k_top + s.face_starts,
                                  2 * k_top + 4 * np.arange(len(rim))]).astype(np.int32)
    top_z = np.zeros(n) if s.z is None else s.z
    top_sharp = np.zeros(m, bool) if s.sharp is None else s.sharp
    return Surface(np.concatenate([s.points, s.points]),
                   np.concatenate([s.heights, np.zeros(n, np.float32)]),
                   corner_verts, face_starts, np.concatenate([top_z, np.full(n, -float(base))]),
                   np.concatenate([top_sharp, np.ones(m + len(rim), bool)]))


def surface_arrays(s: Surface, rows: int, cols: int, width: float, height: float, orientation: int = 1,
                   lift: float = 0.0) -> dict[str, Array]:
    """What `build_common.write_mesh` and the mesh's layers take (see the module docstring)."""
    edge_of, edges, _ = _undirected(s)
    positions = np.empty((len(s.points), 3), np.float32)
    positions[:, 0] = s.points[:, 0] * (width / (cols - 1)) - width / 2.0
    positions[:, 1] = s.points[:, 1] * (height / (rows - 1)) - height / 2.0
    z = np.zeros(len(s.points)) if s.z is None else s.z
    positions[:, 2] = z + lift * s.heights
    corner_points = s.points[s.corner_verts]
    u, v = oriented_uv(corner_points[:, 0] / (cols - 1), corner_points[:, 1] / (rows - 1), orientation)
    sharp = np.zeros(len(s.face_starts), bool) if s.sharp is None else s.sharp
    return {"positions": positions, "edges": edges.astype(np.int32),
            "corner_verts": s.corner_verts.astype(np.int32), "corner_edges": edge_of.astype(np.int32),
            "face_starts": s.face_starts.astype(np.int32), "uv": np.stack([u, v], axis=1).astype(np.float32),
            "heights": s.heights.astype(np.float32), "sharp_face": sharp}


# --- the photo's alpha ---------------------------------------------------------------------------


def read_alpha(path: str | os.PathLike[str]) -> Array | None:
    """The image's alpha in 0..1, float32, upright (EXIF applied), top row first; None when it has
    no alpha channel or no pixel below 0.5 (nothing to cut out)."""
    with images.upright(path, "photo", "use another copy of it") as img:
        bands = img.getbands()
        if "transparency" in img.info and "A" not in bands:  # a palette's or a colour key's
            img = img.convert("RGBA")
        elif "A" not in bands and "a" not in bands:
            return None
        band = "A" if "A" in img.getbands() else "a"
        alpha = np.asarray(img.getchannel(band), dtype=np.float32)
    alpha *= np.float32(1.0 / 255.0)
    if alpha.ndim != 2 or not (alpha < 0.5).any():
        return None
    return alpha


def grid_alpha(alpha: Array, rows: int, cols: int) -> Array:
    """`alpha` (top row first) area-averaged onto a rows×cols vertex grid, rows bottom-up."""
    return np.ascontiguousarray(area_resample(alpha, rows, cols)[::-1], dtype=np.float32)
