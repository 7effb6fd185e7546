"""Stand-alone: a local stand-in of the 1min.ai API, faults included (stdlib + numpy + Pillow, no bpy).

`FakeOneMinServer` plays the part of https://api.1min.ai (and of its S3 / asset host) on
127.0.0.1 for the tests, the demo and the benchmarks. It answers with the response shapes
documented for the real API (onemin-api.md and the vendor's IMAGE_3D_GENERATOR page):

    POST /api/assets            multipart field `asset`  -> {"asset": {...}, "fileContent": {...}}
    POST /api/features          IMAGE_3D_GENERATOR (stable-image 20,000 credits, Qubico/trellis 40,000)
                                or BACKGROUND_REMOVER (stable-image, 20,000), sync or "async": true
    GET  /api/results/{uuid}    -> {"aiRecord": {...}} or {"aiRecord": null}
    GET  /s3/asset.1min.ai/<key>?X-Amz-...   the presigned `temporaryUrl` (no key needed)
    GET  /asset/<key>                        the asset host used by the client's last fallback
    GET  /_control/stats, POST /_control/fault|result|clear   cross-process control (not counted)

Every /api/ call needs the `API-KEY` header (401 HTTP_EXCEPTION "API Key has been deleted").

**The results are computed locally from the uploaded image, not by 1min.ai** (`result=`):

- ``depth``: an 8-bit greyscale PNG, white = near, same aspect as the input (long side at most
  1024 px). It is a heuristic monocular estimate, not a learned one. On a copy at most 512 px
  long, five cues are mixed: 35 % subject (how far each colour is from the colours along the
  top and upper sides of the frame: the boundary prior of salient-object detection), 15 %
  brightness (blurred luminance), 15 % detail (blurred gradient energy: the in-focus subject
  is textured, backgrounds are smooth), 25 % a centre-weighted Gaussian prior and 10 % a
  ground prior (lower rows are nearer). An alpha channel, when the photo has one, pushes
  transparent background to the far plane. The mix is blurred (three box passes, about a
  Gaussian of 1 % of the long side), stretched between its 1st and 99th percentiles and
  upscaled smoothly.
- ``glb``: a binary glTF 2.0 relief mesh built from that depth map: a grid of 128 vertices on
  the long side, Y up, facing +Z, 1 unit on the long side, relief 0.2 units; positions,
  normals, UVs, uint16/uint32 indices, and a material with the photo embedded as
  baseColorTexture.
- ``color``: a JPEG of the photo relit by the depth map's normals (an embossed, slightly warm
  and saturated look), so it is visibly a colour result and never greyscale.
- ``zip-gltf``: a zip of ``model.gltf`` + ``model.bin`` + ``texture.png`` (the same relief).
- ``zip-obj``: a zip of ``model.obj`` + ``model.mtl`` + ``texture.png`` (the same relief).

Whatever ``result`` is, ``Qubico/trellis`` answers with the ``glb`` and BACKGROUND_REMOVER with
a cut-out: an RGBA PNG of the upright photo at its own size, transparent where its colour is
close to the colours along the frame's four edges, with a feathered edge (`cutout`). The
cut-out's storage key is also accepted as the ``imageUrl`` of a later request. Faults, kills
and holds apply to BACKGROUND_REMOVER as to the 3D feature (both are ``generate`` then ``poll``
and ``download``).

**Faults.** `inject(fault, stage=..., times=N, **params)` queues a fault; it is consumed by the
next N requests of that stage (``upload`` POST /api/assets, ``generate`` POST /api/features,
``poll`` GET /api/results, ``download`` GET of a result URL, or ``any``: every stage where that
fault can happen). ``times < 0`` keeps it until `clear_faults()`. A request takes at most one
fault of each family: a *response* fault (status, transport), a *record* fault (what the
aiRecord says; it sticks to the record it hit, so later polls see it too) and a *content* fault
(what the downloaded bytes are). A 5xx or a reset at ``generate`` still does the generation and
spends its credits (the origin worked, the answer was lost); 4xx faults refuse before any work.

    response  401 403 400:<ERRORCODE> credits 413 429 429-no-retry-after 500 502-html 522-html
              slow-headers drop-mid-body truncated reset invalid-json html-instead-of-json
              huge-content-length redirect-scheme never-ends result-404 gzip gzip-bomb
    record    status-failure temporary-url-empty temporary-url-missing temporary-url-toplevel
              hostile-key key-is-url
    content   corrupt-result invalid-glb zip-traversal zip-bomb hostile-refs

Parameters (all optional): 400:X ``message``, ``details``; credits ``status`` (400) and ``code``
(``INSUFFICIENT_CREDITS``): the insufficient-credits shape is unknown, so the stand-in plays
``400 {"errorCode": "INSUFFICIENT_CREDITS", "message": "...credits...", "details": "{...}"}``
(use ``status=402`` or ``403`` to play the other guesses); 429 ``retry_after`` (1); 5xx
``delay`` (0 s before answering) and ``work`` (True at ``generate``: the origin did the work
and charged the credits, the gateway lost the answer); slow-headers ``delay`` (5 s before the
headers, then a normal answer); drop-mid-body (half the body, then a TCP reset) and truncated
(part of the body, then a clean close) ``fraction`` (0.5); reset (request read, no answer, TCP
reset); huge-content-length ``length`` (10**12); redirect-scheme ``location``
(``file:///etc/passwd``) and ``status`` (302); never-ends ``interval`` (0.2 s), ``limit``
(60 s, server side); gzip (a well-formed gzip-encoded download); gzip-bomb ``size`` (600 MiB
inflated, starting with the real result's first bytes); html-instead-of-json ``status`` (200); status-failure ``message`` and
``status`` (FAILURE); hostile-key ``key`` (``../../x``); corrupt-result ``size``;
key-is-url (resultObject holds an http URL); zip-traversal ``names``; zip-bomb ``size`` (300 MiB inflated) and ``lie`` (headers declare 1 KiB).

**Hostile references** (``hostile-refs``): the model result names a file of the user's instead of
its own texture, to check that importing it reads nothing outside the result. ``marker`` is that
private file (default ``<tmp>/onemin3d-private-marker.png``; the test decides where it lives);
``target`` what names it: ``image`` (a glTF ``images[].uri``, the default for glb and zip-gltf),
``buffer`` (a new glTF buffer whose bytes the texture is read from), ``map`` (the ``.mtl``'s
``map_Kd``, ``bump -bm 1.0`` and ``map_Ks -o 0 0 0 -s 1 1 1`` lines, the default for zip-obj) or
``mtllib`` (an ``mtllib`` line of the ``.obj``; then ``marker`` should be a private ``.mtl``);
``form`` how: ``absolute`` (the default), ``parent`` (``../`` out of any folder, then down),
``file-url``, ``http`` (``url``, default ``<stand-in>/hostile/<marker name>``, whose requests the
stand-in counts), ``unc`` (``//tmp/...``: a UNC name that Linux reads as ``/tmp/...``),
``unc-backslash``, ``drive`` (``C:\\...``), ``percent`` (``parent`` percent-encoded) or
``data-oversize`` (a ``data:`` image of ``size`` bytes, default 2 MiB); ``symlink`` (zips only)
ships the texture as a link to ``marker``. ``model`` ships that local file (e.g. an FBX exported
by Blender that names a private texture) alone in a zip instead of the computed result.

**Kills.** `kill_at(event, nth=k, pid=p, when=...)` sends SIGKILL to process `p` from inside
the stand-in, at the `k`-th request of `event` counted from the call: ``upload``, ``generate``,
``poll`` (a status check of a generation the stand-in made; the zero-uuid key check is not one)
or ``download``. ``when`` is ``before-answer`` (the request was read and done: an upload
stored, a generation made and charged, after its latency when synchronous; no answer is ever
sent), ``mid-body`` (the headers and half the body were written) or ``after-answer`` (the whole
answer was written). The kill lands at that point of that request whatever the machine's load,
which is what a durability test needs. It returns a `KillSwitch` whose ``fired`` says whether
it went off; `clear_kills()` disarms those that did not.

**Holds.** `hold(event)` returns a `threading.Event`: until it is set, every request of that
event is done (a generation made and charged) but not answered. A test can then see a job stay
in a stage, or two jobs in it at once, by the requests the stand-in received rather than by
waiting a while. `stop()` ends every hold.

Command line (the first stdout line is ``listening on http://HOST:PORT``)::

    python scripts/fake_onemin_server.py --port 8765 --result depth --latency 2 \\
        [--api-key K] [--fault NAME[@STAGE][*N][,param=value...]]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import hmac
import io
import json
import logging
import os
import posixpath
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import textwrap
import threading
import time
import uuid as uuidlib
import weakref
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

log = logging.getLogger("onemin3d.stand_in")

DEFAULT_API_KEY = "test-key-0123456789"
FEATURE_TYPE = "IMAGE_3D_GENERATOR"
MODEL = "stable-image"
TRELLIS_MODEL = "Qubico/trellis"
BACKGROUND_REMOVER = "BACKGROUND_REMOVER"
#: (feature, model) -> credits per call, as 1min.ai lists them (onemin-api.md §5)
PRICES: dict[tuple[str, str], int] = {
    (FEATURE_TYPE, MODEL): 20_000,
    (FEATURE_TYPE, TRELLIS_MODEL): 40_000,
    (BACKGROUND_REMOVER, MODEL): 20_000,
}
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
RESULT_KINDS = ("depth", "glb", "color", "zip-gltf", "zip-obj")
STAGES = ("upload", "generate", "poll", "download")
BUCKET = "asset.1min.ai"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
MIN_SIDE = 512
ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
CREDITS_PER_GENERATION = PRICES[(FEATURE_TYPE, MODEL)]  # one stable-image 3D generation
RESULT_MAX_SIDE = 1024  # results are computed on a copy at most this long
DEPTH_WORK_SIDE = 512   # the depth cues are computed at this size, then upscaled
GRID = 128              # vertices on the long side of the relief models
RELIEF = 0.2            # relief depth of the models, as a fraction of the long side

Array = NDArray[Any]

_ALL = frozenset(STAGES)
_JSON_STAGES = frozenset({"upload", "generate", "poll"})
_RECORD_STAGES = frozenset({"generate", "poll"})
_DOWNLOAD = frozenset({"download"})

#: fault name -> (family, stages where it can happen)
FAULTS: dict[str, tuple[str, frozenset[str]]] = {
    "401": ("response", _ALL), "403": ("response", _ALL), "credits": ("response", _ALL),
    "413": ("response", _ALL), "429": ("response", _ALL), "429-no-retry-after": ("response", _ALL),
    "500": ("response", _ALL), "502-html": ("response", _ALL), "522-html": ("response", _ALL),
    "slow-headers": ("response", _ALL), "drop-mid-body": ("response", _ALL),
    "truncated": ("response", _ALL), "reset": ("response", _ALL),
    "invalid-json": ("response", _JSON_STAGES), "html-instead-of-json": ("response", _JSON_STAGES),
    "huge-content-length": ("response", _ALL), "redirect-scheme": ("response", _ALL),
    "never-ends": ("response", _ALL), "result-404": ("response", _DOWNLOAD),
    "gzip": ("response", _DOWNLOAD), "gzip-bomb": ("response", _DOWNLOAD),
    "status-failure": ("record", _RECORD_STAGES), "temporary-url-empty": ("record", _RECORD_STAGES),
    "temporary-url-missing": ("record", _RECORD_STAGES),
    "temporary-url-toplevel": ("record", _RECORD_STAGES),
    "hostile-key": ("record", _RECORD_STAGES), "key-is-url": ("record", _RECORD_STAGES),
    "corrupt-result": ("content", _DOWNLOAD), "invalid-glb": ("content", _DOWNLOAD),
    "zip-traversal": ("content", _DOWNLOAD), "zip-bomb": ("content", _DOWNLOAD),
    "hostile-refs": ("content", _DOWNLOAD),
}
KNOWN_400_CODES = ("UNSUPPORTED_MODEL", "MISSING_REQUIRED_FIELDS", "UNKNOWN_ERROR",
                   "EXTERNAL_API_RESPONSE_WITH_ERROR")


def fault_spec(name: str) -> tuple[str, frozenset[str]]:
    """The (family, stages) of a fault name; ValueError for an unknown one."""
    if name.startswith("400:") and len(name) > 4:
        return "response", _ALL
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: 400:<CODE> {' '.join(FAULTS)}")
    return FAULTS[name]


# --- the computed results ------------------------------------------------------------------


def _box_blur_1d(a: Array, r: int, axis: int) -> Array:
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return ((hi - lo) / (2 * r + 1)).astype(np.float32)


def blur(a: Array, radius: float, passes: int = 3) -> Array:
    """Separable box blur, `passes` times (three passes approximate a Gaussian), edges clamped."""
    r = int(round(radius))
    if r < 1:
        return a.astype(np.float32, copy=False)
    out = a.astype(np.float32, copy=False)
    for axis in (0, 1):
        for _ in range(passes):
            out = _box_blur_1d(out, r, axis)
    return out


def _stretch(a: Array, lo_pct: float = 1.0, hi_pct: float = 99.0) -> Array:
    lo, hi = np.percentile(a, [lo_pct, hi_pct])
    if hi - lo < 1e-6:
        flat: Array = np.full(a.shape, 0.5, dtype=np.float32)
        return flat
    out: Array = np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return out


def _subject(rgb: Array, side: int) -> Array:
    """How far each pixel's colour is from the frame's top and upper sides (0..1): the boundary
    prior of salient-object detection, since the background usually touches the frame there."""
    h, w = rgb.shape[:2]
    step = max(1, max(h, w) // 96)
    small = blur(rgb.reshape(h, w * 3), side / 256, passes=1).reshape(h, w, 3)[::step, ::step]
    sh, sw = small.shape[:2]
    rows = max(1, sh // 12)
    border = np.concatenate([small[:rows].reshape(-1, 3),
                             small[: sh * 2 // 3, :rows].reshape(-1, 3),
                             small[: sh * 2 // 3, -rows:].reshape(-1, 3)])
    border = border[:: max(1, len(border) // 96)]
    dist = np.sqrt(((small[:, :, None, :] - border[None, None, :, :]) ** 2).sum(-1)).min(axis=-1)
    full = np.asarray(Image.fromarray(dist.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR))
    return _stretch(blur(full, side / 40), 2.0, 95.0)


def estimate_depth(rgb: Array, alpha: Array | None = None) -> Array:
    """A smooth depth estimate in 0..1 (1 = near) of an RGB float image (h, w, 3) in 0..1.

    The mix of cues is described in the module docstring. The result has the input's shape.
    """
    h, w = rgb.shape[:2]
    luma = rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722
    side = max(h, w)
    brightness = _stretch(blur(luma, side / 48))
    grad = np.zeros_like(luma)
    grad[:, 1:] += np.abs(np.diff(luma, axis=1))
    grad[1:, :] += np.abs(np.diff(luma, axis=0))
    detail = _stretch(blur(grad, side / 16))
    yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    xx = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    centre = np.exp(-(((xx - 0.5) / 0.35) ** 2 + ((yy - 0.5) / 0.35) ** 2) / 2.0)
    ground = np.broadcast_to(yy, (h, w))
    depth = (0.35 * _subject(rgb, side) + 0.15 * brightness + 0.15 * detail
             + 0.25 * centre + 0.10 * ground)
    if alpha is not None:
        depth = depth * blur(alpha.astype(np.float32), side / 200, passes=2)
    return _stretch(blur(depth, side / 200))


def _load_rgb(data: bytes, max_side: int = RESULT_MAX_SIDE) -> tuple[Image.Image, Array | None]:
    """The upright photo at most `max_side` long as RGB, and its alpha (0..1) when it has one."""
    with Image.open(io.BytesIO(data)) as src:
        if src.format == "JPEG":
            src.draft("RGB", (max_side, max_side))
        im = ImageOps.exif_transpose(src)
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        im = im.convert("RGBA" if has_alpha else "RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    alpha = None
    if has_alpha:
        a = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        if float(a.min()) < 0.98:
            alpha = a
        im = im.convert("RGB")
    return im, alpha


def depth_map(photo: Image.Image, alpha: Array | None) -> Array:
    """`estimate_depth` at DEPTH_WORK_SIDE, upscaled smoothly to the photo's size (float32 0..1)."""
    work = photo.copy()
    work.thumbnail((DEPTH_WORK_SIDE, DEPTH_WORK_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(work, dtype=np.float32) / 255.0
    small_alpha = None
    if alpha is not None:
        a_img = Image.fromarray((alpha * 255).astype(np.uint8)).resize(work.size, Image.Resampling.BILINEAR)
        small_alpha = np.asarray(a_img, dtype=np.float32) / 255.0
    d = estimate_depth(rgb, small_alpha)
    if work.size != photo.size:
        d = np.asarray(Image.fromarray(d).resize(photo.size, Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(d, 0.0, 1.0)


def _png(im: Image.Image, level: int = 3) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=level)
    return buf.getvalue()


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def stylise(photo: Image.Image, depth: Array) -> Image.Image:
    """The photo relit by the depth map's normals, a little warmer and more saturated."""
    rgb = np.asarray(photo, dtype=np.float32) / 255.0
    h, w = depth.shape
    gz_r, gz_c = np.gradient(blur(depth, max(h, w) / 300) * (0.15 * max(h, w)))
    n = np.stack([-gz_c, gz_r, np.ones_like(depth)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    light = np.array([-0.5, 0.6, 0.65], dtype=np.float32)
    lam = np.clip(n @ (light / np.linalg.norm(light)), 0.0, 1.0)
    out = rgb * (0.45 + 0.75 * lam)[..., None]
    grey = out.mean(axis=-1, keepdims=True)
    out = (grey + 1.25 * (out - grey)) * np.array([1.06, 1.0, 0.9], dtype=np.float32)
    return Image.fromarray((np.clip(out, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))


@dataclass(frozen=True)
class Relief:
    """The arrays of a relief grid mesh (glTF conventions: Y up, facing +Z, UV origin top-left)."""

    positions: Array  # (n, 3) float32
    normals: Array    # (n, 3) float32
    uvs: Array        # (n, 2) float32
    indices: Array    # (m, 3) uint16 or uint32, counter-clockwise seen from +Z
    grid: tuple[int, int]  # (columns, rows)


def relief_mesh(depth: Array, grid: int = GRID, relief: float = RELIEF) -> Relief:
    """A `grid`-vertex-long relief of the depth map (area-averaged), 1 unit on its long side."""
    h, w = depth.shape
    if w >= h:
        gw, gh = grid, max(2, round(grid * h / w))
    else:
        gw, gh = max(2, round(grid * w / h)), grid
    small = np.asarray(Image.fromarray(depth.astype(np.float32)).resize((gw, gh), Image.Resampling.BOX),
                       dtype=np.float32)
    width, height = w / max(w, h), h / max(w, h)
    xs = np.linspace(-width / 2, width / 2, gw, dtype=np.float32)
    ys = np.linspace(height / 2, -height / 2, gh, dtype=np.float32)
    x, y = np.meshgrid(xs, ys)
    z = small * relief
    positions = np.stack([x, y, z], axis=-1).reshape(-1, 3).astype(np.float32)
    dz_row, dz_col = np.gradient(z, height / (gh - 1), width / (gw - 1))
    normals = np.stack([-dz_col, dz_row, np.ones_like(z)], axis=-1).reshape(-1, 3)
    normals = (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32)
    u, v = np.meshgrid(np.linspace(0, 1, gw, dtype=np.float32), np.linspace(0, 1, gh, dtype=np.float32))
    uvs = np.stack([u, v], axis=-1).reshape(-1, 2)
    ids = np.arange(gw * gh, dtype=np.uint32).reshape(gh, gw)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    indices = np.stack([a, c, b, b, c, d], axis=-1).reshape(-1, 3)
    if gw * gh <= 65535:
        indices = indices.astype(np.uint16)
    return Relief(positions, normals, uvs, indices, (gw, gh))


class _GltfBuilder:
    """Collects buffer views and accessors into one binary buffer, 4-byte aligned."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        entry: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        self.blob.extend(data)
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, arr: Array, kind: str, target: int, bounds: bool = False) -> int:
        ctype = {np.dtype(np.float32): 5126, np.dtype(np.uint16): 5123, np.dtype(np.uint32): 5125}[arr.dtype]
        acc: dict[str, Any] = {"bufferView": self.view(np.ascontiguousarray(arr).tobytes(), target),
                               "componentType": ctype, "count": int(arr.shape[0]), "type": kind}
        if bounds:
            acc["min"] = [float(v) for v in arr.min(axis=0)]
            acc["max"] = [float(v) for v in arr.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def relief_gltf(mesh: Relief, texture: bytes, texture_mime: str, *, embed: bool) -> tuple[dict[str, Any], bytes]:
    """The glTF JSON and binary buffer of a relief; `embed` puts the texture in the buffer (GLB),
    otherwise the JSON refers to ``model.bin`` and ``texture.png`` beside it."""
    b = _GltfBuilder()
    pos = b.accessor(mesh.positions, "VEC3", 34962, bounds=True)
    nrm = b.accessor(mesh.normals, "VEC3", 34962)
    uv = b.accessor(mesh.uvs, "VEC2", 34962)
    idx = b.accessor(mesh.indices.reshape(-1), "SCALAR", 34963)
    image: dict[str, Any] = {"name": "photo", "mimeType": texture_mime}
    if embed:
        image["bufferView"] = b.view(texture)
    else:
        image["uri"] = "texture.png"
    b.blob.extend(b"\0" * (-len(b.blob) % 4))
    buffer: dict[str, Any] = {"byteLength": len(b.blob)}
    if not embed:
        buffer["uri"] = "model.bin"
    doc = {
        "asset": {"version": "2.0", "generator": "onemin3d local stand-in (computed locally, not by 1min.ai)"},
        "scene": 0,
        "scenes": [{"name": "Scene", "nodes": [0]}],
        "nodes": [{"name": "relief", "mesh": 0}],
        "meshes": [{"name": "relief", "primitives": [{
            "attributes": {"POSITION": pos, "NORMAL": nrm, "TEXCOORD_0": uv},
            "indices": idx, "material": 0, "mode": 4}]}],
        "materials": [{"name": "photo", "doubleSided": True, "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 0.85}}],
        "textures": [{"source": 0, "sampler": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": [image],
        "accessors": b.accessors,
        "bufferViews": b.views,
        "buffers": [buffer],
    }
    return doc, bytes(b.blob)


def pack_glb(doc: dict[str, Any], binary: bytes) -> bytes:
    """A GLB container: 12-byte header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(js), b"JSON"), js,
                     struct.pack("<I4s", len(binary), b"BIN\0"), binary])


def relief_obj(mesh: Relief) -> str:
    """The relief as Wavefront OBJ text (Y up, OBJ's UV origin bottom-left), material `photo`."""
    p, t, n = mesh.positions, mesh.uvs.copy(), mesh.normals
    t[:, 1] = 1.0 - t[:, 1]
    f = mesh.indices.astype(np.int64) + 1
    faces = np.repeat(f, 3, axis=1)
    return "".join([
        "# relief computed locally by the onemin3d stand-in, not by 1min.ai\n",
        "mtllib model.mtl\no relief\n",
        ("v %.6f %.6f %.6f\n" * len(p)) % tuple(p.ravel().tolist()),
        ("vt %.6f %.6f\n" * len(t)) % tuple(t.ravel().tolist()),
        ("vn %.5f %.5f %.5f\n" * len(n)) % tuple(n.ravel().tolist()),
        "usemtl photo\ns 1\n",
        ("f %d/%d/%d %d/%d/%d %d/%d/%d\n" * len(faces)) % tuple(faces.ravel().tolist()),
    ])


_MTL = "newmtl photo\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd texture.png\n"

#: kind -> (file extension, Content-Type)
RESULT_TYPES = {"depth": ("png", "image/png"), "color": ("jpg", "image/jpeg"),
                "glb": ("glb", "model/gltf-binary"), "zip-gltf": ("zip", "application/zip"),
                "zip-obj": ("zip", "application/zip"), "cutout": ("png", "image/png")}


def compute_result(kind: str, image: bytes) -> bytes:
    """The result of `kind` (RESULT_KINDS) computed from the bytes of an uploaded image."""
    if kind == "cutout":
        return _png(cutout(image))
    if kind not in RESULT_KINDS:
        raise ValueError(f"unknown result kind {kind!r}; known: {', '.join(RESULT_KINDS)}")
    photo, alpha = _load_rgb(image)
    depth = depth_map(photo, alpha)
    if kind == "depth":
        return _png(Image.fromarray((depth * 255 + 0.5).astype(np.uint8)))
    if kind == "color":
        return _jpeg(stylise(photo, depth))
    mesh = relief_mesh(depth)
    if kind == "glb":
        doc, binary = relief_gltf(mesh, _jpeg(photo), "image/jpeg", embed=True)
        return pack_glb(doc, binary)
    texture = _png(photo, level=1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        if kind == "zip-gltf":
            doc, binary = relief_gltf(mesh, texture, "image/png", embed=False)
            zf.writestr("model.gltf", json.dumps(doc, indent=1))
            zf.writestr("model.bin", binary)
        else:
            zf.writestr("model.obj", relief_obj(mesh))
            zf.writestr("model.mtl", _MTL)
        zf.writestr(zipfile.ZipInfo("texture.png", time.localtime()[:6]), texture)  # stored as-is
    return buf.getvalue()


def cutout_alpha(rgb: Array) -> Array:
    """The subject's mask (0..1) of an RGB float image (h, w, 3) in 0..1: the pixels whose colour
    differs from every colour along the frame's four edges, with a feathered edge (a ramp of
    about 1.5 % of the long side)."""
    h, w = rgb.shape[:2]
    rows = max(1, min(h, w) // 64)
    border = np.concatenate([rgb[:rows].reshape(-1, 3), rgb[-rows:].reshape(-1, 3),
                             rgb[:, :rows].reshape(-1, 3), rgb[:, -rows:].reshape(-1, 3)])
    border = border[:: max(1, len(border) // 64)]
    dist = np.sqrt(((rgb[:, :, None, :] - border[None, None, :, :]) ** 2).sum(-1)).min(axis=-1)
    mask = np.clip((dist - 0.08) / 0.12, 0.0, 1.0).astype(np.float32)
    feathered: Array = np.clip(blur(mask, max(h, w) / 200, passes=2), 0.0, 1.0)
    return feathered


def cutout(image: bytes) -> Image.Image:
    """BACKGROUND_REMOVER's answer: the upright photo at its own size, RGBA, the background made
    transparent (`cutout_alpha`, computed on a copy at most DEPTH_WORK_SIDE long, then smoothly
    upscaled; an alpha the photo already had is kept too)."""
    with Image.open(io.BytesIO(image)) as src:
        im = ImageOps.exif_transpose(src).convert("RGBA")
    work = im.convert("RGB")
    work.thumbnail((DEPTH_WORK_SIDE, DEPTH_WORK_SIDE), Image.Resampling.BILINEAR)
    mask = cutout_alpha(np.asarray(work, dtype=np.float32) / 255.0)
    alpha = Image.fromarray((mask * 255 + 0.5).astype(np.uint8)).resize(im.size, Image.Resampling.BILINEAR)
    own = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
    combined = (np.asarray(alpha, dtype=np.float32) * own + 0.5).astype(np.uint8)
    im.putalpha(Image.fromarray(combined))
    return im


# --- hostile payloads ----------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def gzip_bomb(head: bytes, size: int) -> bytes:
    """A gzip stream of `head` then zeros, `size` bytes once inflated (about 1000:1)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(head)]
    chunk = bytes(1 << 20)
    left = max(0, size - len(head))
    while left > 0:
        parts.append(comp.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(comp.flush())
    return b"".join(parts)


@functools.lru_cache(maxsize=4)
def zip_bomb(size: int, lie: bool = False) -> bytes:
    """A zip with one `size`-byte entry of zeros; `lie` makes its headers declare 1 KiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("model.gltf", '{"asset": {"version": "2.0"}}')
        with zf.open("texture.png", "w", force_zip64=size >= 1 << 31) as out:
            chunk = bytes(1 << 20)
            left = size
            while left > 0:
                out.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    data = bytearray(buf.getvalue())
    if lie and size < 1 << 31:
        for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            pos = data.find(sig)
            while pos >= 0:
                name_len = struct.unpack_from("<H", data, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
                name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
                if bytes(data[name_at:name_at + name_len]) == b"texture.png":
                    struct.pack_into("<I", data, pos + off, 1024)
                pos = data.find(sig, pos + 4)
    return bytes(data)


def zip_traversal(names: tuple[str, ...]) -> bytes:
    """A zip holding a harmless model plus entries named `names` (e.g. ``../../evil.txt``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.obj", "o x\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
        for name in names:
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # ZipInfo() would tidy the name; a hostile server does not
            zf.writestr(info, "written outside the result folder\n")
    return buf.getvalue()


HOSTILE_FORMS = ("absolute", "parent", "file-url", "http", "unc", "unc-backslash", "drive", "percent",
                 "data-oversize", "symlink")
HOSTILE_TARGETS = ("image", "buffer", "map", "mtllib")
DEFAULT_MARKER = os.path.join(tempfile.gettempdir(), "onemin3d-private-marker.png")


def hostile_reference(form: str, marker: str, url: str = "", size: int = 2 << 20) -> str:
    """How a hostile model names the private file `marker` (an absolute path) in the form `form`."""
    inner = marker.replace("\\", "/").lstrip("/")
    climb = "../" * 24 + inner  # out of any folder up to the root, then down to the marker
    forms = {
        "absolute": marker, "parent": climb, "file-url": "file://" + quote(marker.replace("\\", "/")),
        "http": url, "unc": "//" + inner, "unc-backslash": "\\\\" + inner.replace("/", "\\"),
        "drive": "C:\\" + inner.replace("/", "\\"), "percent": quote(climb, safe=""),
    }
    if form == "data-oversize":  # random bytes: they do not deflate, so a zip of it is no bomb
        noise = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        return "data:image/png;base64," + base64.b64encode(noise).decode("ascii")
    if form not in forms:
        raise ValueError(f"unknown hostile-refs form {form!r}; known: {', '.join(HOSTILE_FORMS)}")
    return forms[form]


def _glb_parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + length])
    rest = data[20 + length:]
    binary = rest[8:8 + struct.unpack_from("<I", rest, 0)[0]] if len(rest) >= 8 else b""
    return doc, binary


def _hostile_gltf(doc: dict[str, Any], target: str, ref: str, marker: str) -> None:
    image = doc["images"][0]
    if target == "image":
        image.pop("bufferView", None)
        image["uri"] = ref
    elif target == "buffer":  # the texture's bytes come from a buffer that names the private file
        length = os.path.getsize(marker) if os.path.isfile(marker) else 4096
        doc["buffers"].append({"uri": ref, "byteLength": length})
        doc["bufferViews"].append({"buffer": len(doc["buffers"]) - 1, "byteOffset": 0, "byteLength": length})
        image.pop("uri", None)
        image["bufferView"] = len(doc["bufferViews"]) - 1
    else:
        raise ValueError(f"hostile-refs target {target!r} does not apply to a glTF result (image, buffer)")


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, time.localtime()[:6])
    info.create_system = 3  # Unix, so the mode bits below mean a symbolic link
    info.external_attr = (0o120777 << 16)
    return info


def hostile_refs(data: bytes, *, form: str = "absolute", target: str = "", marker: str = DEFAULT_MARKER,
                 url: str = "", size: int = 2 << 20, model: str = "", base_url: str = "") -> bytes:
    """The result `data` (a GLB, or a zip of a glTF or an OBJ) made to name the private file `marker`.

    See "Hostile references" in the module docstring for the parameters.
    """
    if model:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(model, os.path.basename(model))
        return buf.getvalue()
    marker = os.path.abspath(marker)
    url = url or f"{base_url}/hostile/{quote(os.path.basename(marker))}"
    ref = "" if form == "symlink" else hostile_reference(form, marker, url, int(size))
    if data[:4] == b"glTF":
        if form == "symlink":
            raise ValueError("hostile-refs form 'symlink' needs a zip result (zip-gltf or zip-obj)")
        doc, binary = _glb_parts(data)
        _hostile_gltf(doc, target or "image", ref, marker)
        return pack_glb(doc, binary)
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        members = {name: src.read(name) for name in src.namelist()}
    if form == "symlink":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, body in members.items():
                if name == "texture.png":
                    zf.writestr(_symlink_info(name), marker)  # a link's body is its target
                else:
                    zf.writestr(name, body)
        return out.getvalue()
    if "model.gltf" in members:
        doc = json.loads(members["model.gltf"])
        _hostile_gltf(doc, target or "image", ref, marker)
        members["model.gltf"] = json.dumps(doc, indent=1).encode()
    elif "model.obj" in members:
        target = target or "map"
        if target == "map":
            members["model.mtl"] = (_MTL.replace("map_Kd texture.png\n", f"map_Kd {ref}\n")
                                    + f"bump -bm 1.0 {ref}\nmap_Ks -o 0 0 0 -s 1 1 1 {ref}\n").encode()
        elif target == "mtllib":
            # the private library comes last, so its "photo" (and its texture) would win
            members["materials.mtl"] = members.pop("model.mtl")
            members["model.obj"] = members["model.obj"].replace(
                b"mtllib model.mtl\n", f"mtllib materials.mtl\nmtllib {ref}\n".encode())
        else:
            raise ValueError(f"hostile-refs target {target!r} does not apply to an OBJ result (map, mtllib)")
    else:
        raise ValueError("hostile-refs needs a glb, zip-gltf or zip-obj result")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return out.getvalue()


def _gzip(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


def _html_page(code: int, title: str, text: str) -> bytes:
    ray = uuidlib.uuid4().hex[:16]
    return (f"<!DOCTYPE html>\n<!--[if lt IE 7]> <html class=\"no-js ie6 oldie\" lang=\"en-US\"> <![endif]-->\n"
            f"<html lang=\"en-US\"><head><title>api.1min.ai | {code}: {title}</title>"
            f"<meta charset=\"UTF-8\" /><meta name=\"robots\" content=\"noindex, nofollow\" /></head>"
            f"<body><div id=\"cf-wrapper\"><div id=\"cf-error-details\"><h1><span>{title}</span>"
            f"<span class=\"code-label\">Error code {code}</span></h1><p>{text}</p>"
            f"<p>Cloudflare Ray ID: <strong>{ray}</strong> &bull; Performance &amp; security by "
            f"Cloudflare</p></div></div></body></html>\n").encode()


_CHALLENGE_PAGE = (b"<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>"
                   b"<body><noscript>Enable JavaScript and cookies to continue</noscript></body></html>\n")


# --- server state --------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    stage: str = "any"
    times: int = 1
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return fault_spec(self.name)[0]

    def matches(self, stage: str, family: str) -> bool:
        fam, stages = fault_spec(self.name)
        return fam == family and stage in stages and self.stage in ("any", stage)


def parse_fault(text: str) -> Fault:
    """``NAME[@STAGE][*N][,param=value...]`` as given to --fault (N may be ``inf``)."""
    head, *param_parts = text.split(",")
    m = re.fullmatch(r"(?P<name>[^@*]+)(?:@(?P<stage>[a-z]+))?(?:\*(?P<times>-?\d+|inf))?", head.strip())
    if not m:
        raise ValueError(f"bad fault {text!r}: expected NAME[@STAGE][*N][,param=value...]")
    params: dict[str, Any] = {}
    for part in param_parts:
        k, sep, v = part.partition("=")
        if not sep:
            raise ValueError(f"bad fault parameter {part!r} in {text!r}: expected param=value")
        params[k.strip()] = _param_value(v.strip())
    times = m["times"]
    return Fault(m["name"], m["stage"] or "any", -1 if times == "inf" else int(times or 1), params)


def _param_value(v: str) -> Any:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


KILL_WHEN = ("before-answer", "mid-body", "after-answer")


@dataclass
class KillSwitch:
    """A kill armed by `FakeOneMinServer.kill_at`; `fired` and `request` say whether and where it went off."""

    event: str
    nth: int
    pid: int
    when: str
    seen: int = 0  # matching requests counted since it was armed
    fired: bool = False
    request: tuple[str, str] | None = None  # (method, path) of the request it fired on


@dataclass
class _Blob:
    path: str
    size: int
    content_type: str
    etag: str


@dataclass
class _Asset:
    key: str
    name: str
    blob: _Blob
    width: int
    height: int
    format: str


@dataclass
class _Record:
    uuid: str
    image_url: str
    asset: _Asset
    kind: str
    created: datetime
    ready_at: float
    used_credit: int
    result_key: str | None = None
    failed: bool = False
    fail_status: str = "FAILURE"
    error_message: str | None = None
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    computed: threading.Event = field(default_factory=threading.Event)
    feature: str = FEATURE_TYPE
    model: str = MODEL


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    is_json: bool = True


class _Abort(Exception):
    """The connection was dealt with (reset, closed, streamed); send nothing more."""


def _json_reply(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, json.dumps(obj, separators=(",", ":")).encode(), headers=headers or [])


def _error(status: int, code: str, message: str, details: str | None = None, path: str = "") -> Reply:
    body: dict[str, Any] = {"errorCode": code, "message": message}
    if details is not None:
        body["details"] = details
    body["context"] = {"path": path, "timestamp": _iso(datetime.now(UTC))} if path else {}
    return _json_reply(status, body)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _s3_error(status: int, code: str, message: str, key: str = "") -> Reply:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Key>{_xml_escape(key)}</Key><RequestId>{uuidlib.uuid4().hex[:16].upper()}</RequestId></Error>")
    return Reply(status, body.encode(), "application/xml", is_json=False)


def _xml_escape(text: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _norm_path(path: str) -> str:
    """A URL path with dot segments removed, as an HTTP client may send it (RFC 3986 5.2.4)."""
    norm = posixpath.normpath(path) if path else "/"
    return "/" + norm.lstrip("/")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stand_in: FakeOneMinServer

    def __init__(self, addr: tuple[str, int], stand_in: FakeOneMinServer) -> None:
        self.stand_in = stand_in
        self.conns: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        self.conn_lock = threading.Lock()
        self._n = 0
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._n += 1
        t = threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True,
                             name=f"onemin-stand-in-conn-{self._n}")
        with self.conn_lock:
            self.conns.add(request)
            self.threads.add(t)
        t.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.conn_lock:
                self.conns.discard(request)
                self.threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away: normal for the fault cases
            log.debug("connection from %s ended: %s", client_address, exc)
        else:
            log.exception("stand-in error while serving %s", client_address)

    def close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class FakeOneMinServer:
    """The local stand-in of the 1min.ai API; see the module docstring for the whole contract."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, api_key: str = DEFAULT_API_KEY,
                 result: str = "depth", latency: float = 0.0, async_latency: float | None = None,
                 credit_limit: int = 100_000_000, used_credit: int = 45_000) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.result = result
        self.latency = latency
        self.async_latency = async_latency
        self.credit_limit = credit_limit
        self.used_credit = used_credit
        self.requests: list[tuple[str, str]] = []
        self.generations = 0
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._kills: list[KillSwitch] = []
        self._holds: dict[str, threading.Event] = {}
        self._assets: dict[str, _Asset] = {}
        self._records: dict[str, _Record] = {}
        self._blobs: dict[str, _Blob] = {}     # result/asset key -> stored bytes
        self._routes: dict[str, str] = {}      # unquoted download path -> key
        self._signatures: dict[str, str] = {}  # X-Amz-Signature -> key
        self._secret = os.urandom(16)
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._store_dir = tempfile.mkdtemp(prefix="onemin3d-stand-in-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._store_dir, True)
        self._seq = 0

    # -- lifecycle --

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def result(self) -> str:
        return self._result

    @result.setter
    def result(self, kind: str) -> None:
        if kind not in RESULT_KINDS:
            raise ValueError(f"unknown result kind {kind!r}; known: {', '.join(RESULT_KINDS)}")
        self._result = kind

    def start(self) -> FakeOneMinServer:
        if self._httpd is not None:
            return self
        self._stop.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="onemin-stand-in", daemon=True)
        self._thread.start()
        log.info("stand-in listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and end every open connection, within well under a second."""
        httpd, self._httpd = self._httpd, None
        self.clear_kills()
        if httpd is None:
            return
        self._stop.set()
        for gate in list(self._holds.values()):
            gate.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        deadline = time.monotonic() + 0.5
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with httpd.conn_lock:
            threads = list(httpd.threads)
        for t in threads + list(self._workers):
            t.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop, and delete the stored uploads and results."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> FakeOneMinServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeOneMinServer({self.base_url}, result={self.result!r}, latency={self.latency})"

    # -- faults and counters --

    def inject(self, fault: str, *, stage: str = "any", times: int = 1, **params: Any) -> None:
        """Queue `fault` for the next `times` matching requests (times < 0: until cleared)."""
        _, stages = fault_spec(fault)
        if stage != "any" and stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: any {' '.join(STAGES)}")
        if stage != "any" and stage not in stages:
            raise ValueError(f"fault {fault!r} cannot happen at stage {stage!r} (only {', '.join(sorted(stages))})")
        if times == 0:
            raise ValueError("times must be >= 1, or negative for 'until cleared'")
        with self._lock:
            self._faults.append(Fault(fault, stage, times, dict(params)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def kill_at(self, event: str, *, pid: int, nth: int = 1, when: str = "before-answer") -> KillSwitch:
        """SIGKILL process `pid` at the `nth` `event` request from now, at point `when` (module docstring)."""
        if event not in STAGES:
            raise ValueError(f"unknown event {event!r}; known: {' '.join(STAGES)}")
        if when not in KILL_WHEN:
            raise ValueError(f"unknown kill point {when!r}; known: {' '.join(KILL_WHEN)}")
        if nth < 1:
            raise ValueError("nth must be >= 1")
        switch = KillSwitch(event, nth, pid, when)
        with self._lock:
            self._kills.append(switch)
        return switch

    def hold(self, event: str) -> threading.Event:
        """Hold every `event` request (a stage) before its answer until the returned Event is set."""
        if event not in STAGES:
            raise ValueError(f"unknown event {event!r}; known: {' '.join(STAGES)}")
        gate = threading.Event()
        with self._lock:
            self._holds[event] = gate
        return gate

    def _wait_held(self, stage: str) -> None:
        gate = self._holds.get(stage)
        if gate is not None:
            gate.wait()
            if self._stop.is_set():
                raise _Abort

    def clear_kills(self) -> list[KillSwitch]:
        """Disarm every kill that has not fired (so a later process reusing the pid is safe); return them."""
        with self._lock:
            left, self._kills = self._kills, []
        return left

    def _kill_due(self, stage: str, path: str) -> KillSwitch | None:
        """Count this request for the armed kills of its event; the one it is due on, taken off the list."""
        if stage == "poll" and path[len("/api/results/"):].strip("/") not in self._records:
            return None  # a key check, or a made-up uuid: not a status check of a generation
        with self._lock:
            due = None
            for switch in self._kills:
                if switch.event == stage:
                    switch.seen += 1
                    if switch.seen == switch.nth and due is None:
                        due = switch
            if due is not None:
                self._kills = [k for k in self._kills if k is not due]
        return due

    def _fire(self, switch: KillSwitch, method: str, path: str) -> None:
        # marked first: whoever waits on the process may look at the switch the moment it dies
        switch.fired, switch.request = True, (method, path)
        try:
            os.kill(switch.pid, signal.SIGKILL)
        except ProcessLookupError:
            switch.fired = False
            log.warning("kill at %s #%d: process %d was already gone", switch.event, switch.nth, switch.pid)
            return
        log.info("killed process %d at %s #%d (%s %s, %s)", switch.pid, switch.event, switch.nth, method, path,
                 switch.when)

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        """How many requests (control requests excluded) matched `method` and `path_prefix`."""
        with self._lock:
            return sum(1 for m, p in self.requests
                       if (method is None or m == method.upper()) and p.startswith(path_prefix))

    def _take(self, stage: str, family: str, skip: set[str] | None = None) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.matches(stage, family) and not (skip and f.name in skip):
                    if f.times > 0:
                        f.times -= 1
                        if f.times == 0:
                            del self._faults[i]
                    return Fault(f.name, stage, 1, dict(f.params))
        return None

    def _take_record_faults(self, stage: str, rec: _Record) -> None:
        # Each pending record fault is taken at most once per record: an unlimited fault
        # (times <= 0) stays in the list, and would otherwise be taken again forever.
        seen: set[str] = set()
        while (f := self._take(stage, "record", skip=seen)) is not None:
            seen.add(f.name)
            rec.faults[f.name] = f.params
            if f.name == "status-failure":
                rec.failed = True
                rec.fail_status = str(f.params.get("status", "FAILURE"))
                rec.error_message = str(f.params.get(
                    "message", "The 3D model could not be generated from this image (upstream FAILURE)."))
            elif f.name == "hostile-key":
                self._rekey(rec, str(f.params.get("key", "../../x")))

    # -- storage --

    def _store(self, key: str, data: bytes, content_type: str) -> _Blob:
        with self._lock:
            self._seq += 1
            path = os.path.join(self._store_dir, f"{self._seq:07d}.bin")  # never named after the key
        with open(path, "wb") as fh:
            fh.write(data)
        blob = _Blob(path, len(data), content_type, '"' + hashlib.md5(data).hexdigest() + '"')
        self._publish(key, blob)
        return blob

    def _publish(self, key: str, blob: _Blob) -> None:
        with self._lock:
            self._blobs[key] = blob
            for prefix in ("/asset/", f"/s3/{BUCKET}/"):
                self._routes[prefix + key] = key
                self._routes[_norm_path(prefix + key)] = key
            self._signatures[self._signature(key)] = key

    def _rekey(self, rec: _Record, key: str) -> None:
        rec.faults.setdefault("hostile-key", {"key": key})
        old, rec.result_key = rec.result_key, key
        if old is not None and old in self._blobs:
            self._publish(key, self._blobs[old])

    def _new_key(self, name: str) -> str:
        with self._lock:
            now = datetime.now(UTC)
            while True:
                stamp = now.strftime("%Y_%m_%d_%H_%M_%S_") + f"{now.microsecond // 1000:03d}"
                key = f"images/{stamp}_{name}"
                if key not in self._blobs and key not in self._assets:
                    return key
                now = now.replace(microsecond=(now.microsecond + 1000) % 1_000_000)

    def _signature(self, key: str) -> str:
        return hmac.new(self._secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def presigned_url(self, key: str) -> str:
        now = datetime.now(UTC)
        day, stamp = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
        return (f"{self.base_url}/s3/{BUCKET}/{quote(key, safe='/')}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD"
                f"&X-Amz-Credential=ASIASTANDIN0000000000%2F{day}%2Fus-east-1%2Fs3%2Faws4_request"
                f"&X-Amz-Date={stamp}&X-Amz-Expires=604800&X-Amz-Signature={self._signature(key)}"
                f"&X-Amz-SignedHeaders=host&x-amz-checksum-mode=ENABLED&x-id=GetObject")

    def asset_url(self, key: str) -> str:
        return f"{self.base_url}/asset/{quote(key, safe='/')}"

    def result_bytes(self, key: str) -> bytes | None:
        """The stored bytes of a result or asset key (for tests)."""
        blob = self._blobs.get(key)
        if blob is None:
            return None
        with open(blob.path, "rb") as fh:
            return fh.read()

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """Every aiRecord created so far, as GET /api/results would show it now."""
        with self._lock:
            recs = list(self._records.values())
        return {r.uuid: self._record_json(r)[0] for r in recs}

    # -- the API --

    def _check_key(self, handler: _Handler) -> Reply | None:
        sent = handler.headers.get("API-KEY")
        if not sent or not hmac.compare_digest(sent.encode(), self.api_key.encode()):
            return _error(401, "HTTP_EXCEPTION", "API Key has been deleted")
        return None

    def upload(self, body: bytes, content_type: str) -> Reply:
        try:
            parts = parse_multipart(body, content_type)
        except ValueError as exc:
            return _error(400, "MISSING_REQUIRED_FIELDS", "Missing required fields",
                          json.dumps({"fields": ["asset"], "reason": str(exc)}), "/api/assets")
        part = parts.get("asset")
        if part is None or part.filename is None:
            return _error(400, "MISSING_REQUIRED_FIELDS", "Missing required fields",
                          json.dumps({"fields": ["asset"]}), "/api/assets")
        try:
            with Image.open(io.BytesIO(part.data)) as im:
                fmt, (width, height) = im.format or "?", im.size
        except Image.DecompressionBombError:
            return _error(400, "INVALID_IMAGE", "The image is too large to process", None, "/api/assets")
        except (OSError, SyntaxError, ValueError):
            return _error(400, "UNSUPPORTED_FILE_TYPE",
                          "Unsupported file type: upload a jpeg, png or webp image",
                          json.dumps({"mimetype": part.content_type or "application/octet-stream"}),
                          "/api/assets")
        if min(width, height) < MIN_SIDE:
            return _error(400, "INVALID_IMAGE",
                          f"Image is too small ({width}x{height}): the minimum is {MIN_SIDE}x{MIN_SIDE} pixels",
                          json.dumps({"width": width, "height": height, "minWidth": MIN_SIDE,
                                      "minHeight": MIN_SIDE}), "/api/assets")
        name = re.sub(r"[/\\\x00-\x1f]", "_", part.filename.rsplit("/", 1)[-1]) or "blob"
        mime = part.content_type or ACCEPTED_FORMATS.get(fmt, "application/octet-stream")
        key = self._new_key(name)
        blob = self._store(key, part.data, mime)
        now = datetime.now(UTC)
        with self._lock:
            self._assets[key] = _Asset(key, name, blob, width, height, fmt)
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else fmt.lower()
        return _json_reply(200, {
            "asset": {"fieldname": "asset", "originalname": name, "encoding": "7bit", "mimetype": mime,
                      "size": len(part.data), "bucket": BUCKET, "key": key, "acl": "private",
                      "contentType": mime, "contentDisposition": None, "storageClass": "STANDARD",
                      "serverSideEncryption": None, "metadata": {"fieldName": "asset"},
                      "location": self.asset_url(key), "etag": blob.etag, "versionId": None},
            "fileContent": {"uuid": str(uuidlib.uuid4()), "path": key, "type": ext, "name": name,
                            "size": len(part.data), "status": "ACTIVE", "createdAt": _iso(now),
                            "updatedAt": _iso(now)},
        })

    def features(self, body: bytes) -> tuple[Reply, _Record | None]:
        path = "/api/features"
        try:
            req = json.loads(body or b"null")
        except ValueError:
            return _error(400, "UNKNOWN_ERROR", "Invalid JSON body", None, path), None
        if not isinstance(req, dict):
            return _error(400, "UNKNOWN_ERROR", "Unsupported feature type", None, path), None
        feature = req.get("type")
        if feature not in (FEATURE_TYPE, BACKGROUND_REMOVER):
            return _error(400, "UNKNOWN_ERROR", "Unsupported feature type", None, path), None
        if "model" not in req:
            return _error(400, "MISSING_REQUIRED_FIELDS", "Missing required fields",
                          json.dumps(["model"]), path), None
        model = req.get("model")
        price = PRICES.get((feature, model)) if isinstance(model, str) else None
        if price is None:
            supported = [m for f, m in PRICES if f == feature]
            return _error(400, "UNSUPPORTED_MODEL",
                          f"Model {model!r} is not supported for feature {feature}",
                          json.dumps({"supportedModels": supported}), path), None
        prompt = req.get("promptObject")
        image_url = prompt.get("imageUrl") if isinstance(prompt, dict) else None
        if not isinstance(image_url, str) or not image_url.strip():
            return _error(400, "MISSING_REQUIRED_FIELDS", "Missing required fields",
                          json.dumps(["imageUrl"]), path), None
        asset, cause = self._resolve_image(image_url.strip())
        if asset is None:
            return _error(400, "EXTERNAL_API_RESPONSE_WITH_ERROR",
                          "The AI service is busy, please try again later",
                          json.dumps({"name": "bad_request", "message": cause, "errors": [cause]}), path), None
        with self._lock:
            if self.used_credit + price > self.credit_limit:
                return self._credits_error({}, price), None
            self.used_credit += price
            self.generations += 1
            use_async = req.get("async") is True
            wait = self.latency if not use_async or self.async_latency is None else self.async_latency
            # Trellis answers with a GLB, the background remover with a cut-out PNG; stable-image
            # with the kind the stand-in is set to (`result`)
            kind = "cutout" if feature == BACKGROUND_REMOVER else "glb" if model == TRELLIS_MODEL else self.result
            rec = _Record(str(uuidlib.uuid4()), image_url, asset, kind, datetime.now(UTC),
                          time.monotonic() + max(0.0, wait), self.used_credit, feature=feature, model=model)
            self._records[rec.uuid] = rec
        self._take_record_faults("generate", rec)
        if use_async:
            worker = threading.Thread(target=self._work, args=(rec,), daemon=True,
                                      name=f"onemin-stand-in-work-{rec.uuid[:8]}")
            with self._lock:
                self._workers.add(worker)
            worker.start()
            return self._record_reply(rec), rec
        self._work(rec)
        self._stop.wait(max(0.0, rec.ready_at - time.monotonic()))
        if self._stop.is_set():
            raise _Abort
        return self._record_reply(rec), rec

    def _resolve_image(self, image_url: str) -> tuple[_Asset | None, str]:
        key = image_url
        if re.match(r"(?i)https?://", image_url):
            parts = urlsplit(image_url)
            local = f"{parts.scheme}://{parts.netloc}" == self.base_url
            route = self._routes.get(unquote(parts.path)) if local else None
            if route is None:
                return None, (f"Could not download the image from {image_url}: "
                              "the local stand-in has no internet access")
            key = route
        asset = self._assets.get(key) or self._assets.get(key.removeprefix("development/"))
        if asset is None:
            return None, f"Invalid image: the asset {image_url!r} does not exist"
        if asset.format not in ACCEPTED_FORMATS:
            return None, (f"Invalid image format {asset.format}: supported formats are "
                          f"{', '.join(f.lower() for f in ACCEPTED_FORMATS)}")
        return asset, ""

    def _work(self, rec: _Record) -> None:
        try:
            with open(rec.asset.blob.path, "rb") as fh:
                data = compute_result(rec.kind, fh.read())
            ext, ctype = RESULT_TYPES[rec.kind]
            key = self._new_key("background_removed.png" if rec.kind == "cutout" else f"3d_generated.{ext}")
            blob = self._store(key, data, ctype)
            if rec.kind == "cutout":  # its storage key can be sent on as an imageUrl, as an asset's
                with Image.open(io.BytesIO(data)) as im:
                    size = im.size
                with self._lock:
                    self._assets[key] = _Asset(key, key.rsplit("/", 1)[-1], blob, size[0], size[1], "PNG")
            with self._lock:
                hostile = rec.result_key
                rec.result_key = key
            if hostile is not None:
                self._rekey(rec, hostile)
        except Exception as exc:
            log.exception("stand-in could not compute a %s result", rec.kind)
            rec.failed = True
            rec.error_message = f"The stand-in could not compute the result: {exc}"
        finally:
            rec.computed.set()
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _status(self, rec: _Record) -> str:
        if not rec.computed.is_set() or time.monotonic() < rec.ready_at:
            return "PROCESSING"
        return rec.fail_status if rec.failed else "SUCCESS"

    def _record_json(self, rec: _Record) -> tuple[dict[str, Any], str | None]:
        """The aiRecord as the API shows it now, and a top-level temporaryUrl if it moved there."""
        status = self._status(rec)
        detail: dict[str, Any] = {"promptObject": {"imageUrl": rec.image_url}, "resultObject": [],
                                  "responseObject": {}}
        out: dict[str, Any] = {
            "uuid": rec.uuid, "userId": "5f1c2d3e-0000-4000-8000-standin00001",
            "teamId": "5f1c2d3e-0000-4000-8000-standin00002",
            "teamUser": {"teamId": "5f1c2d3e-0000-4000-8000-standin00002",
                         "userId": "5f1c2d3e-0000-4000-8000-standin00001", "userName": "Stand-in User",
                         "userAvatar": None, "status": "ACTIVE", "role": "ADMIN",
                         "creditLimit": self.credit_limit, "usedCredit": rec.used_credit,
                         "createdAt": "2025-01-01T00:00:00.000Z", "createdBy": "SYSTEM",
                         "updatedAt": _iso(rec.created), "updatedBy": "SYSTEM"},
            "model": rec.model, "type": rec.feature, "metadata": None, "rating": None, "feedback": None,
            "conversationId": None, "status": status, "createdAt": _iso(rec.created),
            "aiRecordDetail": detail, "additionalData": None,
        }
        toplevel = None
        if status in ("FAILURE", "FAILED"):
            detail["errorMessage"] = rec.error_message
        elif status == "SUCCESS" and rec.result_key is not None:
            key = rec.result_key
            detail["resultObject"] = [self.asset_url(key) if "key-is-url" in rec.faults else key]
            url = self.presigned_url(key)
            if "temporary-url-missing" in rec.faults:
                pass
            elif "temporary-url-empty" in rec.faults:
                out["temporaryUrl"] = ""
            elif "temporary-url-toplevel" in rec.faults:
                toplevel = url
            else:
                out["temporaryUrl"] = url
        return out, toplevel

    def _record_reply(self, rec: _Record) -> Reply:
        record, toplevel = self._record_json(rec)
        body: dict[str, Any] = {"aiRecord": record}
        if toplevel is not None:
            body["temporaryUrl"] = toplevel
        return _json_reply(200, body)

    def result_of(self, uuid: str) -> Reply:
        with self._lock:
            rec = self._records.get(uuid)
        if rec is None:
            return _json_reply(200, {"aiRecord": None})
        self._take_record_faults("poll", rec)
        return self._record_reply(rec)

    def download(self, path: str, query: str) -> tuple[Reply, bytes | None]:
        """The stored object for a download path, and its raw bytes (None when refused)."""
        upath = unquote(path)
        sig = parse_qs(query).get("X-Amz-Signature")
        if upath.startswith(f"/s3/{BUCKET}/") or sig:
            if not sig:
                return _s3_error(403, "AccessDenied", "Access Denied"), None
            key = self._signatures.get(sig[0])
            if key is None:
                return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                                 "match the signature you provided."), None
        else:
            key = self._routes.get(upath) or self._routes.get(_norm_path(upath))
        blob = self._blobs.get(key) if key is not None else None
        if key is None or blob is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.", upath), None
        with open(blob.path, "rb") as fh:
            data = fh.read()
        headers = [("ETag", blob.etag), ("Accept-Ranges", "bytes"),
                   ("Last-Modified", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())),
                   ("x-amz-request-id", uuidlib.uuid4().hex[:16].upper())]
        return Reply(200, data, blob.content_type, headers, is_json=False), data

    def _credits_error(self, params: dict[str, Any], price: int = CREDITS_PER_GENERATION) -> Reply:
        left = max(0, self.credit_limit - self.used_credit)
        return _error(int(params.get("status", 400)), str(params.get("code", "INSUFFICIENT_CREDITS")),
                      str(params.get("message", "You do not have enough credits to use this feature. "
                                     "Please upgrade your plan or buy more credits.")),
                      json.dumps({"requiredCredits": price, "availableCredits": left}),
                      "/api/features")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, int] = {}
            for m, p in self.requests:
                route = _route_name(p)
                counts[f"{m} {route}"] = counts.get(f"{m} {route}", 0) + 1
            return {"requests": [list(r) for r in self.requests], "counts": counts,
                    "generations": self.generations, "usedCredit": self.used_credit,
                    "creditLimit": self.credit_limit, "result": self.result, "latency": self.latency,
                    "faults": [{"fault": f.name, "stage": f.stage, "times": f.times, "params": f.params}
                               for f in self._faults]}


def _route_name(path: str) -> str:
    for prefix in ("/api/results/", f"/s3/{BUCKET}/", "/asset/"):
        if path.startswith(prefix):
            return prefix.rstrip("/")
    return path


def _stage_of(method: str, path: str, query: str = "") -> str | None:
    if method == "POST" and path == "/api/assets":
        return "upload"
    if method == "POST" and path == "/api/features":
        return "generate"
    if method == "GET" and path.startswith("/api/results/"):
        return "poll"
    if method in ("GET", "HEAD") and (path.startswith((f"/s3/{BUCKET}/", "/asset/"))
                                      or "X-Amz-Signature=" in query):
        return "download"  # a presigned URL whose dot segments the client folded away included
    return None


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """The parts of a multipart/form-data body by field name; ValueError when it is not one."""
    m = re.search(r'(?i)boundary=(?:"([^"]+)"|([^;\s]+))', content_type or "")
    if "multipart/form-data" not in (content_type or "").lower() or not m:
        raise ValueError("not a multipart/form-data body")
    delim = b"--" + (m.group(1) or m.group(2)).encode("latin-1")
    pos = body.find(delim)
    if pos < 0:
        raise ValueError("multipart boundary not found")
    parts: dict[str, Part] = {}
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return parts
        if body[pos:pos + 2] != b"\r\n":
            raise ValueError("malformed multipart body")
        hdr_end = body.find(b"\r\n\r\n", pos + 2)
        nxt = body.find(b"\r\n" + delim, hdr_end + 4)
        if hdr_end < 0 or nxt < 0:
            raise ValueError("truncated multipart body")
        headers: dict[str, str] = {}
        for line in body[pos + 2:hdr_end].decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = _disp_param(disp, "name") or ""
        filename = _disp_param(disp, "filename")
        star = _disp_param(disp, "filename*")
        if star and "''" in star:
            filename = unquote(star.split("''", 1)[1])
        parts[name] = Part(name, filename, headers.get("content-type"), body[hdr_end + 4:nxt])
        pos = nxt + 2


def _disp_param(disp: str, param: str) -> str | None:
    m = re.search(r'(?:^|;)\s*' + re.escape(param) + r'\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))', disp)
    if not m:
        return None
    return m.group(1).replace('\\"', '"') if m.group(1) is not None else m.group(2).strip()


# --- the HTTP layer ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cloudflare"
    sys_version = ""
    timeout = 30  # idle keep-alive connections are closed after this, as real front ends do
    # Headers and body go out in separate writes; without TCP_NODELAY a reused keep-alive
    # connection stalls ~40 ms per request (Nagle + delayed ACK). Real front ends set it too.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        url = urlsplit(self.path)
        return "AmazonS3" if _stage_of(self.command or "", url.path, url.query) == "download" else "cloudflare"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing --

    def _read_body(self, limit: int) -> bytes | None:
        """The request body (Content-Length or chunked); None when it is over `limit`."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > limit:
                    self.close_connection = True
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            # Drain what a client is likely to send anyway, so it can read our 413 rather than
            # meet a reset while still writing; give up on anything absurd.
            left = length if length <= 4 * limit else 0
            while left > 0:
                got = self.rfile.read(min(left, 1 << 20))
                if not got:
                    break
                left -= len(got)
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        stand_in = self.server.stand_in
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/_control/"):
            self._send(self._control(method, path), None, method)
            return
        with stand_in._lock:
            stand_in.requests.append((method, path))
        stage = _stage_of(method, path, url.query)
        fault = stand_in._take(stage, "response") if stage else None
        kill = stand_in._kill_due(stage, path) if stage else None
        try:
            reply = self._handle(method, path, url.query, stage, fault)
            if stage:
                stand_in._wait_held(stage)
            if kill is not None and kill.when == "before-answer":
                stand_in._fire(kill, method, path)
                raise _Abort
            self._send(reply, fault, method, kill)
            if kill is not None and kill.when == "after-answer":
                stand_in._fire(kill, method, path)
        except _Abort:
            self.close_connection = True
        except OSError as exc:
            log.debug("client went away during %s %s: %s", method, path, exc)
            self.close_connection = True
        except Exception:
            log.exception("stand-in failed on %s %s", method, path)
            self._send(_error(500, "INTERNAL_SERVER_ERROR", "Internal server error (stand-in bug)"), None, method)

    def _handle(self, method: str, path: str, query: str, stage: str | None, fault: Fault | None) -> Reply:
        stand_in = self.server.stand_in
        body = b""
        if method == "POST":
            limit = MAX_UPLOAD_BYTES if stage == "upload" else MAX_JSON_BYTES
            got = self._read_body(limit)
            if got is None:
                return _error(413, "PAYLOAD_TOO_LARGE", f"File too large: the limit is {limit // (1 << 20)} MB")
            body = got
        name = fault.name if fault else ""
        params = fault.params if fault else {}
        if name == "slow-headers":
            if stand_in._stop.wait(float(params.get("delay", 5.0))):
                raise _Abort
        early = self._fault_reply(name, params, stage, body)
        if early is not None:
            return early
        if name == "reset":
            if stage == "generate":
                stand_in.features(body)
            self._reset()
        if stage == "download":
            reply, data = stand_in.download(path, query)
            if data is not None:
                content = stand_in._take("download", "content")
                if content is not None:
                    reply.body = _content_fault(content, data, stand_in.base_url)
                return _ranged(reply, self.headers.get("Range"))
            return reply
        if not path.startswith("/api/"):
            # e.g. a hostile key's asset-host URL after the client folded its dot segments away
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.", unquote(path))
        denied = stand_in._check_key(self)
        if denied is not None:
            return denied
        if stage == "upload":
            return stand_in.upload(body, self.headers.get("Content-Type", ""))
        if stage == "generate":
            return stand_in.features(body)[0]
        if stage == "poll":
            uuid = path[len("/api/results/"):].strip("/")
            return stand_in.result_of(uuid)
        return _error(404, "HTTP_EXCEPTION", f"Cannot {method} {path}")

    def _fault_reply(self, name: str, params: dict[str, Any], stage: str | None, body: bytes) -> Reply | None:
        """The reply of a fault that replaces the answer, or None."""
        stand_in = self.server.stand_in
        if name.startswith("400:"):
            code = name[4:]
            message, details = {
                "UNSUPPORTED_MODEL": ("Model is not supported for this feature", json.dumps({"supportedModels": [MODEL]})),
                "MISSING_REQUIRED_FIELDS": ("Missing required fields", json.dumps(["imageUrl"])),
                "UNKNOWN_ERROR": ("Unsupported feature type", None),
                "EXTERNAL_API_RESPONSE_WITH_ERROR": (
                    "The AI service is busy, please try again later",
                    json.dumps({"name": "bad_request", "message": "image: the subject could not be segmented",
                                "errors": ["image: the subject could not be segmented"]})),
            }.get(code, (f"Bad request ({code})", None))
            return _error(400, code, str(params.get("message", message)), params.get("details", details))
        if name == "401":
            return _error(401, "HTTP_EXCEPTION", "API Key has been deleted")
        if name == "403":
            return _error(403, "HTTP_EXCEPTION", "Forbidden resource")
        if name == "credits":
            return stand_in._credits_error(params)
        if name == "413":
            return _error(413, "PAYLOAD_TOO_LARGE", "File too large: the limit is 50 MB")
        if name in ("429", "429-no-retry-after"):
            reply = _error(429, "RATE_LIMIT_EXCEEDED", "ThrottlerException: Too Many Requests")
            if name == "429":
                reply.headers.append(("Retry-After", str(params.get("retry_after", 1))))
            return reply
        if name in ("500", "502-html", "522-html"):
            if stage == "generate" and params.get("work", True):
                stand_in.features(body)  # the origin did the work and charged; the answer is lost
            if stand_in._stop.wait(float(params.get("delay", 0.0))):
                raise _Abort
            if name == "500":
                return _error(500, "INTERNAL_SERVER_ERROR", "Internal server error")
            status, title, text = ((502, "Bad gateway", "The web server reported a bad gateway error.")
                                 if name == "502-html" else
                                 (522, "Connection timed out", "The initial connection between Cloudflare's "
                                  "network and the origin web server timed out."))
            return Reply(status, _html_page(status, title, text), "text/html; charset=UTF-8", is_json=False)
        if name == "html-instead-of-json":
            return Reply(int(params.get("status", 200)), _CHALLENGE_PAGE, "text/html; charset=UTF-8",
                         is_json=False)
        if name == "redirect-scheme":
            return Reply(int(params.get("status", 302)), b"", None,
                         [("Location", str(params.get("location", "file:///etc/passwd")))], is_json=False)
        if name == "result-404":
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return None

    def _reset(self) -> None:
        """End the connection with a TCP reset (RST) instead of a clean close."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        raise _Abort

    def _send(self, reply: Reply, fault: Fault | None, method: str, kill: KillSwitch | None = None) -> None:
        name = fault.name if fault else ""
        params = fault.params if fault else {}
        body = reply.body
        headers = list(reply.headers)
        if name == "invalid-json" and reply.is_json and reply.status < 300:
            body = body[: max(1, len(body) // 2)] + b"\x00<<not json"
        if reply.status == 200 and name in ("gzip", "gzip-bomb"):
            if name == "gzip":
                body = _gzip(body)
            else:
                body = gzip_bomb(body[:256], int(params.get("size", 600 << 20)))
            headers.append(("Content-Encoding", "gzip"))
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for k, v in headers:
            self.send_header(k, v)
        if self.path.startswith("/api/"):
            self.send_header("CF-RAY", uuidlib.uuid4().hex[:16] + "-AMS")
        if name == "never-ends":
            self.send_header("Connection", "close")
            self.end_headers()
            self._never_end(body, params)
        if name == "huge-content-length":
            self.send_header("Content-Length", str(int(params.get("length", 10**12))))
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection or name in ("drop-mid-body", "truncated"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if method == "HEAD":
            return
        if name in ("drop-mid-body", "truncated"):
            cut = int(len(body) * float(params.get("fraction", 0.5)))
            self.wfile.write(body[:cut])
            if name == "drop-mid-body":
                self._reset()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
            raise _Abort
        if kill is not None and kill.when == "mid-body":
            self.wfile.write(body[: len(body) // 2])
            self.server.stand_in._fire(kill, method, self.path)
            raise _Abort
        self.wfile.write(body)

    def _never_end(self, body: bytes, params: dict[str, Any]) -> None:
        stop = self.server.stand_in._stop
        interval = float(params.get("interval", 0.2))
        deadline = time.monotonic() + float(params.get("limit", 60.0))
        self.wfile.write(body[:64] if body else b"{")
        filler = b" " if body[:1] in (b"{", b"[") else b"\0"
        while time.monotonic() < deadline and not stop.wait(interval):
            self.wfile.write(filler * 16)
        raise _Abort

    def _control(self, method: str, path: str) -> Reply:
        stand_in = self.server.stand_in
        if method == "GET" and path == "/_control/stats":
            return _json_reply(200, stand_in.stats())
        if method != "POST":
            return _error(404, "HTTP_EXCEPTION", f"Cannot {method} {path}")
        try:
            req = json.loads(self._read_body(MAX_JSON_BYTES) or b"{}")
            if path == "/_control/fault":
                stand_in.inject(str(req["fault"]), stage=str(req.get("stage", "any")),
                                times=int(req.get("times", 1)), **dict(req.get("params") or {}))
            elif path == "/_control/result":
                stand_in.result = str(req["result"])
            elif path == "/_control/latency":
                stand_in.latency = float(req["latency"])
            elif path == "/_control/clear":
                stand_in.clear_faults()
                if req.get("requests"):
                    with stand_in._lock:
                        stand_in.requests.clear()
            else:
                return _error(404, "HTTP_EXCEPTION", f"Cannot {method} {path}")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "BAD_REQUEST", f"bad control request: {exc}")
        return _json_reply(200, {"ok": True})


def _ranged(reply: Reply, header: str | None) -> Reply:
    """Honour a single ``Range: bytes=a-b`` (as S3 does); anything else gets the whole object."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    size = len(reply.body)
    if not m or (not m[1] and not m[2]):
        return reply
    if m[1]:
        start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
    else:
        start, end = max(0, size - int(m[2])), size - 1
    if start >= size or start > end:
        out = _s3_error(416, "InvalidRange", "The requested range is not satisfiable")
        out.headers.append(("Content-Range", f"bytes */{size}"))
        return out
    reply.headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
    return Reply(206, reply.body[start:end + 1], reply.content_type, reply.headers, is_json=False)


def _content_fault(fault: Fault, data: bytes, base_url: str = "") -> bytes:
    params = fault.params
    if fault.name == "corrupt-result":
        size = int(params.get("size", max(64, len(data))))
        noise = np.random.default_rng(len(data)).integers(0, 256, size, dtype=np.uint8).tobytes()
        return b"\x00\x13CORRUPT" + noise[9:]
    if fault.name == "invalid-glb":
        junk = base64.b64encode(hashlib.sha256(data).digest()) * 8
        return struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(junk)) + struct.pack("<I4s", len(junk), b"JSON") + junk
    if fault.name == "zip-traversal":
        names = params.get("names") or ("../../evil.txt", "/tmp/onemin3d-evil-absolute.txt",
                                        "ok/../../../evil-nested.txt")
        return zip_traversal(tuple([names] if isinstance(names, str) else names))
    if fault.name == "zip-bomb":
        return zip_bomb(int(params.get("size", 300 << 20)), bool(params.get("lie", False)))
    if fault.name == "hostile-refs":
        return hostile_refs(data, base_url=base_url, **params)
    return data


# --- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    faults = " ".join(["400:" + c for c in KNOWN_400_CODES] + list(FAULTS))
    ap = argparse.ArgumentParser(
        description="A local stand-in of the 1min.ai API. Its 3D results are computed locally from the "
                    "uploaded photo, not by 1min.ai.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.fill(f"Faults: {faults}.", 100, break_on_hyphens=False, break_long_words=False)
        + "\n" + textwrap.fill("Stages: any (the default) upload generate poll download. A fault is used "
                               "by the next N matching requests (default 1; *inf: the whole run). "
                               "Parameters are described at the top of this file.", 100)
        + "\n\nExample: --fault 429@poll*2,retry_after=3 --fault result-404@download*2")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    ap.add_argument("--result", choices=RESULT_KINDS, default="depth")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds a generation takes")
    ap.add_argument("--async-latency", type=float, default=None, help="for async generations (default: --latency)")
    ap.add_argument("--api-key", default=None, help="the accepted key (default: $ONEMIN_API_KEY, else "
                    f"{DEFAULT_API_KEY})")
    ap.add_argument("--credit-limit", type=int, default=100_000_000)
    ap.add_argument("--fault", action="append", default=[], metavar="NAME[@STAGE][*N][,param=value...]",
                    help="inject a fault (repeatable); N may be 'inf'")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args(argv)
    injected = []
    for text in args.fault:
        try:
            f = parse_fault(text)
            fault_spec(f.name)
        except ValueError as exc:
            ap.error(str(exc))
        injected.append(f)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = args.api_key or os.environ.get("ONEMIN_API_KEY") or DEFAULT_API_KEY
    server = FakeOneMinServer(host=args.host, port=args.port, api_key=key, result=args.result,
                              latency=args.latency, async_latency=args.async_latency,
                              credit_limit=args.credit_limit)
    for f in injected:
        try:
            server.inject(f.name, stage=f.stage, times=f.times, **f.params)
        except ValueError as exc:
            ap.error(str(exc))
    done = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        server.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"listening on {server.base_url}", flush=True)
    print(f"result={server.result} latency={server.latency}s faults={len(injected)} "
          "(3D results are computed locally, not by 1min.ai)", file=sys.stderr, flush=True)
    while not done.wait(0.5):
        pass
    server.close()
    print("stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
