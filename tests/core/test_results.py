"""results.py: sniffing, safe names from hostile keys, safe zip extraction, greyscale detection."""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from onemin3d_addon.core import results
from onemin3d_addon.core.errors import ResultError, user_message
from onemin3d_addon.core.results import (
    find_model_in_dir,
    is_greyscale,
    safe_extract_zip,
    safe_name,
    sniff_file,
    sniff_kind,
)

# --- sniffing ------------------------------------------------------------------------------------


def _image_bytes(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (8, 8), "red").save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("head", "kind"), [
    (b"glTF\x02\x00\x00\x00" + b"\x00" * 8, "glb"),
    (b'{"asset": {"version": "2.0"}, "scenes": []}', "gltf"),
    (b'\xef\xbb\xbf \n {"scenes": [], "asset": {"version": "2.0"}}', "gltf"),
    (b"PK\x03\x04" + b"\x00" * 26, "zip"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
])
def test_sniff_kind_recognises_each_kind_from_its_magic(head: bytes, kind: str) -> None:
    assert sniff_kind(head) == kind


@pytest.mark.parametrize("head", [
    b"", b"<html><body>502 Bad Gateway</body></html>", b'{"error": "nope"}', b"RIFF\x00\x00\x00\x00WAVE",
    b"GIF89a", b"PK\x05\x06" + b"\x00" * 18, b"gltf", b"\x89PNG",
])
def test_sniff_kind_returns_none_for_anything_else(head: bytes) -> None:
    assert sniff_kind(head) is None


def test_sniff_kind_on_real_encoder_output() -> None:
    assert sniff_kind(_image_bytes("PNG")) == "png"
    assert sniff_kind(_image_bytes("JPEG")) == "jpeg"
    assert sniff_kind(_image_bytes("WEBP")) == "webp"


def test_sniff_file_finds_asset_after_a_long_buffers_array(tmp_path: Path) -> None:
    gltf = tmp_path / "m.bin"
    gltf.write_bytes(b'{"buffers": [{"uri": "data:,' + b"A" * 20000 + b'"}], "asset": {"version": "2.0"}}')
    assert sniff_file(gltf) == "gltf"
    missing = tmp_path / "missing"
    assert sniff_file(missing) is None


# --- safe_name -----------------------------------------------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


@pytest.mark.parametrize("key", [
    "../../x", "..\\..\\x", "/etc/passwd", "C:\\Windows\\system32\\evil.dll", "C:evil.glb",
    "\\\\server\\share\\evil.glb", "//server/share/evil.glb", "images/../../../../etc/cron.d/x",
    "a\x00b.glb", "line\nbreak\r.glb", "..", ".", "", "///", "\x00", "  ", "....", "..\\", "~/x.glb",
    "https://cdn.example/a/b/%2e%2e%2f%2e%2e%2fx.glb?sig=abc", "file:///etc/passwd",
    "name\u202egpj.exe", "CON", "con.glb", "LPT1.txt", "aux", "nul.tar.gz", "COM¹.png",
])
def test_safe_name_stays_inside_dest_and_is_clean(tmp_path: Path, key: str) -> None:
    path = safe_name(key, tmp_path, kind="glb")
    assert _inside(path, tmp_path)
    assert not path.exists()
    name = path.name
    assert name.endswith(".glb")
    assert not any(ord(c) < 32 or c in '<>:"/\\|?*\u202e' for c in name)
    assert not name.startswith(".") and name.rstrip(". ") == name
    assert name.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "LPT1", "COM¹"}
    path.write_bytes(b"ok")  # the name is really creatable here
    assert path.read_bytes() == b"ok"


def test_safe_name_keeps_the_basename_of_an_ordinary_key(tmp_path: Path) -> None:
    key = "images/2025_01_15_15_00_60_001_3d_generated.jpg"
    assert safe_name(key, tmp_path, kind="jpeg").name == "2025_01_15_15_00_60_001_3d_generated.jpg"
    assert safe_name("models/thing.JPEG", tmp_path, kind="jpeg").name == "thing.jpeg"
    assert safe_name("https://h/x/y/z%20w.png?X-Amz=1", tmp_path).name == "z w.png"


def test_safe_name_takes_the_suffix_from_the_kind_when_the_key_lies(tmp_path: Path) -> None:
    assert safe_name("images/x_3d_generated.jpg", tmp_path, kind="glb").name == "x_3d_generated.glb"
    assert safe_name("images/noext", tmp_path, kind="zip").name == "noext.zip"
    assert safe_name("images/v1.2.final", tmp_path, kind="png").name == "v1.2.png"


def test_safe_name_generates_a_stable_name_when_nothing_usable_remains(tmp_path: Path) -> None:
    first = safe_name("../..", tmp_path, kind="glb")
    assert first.name.startswith("result-") and first.name.endswith(".glb")
    assert len(first.stem) == len("result-") + 12
    other = safe_name("../..", tmp_path / "other", kind="glb")
    assert other.name == first.name


def test_safe_name_is_collision_free(tmp_path: Path) -> None:
    names = []
    for _ in range(3):
        p = safe_name("images/r.glb", tmp_path, kind="glb")
        p.write_bytes(b"x")
        names.append(p.name)
    assert names == ["r.glb", "r-1.glb", "r-2.glb"]
    # a name handed out but not written yet is not handed out again (parallel downloads)
    a = safe_name("images/s.glb", tmp_path)
    b = safe_name("images/s.glb", tmp_path)
    assert a != b and not a.exists() and not b.exists()


def test_safe_name_is_collision_free_across_threads(tmp_path: Path) -> None:
    got: list[Path] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            p = safe_name("same/key.png", tmp_path, kind="png")
            with lock:
                got.append(p)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 100


def test_safe_name_caps_the_length_and_keeps_the_suffix(tmp_path: Path) -> None:
    p = safe_name("k/" + "a" * 500 + ".glb", tmp_path, kind="glb")
    assert len(p.name) <= 120 and p.name.endswith(".glb")
    wide = safe_name("k/" + "é" * 40 + "日本" * 100 + ".png", tmp_path, kind="png")
    assert len(wide.name.encode()) <= 205 and wide.name.endswith(".png")
    wide.write_bytes(b"x")
    short = safe_name("k/" + "b" * 50 + ".png", tmp_path, max_len=20)
    assert len(short.name) <= 20 and short.suffix == ".png"


def test_safe_name_refuses_a_file_as_the_folder(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ResultError) as info:
        safe_name("a.glb", f)
    assert "is a file, not a folder" in user_message(info.value)


def test_safe_name_does_not_follow_a_symlinked_name(tmp_path: Path) -> None:
    (tmp_path / "r.glb").symlink_to(tmp_path / "nowhere")  # dangling link: still taken
    assert safe_name("r.glb", tmp_path).name == "r-1.glb"


# --- safe_extract_zip ----------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_extract_zip_of_gltf_with_textures(tmp_path: Path) -> None:
    z = _zip(tmp_path / "r.zip", {"model/scene.gltf": b'{"asset":{}}', "model/tex/a.png": b"png",
                                  "model/": b""})
    out = tmp_path / "out"
    files = safe_extract_zip(z, out)
    assert files == [out / "model/scene.gltf", out / "model/tex/a.png"]
    assert (out / "model/tex/a.png").read_bytes() == b"png"
    assert _listing(out) == ["model", "model/scene.gltf", "model/tex", "model/tex/a.png"]
    assert find_model_in_dir(out) == out / "model/scene.gltf"


@pytest.mark.parametrize("name", [
    "../evil.txt", "a/../../evil.txt", "/abs/evil.txt", "C:/evil.txt", "C:evil.txt",
    "\\\\server\\share\\evil.txt", "..\\evil.txt", "ok/\x01bad.txt", "CON", "dir/aux.png",
    "stream.txt:hidden", "trailingdot.", "nul\x00byte.txt",
])
def test_extract_zip_refuses_traversal_and_unstorable_names(tmp_path: Path, name: str) -> None:
    z = tmp_path / "r.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("good.txt", b"fine")
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # bypass ZipInfo's own normalisation, as a hostile archive would
        zf.writestr(info, b"evil")
    out = tmp_path / "out"
    with pytest.raises(ResultError) as exc:
        safe_extract_zip(z, out)
    assert "refused" in user_message(exc.value)
    assert not out.exists()
    assert not (tmp_path / "evil.txt").exists()


def test_extract_zip_refuses_symlink_members(tmp_path: Path) -> None:
    z = tmp_path / "r.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ResultError, match="link"):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_zip_refuses_a_bomb_by_ratio(tmp_path: Path) -> None:
    z = _zip(tmp_path / "bomb.zip", {"a.txt": b"ok", "zeros.bin": b"\0" * (20 << 20)})
    with pytest.raises(ResultError, match="zip bomb"):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_zip_refuses_a_bomb_by_total_size(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    z = _zip(tmp_path / "big.zip", {"a.bin": data, "b.bin": data}, compression=zipfile.ZIP_STORED)
    with pytest.raises(ResultError, match="zip bomb"):
        safe_extract_zip(z, tmp_path / "out", max_total=400_000)
    assert not (tmp_path / "out").exists()
    assert len(safe_extract_zip(z, tmp_path / "ok", max_total=700_000)) == 2


def test_extract_zip_with_understated_sizes_is_refused_as_damaged(tmp_path: Path) -> None:
    z = _zip(tmp_path / "lie.zip", {"a.txt": b"hello world" * 1000})
    raw = bytearray(z.read_bytes())
    # a header that understates the size: inflation stops at the declared size and the CRC fails,
    # so a lying archive cannot smuggle more bytes than it declared past the total check
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, 10)
    z.write_bytes(bytes(raw))
    with pytest.raises(ResultError):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_zip_refuses_too_many_files(tmp_path: Path) -> None:
    z = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(30)})
    with pytest.raises(ResultError, match="30 entries"):
        safe_extract_zip(z, tmp_path / "out", max_files=20)


def test_extract_zip_refuses_duplicates_and_garbage(tmp_path: Path) -> None:
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.txt", b"1")
        zf.writestr("A.TXT", b"2")
    with pytest.raises(ResultError, match="twice"):
        safe_extract_zip(z, tmp_path / "out")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ResultError, match="not a readable zip"):
        safe_extract_zip(junk, tmp_path / "out2")


def test_extract_zip_corrupt_member_leaves_nothing(tmp_path: Path) -> None:
    z = _zip(tmp_path / "c.zip", {"first.txt": b"a" * 5000, "second.txt": os.urandom(5000)})
    raw = bytearray(z.read_bytes())
    pos = raw.find(b"second.txt") + len(b"second.txt") + 100
    raw[pos:pos + 50] = b"\x00" * 50  # damage second member's data: CRC fails while inflating
    z.write_bytes(bytes(raw))
    out = tmp_path / "out"
    with pytest.raises(ResultError, match="damaged"):
        safe_extract_zip(z, out)
    assert not out.exists()


def test_extract_zip_replaces_existing_files_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"old")
    bad = _zip(tmp_path / "bad.zip", {"a.txt": b"new", "../x": b""})
    with pytest.raises(ResultError):
        safe_extract_zip(bad, out)
    assert (out / "a.txt").read_bytes() == b"old"
    safe_extract_zip(_zip(tmp_path / "good.zip", {"a.txt": b"new"}), out)
    assert (out / "a.txt").read_bytes() == b"new"
    assert _listing(out) == ["a.txt"]


def test_extract_zip_does_not_write_through_an_existing_symlinked_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    z = _zip(tmp_path / "z.zip", {"sub/evil.txt": b"x"})
    with pytest.raises(ResultError, match="outside"):
        safe_extract_zip(z, out)
    assert list(elsewhere.iterdir()) == []


def test_find_model_in_dir_prefers_glb_then_gltf_then_obj(tmp_path: Path) -> None:
    assert find_model_in_dir(tmp_path) is None
    (tmp_path / "deep" / "deeper").mkdir(parents=True)
    (tmp_path / "mesh.stl").write_bytes(b"x")
    assert find_model_in_dir(tmp_path) == tmp_path / "mesh.stl"
    (tmp_path / "deep" / "m.OBJ").write_bytes(b"x")
    assert find_model_in_dir(tmp_path) == tmp_path / "deep" / "m.OBJ"
    (tmp_path / "deep" / "deeper" / "m.gltf").write_bytes(b"x")
    assert find_model_in_dir(tmp_path) == tmp_path / "deep" / "deeper" / "m.gltf"
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "m.glb").write_bytes(b"x")
    (tmp_path / "._m.glb").write_bytes(b"x")
    assert find_model_in_dir(tmp_path) == tmp_path / "deep" / "deeper" / "m.gltf"
    (tmp_path / "deep" / "z.glb").write_bytes(b"x")
    (tmp_path / "deep" / "a.glb").write_bytes(b"x")
    assert find_model_in_dir(tmp_path) == tmp_path / "deep" / "a.glb"


# --- is_greyscale --------------------------------------------------------------------------------


def _gradient(mode: str, size: tuple[int, int] = (600, 400)) -> Image.Image:
    grey = Image.linear_gradient("L").resize(size)
    return grey.convert(mode)


def test_is_greyscale_true_for_grey_images_in_any_container(tmp_path: Path) -> None:
    for name, img in {
        "l.png": _gradient("L"),
        "rgb.png": _gradient("RGB"),
        "rgba.png": _gradient("RGBA"),
        "rgb.jpg": _gradient("RGB"),
        "rgb.webp": _gradient("RGB"),
        "i16.png": _gradient("L").convert("I;16"),
    }.items():
        path = tmp_path / name
        img.save(path, quality=85) if name.endswith((".jpg", ".webp")) else img.save(path)
        assert is_greyscale(path), name


def test_is_greyscale_false_for_colour_images(tmp_path: Path) -> None:
    photo = _gradient("RGB")
    photo.paste((200, 40, 40), (0, 0, 300, 200))
    for suffix in (".png", ".jpg"):
        path = tmp_path / f"c{suffix}"
        photo.save(path)
        assert not is_greyscale(path)
    faint = Image.new("RGB", (512, 512), (120, 126, 120))
    faint.save(tmp_path / "faint.png")
    assert not is_greyscale(tmp_path / "faint.png", tolerance=3)
    assert is_greyscale(tmp_path / "faint.png", tolerance=8)


def test_is_greyscale_tolerates_jpeg_noise_but_not_a_colour_patch(tmp_path: Path) -> None:
    img = _gradient("RGB", (2048, 2048))
    img.save(tmp_path / "g.jpg", quality=70)
    assert is_greyscale(tmp_path / "g.jpg")
    img.paste((0, 0, 255), (0, 0, 200, 200))  # ~1% of the picture
    img.save(tmp_path / "patch.jpg", quality=70)
    assert not is_greyscale(tmp_path / "patch.jpg")


def test_is_greyscale_of_a_non_image_raises_result_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ResultError, match="cannot be read"):
        is_greyscale(bad)


def test_module_constants_match_the_contract() -> None:
    assert results.KINDS == ("glb", "gltf", "png", "jpeg", "webp", "zip")
    assert results.MODEL_KINDS == {"glb", "gltf", "zip"}
