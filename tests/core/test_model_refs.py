"""model_refs.py: every file a glTF, GLB, OBJ or MTL names is kept only when it is one of the result's own files.

Each test builds a small result folder beside a private folder (`secret.png`, `secret.bin`),
checks the model, and asserts on what the importer would then see: the rewritten uris and
lines, the warnings, and that the original is left alone when a copy is made. The property
tests resolve every reference the checker kept the way Blender's importers do, and require it to
land on one of the result's files.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import struct
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onemin3d_addon.core import model_refs, results
from onemin3d_addon.core.errors import ResultError, user_message
from onemin3d_addon.core.model_refs import check_model

# --- building results ----------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A result folder (model.bin, texture.png, tex/wood grain.png) and a private folder beside it."""
    private = tmp_path / "private"
    private.mkdir()
    (private / "secret.png").write_bytes(b"\x89PNG secret")
    (private / "secret.bin").write_bytes(b"secret" * 4)
    result = tmp_path / "results" / "r_files"
    (result / "tex").mkdir(parents=True)
    (result / "model.bin").write_bytes(bytes(36))
    (result / "texture.png").write_bytes(b"\x89PNG ok")
    (result / "tex" / "wood grain.png").write_bytes(b"\x89PNG wood")
    return {"tmp": tmp_path, "private": private, "result": result}


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _gltf_doc(image_uri: str | None = "texture.png", buffer_uri: str | None = "model.bin") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "images": [{"mimeType": "image/png"}],
        "textures": [{"source": 0}],
    }
    if buffer_uri is not None:
        doc["buffers"][0]["uri"] = buffer_uri
    if image_uri is not None:
        doc["images"][0]["uri"] = image_uri
    return doc


def _write_gltf(folder: Path, doc: dict[str, Any], name: str = "model.gltf") -> Path:
    path = folder / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _glb(doc: dict[str, Any], binary: bytes) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    return (struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(js) + 8 + len(binary)) + struct.pack("<I4s", len(js), b"JSON")
            + js + struct.pack("<I4s", len(binary), b"BIN\0") + binary)


def _read_glb(path: Path) -> tuple[dict[str, Any], bytes]:
    """The GLB's JSON and BIN chunk, checked the way Blender's importer checks the container."""
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and total == len(data)
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON" and length % 4 == 0
    doc = json.loads(data[20:20 + length])
    blen, bkind = struct.unpack_from("<I4s", data, 20 + length)
    assert bkind == b"BIN\0" and blen % 4 == 0 and 28 + length + blen == len(data)
    return doc, data[28 + length:]


def _check_gltf(world: dict[str, Path], uri: str, *, what: str = "image") -> model_refs.CheckedModel:
    doc = _gltf_doc(image_uri=uri) if what == "image" else _gltf_doc(buffer_uri=uri)
    if what == "buffer":  # only the texture reads this buffer, so it may be left out
        doc["buffers"].append({"uri": uri, "byteLength": 24})
        doc["buffers"][0]["uri"] = "model.bin"
        doc["bufferViews"].append({"buffer": 1, "byteLength": 24})
        doc["images"][0] = {"bufferView": 1, "mimeType": "image/png"}
    model = _write_gltf(world["result"], doc)
    return check_model(model, root=world["result"], files=_files(world["result"]))


# --- glTF: every form of outside reference is dropped, with one sentence naming it ---------------


def _hostile_forms(private: Path) -> list[tuple[str, str]]:
    secret = str(private / "secret.png")
    inner = secret.lstrip("/")
    climb = "../" * 12 + inner
    return [
        (secret, "absolute path"),
        ("../../private/secret.png", "points outside the result's folder"),
        ("..\\..\\private\\secret.png", "points outside the result's folder"),
        ("tex/../../../private/secret.png", "points outside the result's folder"),
        (climb, "points outside the result's folder"),
        ("%2E%2E/%2E%2E/private/secret.png", "points outside the result's folder"),
        ("%2Fetc%2Fpasswd", "absolute path"),
        (f"file://{secret}", "file: URL"),
        (f"FILE:{secret}", "file: URL"),
        (f"file%3A%2F%2F{secret}", "file: URL"),
        ("http://127.0.0.1:9/secret.png", "web address"),
        ("https://example.com/secret.png", "web address"),
        ("ftp://example.com/secret.png", "'ftp:' address"),
        ("smb://host/share/secret.png", "'smb:' address"),
        ("\\\\host\\share\\secret.png", "UNC"),
        ("//host/share/secret.png", "UNC"),
        ("//" + inner, "UNC"),
        ("\\\\?\\C:\\secret.png", "UNC"),
        ("C:\\Users\\me\\secret.png", "Windows drive"),
        ("C:/Users/me/secret.png", "Windows drive"),
        ("c:secret.png", "Windows drive"),
        ("secret.png", "no such file came with the result"),
        ("tex", "no such file came with the result"),  # a folder
        ("texture.png\x00.txt", "not a usable file name"),
    ]


@pytest.mark.parametrize("what", ["image", "buffer"])
def test_every_outside_form_in_a_gltf_is_dropped_with_one_sentence_naming_it(world: dict[str, Path],
                                                                              what: str) -> None:
    for uri, reason in _hostile_forms(world["private"]):
        checked = _check_gltf(world, uri, what=what)
        label = "texture" if what == "image" else "buffer"
        assert len(checked.warnings) == 1, (uri, checked.warnings)
        warning = checked.warnings[0]
        assert warning.startswith(f"Ignored the {label} '") and "in model.gltf: " in warning, warning
        assert reason in warning and warning.endswith("."), (uri, warning)
        assert model_refs._shown(uri) in warning
        doc = json.loads(checked.path.read_text(encoding="utf-8"))
        if what == "image":
            assert "uri" not in doc["images"][0] and "bufferView" not in doc["images"][0]
        else:  # the texture stored in that buffer goes; the geometry's own buffer stays
            assert "uri" not in doc["buffers"][1] and "bufferView" not in doc["images"][0]
            assert doc["buffers"][0]["uri"] == "model.bin"


def test_a_symlink_inside_the_folder_that_leads_outside_is_dropped(world: dict[str, Path]) -> None:
    (world["result"] / "linked.png").symlink_to(world["private"] / "secret.png")
    (world["result"] / "tex" / "up").symlink_to(world["private"])
    for uri in ("linked.png", "tex/up/secret.png"):
        checked = _check_gltf(world, uri)
        assert len(checked.warnings) == 1 and "link that leads outside" in checked.warnings[0]
        assert checked.refusal(world["result"] / "linked.png") == model_refs.OUTSIDE


def test_a_symlink_that_stays_inside_is_followed_and_kept(world: dict[str, Path]) -> None:
    (world["result"] / "alias.png").symlink_to(world["result"] / "texture.png")
    checked = check_model(_write_gltf(world["result"], _gltf_doc("alias.png")), root=world["result"],
                          files=[world["result"] / "texture.png", world["result"] / "model.bin"])
    assert checked.warnings == ()


def test_files_that_came_with_the_result_are_kept_untouched(world: dict[str, Path]) -> None:
    doc = _gltf_doc("tex/wood%20grain.png")
    model = _write_gltf(world["result"], doc)
    before = model.read_bytes()
    checked = check_model(model, root=world["result"], files=_files(world["result"]))
    assert checked.path == model and checked.warnings == () and model.read_bytes() == before
    assert checked.refusal(world["result"] / "tex" / "wood grain.png") is None
    assert checked.refusal(world["private"] / "secret.png") == model_refs.OUTSIDE


def test_a_file_inside_the_folder_that_did_not_come_with_the_result_is_dropped(world: dict[str, Path]) -> None:
    (world["result"] / "stale.png").write_bytes(b"left over from before")
    model = _write_gltf(world["result"], _gltf_doc("stale.png"))
    files = [model, world["result"] / "model.bin", world["result"] / "texture.png"]
    checked = check_model(model, root=world["result"], files=files)
    assert checked.warnings == ("Ignored the texture 'stale.png' in model.gltf: no such file came with the result.",)
    assert checked.refusal(world["result"] / "stale.png") == model_refs.NOT_INCLUDED


def test_kept_references_are_rewritten_canonical(world: dict[str, Path]) -> None:
    doc = _gltf_doc("./tex\\wood grain.png", "sub/../model.bin")
    checked = check_model(_write_gltf(world["result"], doc), root=world["result"], files=_files(world["result"]))
    out = json.loads(checked.path.read_text(encoding="utf-8"))
    assert out["images"][0]["uri"] == "tex/wood%20grain.png" and out["buffers"][0]["uri"] == "model.bin"
    assert checked.warnings == ()


def test_uris_anywhere_in_the_json_are_checked(world: dict[str, Path]) -> None:
    doc = _gltf_doc()
    doc["extensions"] = {"KHR_future": {"sounds": [{"uri": "../../private/secret.bin"}]}}
    doc["materials"] = [{"extras": {"uri": "file:///etc/passwd"}}]
    checked = check_model(_write_gltf(world["result"], doc), root=world["result"], files=_files(world["result"]))
    assert len(checked.warnings) == 2 and all(w.startswith("Ignored the file '") for w in checked.warnings)
    out = json.loads(checked.path.read_text(encoding="utf-8"))
    assert out["extensions"]["KHR_future"]["sounds"][0] == {} and out["materials"][0]["extras"] == {}


def test_a_buffer_that_holds_geometry_refuses_the_model_in_one_sentence(world: dict[str, Path]) -> None:
    model = _write_gltf(world["result"], _gltf_doc(buffer_uri="../../private/secret.bin"))
    with pytest.raises(ResultError) as info:
        check_model(model, root=world["result"], files=_files(world["result"]))
    sentence = user_message(info.value)
    assert "geometry" in sentence and "../../private/secret.bin" in sentence
    assert "generate the result again" in sentence


# --- GLB ------------------------------------------------------------------------------------------


def test_a_glb_gets_its_json_chunk_rewritten_and_keeps_its_bin_chunk(world: dict[str, Path]) -> None:
    binary = bytes(range(36)) + b"\x89PNG embedded"
    doc = _gltf_doc(image_uri=None, buffer_uri=None)
    doc["buffers"][0]["byteLength"] = len(binary)
    doc["images"] = [{"uri": str(world["private"] / "secret.png")}, {"uri": "data:image/png;base64,AAAA"}]
    glb = world["tmp"] / "results" / "r.glb"
    glb.write_bytes(_glb(doc, binary))
    before = glb.read_bytes()
    checked = check_model(glb, root=glb.parent, files=[glb], out_dir=glb.parent / "r.glb_checked")
    assert glb.read_bytes() == before, "the downloaded result itself is never changed"
    assert checked.path == glb.parent / "r.glb_checked" / "r.glb"
    out, out_bin = _read_glb(checked.path)
    assert out_bin[:len(binary)] == binary
    assert out["images"] == [{}, {"uri": "data:image/png;base64,AAAA"}]
    assert len(checked.warnings) == 1 and "absolute path" in checked.warnings[0]
    assert checked.refusal(checked.path) is None and checked.refusal(glb) is None


def test_a_lone_glb_may_read_nothing_beside_it(world: dict[str, Path]) -> None:
    folder = world["tmp"] / "results"
    (folder / "other-result.png").write_bytes(b"\x89PNG someone else's")
    doc = _gltf_doc(image_uri="other-result.png", buffer_uri=None)
    glb = folder / "r.glb"
    glb.write_bytes(_glb(doc, bytes(36)))
    checked = check_model(glb, root=folder, files=[glb], out_dir=folder / "r.glb_checked")
    assert checked.warnings == ("Ignored the texture 'other-result.png' in r.glb: no such file came with the "
                                "result.",)


def test_a_glb_whose_first_buffer_names_a_file_falls_back_on_its_own_bin_chunk(world: dict[str, Path]) -> None:
    doc = _gltf_doc(image_uri=None, buffer_uri="../private/secret.bin")
    glb = world["result"] / "r.glb"
    glb.write_bytes(_glb(doc, bytes(36)))
    checked = check_model(glb, root=world["result"], files=[glb])
    assert "binary data is used instead" in checked.warnings[0]
    out, _ = _read_glb(checked.path)
    assert "uri" not in out["buffers"][0]


def test_a_glb_that_blender_would_refuse_is_passed_through_unchanged(world: dict[str, Path]) -> None:
    bad = world["result"] / "bad.glb"
    bad.write_bytes(b"glTF" + struct.pack("<II", 2, 999) + b"\0" * 40)
    assert check_model(bad, root=world["result"], files=[bad]).path == bad
    not_json = world["result"] / "nan.gltf"
    not_json.write_text('{"asset": {"version": "2.0"}, "x": NaN, "images": [{"uri": "/etc/passwd"}]}')
    assert check_model(not_json, root=world["result"], files=[not_json]).path == not_json


# --- data: URIs -----------------------------------------------------------------------------------


def test_data_uris_are_kept_made_base64_and_counted(world: dict[str, Path]) -> None:
    doc = _gltf_doc()
    payload = bytes(range(256)) * 4
    doc["images"] = [
        {"uri": "data:image/png;base64," + base64.b64encode(payload).decode()},
        {"uri": "data:text/plain,hello%20world"},
        {"uri": "DATA:image/png;base64," + base64.b64encode(b"abc").decode()},
        {"uri": "data:no-comma-here"},
        {"uri": "data:../../private/secret.png"},  # Blender would read this one as a path
    ]
    checked = check_model(_write_gltf(world["result"], doc), root=world["result"], files=_files(world["result"]))
    out = json.loads(checked.path.read_text(encoding="utf-8"))["images"]
    assert out[0] == doc["images"][0]
    assert out[1]["uri"] == "data:text/plain;base64," + base64.b64encode(b"hello world").decode()
    assert out[2]["uri"] == "data:image/png;base64," + base64.b64encode(b"abc").decode()
    assert out[3] == {} and out[4] == {}
    assert len(checked.warnings) == 2 and all("malformed data: URI" in w for w in checked.warnings)
    assert checked.embedded_bytes >= len(payload) + len(b"hello world") + 3


def test_data_uris_past_the_result_limit_are_a_result_error(world: dict[str, Path]) -> None:
    doc = _gltf_doc()
    chunk = base64.b64encode(bytes(600 * 1024)).decode()
    doc["images"] = [{"uri": "data:image/png;base64," + chunk}, {"uri": "data:image/png;base64," + chunk}]
    model = _write_gltf(world["result"], doc)
    with pytest.raises(ResultError) as info:
        check_model(model, root=world["result"], files=_files(world["result"]), max_bytes=1 << 20)
    sentence = user_message(info.value)
    assert "embeds 1 MB in data: URIs, more than the 1 MB a result may hold" in sentence
    assert sentence.endswith("generate the result again.")
    assert check_model(model, root=world["result"], files=_files(world["result"]), max_bytes=2 << 20).warnings == ()


def test_the_limit_defaults_to_the_result_limit(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _gltf_doc()
    doc["images"] = [{"uri": "data:text/plain," + "x" * 2000}]
    model = _write_gltf(world["result"], doc)
    monkeypatch.setattr(results, "MAX_RESULT_BYTES", 1000)
    with pytest.raises(ResultError):
        check_model(model, root=world["result"], files=_files(world["result"]))


# --- OBJ and MTL ----------------------------------------------------------------------------------


def _obj(folder: Path, mtllib: str | list[str] = "model.mtl", name: str = "model.obj", eol: str = "\n") -> Path:
    libs = [mtllib] if isinstance(mtllib, str) else mtllib
    text = "".join(f"mtllib {lib}{eol}" for lib in libs) + f"o m{eol}v 0 0 0{eol}v 1 0 0{eol}v 0 1 0{eol}usemtl photo{eol}f 1 2 3{eol}"
    path = folder / name
    path.write_bytes(text.encode())
    return path


def _mtl(folder: Path, lines: list[str], name: str = "model.mtl") -> Path:
    path = folder / name
    path.write_text("newmtl photo\nKd 1 1 1\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _texture_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.split() and (line.split()[0].lower().startswith("map_")
                                 or line.split()[0].lower() in model_refs.MTL_TEXTURE_KEYWORDS)]


def test_every_outside_form_in_an_mtl_is_dropped_with_one_sentence_naming_it(world: dict[str, Path]) -> None:
    for ref, reason in _hostile_forms(world["private"]):
        if "%" in ref or "\x00" in ref:
            continue  # an MTL path is not percent-decoded; NUL cannot be written in a line
        mtl = _mtl(world["result"], [f"map_Kd {ref}", f"bump -bm 1.0 {ref}", "map_Ks texture.png"])
        obj = _obj(world["result"])
        checked = check_model(obj, root=world["result"], files=_files(world["result"]))
        assert len(checked.warnings) == 2, (ref, checked.warnings)
        for warning in checked.warnings:
            assert warning.startswith("Ignored the texture '") and " in model.mtl: " in warning
            assert model_refs._shown(ref) in warning and reason in warning, (ref, warning)
        assert _texture_lines(mtl) == ["map_Ks texture.png"]
        assert checked.path == obj


@pytest.mark.parametrize(("line", "expected"), [
    ("map_Kd texture.png", "map_Kd texture.png"),
    ("map_Kd tex/wood grain.png", "map_Kd tex/wood grain.png"),
    ("map_Kd \"tex/wood grain.png\"", "map_Kd tex/wood grain.png"),
    ("map_Kd tex\\wood grain.png", "map_Kd tex/wood grain.png"),
    ("map_Kd tex/wood_grain.png", "map_Kd tex/wood grain.png"),  # Blender's underscore fall-back
    ("map_Kd textures/from/elsewhere/texture.png", "map_Kd texture.png"),  # and its basename fall-back
    ("bump -bm 0.5 texture.png", "bump -bm 0.5 texture.png"),
    ("map_Bump -bm 2 -o 1 2 -s 3 tex/wood grain.png", "map_Bump -bm 2.0 -o 1.0 2.0 0.0 -s 3.0 1.0 1.0 tex/wood grain.png"),
    ("map_Kd -clamp on -mm 0 1 -type cube texture.png", "map_Kd -type sphere texture.png"),
    ("disp texture.png", "disp texture.png"),
    ("decal texture.png", "decal texture.png"),
    ("refl -type sphere texture.png", "refl -type sphere texture.png"),
    ("norm texture.png", "norm texture.png"),
    ("map_d -s 1 1 1 ./texture.png", "map_d -s 1.0 1.0 1.0 texture.png"),
])
def test_mtl_texture_lines_that_stay_inside_are_kept_with_their_options(world: dict[str, Path], line: str,
                                                                         expected: str) -> None:
    mtl = _mtl(world["result"], [line])
    checked = check_model(_obj(world["result"]), root=world["result"], files=_files(world["result"]))
    assert checked.warnings == ()
    assert _texture_lines(mtl) == [expected]


def test_the_option_before_an_outside_path_does_not_hide_it(world: dict[str, Path]) -> None:
    secret = world["private"] / "secret.png"
    mtl = _mtl(world["result"], [f"map_Kd -bm 1.0 -o 0 0 0 -s 1 1 1 -clamp on {secret}",
                                 f"map_Kd -bm {secret}", "map_Ka -texres 512 ../../private/secret.png"])
    checked = check_model(_obj(world["result"]), root=world["result"], files=_files(world["result"]))
    assert len(checked.warnings) == 3
    assert _texture_lines(mtl) == []
    assert "secret" not in mtl.read_text(encoding="utf-8")


def test_mtllib_lines_that_leave_the_folder_are_dropped_and_the_rest_kept(world: dict[str, Path]) -> None:
    _mtl(world["result"], ["map_Kd texture.png"], name="materials with space.mtl")
    (world["private"] / "private.mtl").write_text(f"newmtl photo\nmap_Kd {world['private'] / 'secret.png'}\n")
    obj = _obj(world["result"], ["\"materials with space.mtl\"", "../../private/private.mtl",
                                 str(world["private"] / "private.mtl"), "texture.png", "missing.mtl"],
               name="scene.obj")
    checked = check_model(obj, root=world["result"], files=_files(world["result"]))
    reasons = [w.split(": ", 1)[1] for w in checked.warnings]
    assert reasons == ["it points outside the result's folder.", "it is an absolute path, outside the result's folder.",
                       "it is not a material library (.mtl).", "no such file came with the result."]
    assert all(w.startswith("Ignored the material library '") for w in checked.warnings)
    lines = [ln for ln in obj.read_text(encoding="utf-8").splitlines() if ln.startswith("mtllib")]
    assert lines == ["mtllib materials with space.mtl"]


def test_the_mtl_named_after_the_obj_is_checked_even_when_no_line_names_it(world: dict[str, Path]) -> None:
    mtl = _mtl(world["result"], [f"map_Kd {world['private'] / 'secret.png'}"])
    obj = _obj(world["result"], [])
    checked = check_model(obj, root=world["result"], files=_files(world["result"]))
    assert len(checked.warnings) == 1 and "model.mtl" in checked.warnings[0]
    assert _texture_lines(mtl) == []


def test_an_mtl_named_after_the_obj_that_leads_outside_makes_the_obj_imported_under_another_name(
        world: dict[str, Path]) -> None:
    (world["result"] / "model.mtl").symlink_to(world["private"] / "secret.bin")
    obj = _obj(world["result"], [])
    checked = check_model(obj, root=world["result"], files=_files(world["result"]))
    assert "link that leads outside" in checked.warnings[0]
    assert checked.path != obj and checked.path.parent == obj.parent
    assert not os.path.lexists(checked.path.with_suffix(".mtl"))
    assert checked.path.read_text(encoding="utf-8").count("v ") == 3


def test_line_continuations_are_joined_before_checking(world: dict[str, Path]) -> None:
    secret = world["private"] / "secret.png"
    (world["result"] / "model.mtl").write_bytes(f"newmtl photo\nmap_Kd \\\n {secret}\n".encode())
    obj = world["result"] / "model.obj"
    obj.write_bytes(b"mtllib \\  \n../../private/private.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    checked = check_model(obj, root=world["result"], files=_files(world["result"]))
    assert len(checked.warnings) == 2
    assert b"\\\n" not in obj.read_bytes() and b"private" not in obj.read_bytes()
    assert b"secret" not in (world["result"] / "model.mtl").read_bytes()


def test_crlf_files_keep_their_line_ends(world: dict[str, Path]) -> None:
    mtl = world["result"] / "model.mtl"
    mtl.write_bytes(b"newmtl photo\r\nmap_Kd ../x.png\r\nmap_Ks .\\texture.png\r\n")
    obj = _obj(world["result"], "model.mtl", eol="\r\n")
    check_model(obj, root=world["result"], files=_files(world["result"]))
    assert mtl.read_bytes() == (b"newmtl photo\r\n# onemin3d: a texture was ignored here\r\nmap_Ks texture.png\r\n")


def test_a_checked_copy_of_an_obj_keeps_its_textures_and_leaves_the_originals(world: dict[str, Path]) -> None:
    folder = world["tmp"] / "results"
    mtl = _mtl(world["result"], ["map_Kd texture.png", "map_Ks ../../private/secret.png"])
    obj = _obj(world["result"])
    before = (obj.read_bytes(), mtl.read_bytes())
    out_dir = folder / "checked"
    checked = check_model(obj, root=folder, files=_files(world["result"]), out_dir=out_dir)
    assert (obj.read_bytes(), mtl.read_bytes()) == before
    assert checked.path.parent.is_relative_to(out_dir)
    copy_mtl = checked.path.with_suffix(".mtl")
    (line,) = _texture_lines(copy_mtl)
    keyword, rel = line.split(" ", 1)
    assert keyword == "map_Kd" and (copy_mtl.parent / rel).resolve() == (world["result"] / "texture.png").resolve()
    assert len(checked.warnings) == 1


def test_nothing_is_written_when_nothing_needs_to_change(world: dict[str, Path]) -> None:
    mtl = _mtl(world["result"], ["map_Kd texture.png"])
    obj = _obj(world["result"])
    stamps = (obj.stat().st_mtime_ns, mtl.stat().st_mtime_ns)
    out_dir = world["result"] / "checked"
    checked = check_model(obj, root=world["result"], files=_files(world["result"]), out_dir=out_dir)
    assert checked.path == obj and checked.warnings == () and not out_dir.exists()
    assert (obj.stat().st_mtime_ns, mtl.stat().st_mtime_ns) == stamps


def test_formats_without_a_hook_pass_through(world: dict[str, Path]) -> None:
    fbx = world["result"] / "model.fbx"
    fbx.write_bytes(b"Kaydara FBX Binary  \0")
    checked = check_model(fbx, root=world["result"], files=[fbx])
    assert checked.path == fbx and checked.warnings == ()
    assert checked.refusal(world["result"] / "texture.png") == model_refs.NOT_INCLUDED
    assert checked.refusal(fbx) is None


# --- properties: whatever is kept, Blender's own resolution lands on a result file --------------------

_PIECES = ["..", ".", "/", "\\", "%2e", "%2E%2e", "%2f", "%5C", "%", "texture.png", "tex", "wood grain.png",
           "private", "secret.png", "C:", "c:", "file:", "http:", "data:", "//", "\\\\", " ", "_", "\"", "~",
           "model.bin", "r_files", "results"]


def _blender_gltf_path(model: Path, uri: str) -> str:
    """io_scene_gltf2: join(dirname(filename), normpath(unquote(uri.replace('\\\\', '/'))))."""
    return os.path.join(os.path.dirname(model), os.path.normpath(unquote(uri.replace("\\", "/"))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(_PIECES), min_size=1, max_size=8))
def test_any_uri_the_checker_keeps_resolves_to_a_result_file(world: dict[str, Path], pieces: list[str]) -> None:
    uri = "".join(pieces)
    model = _write_gltf(world["result"], _gltf_doc(uri), name="prop.gltf")
    files = [model, world["result"] / "model.bin", world["result"] / "texture.png",
             world["result"] / "tex" / "wood grain.png"]
    checked = check_model(model, root=world["result"], files=files)
    out = json.loads(checked.path.read_text(encoding="utf-8"))["images"][0]
    kept = out.get("uri")
    if kept is None or kept.startswith("data:"):
        assert kept is None or ";base64," in kept
        return
    real = os.path.realpath(_blender_gltf_path(checked.path, kept))
    assert real in {os.path.realpath(f) for f in files}, (uri, kept)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from([p for p in _PIECES if "%" not in p]), min_size=1, max_size=8),
       options=st.sampled_from(["", "-bm 1.0 ", "-o 1 2 3 ", "-s 1 ", "-clamp on ", "-bm "]))
def test_any_mtl_path_the_checker_keeps_resolves_to_a_result_file(world: dict[str, Path], pieces: list[str],
                                                                  options: str) -> None:
    ref = "".join(pieces)
    mtl = _mtl(world["result"], [f"map_Kd {options}{ref}"], name="prop.mtl")
    obj = _obj(world["result"], "prop.mtl", name="prop.obj")
    files = [obj, mtl, world["result"] / "texture.png", world["result"] / "tex" / "wood grain.png"]
    check_model(obj, root=world["result"], files=files)
    for line in _texture_lines(mtl):
        _, path = model_refs._split_options(line.split(" ", 1)[1])
        path = path.strip(" \t\n\v\f\r")
        if not path:
            continue  # Blender ignores a texture line without a path
        # Blender tries the path joined to the .mtl's folder first; the checker only keeps files that exist there
        first = os.path.realpath(posixpath.join(str(mtl.parent), path))
        assert first in {os.path.realpath(f) for f in files}, (ref, line)
        assert not path.startswith("-")


def test_a_result_folder_reached_through_a_link_is_checked_the_same(world: dict[str, Path]) -> None:
    alias = world["tmp"] / "alias"
    alias.symlink_to(world["tmp"] / "results")  # as macOS's /var is /private/var
    via = alias / "r_files"
    doc = _gltf_doc("texture.png")
    doc["images"].append({"uri": "../../private/secret.png"})
    model = _write_gltf(via, doc)
    checked = check_model(model, root=via, files=_files(via), out_dir=via / "checked")
    assert len(checked.warnings) == 1 and "points outside" in checked.warnings[0]
    assert checked.path.resolve().is_relative_to((world["result"] / "checked").resolve())
    out = json.loads(checked.path.read_text(encoding="utf-8"))
    assert (checked.path.parent / unquote(out["images"][0]["uri"])).resolve() == (world["result"] / "texture.png")


def test_a_model_that_is_itself_a_link_out_of_the_folder_is_refused(world: dict[str, Path]) -> None:
    outside = _write_gltf(world["private"], _gltf_doc())
    (world["result"] / "model.gltf").symlink_to(outside)
    with pytest.raises(ResultError) as info:
        check_model(world["result"] / "model.gltf", root=world["result"], files=_files(world["result"]))
    assert "link that leads outside" in user_message(info.value)
