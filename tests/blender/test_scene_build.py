"""Scene import with the real bpy wheel: planes, reliefs and models land where, how and as big as promised, or not at all."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from onemin3d_addon.blender import build_common, build_model, build_relief
from onemin3d_addon.blender import scene_build as sb
from onemin3d_addon.core.errors import ImportFailed, user_message

Blend = Any  # tests/blender/conftest.py: the empty_blend fixture's value


RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --- test data ---------------------------------------------------------------------------------


def quadrant_photo(path: Path, w: int = 400, h: int = 300, *, mode: str = "RGB", exif_orientation: int = 1) -> Path:
    """Red top-left, green top-right, blue bottom-left, white bottom-right (as a viewer shows it)."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2, : w // 2] = RED
    rgb[: h // 2, w // 2:] = GREEN
    rgb[h // 2:, : w // 2] = BLUE
    rgb[h // 2:, w // 2:] = WHITE
    img = Image.fromarray(rgb)
    if mode == "RGBA":
        alpha = np.full((h, w), 255, np.uint8)
        alpha[:10] = 0
        img = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    kw: dict[str, Any] = {}
    if exif_orientation != 1:
        # Store the pixels so that applying the orientation shows the quadrants upright.
        inverse = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}[exif_orientation]
        img = ImageOps.exif_transpose(_with_orientation(img, inverse))
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    img.save(path, **kw)
    return path


def _with_orientation(img: Image.Image, orientation: int) -> Image.Image:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(buf, "PNG", exif=exif.tobytes())
    buf.seek(0)
    return Image.open(buf)


def blob_depth(path: Path, w: int = 400, h: int = 300, *, cx: float = 0.25, cy: float = 0.25,
               noise: float = 0.0, mode: str = "L") -> Path:
    """A bright Gaussian blob centred at (cx, cy) of the image (from the top-left) on black."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.exp(-(((x - cx * w) / (0.1 * w)) ** 2 + ((y - cy * h) / (0.1 * w)) ** 2))
    if noise:
        d = d + np.random.default_rng(1).normal(0, noise, d.shape)
    d = np.clip(d, 0, 1)
    if mode == "I;16":
        Image.fromarray((d * 65535).astype(np.uint16)).save(path)
    elif mode == "RGB":
        Image.fromarray(np.repeat((d * 255).astype(np.uint8)[..., None], 3, axis=2)).save(path)
    else:
        Image.fromarray((d * 255).astype(np.uint8)).save(path)
    return path


def grey_photo(path: Path, w: int = 400, h: int = 300) -> Path:
    Image.new("RGB", (w, h), (180, 180, 180)).save(path)
    return path


def model_photo_bytes() -> bytes:
    rng = np.random.default_rng(3)
    img = Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# --- reading what Blender holds ------------------------------------------------------------------


def positions(mesh: Any) -> np.ndarray:
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", co)
    return co.reshape(-1, 3)


def corner_array(mesh: Any, name: str) -> np.ndarray:
    out = np.empty(len(mesh.loops), np.int32)
    mesh.attributes[name].data.foreach_get("value", out)
    return out


def uvs(mesh: Any) -> np.ndarray:
    out = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.attributes[sb.UV_MAP_NAME].data.foreach_get("vector", out)
    return out.reshape(-1, 2)


def vertex_uv(mesh: Any, vertex: int) -> np.ndarray:
    corner = int(np.flatnonzero(corner_array(mesh, ".corner_vert") == vertex)[0])
    return uvs(mesh)[corner]


def lookup(image_path: Path, uv: np.ndarray) -> tuple[int, ...]:
    """The stored pixel Blender samples at `uv` (UV v runs up; Pillow rows run down)."""
    with Image.open(image_path) as img:
        rgb = img.convert("RGB")
        w, h = rgb.size
        x = min(int(uv[0] * w), w - 1)
        y = min(int((1.0 - uv[1]) * h), h - 1)
        return tuple(rgb.getpixel((x, y)))


def corner_vertex(co: np.ndarray, sx: int, sy: int) -> int:
    """Index of the vertex furthest towards (sx, sy) (±1 each) in the XY plane."""
    return int(np.argmax(sx * co[:, 0] + sy * co[:, 1] - 1e-3 * np.abs(co[:, 2])))


def links_into(node: Any, socket: str) -> list[Any]:
    return [link.from_node for link in node.inputs[socket].links]


def node(material: Any, idname: str) -> Any:
    found = [n for n in material.node_tree.nodes if n.bl_idname == idname]
    assert found, f"{material.name} has no {idname}"
    return found[0]


def relief_of(blend: Blend, depth: Path, color: Path, **options: Any) -> Any:
    made = sb.import_result(depth, color, "DISPLACEMENT", {"resolution": 65, **options})
    assert made.kind == "RELIEF"
    return made.objects[0]


# --- orientation -----------------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.parametrize("solid", [False, True])
def test_bright_blob_top_left_is_the_highest_point_in_the_objects_top_left(empty_blend: Blend, solid: bool) -> None:
    depth = blob_depth(empty_blend.tmp / "depth.png")
    obj = relief_of(empty_blend, depth, quadrant_photo(empty_blend.tmp / "photo.png"), solid=solid)
    co = positions(empty_blend.evaluated_mesh(obj))
    top = co[np.argmax(co[:, 2])]
    assert top[0] < 0 and top[1] > 0, f"highest vertex at {top}, not top-left"
    width, height = 4 / 3, 1.0
    cell = width / 64
    assert abs(top[0] - (-width / 4)) < 2 * cell and abs(top[1] - height / 4) < 2 * cell


@pytest.mark.smoke
@pytest.mark.parametrize("solid", [False, True])
def test_relief_uvs_show_the_photo_upright_with_its_corners_on_the_mesh_corners(empty_blend: Blend,
                                                                               solid: bool) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    obj = relief_of(empty_blend, blob_depth(empty_blend.tmp / "depth.png"), photo, solid=solid)
    mesh = obj.data
    co = positions(mesh)
    expected = {(-1, 1): ((0, 1), RED), (1, 1): ((1, 1), GREEN), (-1, -1): ((0, 0), BLUE), (1, -1): ((1, 0), WHITE)}
    for (sx, sy), (uv, colour) in expected.items():
        got = vertex_uv(mesh, corner_vertex(co, sx, sy))
        np.testing.assert_allclose(got, uv, atol=1e-6)
        assert lookup(photo, got * 0.98 + 0.01) == colour


def blender_lookup(image: Any, uv: np.ndarray) -> tuple[int, ...]:
    """The pixel Blender itself holds for `image` at `uv` (what the texture shows), 0..255."""
    w, h = image.size
    px = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)
    x, y = min(int(uv[0] * w), w - 1), min(int(uv[1] * h), h - 1)  # Blender's rows start at the bottom
    return tuple(int(round(c * 255)) for c in px[y, x, :3])


@pytest.mark.smoke
@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".png"])
@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_plane_honours_exif_orientation_so_the_photo_shows_upright(empty_blend: Blend, orientation: int,
                                                                   suffix: str) -> None:
    """Blender shows every format as stored (it ignores EXIF); the UVs turn it upright. A TIFF
    with Orientation 6 is 400×300 upright here whatever Pillow reports for it."""
    photo = quadrant_photo(empty_blend.tmp / f"photo{suffix}", exif_orientation=orientation)
    coll = empty_blend.bpy.data.collections.new("test")
    obj = sb.import_plane(photo, collection=coll)
    assert obj.dimensions.x == pytest.approx(4 / 3) and obj.dimensions.y == pytest.approx(1.0)
    image = node(obj.active_material, "ShaderNodeTexImage").image
    co = positions(obj.data)
    for (sx, sy), colour in {(-1, 1): RED, (1, 1): GREEN, (-1, -1): BLUE, (1, -1): WHITE}.items():
        uv = vertex_uv(obj.data, corner_vertex(co, sx, sy))
        inward = uv + 0.05 * (0.5 - uv) * 2  # step into the pixel, away from the edge
        assert _close(blender_lookup(image, inward), colour), (orientation, sx, sy)


@pytest.mark.parametrize("orientation", [6, 3])
def test_relief_of_an_exif_rotated_photo_matches_the_upright_depth_map(empty_blend: Blend, orientation: int) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.jpg", exif_orientation=orientation)
    obj = relief_of(empty_blend, blob_depth(empty_blend.tmp / "depth.png"), photo)
    co = positions(empty_blend.evaluated_mesh(obj))
    top = co[np.argmax(co[:, 2])]
    assert top[0] < 0 and top[1] > 0
    uv = vertex_uv(obj.data, int(np.argmax(co[:, 2])))
    assert _close(lookup(photo, uv), RED)


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


# --- counts, bounds, strength, invert, smooth ------------------------------------------------------


@pytest.mark.smoke
def test_relief_counts_and_bounds_follow_resolution_aspect_and_strength(empty_blend: Blend) -> None:
    obj = relief_of(empty_blend, blob_depth(empty_blend.tmp / "depth.png"),
                    quadrant_photo(empty_blend.tmp / "photo.png"), resolution=64, strength=0.15)
    mesh = obj.data
    assert (len(mesh.vertices), len(mesh.polygons), len(mesh.edges)) == (64 * 48, 63 * 47, 63 * 48 + 64 * 47)
    co = positions(empty_blend.evaluated_mesh(obj))
    extent = co.max(axis=0) - co.min(axis=0)
    np.testing.assert_allclose(extent, (4 / 3, 1.0, 0.15 * 4 / 3), rtol=1e-5)
    assert all(p.use_smooth for p in mesh.polygons)
    assert not mesh.validate(verbose=False)


@pytest.mark.smoke
def test_strength_is_one_live_modifier_input_that_rescales_the_relief(empty_blend: Blend) -> None:
    obj = relief_of(empty_blend, blob_depth(empty_blend.tmp / "depth.png"),
                    quadrant_photo(empty_blend.tmp / "photo.png"), strength=0.15)
    mod = obj.modifiers[sb.RELIEF_MODIFIER_NAME]
    inputs = [i for i in mod.node_group.interface.items_tree if i.item_type == "SOCKET" and i.in_out == "INPUT"
              and i.socket_type != "NodeSocketGeometry"]
    assert [i.name for i in inputs] == [sb.RELIEF_STRENGTH_INPUT]
    assert sb.get_relief_strength(obj) == pytest.approx(0.15)
    sb.set_relief_strength(obj, 0.3)
    co = positions(empty_blend.evaluated_mesh(obj))
    assert co[:, 2].max() - co[:, 2].min() == pytest.approx(0.3 * 4 / 3, rel=1e-5)
    # the slider the panel draws is bound to (owner, prop): an ID property of the modifier up to
    # 5.1, `modifier.properties.inputs.<id>.value` from 5.2; both resolve to the same live value
    path = sb.relief_strength_path(obj)
    assert path is not None
    owner, prop = path
    assert owner.path_resolve(prop) == pytest.approx(0.3)
    slot = sb.relief_strength(obj)
    assert slot is not None and (slot.owner, slot.prop) == (owner, prop)
    slot.set(0.6)
    co = positions(empty_blend.evaluated_mesh(obj))
    assert co[:, 2].max() - co[:, 2].min() == pytest.approx(0.6 * 4 / 3, rel=1e-5)
    assert sb.get_relief_strength(obj) == pytest.approx(0.6)
    # the scripting door goes through the same helper
    from onemin3d_addon import api

    api.set_strength(obj, 0.45)
    assert api.get_strength(obj) == pytest.approx(0.45) and owner.path_resolve(prop) == pytest.approx(0.45)
    plain = empty_blend.bpy.data.objects.new("not a relief", None)
    with pytest.raises(ValueError, match="not a relief"):
        api.get_strength(plain)


def test_resolution_is_capped_by_the_depth_maps_pixels_and_follows_portrait_aspect(empty_blend: Blend) -> None:
    depth = blob_depth(empty_blend.tmp / "depth.png", 30, 40)
    obj = relief_of(empty_blend, depth, quadrant_photo(empty_blend.tmp / "photo.png", 300, 400), resolution=512)
    assert len(obj.data.vertices) == 41 * 31
    extent = np.ptp(positions(obj.data), axis=0)
    assert extent[0] == pytest.approx(0.75) and extent[1] == pytest.approx(1.0)


def test_pixels_per_unit_sizes_the_relief_and_the_plane_from_the_image(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    obj = relief_of(empty_blend, blob_depth(empty_blend.tmp / "depth.png"), photo, size_mode="DPBU", factor=100.0)
    assert np.ptp(positions(obj.data), axis=0)[:2] == pytest.approx((4.0, 3.0))
    plane = sb.import_result(photo, photo, "PLANE", {"size_mode": "DPBU", "factor": 200.0}).objects[0]
    assert tuple(plane.dimensions)[:2] == pytest.approx((2.0, 1.5))


def test_invert_makes_the_bright_blob_the_lowest_point(empty_blend: Blend) -> None:
    depth = blob_depth(empty_blend.tmp / "depth.png")
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    plain = positions(empty_blend.evaluated_mesh(relief_of(empty_blend, depth, photo)))
    inverted = positions(empty_blend.evaluated_mesh(relief_of(empty_blend, depth, photo, invert=True)))
    low = inverted[np.argmin(inverted[:, 2])]
    assert low[0] < 0 and low[1] > 0
    assert np.ptp(inverted[:, 2]) == pytest.approx(np.ptp(plain[:, 2]), rel=1e-5)
    np.testing.assert_allclose(np.sort(inverted[:, 2]), np.sort(plain[:, 2].max() - plain[:, 2]), atol=1e-5)


def test_16_bit_and_rgb_depth_maps_give_the_same_relief_as_8_bit(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    reference = None
    for mode in ("L", "I;16", "RGB"):
        obj = relief_of(empty_blend, blob_depth(empty_blend.tmp / f"depth-{mode.replace(';', '')}.png", mode=mode),
                        photo)
        z = positions(empty_blend.evaluated_mesh(obj))[:, 2]
        if reference is None:
            reference = z
        np.testing.assert_allclose(z, reference, atol=0.01 * np.ptp(reference))


def _roughness(z: np.ndarray, rows: int, cols: int) -> float:
    grid = z.reshape(rows, cols) if z.size == rows * cols else z
    return float(np.abs(np.diff(grid, 2, axis=1)).mean() + np.abs(np.diff(grid, 2, axis=0)).mean())


def test_smooth_blurs_away_noise_but_keeps_the_blob(empty_blend: Blend) -> None:
    depth = blob_depth(empty_blend.tmp / "depth.png", noise=0.08)
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    rough, smooth = [], []
    for sigma, out in ((0.0, rough), (4.0, smooth)):
        obj = relief_of(empty_blend, depth, photo, smooth=sigma, resolution=201)
        h = np.empty(len(obj.data.vertices), np.float32)
        obj.data.attributes[sb.RELIEF_HEIGHT_ATTRIBUTE].data.foreach_get("value", h)
        co = positions(obj.data)
        order = np.lexsort((co[:, 0], co[:, 1]))  # row-major, whatever order the Grid used
        out.append(_roughness(h[order], 151, 201))
        top = co[np.argmax(h)]
        assert top[0] < 0 and top[1] > 0
    assert smooth[0] < 0.35 * rough[0]


@pytest.mark.parametrize(("rows", "cols", "orientation"), [(7, 11, 1), (7, 11, 6), (2, 2, 1), (2, 5, 8), (5, 2, 3)])
def test_the_grid_nodes_layout_is_recognised_and_the_general_route_agrees_with_it(
        empty_blend: Blend, rows: int, cols: int, orientation: int) -> None:
    """The fast route assumes the Grid node's vertex and corner order (checked at run time); the
    route for an unknown order reads the mesh's own arrays. Both must give the same relief."""
    width, height = 2.0, 1.2
    heights = np.random.default_rng(4).random((rows, cols)).astype(np.float32)
    with build_common.all_or_nothing("test grid") as created:
        mesh = build_relief._grid_mesh_from_nodes("grid", rows, cols, width, height, created)
        layout = build_relief._grid_layout(mesh, rows, cols, width, height)
        assert layout == "x-major"  # Blender 3.0 to 5.0; a new order would land in the general route
        fast = build_relief._grid_heights_and_uv(mesh, heights, width, height, orientation, layout)
        general = build_relief._grid_heights_and_uv(mesh, heights, width, height, orientation, None)
    np.testing.assert_array_equal(fast[0], general[0])
    np.testing.assert_allclose(fast[1], general[1], atol=1e-6)
    co = positions(mesh)  # and the heights follow the vertices: vertex (i, j) gets heights[j, i]
    i = np.rint((co[:, 0] + width / 2) / (width / (cols - 1))).astype(int)
    j = np.rint((co[:, 1] + height / 2) / (height / (rows - 1))).astype(int)
    np.testing.assert_array_equal(fast[0], heights[j, i])
    empty_blend.bpy.data.meshes.remove(mesh)


def test_a_row_major_grid_is_recognised_too(empty_blend: Blend) -> None:
    rows, cols = 5, 8
    mesh = empty_blend.bpy.data.meshes.new("rows")
    arrays = sb.grid_arrays(rows, cols, 1.0, 1.0)
    build_common.write_mesh(mesh, arrays["positions"], arrays["edges"], arrays["corner_verts"], arrays["corner_edges"],
                   arrays["face_starts"])
    assert build_relief._grid_layout(mesh, rows, cols, 1.0, 1.0) == "row-major"
    assert build_relief._grid_layout(mesh, cols, rows, 1.0, 1.0) is None  # the wrong shape is never taken for a layout
    empty_blend.bpy.data.meshes.remove(mesh)


# --- solid -----------------------------------------------------------------------------------------


def _face_offsets(mesh: Any) -> np.ndarray:
    starts = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_start", starts)
    return np.append(starts, len(mesh.loops))


@pytest.mark.smoke
def test_solid_relief_is_watertight_with_consistent_outward_normals_and_a_flat_back(empty_blend: Blend) -> None:
    obj = relief_of(empty_blend, blob_depth(empty_blend.tmp / "depth.png"),
                    quadrant_photo(empty_blend.tmp / "photo.png"), solid=True, resolution=33)
    for mesh in (obj.data, empty_blend.evaluated_mesh(obj)):
        edges_per_face_corner = np.bincount(corner_array(mesh, ".corner_edge"), minlength=len(mesh.edges))
        assert (edges_per_face_corner == 2).all(), "an edge does not have exactly two faces"
        offsets = _face_offsets(mesh)
        cv = corner_array(mesh, ".corner_vert")
        nxt = np.empty_like(cv)
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            nxt[a:b] = np.roll(cv[a:b], -1)
        directed = set(zip(cv.tolist(), nxt.tolist(), strict=True))
        assert len(directed) == len(cv), "two faces run along an edge in the same direction"
        assert all((b, a) in directed for a, b in directed)
        co = positions(mesh).astype(np.float64)
        volume = sum(np.dot(co[cv[a]], np.cross(co[cv[i]], co[cv[i + 1]]))
                     for a, b in zip(offsets[:-1], offsets[1:], strict=True) for i in range(a + 1, b - 1)) / 6
        assert volume > 0, "normals point inwards"
    assert not obj.data.validate(verbose=False)
    co = positions(empty_blend.evaluated_mesh(obj))
    width = 4 / 3
    back = co[co[:, 2] < -1e-6]
    assert np.allclose(back[:, 2], -sb.SOLID_BASE * width)
    assert co[:, 2].max() == pytest.approx(sb.SOLID_BASE * 0 + 0.15 * width, rel=1e-5)
    sharp = np.empty(len(obj.data.polygons), bool)
    obj.data.attributes["sharp_face"].data.foreach_get("value", sharp)
    assert sharp.sum() == len(obj.data.polygons) - 32 * 24 and not sharp[: 32 * 24].any()


# --- materials and images ----------------------------------------------------------------------------


@pytest.mark.smoke
def test_plane_material_wires_image_to_principled_base_colour_and_stays_lazy(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    made = sb.import_result(photo, photo, "PLANE", {"interpolation": "Closest"})
    mat = made.objects[0].active_material
    tex, bsdf = node(mat, "ShaderNodeTexImage"), node(mat, "ShaderNodeBsdfPrincipled")
    assert links_into(bsdf, "Base Color") == [tex]
    assert links_into(node(mat, "ShaderNodeOutputMaterial"), "Surface") == [bsdf]
    assert not bsdf.inputs["Alpha"].is_linked, "an RGB image must not drive alpha"
    assert tex.interpolation == "Closest"
    assert tex.image.colorspace_settings.name == "sRGB"
    empty_blend.bpy.context.evaluated_depsgraph_get()
    assert not tex.image.has_data, "the image was decoded; the plane must be sized from the header"


@pytest.mark.parametrize("use_alpha", [True, False])
def test_alpha_is_wired_only_for_an_image_with_alpha_when_asked(empty_blend: Blend, use_alpha: bool) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png", mode="RGBA")
    made = sb.import_result(photo, photo, "PLANE", {"use_alpha": use_alpha})
    mat = made.objects[0].active_material
    bsdf = node(mat, "ShaderNodeBsdfPrincipled")
    assert bsdf.inputs["Alpha"].is_linked is use_alpha
    if use_alpha:
        assert links_into(bsdf, "Alpha") == [node(mat, "ShaderNodeTexImage")]


def test_emission_and_shadeless_shaders_show_the_image(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    coll = empty_blend.bpy.data.collections.new("test")
    emission = sb.import_plane(photo, collection=coll, shader="EMISSION", emit_strength=2.0).active_material
    bsdf = node(emission, "ShaderNodeBsdfPrincipled")
    assert links_into(bsdf, "Emission Color") == [node(emission, "ShaderNodeTexImage")]
    assert bsdf.inputs["Emission Strength"].default_value == pytest.approx(2.0)
    shadeless = sb.import_plane(photo, collection=coll, shader="SHADELESS").active_material
    mix = node(shadeless, "ShaderNodeMixShader")
    assert links_into(mix, "Fac") == [node(shadeless, "ShaderNodeLightPath")]
    assert links_into(node(shadeless, "ShaderNodeEmission"), "Color") == [node(shadeless, "ShaderNodeTexImage")]
    assert links_into(node(shadeless, "ShaderNodeOutputMaterial"), "Surface") == [mix]


@pytest.mark.smoke
def test_relief_keeps_the_photo_srgb_and_the_depth_map_non_color(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    depth = blob_depth(empty_blend.tmp / "depth.png")
    obj = relief_of(empty_blend, depth, photo)
    mat = obj.active_material
    images = {n.image.filepath_from_user(): n.image for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage"}
    assert images[str(photo)].colorspace_settings.name == "sRGB"
    assert images[str(depth)].colorspace_settings.name == "Non-Color"
    assert links_into(node(mat, "ShaderNodeBsdfPrincipled"), "Base Color")[0].image == images[str(photo)]
    empty_blend.bpy.context.evaluated_depsgraph_get()
    assert not any(i.has_data for i in images.values())


def test_depth_map_already_loaded_as_colour_is_not_changed(empty_blend: Blend) -> None:
    depth = blob_depth(empty_blend.tmp / "depth.png")
    theirs = empty_blend.bpy.data.images.load(str(depth))
    assert theirs.colorspace_settings.name == "sRGB"
    relief_of(empty_blend, depth, quadrant_photo(empty_blend.tmp / "photo.png"))
    assert theirs.colorspace_settings.name == "sRGB"


def test_image_paths_are_relative_only_in_a_saved_blend_and_when_the_preference_allows(empty_blend: Blend) -> None:
    bpy = empty_blend.bpy
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    coll = bpy.data.collections.new("test")
    unsaved = sb.import_plane(photo, collection=coll).active_material
    assert node(unsaved, "ShaderNodeTexImage").image.filepath == str(photo)
    bpy.ops.wm.save_as_mainfile(filepath=str(empty_blend.tmp / "scene.blend"))
    other = quadrant_photo(empty_blend.tmp / "other.png")
    saved = sb.import_plane(other, collection=coll).active_material
    assert node(saved, "ShaderNodeTexImage").image.filepath == "//other.png"
    assert not node(saved, "ShaderNodeTexImage").image.has_data
    prefs = bpy.context.preferences.filepaths
    prefs.use_relative_paths = False
    try:
        third = sb.import_plane(quadrant_photo(empty_blend.tmp / "third.png"), collection=coll).active_material
        assert node(third, "ShaderNodeTexImage").image.filepath == str(empty_blend.tmp / "third.png")
        no_rel = sb.import_plane(other, collection=coll, relative=False).active_material
        assert node(no_rel, "ShaderNodeTexImage").image == node(saved, "ShaderNodeTexImage").image  # reused
    finally:
        prefs.use_relative_paths = True


@pytest.mark.parametrize("align", ["CAMERA", "VIEW", "Z_UP"])
def test_plane_faces_the_active_camera_or_lies_flat_without_a_view(empty_blend: Blend, align: str) -> None:
    bpy = empty_blend.bpy
    from mathutils import Euler, Vector

    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    bpy.context.scene.collection.objects.link(cam)
    cam.location = (0.0, -5.0, 1.0)
    cam.rotation_euler = Euler((1.4, 0.0, 0.2))
    bpy.context.scene.camera = cam
    bpy.context.view_layer.update()
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    made = sb.import_result(photo, photo, "PLANE", {"align": align})
    plane = made.objects[0]
    assert tuple(plane.matrix_world.translation) == pytest.approx((1.0, 2.0, 3.0))
    normal = plane.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0))
    if align == "CAMERA":
        camera_axis = cam.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0))  # a camera looks down its -Z
        assert normal.dot(camera_axis) == pytest.approx(1.0, abs=1e-5)
    else:  # headless: there is no 3D view to face, so VIEW lies flat like Z_UP
        assert tuple(normal) == pytest.approx((0.0, 0.0, 1.0))
    assert not made.warnings


def test_a_builder_called_on_a_linked_collection_selects_what_it_made(empty_blend: Blend) -> None:
    bpy = empty_blend.bpy
    coll = bpy.data.collections.new("mine")
    bpy.context.scene.collection.children.link(coll)
    obj = sb.import_relief(quadrant_photo(empty_blend.tmp / "p.png"), blob_depth(empty_blend.tmp / "d.png"),
                           collection=coll, resolution=17)
    assert obj.select_get() and bpy.context.view_layer.objects.active == obj
    assert obj.name in coll.objects


# --- dispatcher ---------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_auto_turns_a_depth_map_into_a_relief_of_the_photo_in_its_own_linked_collection(empty_blend: Blend) -> None:
    bpy = empty_blend.bpy
    photo = quadrant_photo(empty_blend.tmp / "dress.png")
    made = sb.import_result(blob_depth(empty_blend.tmp / "result.png"), photo, "AUTO", None)
    assert made.kind == "RELIEF" and not made.warnings
    assert made.collection.name == "1min3d dress"
    assert made.collection.name in bpy.context.scene.collection.children
    assert list(made) == list(made.collection.objects)
    obj = made.objects[0]
    assert obj.select_get() and bpy.context.view_layer.objects.active == obj
    base = links_into(node(obj.active_material, "ShaderNodeBsdfPrincipled"), "Base Color")[0]
    assert Path(base.image.filepath_from_user()) == photo


def test_auto_shows_a_colour_result_on_a_plane_and_plane_mode_always_does(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    result = quadrant_photo(empty_blend.tmp / "result.png", 200, 100)
    made = sb.import_result(result, photo, "AUTO")
    assert made.kind == "PLANE"
    assert Path(node(made.objects[0].active_material, "ShaderNodeTexImage").image.filepath_from_user()) == result
    assert made.objects[0].dimensions.x == pytest.approx(2.0)
    depth = blob_depth(empty_blend.tmp / "depth.png")
    assert sb.import_result(depth, photo, "PLANE").kind == "PLANE"


def test_displacement_of_a_colour_result_uses_its_brightness_and_warns(empty_blend: Blend) -> None:
    made = sb.import_result(quadrant_photo(empty_blend.tmp / "result.png"), quadrant_photo(empty_blend.tmp / "p.png"),
                            "DISPLACEMENT", {"resolution": 33})
    assert made.kind == "RELIEF"
    assert any("brightness" in w for w in made.warnings)
    co = positions(empty_blend.evaluated_mesh(made.objects[0]))
    top = co[np.argmax(co[:, 2])]
    assert top[0] > 0 and top[1] < 0  # white (bottom-right) is the brightest quadrant


def test_unknown_options_and_modes_are_refused_before_anything_is_made(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    before = empty_blend.names()
    with pytest.raises(TypeError):
        sb.import_result(photo, photo, "AUTO", {"resolutoin": 10})
    with pytest.raises(ValueError):
        sb.import_result(photo, photo, "SIDEWAYS")
    with pytest.raises(ValueError):
        sb.import_result(photo, photo, "PLANE", {"shader": "TOON"})
    empty_blend.assert_unchanged(before)


# --- models ------------------------------------------------------------------------------------------


def _world_bounds(bpy: Any, objects: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    pts = []
    for obj in objects:
        if obj.type != "MESH":
            continue
        ev = obj.evaluated_get(depsgraph)
        co = positions(ev.data).astype(np.float64)
        m = np.array(ev.matrix_world)
        pts.append(co @ m[:3, :3].T + m[:3, 3])
    allpts = np.concatenate(pts)
    return allpts.min(axis=0), allpts.max(axis=0)


def _assert_placed(bpy: Any, made: Any, size: float, cursor: tuple[float, float, float]) -> None:
    assert made.kind == "MODEL"
    assert made.collection.name in bpy.context.scene.collection.children
    assert set(made.objects) == set(made.collection.all_objects)
    assert all(o.type != "EMPTY" for o in made.objects)
    lo, hi = _world_bounds(bpy, made.objects)
    assert (hi - lo).max() == pytest.approx(size, rel=1e-4)
    np.testing.assert_allclose(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]), cursor, atol=1e-4)
    assert all(o.select_get() for o in made.objects)
    assert bpy.context.view_layer.objects.active in made.objects


@pytest.mark.smoke
@pytest.mark.parametrize("kind", ["glb", "zip-gltf", "zip-obj"])
def test_stand_in_models_land_in_their_collection_at_the_cursor_at_the_target_size(empty_blend: Blend,
                                                                                   kind: str) -> None:
    from fake_onemin_server import RESULT_TYPES, compute_result

    bpy = empty_blend.bpy
    result = empty_blend.tmp / f"result.{RESULT_TYPES[kind][0]}"
    result.write_bytes(compute_result(kind, model_photo_bytes()))
    bpy.context.scene.cursor.location = (1.0, -2.0, 0.5)
    made = sb.import_result(result, empty_blend.tmp / "photo.png", "AUTO", {"target_size": 3.0})
    _assert_placed(bpy, made, 3.0, (1.0, -2.0, 0.5))
    assert made.collection.name == "1min3d photo"
    images = {n.image for o in made.objects for s in o.material_slots if s.material and s.material.node_tree
              for n in s.material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage" and n.image}
    assert images, "the model's texture was not imported"
    for image in images:
        assert image.packed_file is not None or Path(image.filepath_from_user()).is_file()
    assert not empty_blend.orphans()


def test_gltf_wrapper_empties_are_removed_and_children_keep_their_place(empty_blend: Blend) -> None:
    bpy = empty_blend.bpy
    parent = bpy.data.objects.new("wrapper", None)
    bpy.context.scene.collection.objects.link(parent)
    parent.location, parent.scale = (3.0, 0.0, 0.0), (2.0, 2.0, 2.0)
    parent.rotation_euler = (0.0, 0.0, 0.7)
    mesh = bpy.data.meshes.new("box")
    _write_box(mesh, (1.0, 0.5, 0.25))
    child = bpy.data.objects.new("box", mesh)
    bpy.context.scene.collection.objects.link(child)
    child.parent = parent
    child.location = (1.0, 0.0, 0.0)
    glb = empty_blend.tmp / "nested.glb"
    bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB")
    bpy.ops.wm.read_homefile(use_empty=True)
    made = sb.import_result(glb, None, "AUTO", {"target_size": 4.0})
    assert [o.type for o in made.objects] == ["MESH"] and made.objects[0].parent is None
    _assert_placed(bpy, made, 4.0, (0.0, 0.0, 0.0))
    lo, hi = _world_bounds(bpy, made.objects)
    # the 4×2×1 box (after the wrapper's scale 2), turned 0.7 rad about Z, keeps its proportions
    longest = 4 * np.cos(0.7) + 2 * np.sin(0.7)
    np.testing.assert_allclose(hi - lo, 4.0 / longest * np.array([longest, 4 * np.sin(0.7) + 2 * np.cos(0.7), 1]),
                               rtol=1e-4)


def _write_box(mesh: Any, half: tuple[float, float, float]) -> None:
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=2.0)
    for v in bm.verts:
        v.co = (v.co.x * half[0], v.co.y * half[1], v.co.z * half[2])
    bm.to_mesh(mesh)
    bm.free()


@pytest.mark.parametrize("fmt", ["stl", "ply"])
def test_stl_and_ply_go_through_their_own_importers(empty_blend: Blend, fmt: str) -> None:
    bpy = empty_blend.bpy
    mesh = bpy.data.meshes.new("box")
    _write_box(mesh, (0.5, 1.0, 2.0))
    obj = bpy.data.objects.new("box", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.select_set(True)
    path = empty_blend.tmp / f"box.{fmt}"
    getattr(bpy.ops.wm, f"{fmt}_export")(filepath=str(path), export_selected_objects=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    made = sb.import_result(path, None, "AUTO", {"target_size": 1.0})
    _assert_placed(bpy, made, 1.0, (0.0, 0.0, 0.0))


def test_model_import_leaves_object_mode(empty_blend: Blend) -> None:
    from fake_onemin_server import compute_result

    bpy = empty_blend.bpy
    mesh = bpy.data.meshes.new("m")
    _write_box(mesh, (1, 1, 1))
    obj = bpy.data.objects.new("m", mesh)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    glb = empty_blend.tmp / "r.glb"
    glb.write_bytes(compute_result("glb", model_photo_bytes()))
    made = sb.import_result(glb, None)
    assert bpy.context.mode == "OBJECT" and made.kind == "MODEL"


# --- failure leaves nothing ------------------------------------------------------------------------------


def _truncated_png(path: Path) -> Path:
    blob_depth(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _assert_refused_cleanly(blend: Blend, call: Any) -> ImportFailed:
    before = blend.names()
    with pytest.raises(ImportFailed) as info:
        call()
    blend.assert_unchanged(before)
    assert not blend.orphans()
    sentence = user_message(info.value)
    assert sentence.endswith(".") and len(sentence) > 20
    return info.value


@pytest.mark.smoke
def test_a_corrupt_depth_map_leaves_the_datablocks_exactly_as_before(empty_blend: Blend) -> None:
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    depth = _truncated_png(empty_blend.tmp / "depth.png")
    sb.import_result(photo, photo, "PLANE")  # something already in the scene that must stay
    _assert_refused_cleanly(empty_blend, lambda: sb.import_result(depth, photo, "DISPLACEMENT"))
    # straight into the builder: the photo, its material and the depth datablock exist when it fails
    coll = empty_blend.bpy.data.collections.new("mine")
    empty_blend.bpy.context.scene.collection.children.link(coll)
    err = _assert_refused_cleanly(empty_blend, lambda: sb.import_relief(photo, depth, collection=coll))
    assert "depth map" in err.message and "depth.png" in err.message


@pytest.mark.smoke
def test_an_unreadable_glb_leaves_the_datablocks_exactly_as_before(empty_blend: Blend) -> None:
    glb = empty_blend.tmp / "broken.glb"
    glb.write_bytes(b"glTF" + (2).to_bytes(4, "little") + (200).to_bytes(4, "little") + b"\x00" * 40)
    _assert_refused_cleanly(empty_blend, lambda: sb.import_result(glb, None, "AUTO"))


def test_a_zip_without_a_model_or_with_a_broken_one_leaves_nothing(empty_blend: Blend) -> None:
    empty_zip = empty_blend.tmp / "nothing.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "no model here")
    _assert_refused_cleanly(empty_blend, lambda: sb.import_result(empty_zip, None, "AUTO"))
    broken = empty_blend.tmp / "broken.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("model.gltf", '{"asset": {"version": "2.0"}, "buffers": [{"uri": "missing.bin", '
                                  '"byteLength": 12}], "bufferViews": [{"buffer": 0, "byteLength": 12}], '
                                  '"accessors": [{"bufferView": 0, "componentType": 5126, "count": 1, '
                                  '"type": "VEC3"}], "meshes": [{"primitives": [{"attributes": '
                                  '{"POSITION": 0}}]}], "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}]}')
    _assert_refused_cleanly(empty_blend, lambda: sb.import_result(broken, None, "AUTO"))


@pytest.mark.parametrize("solid", [False, True])
def test_a_failure_after_the_mesh_is_built_removes_everything_the_relief_made(
        empty_blend: Blend, monkeypatch: pytest.MonkeyPatch, solid: bool) -> None:
    def fail(created: Any) -> Any:
        raise RuntimeError("forced failure after the mesh was built")

    monkeypatch.setattr(build_relief, "_relief_node_group", fail)
    photo = quadrant_photo(empty_blend.tmp / "photo.png")
    depth = blob_depth(empty_blend.tmp / "depth.png")
    err = _assert_refused_cleanly(empty_blend, lambda: sb.import_result(depth, photo, "AUTO", {"solid": solid}))
    assert "forced failure" in err.message


def test_a_failure_after_the_gltf_importer_ran_removes_all_it_made(empty_blend: Blend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_onemin_server import compute_result

    def fail(*args: Any) -> None:
        raise RuntimeError("forced failure while placing the model")

    monkeypatch.setattr(build_model, "_fit_to_cursor", fail)
    glb = empty_blend.tmp / "model.glb"
    glb.write_bytes(compute_result("glb", model_photo_bytes()))
    _assert_refused_cleanly(empty_blend, lambda: sb.import_result(glb, None, "AUTO"))


def test_a_missing_result_file_is_an_import_failure_with_a_sentence(empty_blend: Blend) -> None:
    err = _assert_refused_cleanly(empty_blend, lambda: sb.import_result(empty_blend.tmp / "gone.png", None))
    assert "gone.png" in err.message


# --- render -------------------------------------------------------------------------------------------


def _render(bpy: Any, path: Path) -> np.ndarray:
    scene = bpy.context.scene
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), np.float32) / 255.0


@pytest.mark.slow
def test_a_cycles_render_of_the_relief_shows_its_shape(empty_blend: Blend) -> None:
    bpy = empty_blend.bpy
    from mathutils import Euler

    depth = empty_blend.tmp / "bumps.png"
    y, x = np.mgrid[0:256, 0:256] / 256.0
    Image.fromarray(((0.5 + 0.5 * np.sin(x * 18) * np.sin(y * 18)) * 255).astype(np.uint8)).save(depth)
    obj = relief_of(empty_blend, depth, grey_photo(empty_blend.tmp / "grey.png", 256, 256), resolution=128,
                    strength=0.12)
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = 0.8  # looking straight down, the relief fills the frame
    cam.location = (0.0, 0.0, 2.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = Euler((1.2, 0.0, 0.9))  # low, grazing light: bumps cast shade
    scene.collection.objects.link(sun)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 128
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    relief = _render(bpy, empty_blend.tmp / "relief.png")
    sb.set_relief_strength(obj, 0.0)
    flat = _render(bpy, empty_blend.tmp / "flat.png")
    assert relief.std() > 0.05, f"the relief renders flat (std {relief.std():.3f})"
    assert relief.std() > 3 * flat.std(), (relief.std(), flat.std())


def test_no_import_path_calls_context_evaluated_depsgraph_get() -> None:
    """`context.evaluated_depsgraph_get()` releases the GIL and then reads the context; under
    `temp_override` (the add-on's imports) that is a Python dict read without the GIL, which
    crashed bpy 5.0.1 when another Python thread ran (a 90 s stress loop crashed every time).
    The add-on evaluates through `view_layer.update()` instead."""
    package = Path(sb.__file__).resolve().parent.parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if "evaluated_depsgraph_get(" in p.read_text(encoding="utf-8")]
    assert offenders == []
