"""A hostile 3D result reads nothing of the user's: every form of outside reference, in every model format, through the add-on's real path.

Each test puts a private marker file (a PNG whose pixels are a random token, a raw .bin of that
token, or a private .mtl naming the PNG) outside the result folder. The stand-in then serves a
result that names it (`hostile-refs`), the add-on downloads and imports it through `api.submit`
and `pump`, and the test checks what a user would keep: the model is there, a warning names the
reference, no datablock points at the marker or holds its bytes, and after `pack_all` and a
save the .blend holds no byte of the token. The controls show that the same payloads, imported
with Blender's importers directly, do read the marker, so the checks can see a leak.
"""

from __future__ import annotations

import os
import secrets
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import addon_harness
import pytest
from addon_harness import pump_until

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo

FORMS = ("absolute", "parent", "file-url", "http", "unc", "unc-backslash", "drive", "percent")
#: (stand-in result, what names the marker, which marker file)
CASES = (("glb", "image", "png"), ("glb", "buffer", "bin"), ("zip-gltf", "image", "png"),
         ("zip-gltf", "buffer", "bin"), ("zip-obj", "map", "png"), ("zip-obj", "mtllib", "mtl"))
FILE_BACKED = ("images", "movieclips", "sounds", "libraries", "volumes", "fonts", "cache_files", "texts")


@dataclass
class Private:
    """The user's private files, outside every result folder; `token` is in every byte pattern."""

    token: bytes
    png: Path
    bin: Path
    mtl: Path
    png_long: Path  # the same PNG, under a folder name 89 characters longer (for the FBX patch)

    @property
    def files(self) -> set[str]:
        return {os.path.realpath(p) for p in (self.png, self.bin, self.mtl, self.png_long)}


def _token_png(path: Path, token: bytes, size: int = 32) -> None:
    """A valid RGB PNG whose rows are the token repeated, stored uncompressed (zlib level 0)."""
    row = (token * (size * 3 // len(token) + 1))[: size * 3]
    raw = b"".join(b"\x00" + row for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))
    assert token in path.read_bytes()


@pytest.fixture
def private(tmp_path: Path) -> Private:
    token = secrets.token_bytes(16)
    folder = tmp_path / "private files" / "m"  # a space in the path, as users' folders have
    long_folder = tmp_path / "private files" / ("m" + "x" * 89)
    folder.mkdir(parents=True)
    long_folder.mkdir(parents=True)
    png, png_long = folder / "marker.png", long_folder / "marker.png"
    _token_png(png, token)
    _token_png(png_long, token)
    binary = folder / "marker.bin"
    binary.write_bytes(token * 256)
    mtl = folder / "private.mtl"
    mtl.write_text(f"newmtl photo\nKd 1 1 1\nmap_Kd {png}\n", encoding="utf-8")
    return Private(token, png, binary, mtl, png_long)


def _marker(private: Private, which: str) -> Path:
    return {"png": private.png, "bin": private.bin, "mtl": private.mtl}[which]


def _run(stand_in: Any, photo: Path, result: str, **params: Any) -> Any:
    """One job through the add-on (upload, generate, download, import) on a hostile result."""
    from onemin3d_addon import api

    stand_in.result = result
    stand_in.inject("hostile-refs", stage="download", times=-1, **params)
    job = api.submit(photo, mode="auto")
    pump_until(lambda: job.done, timeout=180)
    return job


def _assert_nothing_read(bpy: Any, private: Private, tmp_path: Path) -> None:
    """No datablock names a marker or holds its bytes, and a packed, saved .blend has none of them."""
    for coll in FILE_BACKED:
        for block in getattr(bpy.data, coll):
            path = getattr(block, "filepath", "")
            if path and path != "<builtin>":
                resolved = os.path.realpath(bpy.path.abspath(path, library=block.library))
                assert resolved not in private.files, f"{coll}:{block.name} points at the private file {path}"
            packed = getattr(block, "packed_file", None)
            assert packed is None or private.token not in packed.data, f"{coll}:{block.name} packed the marker"
    bpy.ops.file.pack_all()
    saved = tmp_path / "packed.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved), compress=False, copy=True)
    blob = saved.read_bytes()
    assert len(blob) > 10_000
    assert private.token not in blob, "the saved, packed .blend holds the private file's bytes"


def _assert_imported(job: Any) -> None:
    assert job.state == "imported", job.error_message
    meshes = [ob for ob in job.objects if ob.type == "MESH"]
    assert meshes and all(len(ob.data.polygons) > 100 for ob in meshes)


def _named(warnings: list[str], ref: str) -> list[str]:
    shown = ref[:40]
    return [w for w in warnings if w.startswith("Ignored the ") and shown in w and w.endswith(".")]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("result", "target", "which"), CASES, ids=[f"{r}-{t}" for r, t, _ in CASES])
def test_a_model_naming_a_private_file_imports_without_reading_it(addon: Any, stand_in: Any, photo: Path,
                                                                  private: Private, tmp_path: Path, result: str,
                                                                  target: str, which: str, form: str) -> None:
    import bpy
    from fake_onemin_server import hostile_reference

    marker = _marker(private, which)
    job = _run(stand_in, photo, result, form=form, target=target, marker=str(marker))

    _assert_imported(job)
    url = f"{stand_in.base_url}/hostile/{marker.name}"
    ref = hostile_reference(form, str(marker), url)
    named = _named(job.warnings, ref)
    assert named, f"no warning names {ref[:60]!r}: {job.warnings}"
    assert len(named) == (3 if target == "map" else 1)  # the .mtl names it in map_Kd, bump and map_Ks
    assert stand_in.count("GET", "/hostile/") == 0, "a web reference was fetched"
    if target == "mtllib":  # the model's own library, and so its texture, is still there
        assert any(img.filepath and os.path.isfile(bpy.path.abspath(img.filepath)) for img in bpy.data.images)
    _assert_nothing_read(bpy, private, tmp_path)


@pytest.mark.parametrize("result", ["glb", "zip-gltf"])
def test_data_uris_past_the_result_limit_refuse_the_model_in_one_sentence(addon: Any, stand_in: Any, photo: Path,
                                                                           private: Private, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           result: str) -> None:
    import bpy

    from onemin3d_addon.core import results

    monkeypatch.setattr(results, "MAX_RESULT_BYTES", 1 << 20)  # a 1 MB limit instead of 512 MB
    objects_before = len(bpy.data.objects)
    job = _run(stand_in, photo, result, form="data-oversize", size=2 << 20)
    assert job.state == "failed"
    assert "data: URIs" in job.error_message and "2 MB" in job.error_message and "1 MB" in job.error_message
    assert "a result may hold: it was not imported, so generate the result again." in job.error_message
    assert len(bpy.data.objects) == objects_before
    _assert_nothing_read(bpy, private, tmp_path)


def test_data_uris_within_the_limit_are_kept(addon: Any, stand_in: Any, photo: Path, private: Private,
                                             tmp_path: Path) -> None:
    import bpy

    job = _run(stand_in, photo, "glb", form="data-oversize", size=64 << 10)
    _assert_imported(job)
    assert not job.warnings
    packed = [img for img in bpy.data.images if img.packed_file is not None]
    assert any(img.packed_file.size == 64 << 10 for img in packed)
    _assert_nothing_read(bpy, private, tmp_path)


@pytest.mark.parametrize("result", ["zip-gltf", "zip-obj"])
def test_a_zip_whose_texture_is_a_link_outside_is_refused_whole(addon: Any, stand_in: Any, photo: Path,
                                                                private: Private, tmp_path: Path,
                                                                result: str) -> None:
    import bpy

    objects_before = len(bpy.data.objects)
    job = _run(stand_in, photo, result, form="symlink", marker=str(private.png))
    assert job.state == "failed"
    assert "texture.png" in job.error_message and "link" in job.error_message
    assert len(bpy.data.objects) == objects_before
    results_dir = Path(addon.result_folder)
    assert not [p for p in results_dir.rglob("texture.png")], "part of the refused archive was extracted"
    _assert_nothing_read(bpy, private, tmp_path)


# --- FBX (no hook: checked right after Blender's importer) and PLY ------------------------------------


def _fbx_naming(bpy: Any, private: Private, folder: Path, *, embed: bool = False) -> Path:
    """An FBX that Blender itself exported, its texture path patched to climb out to the marker.

    Blender's FBX importer prefers RelativeFilename and roots an absolute one in the model's
    folder, so every path the export wrote for the texture is replaced by a `../`-climbing path
    of the same length to `png` (FBX strings are length-prefixed: the same length keeps every
    offset valid). Without `embed` the export names `png_long`, whose folder name is long enough
    for the climb; with `embed` the FBX carries its own pixels (a plain grey PNG under a long
    name, not the marker) for that path.
    """
    bpy.ops.wm.read_homefile(use_empty=True)
    folder.mkdir(parents=True, exist_ok=True)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=24, ring_count=12)
    obj = bpy.context.object
    material = bpy.data.materials.new("photo")
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    tex = material.node_tree.nodes.new("ShaderNodeTexImage")
    name = "texture" + "x" * 200 + ".png"
    if embed:
        grey = folder / "grey" / name
        grey.parent.mkdir()
        from PIL import Image

        Image.new("RGB", (16, 16), (128, 128, 128)).save(grey)
        tex.image = bpy.data.images.load(str(grey))
    else:
        tex.image = bpy.data.images.load(str(private.png_long))
    bsdf = next(n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    material.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    obj.data.materials.append(material)
    fbx = folder / "model.fbx"
    kw = {"path_mode": "COPY", "embed_textures": True} if embed else {"path_mode": "ABSOLUTE"}
    bpy.ops.export_scene.fbx(filepath=str(fbx), **kw)
    bpy.ops.wm.read_homefile(use_empty=True)
    data = fbx.read_bytes()
    named = [str(fbx.parent / "model.fbm" / name).encode(), f"model.fbm/{name}".encode()] if embed \
        else [str(private.png_long).encode()]
    for old in named:  # the longer first: it holds the shorter one
        assert old in data
        data = data.replace(old, _same_length_climb(old, private.png))
    fbx.write_bytes(data)
    return fbx


def _same_length_climb(old: bytes, target: Path) -> bytes:
    """`../` up to the root (more climbs stop there), then down to `target`: exactly len(old) bytes."""
    inner = str(target).lstrip("/").encode()
    climbs, rest = divmod(len(old) - len(inner), 3)
    assert climbs >= 20, "the path to replace is too short for a climb to the root"
    new = b"../" * climbs + b"./" * (rest // 2) + b"/" * (rest % 2) + inner
    assert len(new) == len(old)
    return new


def test_an_fbx_naming_a_private_texture_imports_without_it(addon: Any, stand_in: Any, photo: Path,
                                                            private: Private, tmp_path: Path) -> None:
    import bpy

    fbx = _fbx_naming(bpy, private, tmp_path / "vendor")
    job = _run(stand_in, photo, "zip-obj", model=str(fbx))
    _assert_imported(job)
    named = [w for w in job.warnings if "marker.png" in w and "model.fbx" in w and w.startswith("Ignored the texture")]
    assert named, job.warnings
    assert not [img for img in bpy.data.images if "marker" in img.name and img.filepath]
    _assert_nothing_read(bpy, private, tmp_path)


def test_an_fbx_embedded_texture_is_kept_but_its_outside_path_never_read(addon: Any, stand_in: Any, photo: Path,
                                                                         private: Private, tmp_path: Path) -> None:
    import bpy

    fbx = _fbx_naming(bpy, private, tmp_path / "vendor", embed=True)
    assert private.token not in fbx.read_bytes()
    job = _run(stand_in, photo, "zip-obj", model=str(fbx))
    _assert_imported(job)
    embedded = [img for img in bpy.data.images if img.packed_file is not None]
    grey = (tmp_path / "vendor" / "grey" / ("texture" + "x" * 200 + ".png")).read_bytes()
    assert [img.packed_file.data for img in embedded] == [grey], "the FBX's own embedded texture was lost"
    results_dir = os.path.realpath(addon.result_folder)
    for img in embedded:  # its stale path now points into the result's folder
        assert os.path.realpath(bpy.path.abspath(img.filepath)).startswith(results_dir + os.sep)
    _assert_nothing_read(bpy, private, tmp_path)


def test_a_ply_naming_a_private_texture_reads_nothing(addon: Any, stand_in: Any, photo: Path, private: Private,
                                                      tmp_path: Path) -> None:
    import bpy

    ply = tmp_path / "vendor" / "model.ply"
    ply.parent.mkdir()
    verts = [(x, y, (x * y) % 3 / 3) for y in range(12) for x in range(12)]
    faces = [(y * 12 + x, y * 12 + x + 1, (y + 1) * 12 + x + 1, (y + 1) * 12 + x) for y in range(11) for x in range(11)]
    ply.write_text("\n".join([
        "ply", "format ascii 1.0", f"comment TextureFile {private.png}", f"element vertex {len(verts)}",
        "property float x", "property float y", "property float z", f"element face {len(faces)}",
        "property list uchar int vertex_indices", "end_header",
        *(f"{x} {y} {z}" for x, y, z in verts), *("4 " + " ".join(map(str, f)) for f in faces)]) + "\n")
    job = _run(stand_in, photo, "zip-obj", model=str(ply))
    _assert_imported(job)
    _assert_nothing_read(bpy, private, tmp_path)


# --- controls: the same payloads, imported naively, do read the marker ----------------------------------


def _naive_import(bpy: Any, data: bytes, folder: Path, result: str) -> None:
    folder.mkdir(parents=True)
    if result == "glb":
        model = folder / "model.glb"
        model.write_bytes(data)
    else:
        zip_path = folder / "result.zip"
        zip_path.write_bytes(data)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(folder)
        model = next(p for p in folder.iterdir() if p.suffix in (".gltf", ".obj", ".fbx"))
    if model.suffix in (".glb", ".gltf"):
        bpy.ops.import_scene.gltf(filepath=str(model))
    elif model.suffix == ".obj":
        bpy.ops.wm.obj_import(filepath=str(model))
    else:
        bpy.ops.import_scene.fbx(filepath=str(model))


@pytest.mark.parametrize(("result", "target", "which", "form"), [
    ("glb", "image", "png", "absolute"), ("glb", "buffer", "bin", "parent"), ("zip-gltf", "image", "png", "percent"),
    ("zip-obj", "map", "png", "absolute"), ("zip-obj", "mtllib", "mtl", "parent"), ("fbx", "", "", ""),
])
def test_control_blenders_importers_alone_read_the_private_file(empty_blend: Any, private: Private, photo: Path,
                                                                tmp_path: Path, result: str, target: str, which: str,
                                                                form: str) -> None:
    from fake_onemin_server import compute_result, hostile_refs

    bpy = empty_blend.bpy
    if result == "fbx":
        fbx = _fbx_naming(bpy, private, tmp_path / "vendor")
        data = hostile_refs(b"", model=str(fbx))
        result = "zip"
    else:
        data = hostile_refs(compute_result(result, photo.read_bytes()), form=form, target=target,
                            marker=str(_marker(private, which)))
    _naive_import(bpy, data, tmp_path / "naive", result)
    bpy.ops.file.pack_all()
    saved = tmp_path / "naive.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved), compress=False, copy=True)
    assert private.token in saved.read_bytes(), "the hostile payload did not reach the marker: the test proves nothing"
