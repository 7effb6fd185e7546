"""bpy-free: the relief's numbers in numpy: a depth map read upright, its heights on a grid, the grid's topology and UVs, and the watertight solid.

Nothing here touches Blender: `blender/build_relief.py` writes these arrays into a mesh, and
`tests/core/test_relief.py` checks them without the bpy wheel. Rows are bottom-up (Blender's
order) once a depth map became heights; Pillow's rows run top-down. UV (0, 0) is the image's
bottom-left corner; an EXIF orientation turns the UVs (`oriented_uv`), never the pixels, because
Blender shows an image as stored and ignores its EXIF.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from . import images
from .errors import ImportFailed

Array = npt.NDArray[Any]

#: thickness of a solid relief's base below its lowest point, as a fraction of the plane width
SOLID_BASE: Final = 0.05

# EXIF orientation -> the stored image's UV for a point (s, t) of the upright image (both
# bottom-up, 0..1): u = u_off + u_sign * (s, t)[u_src], v likewise. Checked against
# Pillow's ImageOps.exif_transpose for all eight values (see tests/core/test_relief.py).
_ORIENT_UV: dict[int, tuple[int, float, float, int, float, float]] = {
    1: (0, 1.0, 0.0, 1, 1.0, 0.0), 2: (0, -1.0, 1.0, 1, 1.0, 0.0),
    3: (0, -1.0, 1.0, 1, -1.0, 1.0), 4: (0, 1.0, 0.0, 1, -1.0, 1.0),
    5: (1, -1.0, 1.0, 0, -1.0, 1.0), 6: (1, -1.0, 1.0, 0, 1.0, 0.0),
    7: (1, 1.0, 0.0, 0, 1.0, 0.0), 8: (1, 1.0, 0.0, 0, -1.0, 1.0),
}

# Gaussian kernels wider than this many taps are applied through the FFT instead (same result).
_MAX_DIRECT_TAPS = 41


def oriented_uv(s: Array, t: Array, orientation: int) -> tuple[Array, Array]:
    """The stored image's UV of the points (s, t) of the upright image (both bottom-up, 0..1)."""
    u_src, u_sign, u_off, v_src, v_sign, v_off = _ORIENT_UV[orientation]
    st = (s, t)
    return u_off + u_sign * st[u_src], v_off + v_sign * st[v_src]


def plane_size(upright: tuple[int, int], size_mode: str, height: float, factor: float) -> tuple[float, float]:
    """(width, height) in Blender units of a plane showing an image of `upright` pixels:
    ABSOLUTE: `height` units tall; DPBU: `factor` pixels per unit."""
    w, h = upright
    if size_mode == "DPBU":
        return w / factor, h / factor
    return height * w / h, height


# --- the depth map -------------------------------------------------------------------------------


def read_depth(path: str | os.PathLike[str]) -> Array:
    """The depth map as float32 rows, top row first (Pillow's order), upright; colour → luminance."""
    with images.upright(path, "depth map", "generate the result again") as img:
        img.load()
        if img.mode == "F":
            depth = np.asarray(img, dtype=np.float32)
        elif img.mode.startswith("I"):
            depth = np.asarray(img).astype(np.float32)   # 16-bit PNG depth keeps its precision
        elif img.mode == "L":
            depth = np.asarray(img, dtype=np.float32)
        else:
            depth = np.asarray(img.convert("L"), dtype=np.float32)  # ITU-R 601 luma
    if depth.ndim != 2 or min(depth.shape) < 1:
        raise ImportFailed(f"The depth map '{Path(path).name}' holds no pixels: generate the result again.")
    return depth


def gaussian_blur(a: Array, sigma: float) -> Array:
    """A separable Gaussian blur (sigma in pixels, edges mirrored) in numpy; float32 out."""
    a = np.asarray(a, dtype=np.float32)
    if sigma <= 0.0:
        return a
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        a = _convolve_axis(a, kernel, axis)
    return a


def _convolve_axis(a: Array, kernel: Array, axis: int) -> Array:
    radius = len(kernel) // 2
    n = a.shape[axis]
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(a, pad, mode="symmetric")
    if len(kernel) > _MAX_DIRECT_TAPS:
        # Wide kernels: one FFT per row instead of hundreds of shifted passes.
        size = padded.shape[axis] + len(kernel) - 1
        fast = 1 << (size - 1).bit_length()
        spectrum = np.fft.rfft(padded, fast, axis=axis) * np.fft.rfft(kernel, fast).reshape(
            (-1, 1) if axis == 0 else (1, -1))
        full = np.fft.irfft(spectrum, fast, axis=axis)
        start = 2 * radius
        return np.ascontiguousarray(np.take(full, np.arange(start, start + n), axis=axis), dtype=np.float32)
    out = np.zeros_like(a)
    tmp = np.empty_like(a)
    for i, weight in enumerate(kernel):
        window = padded[i:i + n] if axis == 0 else padded[:, i:i + n]
        np.multiply(window, np.float32(weight), out=tmp)
        out += tmp
    return out


def area_resample(a: Array, rows: int, cols: int) -> Array:
    """Average `a` over the cell of each vertex of a rows×cols grid spanning it edge to edge.

    Vertex k of n sits at k/(n-1) of the image; it takes the exact mean of the pixels in the
    box one grid step wide around it (clipped at the borders), fractional pixels weighted by
    their covered area. Box filters are separable: two 1D passes, the long one first.
    """
    a = np.asarray(a, dtype=np.float32)
    return _box_axis(_box_axis(a, cols, axis=1), rows, axis=0)


def _box_axis(a: Array, n: int, axis: int) -> Array:
    length = a.shape[axis]
    step = length / (n - 1)
    centres = np.arange(n, dtype=np.float64) * step
    lo = np.clip(centres - step / 2.0, 0.0, length)
    hi = np.clip(centres + step / 2.0, 0.0, length)
    shape = (1, -1) if axis == 1 else (-1, 1)
    whole = round(step)
    if abs(step - whole) < 1e-9 and (whole == 1 or (whole % 2 == 0 and whole <= 16)):
        return _box_axis_whole(a, n, whole, axis)
    if step < 1.0:
        # More vertices than pixels: the boxes are narrower than a pixel, so a prefix sum
        # interpolated at the box ends gives the exact area mean.
        zero = np.zeros((1, a.shape[1]) if axis == 0 else (a.shape[0], 1))
        prefix = np.concatenate([zero, np.cumsum(a, axis=axis, dtype=np.float64)], axis=axis)

        def integral(x: Array) -> Array:
            i = np.minimum(x.astype(np.intp), length - 1)
            out: Array = np.take(prefix, i, axis=axis) + (x - i).reshape(shape) * np.take(a, i, axis=axis)
            return out

        means: Array = ((integral(hi) - integral(lo)) / (hi - lo).reshape(shape)).astype(np.float32)
        return means
    # Adjacent boxes tile the row: sum the whole pixels of each box in one reduceat pass, then
    # add the covered part of the pixel cut by its left end and remove the uncovered part of
    # the pixel cut by its right end.
    start = np.ceil(lo).astype(np.intp)
    sums = np.add.reduceat(a, np.minimum(start, length - 1), axis=axis)
    empty = start >= length  # the last box when it ends inside the last pixel
    if empty.any():
        if axis == 0:
            sums[empty] = 0.0
        else:
            sums[:, empty] = 0.0
    cut_lo = np.minimum(np.floor(lo).astype(np.intp), length - 1)
    cut_hi = np.minimum(np.floor(hi).astype(np.intp), length - 1)
    sums += (start - lo).astype(np.float32).reshape(shape) * np.take(a, cut_lo, axis=axis)
    sums -= (np.ceil(hi) - hi).astype(np.float32).reshape(shape) * np.take(a, cut_hi, axis=axis)
    sums *= (1.0 / (hi - lo)).astype(np.float32).reshape(shape)
    return sums


def _box_axis_whole(a: Array, n: int, step: int, axis: int) -> Array:
    """_box_axis when a cell is exactly one pixel or an even number of pixels wide (an image of
    2^k pixels on a grid of 2^j + 1 vertices): sums of strided slices, same result, faster."""

    def cut(start: int, stop: int | None, stride: int = 1) -> Array:
        view: Array = a[start:stop:stride] if axis == 0 else a[:, start:stop:stride]
        return view

    length = a.shape[axis]
    out_shape = (n, a.shape[1]) if axis == 0 else (a.shape[0], n)
    out = np.empty(out_shape, np.float32)
    first, last, inner = (out[0], out[-1], out[1:-1]) if axis == 0 else (out[:, 0], out[:, -1], out[:, 1:-1])
    if step == 1:  # each box is half of two neighbouring pixels
        first[...] = cut(0, 1).reshape(first.shape)
        last[...] = cut(length - 1, None).reshape(last.shape)
        np.add(cut(0, length - 1), cut(1, None), out=inner)
        inner *= np.float32(0.5)
        return out
    half = step // 2
    first[...] = cut(0, half).mean(axis=axis)
    last[...] = cut(length - half, None).mean(axis=axis)
    inner[...] = 0.0
    for j in range(step):
        inner += cut(half + j, half + j + (n - 2) * step, step)
    inner *= np.float32(1.0 / step)
    return out


def relief_heights(depth: Array, rows: int, cols: int, *, invert: bool = False,
                   smooth: float = 0.0) -> Array:
    """Grid heights in 0..1, row 0 at the bottom (Blender's order): white is near, so it is high.

    Blur (`smooth` pixels), area-average to the grid, stretch to the full 0..1 range so that
    `strength` alone sets the relief depth, then flip to bottom-up rows.
    """
    grid = area_resample(gaussian_blur(depth, smooth), rows, cols)[::-1]
    lo, hi = float(grid.min()), float(grid.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros((rows, cols), np.float32)
    grid = (grid - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    if invert:
        grid = np.float32(1.0) - grid
    return np.ascontiguousarray(grid, dtype=np.float32)


def grid_shape(upright: tuple[int, int], resolution: int, depth_shape: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the relief grid: `resolution` vertices on the long side at most, and
    never more than the depth map has pixels (+1), in the colour image's aspect."""
    w, h = upright
    depth_long = max(depth_shape)
    n_long = max(2, min(int(resolution), depth_long + 1))
    n_short = max(2, int(round((n_long - 1) * min(w, h) / max(w, h))) + 1)
    return (n_short, n_long) if w >= h else (n_long, n_short)


# --- topology ------------------------------------------------------------------------------------


def grid_arrays(rows: int, cols: int, width: float, height: float) -> dict[str, Array]:
    """The flat grid in numpy: vertex (i, j) is j*cols + i, x right, y up, faces counter-clockwise
    seen from +Z. Edges: every row's horizontal edges, then every column's vertical ones."""
    v = np.arange(rows * cols, dtype=np.int32).reshape(rows, cols)
    positions = np.zeros((rows, cols, 3), np.float32)
    positions[:, :, 0] = np.linspace(-width / 2.0, width / 2.0, cols, dtype=np.float32)[None, :]
    positions[:, :, 1] = np.linspace(-height / 2.0, height / 2.0, rows, dtype=np.float32)[:, None]
    n_h = rows * (cols - 1)
    n_edges = n_h + cols * (rows - 1)
    edges = np.empty((n_edges, 2), np.int32)
    eh = edges[:n_h].reshape(rows, cols - 1, 2)
    eh[..., 0], eh[..., 1] = v[:, :-1], v[:, 1:]
    ev = edges[n_h:].reshape(rows - 1, cols, 2)
    ev[..., 0], ev[..., 1] = v[:-1], v[1:]
    corner_verts = np.empty((rows - 1, cols - 1, 4), np.int32)
    corner_verts[..., 0], corner_verts[..., 1] = v[:-1, :-1], v[:-1, 1:]
    corner_verts[..., 2], corner_verts[..., 3] = v[1:, 1:], v[1:, :-1]
    h_index = np.arange(n_h, dtype=np.int32).reshape(rows, cols - 1)
    v_index = np.arange(n_h, n_edges, dtype=np.int32).reshape(rows - 1, cols)
    corner_edges = np.empty((rows - 1, cols - 1, 4), np.int32)
    corner_edges[..., 0], corner_edges[..., 1] = h_index[:-1], v_index[:, 1:]
    corner_edges[..., 2], corner_edges[..., 3] = h_index[1:], v_index[:, :-1]
    n_faces = (rows - 1) * (cols - 1)
    face_starts = np.arange(0, 4 * n_faces, 4, dtype=np.int32)
    return {"positions": positions.reshape(-1, 3), "edges": edges, "corner_verts": corner_verts.reshape(-1),
            "corner_edges": corner_edges.reshape(-1), "face_starts": face_starts,
            "uv": quad_grid_uv(rows, cols).reshape(-1, 2)}


def quad_grid_uv(rows: int, cols: int, orientation: int = 1, *, x_major: bool = False) -> Array:
    """Per-corner UVs of a rows×cols quad grid, flat float32 (u, v) pairs.

    Face (i, j) has the corners (i, j), (i+1, j), (i+1, j+1), (i, j+1): i counts columns
    left to right, j rows bottom-up; faces are numbered row by row, or column by column when
    `x_major` (the Grid node's order). UV (0, 0) is the bottom-left corner, (1, 1) the top-right,
    exactly; `orientation` (EXIF) then turns them to show a rotated photo upright.

    Written in slabs of about 1 MiB that stay in cache while each component is filled:
    twice as fast as filling the whole array component by component.
    """
    s = np.linspace(0.0, 1.0, cols, dtype=np.float32)
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)
    s4 = np.stack([s[:-1], s[1:], s[1:], s[:-1]], axis=1)  # (cols-1, 4 corners)
    t4 = np.stack([t[:-1], t[:-1], t[1:], t[1:]], axis=1)  # (rows-1, 4 corners)
    if x_major:  # faces: outer index, then inner
        outer, inner = s4, t4
        u, v = oriented_uv(s4[:, None, :], t4[None, :, :], orientation)
    else:
        outer, inner = t4, s4
        u, v = oriented_uv(s4[None, :, :], t4[:, None, :], orientation)
    uv = np.empty((len(outer), len(inner), 4, 2), np.float32)
    step = max(1, (1 << 20) // (len(inner) * 32))
    for k, comp in enumerate((np.asarray(u, np.float32), np.asarray(v, np.float32))):
        on_outer = comp.shape[0] == len(outer) and comp.shape[1] == 1 and len(inner) > 1
        for o0 in range(0, len(outer), step):
            slab = uv[o0:o0 + step, :, :, k]
            if on_outer:  # one value per (face row, corner): fill along the row
                for c in range(4):
                    slab[:, :, c] = comp[o0:o0 + step, :, c]
            else:         # the same values for every face row: copy the row
                slab[...] = comp[0] if comp.shape[0] == 1 else comp[o0:o0 + step]
    flat: Array = uv.reshape(-1)
    return flat


def transposed(a: Array, step: int = 64) -> Array:
    """`a.T` as a new C-contiguous array, copied in bands that stay in cache (2× numpy's copy)."""
    out = np.empty((a.shape[1], a.shape[0]), a.dtype)
    for r in range(0, a.shape[0], step):
        out[:, r:r + step] = a[r:r + step].T
    return out


def ring(rows: int, cols: int) -> tuple[Array, Array]:
    """The grid's boundary, counter-clockwise from the bottom-left corner seen from +Z:
    vertex indices and, for the edge from ring[k] to ring[k+1], its index in grid_arrays' edges."""
    n_h = rows * (cols - 1)
    i = np.arange(cols - 1)
    j = np.arange(rows - 1)
    verts = np.concatenate([
        i,                                   # bottom row, left to right
        (cols - 1) + j * cols,               # right column, upwards
        (rows - 1) * cols + (cols - 1 - i),  # top row, right to left
        (rows - 1 - j) * cols,               # left column, downwards
    ])
    edges = np.concatenate([
        i,                                   # (i, 0) -> (i+1, 0)
        n_h + j * cols + (cols - 1),         # (cols-1, j) -> (cols-1, j+1)
        (rows - 1) * (cols - 1) + (cols - 2 - i),  # (i+1, top) -> (i, top)
        n_h + (rows - 2 - j) * cols,         # (0, j+1) -> (0, j)
    ])
    return verts.astype(np.int32), edges.astype(np.int32)


def solid_arrays(rows: int, cols: int, width: float, height: float, heights: Array, base: float
                 ) -> dict[str, Array]:
    """grid_arrays closed into a watertight solid: side walls down to a flat back `base` below
    z=0 (a triangle fan around the back's centre: flat, manifold, no degenerate triangles)."""
    top = grid_arrays(rows, cols, width, height)
    ring_v, ring_e = ring(rows, cols)
    r = len(ring_v)
    n_top, n_top_edges = rows * cols, len(top["edges"])
    back = n_top + np.arange(r, dtype=np.int32)
    centre = n_top + r
    k = np.arange(r, dtype=np.int32)
    k1 = (k + 1) % r
    positions = np.empty((n_top + r + 1, 3), np.float32)
    positions[:n_top] = top["positions"]
    positions[n_top:centre, :2] = top["positions"][ring_v, :2]
    positions[n_top:, 2] = -base
    positions[centre, :2] = 0.0
    # edges: the grid's, then top-to-back verticals, the back's rim, and the fan's spokes
    walls_e, rim_e, spoke_e = n_top_edges, n_top_edges + r, n_top_edges + 2 * r
    edges = np.concatenate([
        top["edges"],
        np.stack([ring_v, back], axis=1),
        np.stack([back, back[k1]], axis=1),
        np.stack([np.full(r, centre, np.int32), back], axis=1),
    ]).astype(np.int32)
    # wall k: (ring[k+1], ring[k], back[k], back[k+1]) faces outwards; fan k: (centre, back[k+1], back[k])
    wall_v = np.stack([ring_v[k1], ring_v, back, back[k1]], axis=1)
    wall_e = np.stack([ring_e, walls_e + k, rim_e + k, walls_e + k1], axis=1)
    fan_v = np.stack([np.full(r, centre, np.int32), back[k1], back], axis=1)
    fan_e = np.stack([spoke_e + k1, rim_e + k, spoke_e + k], axis=1)
    n_top_faces = len(top["face_starts"])
    corner_verts = np.concatenate([top["corner_verts"], wall_v.reshape(-1), fan_v.reshape(-1)]).astype(np.int32)
    corner_edges = np.concatenate([top["corner_edges"], wall_e.reshape(-1), fan_e.reshape(-1)]).astype(np.int32)
    face_starts = np.concatenate([
        top["face_starts"],
        4 * n_top_faces + 4 * k,
        4 * n_top_faces + 4 * r + 3 * k,
    ]).astype(np.int32)
    # UVs: the walls and the back repeat the colour of the rim they hang from
    ring_uv = np.stack([(ring_v % cols) / (cols - 1), (ring_v // cols) / (rows - 1)], axis=1).astype(np.float32)
    wall_uv = ring_uv[np.stack([k1, k, k, k1], axis=1)].reshape(-1, 2)
    fan_uv = np.concatenate([np.full((r, 1, 2), 0.5, np.float32), ring_uv[k1][:, None], ring_uv[k][:, None]],
                            axis=1).reshape(-1, 2)
    uv = np.concatenate([top["uv"], wall_uv, fan_uv]).astype(np.float32)
    heights_all = np.zeros(n_top + r + 1, np.float32)
    heights_all[:n_top] = heights.reshape(-1)
    sharp = np.concatenate([np.zeros(n_top_faces, bool), np.ones(2 * r, bool)])
    return {"positions": positions, "edges": edges, "corner_verts": corner_verts, "corner_edges": corner_edges,
            "face_starts": face_starts, "uv": uv, "heights": heights_all, "sharp_face": sharp}
