"""images.prepare: what is uploaded untouched, what is converted and how, and every refusal's message."""

from __future__ import annotations

import contextlib
import io
import os
import random
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from onemin3d_addon.core import images
from onemin3d_addon.core.errors import ImageError, user_message
from onemin3d_addon.core.images import MIN_SIDE, image_size, prepare


def photo(size: tuple[int, int] = (640, 520), mode: str = "RGB") -> Image.Image:
    """A photo-like picture with a red top-left corner, so orientation can be checked."""
    w, h = size
    img = Image.merge("RGB", (
        Image.linear_gradient("L").resize((w, h)),
        Image.linear_gradient("L").rotate(90).resize((w, h)),
        Image.new("L", (w, h), 90),
    ))
    img.paste((255, 0, 0), (0, 0, max(w // 8, 1), max(h // 8, 1)))
    return img if mode == "RGB" else img.convert(mode)


def save(img: Image.Image, path: Path, **params: object) -> Path:
    img.save(path, **params)
    return path


def refusal(path: object, **kw: object) -> str:
    with pytest.raises(ImageError) as info:
        prepare(path, **kw)  # type: ignore[arg-type]
    message = user_message(info.value)
    assert message.endswith(".") and ":" in message  # one sentence: the problem, then the fix
    return message


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def red_corner(img: Image.Image) -> str:
    """Which corner of `img` is red: tl, tr, bl or br."""
    rgb = img.convert("RGB")
    w, h = rgb.size
    corners = {"tl": (2, 2), "tr": (w - 3, 2), "bl": (2, h - 3), "br": (w - 3, h - 3)}
    reds = [name for name, xy in corners.items() if _is_red(rgb.getpixel(xy))]
    assert len(reds) == 1, reds
    return reds[0]


def _is_red(px: object) -> bool:
    assert isinstance(px, tuple)
    r, g, b = px[:3]
    return bool(r > 200 and g < 60 and b < 60)


# --- untouched ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "mode", "params", "mime"), [
    ("a.jpg", "RGB", {"quality": 90}, "image/jpeg"),
    ("grey.jpg", "L", {}, "image/jpeg"),
    ("prog.jpg", "RGB", {"progressive": True, "quality": 80}, "image/jpeg"),
    ("a.png", "RGB", {}, "image/png"),
    ("alpha.png", "RGBA", {}, "image/png"),
    ("grey.png", "L", {}, "image/png"),
    ("a.webp", "RGB", {"quality": 80}, "image/webp"),
    ("alpha.webp", "RGBA", {"lossless": True}, "image/webp"),
])
def test_a_fine_file_is_returned_untouched(tmp_path: Path, work: Path, name: str, mode: str,
                                           params: dict[str, object], mime: str) -> None:
    src = save(photo((700, 600), mode), tmp_path / name, **params)
    before = src.read_bytes()
    result = prepare(src, work_dir=work)
    assert result.path == src and not result.converted
    assert (result.width, result.height, result.mime) == (700, 600, mime)
    assert src.read_bytes() == before
    assert not work.exists()


def test_exact_limits_are_fine(tmp_path: Path) -> None:
    for size in ((512, 512), (2048, 512), (512, 2048)):
        src = save(photo(size), tmp_path / f"{size[0]}x{size[1]}.jpg")
        assert not prepare(src).converted


def test_trailing_bytes_after_a_jpeg_are_harmless(tmp_path: Path) -> None:
    src = save(photo(), tmp_path / "a.jpg")
    with open(src, "ab") as fh:
        fh.write(b"\x00" * 100 + b"samsung trailer")
    assert not prepare(src).converted


def test_paths_with_spaces_unicode_and_non_utf8_bytes(tmp_path: Path, work: Path) -> None:
    folder = tmp_path / "my photos ü 写真"
    folder.mkdir()
    src = save(photo(), folder / "chaise longue é 椅子.jpg")
    assert prepare(src).path == src
    big = save(photo((2500, 1000)), folder / "grand canapé 沙发.png")
    out = prepare(big, work_dir=work)
    assert out.converted and out.path.name == "grand canapé 沙发.jpg"
    raw = os.fsencode(tmp_path) + b"/latin1-\xe9t\xe9.jpg"
    save(photo(), Path(os.fsdecode(raw)))
    assert not prepare(raw).converted  # type: ignore[arg-type]


def test_a_symlink_to_an_image_is_followed(tmp_path: Path) -> None:
    src = save(photo(), tmp_path / "a.jpg")
    link = tmp_path / "link.jpg"
    link.symlink_to(src)
    result = prepare(link)
    assert result.path == link and not result.converted


# --- converted ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("orientation", "corner", "size"), [
    (1, "tl", (640, 520)), (2, "tr", (640, 520)), (3, "br", (640, 520)), (6, "tr", (520, 640)),
    (8, "bl", (520, 640)),
])
def test_exif_orientation_is_applied(tmp_path: Path, work: Path, orientation: int, corner: str,
                                     size: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    src = save(photo((640, 520)), tmp_path / "o.jpg", exif=exif, quality=95)
    result = prepare(src, work_dir=work)
    assert result.converted == (orientation != 1)
    with Image.open(result.path) as out:
        assert out.size == size == (result.width, result.height)
        assert red_corner(out) == corner
        assert out.getexif().get(0x0112, 1) == 1
    assert image_size(src) == (640, 520)
    assert image_size(src, oriented=True) == size


def test_png_exif_rotation_is_seen_before_and_after_the_pixels(tmp_path: Path, work: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    early = save(photo(), tmp_path / "early.png", exif=exif)
    result = prepare(early, work_dir=work)
    assert result.converted and (result.width, result.height) == (520, 640)
    # a late eXIf chunk (after IDAT, before IEND) is legal PNG and only a full read finds it
    plain = save(photo(), tmp_path / "plain.png").read_bytes()
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    late = tmp_path / "late.png"
    late.write_bytes(plain[:-12] + chunk + plain[-12:])
    result = prepare(late, work_dir=work)
    assert result.converted and (result.width, result.height) == (520, 640)
    with Image.open(result.path) as out:
        assert out.size == (520, 640) and red_corner(out) == "tr"


def test_cmyk_jpeg_becomes_rgb_jpeg(tmp_path: Path, work: Path) -> None:
    src = save(photo(mode="CMYK"), tmp_path / "print.jpg", quality=95)
    result = prepare(src, work_dir=work)
    assert result.converted and result.mime == "image/jpeg" and result.path.suffix == ".jpg"
    with Image.open(result.path) as out:
        assert out.mode == "RGB" and red_corner(out) == "tl"


def test_16bit_grey_png_keeps_its_full_tonal_range(tmp_path: Path, work: Path) -> None:
    depth = Image.linear_gradient("L").resize((600, 600)).convert("I")
    depth = depth.point(lambda v: v * 257).convert("I;16")
    src = save(depth, tmp_path / "depth16.png")
    result = prepare(src, work_dir=work)
    assert result.converted and result.mime == "image/png"
    with Image.open(result.path) as out:
        assert out.mode == "L"
        lo, hi = out.getextrema()
        assert lo <= 2 and hi >= 253  # not clipped to white, not crushed to black


def _png16_rgb(path: Path, w: int = 600, h: int = 600) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"".join(struct.pack(">HHH", x * 100, 30000, 65535 - x * 100) for x in range(w))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))
    return path


def test_16bit_colour_png_is_converted_although_pillow_reads_it_as_rgb(tmp_path: Path, work: Path) -> None:
    src = _png16_rgb(tmp_path / "deep.png")
    with Image.open(src) as img:
        assert img.mode == "RGB"  # what makes a header-only check necessary
    result = prepare(src, work_dir=work)
    assert result.converted
    with Image.open(result.path) as out:
        assert out.size == (600, 600) and out.mode == "RGB"


def test_palette_gif_becomes_png_with_alpha_when_transparent(tmp_path: Path, work: Path) -> None:
    opaque = save(photo().convert("P"), tmp_path / "a.gif")
    result = prepare(opaque, work_dir=work)
    assert result.mime == "image/png"
    with Image.open(result.path) as out:
        assert out.mode == "RGB" and red_corner(out) == "tl"
    clear = photo().convert("P")
    clear.info["transparency"] = clear.getpixel((600, 500))
    src = save(clear, tmp_path / "t.gif", transparency=clear.info["transparency"])
    with Image.open(prepare(src, work_dir=work).path) as out:
        assert out.mode == "RGBA" and out.getextrema()[3][0] == 0


def test_animated_gif_uses_its_first_frame(tmp_path: Path, work: Path) -> None:
    frames = [photo(), Image.new("RGB", (640, 520), "blue")]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(prepare(src, work_dir=work).path) as out:
        assert red_corner(out) == "tl"


@pytest.mark.parametrize(("name", "mode", "mime"), [
    ("a.tif", "RGB", "image/jpeg"), ("a.bmp", "RGB", "image/jpeg"), ("a.tga", "RGB", "image/jpeg"),
    ("alpha.tif", "RGBA", "image/png"), ("grey.tif", "L", "image/png"), ("la.png", "LA", "image/png"),
    ("p.png", "P", "image/png"), ("bw.png", "1", "image/png"),
])
def test_formats_the_service_does_not_take_are_converted(tmp_path: Path, work: Path, name: str, mode: str,
                                                         mime: str) -> None:
    img = photo(mode="RGBA" if mode == "LA" else mode)
    if mode in ("RGBA", "LA"):
        img.putalpha(Image.linear_gradient("L").resize(img.size))
        img = img.convert(mode)
    src = save(img, tmp_path / name)
    result = prepare(src, work_dir=work)
    assert result.converted and result.mime == mime
    assert result.path.parent == work and result.path.suffix == (".png" if mime == "image/png" else ".jpg")
    with Image.open(result.path) as out:
        assert out.size == (640, 520)
        assert out.mode in ("RGB", "RGBA", "L")
        assert out.format == ("PNG" if mime == "image/png" else "JPEG")


def test_opaque_alpha_is_dropped(tmp_path: Path, work: Path) -> None:
    src = save(photo((3000, 1500), "RGBA"), tmp_path / "opaque.png")
    result = prepare(src, work_dir=work)
    assert result.mime == "image/jpeg" and (result.width, result.height) == (2048, 1024)


def test_oversize_images_are_downscaled_to_max_side(tmp_path: Path, work: Path) -> None:
    src = save(photo((4000, 3000)), tmp_path / "big.jpg", quality=90)
    result = prepare(src, work_dir=work)
    assert result.converted and (result.width, result.height) == (2048, 1536)
    with Image.open(result.path) as out:
        assert out.size == (2048, 1536) and out.format == "JPEG" and red_corner(out) == "tl"
    small = prepare(src, max_side=1024, work_dir=work)
    assert (small.width, small.height) == (1024, 768) and small.path != result.path
    with pytest.raises(ValueError):
        prepare(src, max_side=100)


def test_jpeg_downscale_decodes_at_reduced_scale(tmp_path: Path, work: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = save(photo((4200, 4200)), tmp_path / "huge.jpg")
    scales: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        scales.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    result = prepare(src, work_dir=work)
    assert (result.width, result.height) == (2048, 2048)
    assert scales and scales[0] == (2100, 2100)  # libjpeg decoded at 1/2 scale, not 4200²


def test_too_small_is_refused_with_the_minimum(tmp_path: Path) -> None:
    src = save(photo((100, 100)), tmp_path / "tiny.png")
    assert refusal(src) == ("The image is 100×100 pixels; 1min.ai needs at least 512×512: choose a larger "
                            "image or enable 'Allow upscaling'.")
    assert "300×600" in refusal(save(photo((300, 600)), tmp_path / "narrow.jpg"))


def test_allow_upscale_scales_the_short_side_to_512(tmp_path: Path, work: Path) -> None:
    result = prepare(save(photo((300, 600)), tmp_path / "s.jpg"), allow_upscale=True, work_dir=work)
    assert result.converted and (result.width, result.height) == (512, 1024)
    with Image.open(result.path) as out:
        assert out.size == (512, 1024) and red_corner(out) == "tl"
    one = prepare(save(Image.new("RGB", (1, 1), "white"), tmp_path / "1.png"), allow_upscale=True,
                  work_dir=work)
    assert (one.width, one.height) == (MIN_SIDE, MIN_SIDE)


def test_too_long_and_narrow_is_refused_even_with_upscaling(tmp_path: Path) -> None:
    src = save(Image.new("RGB", (30000, 10), "white"), tmp_path / "strip.png")
    for allow in (False, True):
        msg = refusal(src, allow_upscale=allow)
        assert "30000×10" in msg and "crop it closer to square" in msg
    assert "4000×900" in refusal(save(Image.new("RGB", (4000, 900)), tmp_path / "pano.jpg"))


def test_converted_names_never_collide(tmp_path: Path, work: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = prepare(save(photo(), tmp_path / "a" / "x.tif"), work_dir=work)
    two = prepare(save(photo(), tmp_path / "b" / "x.tif"), work_dir=work)
    assert one.path != two.path and one.path.exists() and two.path.exists()


def test_default_work_dir_is_a_fresh_temp_folder(tmp_path: Path) -> None:
    result = prepare(save(photo(), tmp_path / "x.bmp"))
    try:
        assert result.path.parent.parent == Path(tempfile.gettempdir())
        assert result.path.parent.name.startswith("onemin3d-img-")
    finally:
        result.path.unlink()
        result.path.parent.rmdir()


# --- refused -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in refusal(tmp_path / "nope.jpg")
    link = tmp_path / "dangling.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    assert "broken link" in refusal(link)


def test_folder_is_refused(tmp_path: Path) -> None:
    assert "is a folder, not an image: choose an image file inside it" in refusal(tmp_path)


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert "not a regular file" in refusal(fifo)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.touch()
    assert "is empty (0 bytes)" in refusal(empty)


@pytest.mark.parametrize("blob", [
    b"not an image at all", bytes(random.Random(7).getrandbits(8) for _ in range(5000)),
    b"\xff\xd8\xff" + b"\x00" * 100, b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, b"RIFF\x00\x00\x00\x00WEBP",
    b"<html>502 Bad Gateway</html>",
])
def test_corrupt_bytes_get_a_clear_error(tmp_path: Path, blob: bytes) -> None:
    src = tmp_path / "bad.jpg"
    src.write_bytes(blob)
    msg = refusal(src)
    assert "bad.jpg" in msg and ("not an image" in msg or "damaged or truncated" in msg)


@pytest.mark.parametrize(("name", "size", "params"), [
    ("t.jpg", (700, 600), {"quality": 90}),              # would be uploaded untouched
    ("t_prog.jpg", (700, 600), {"progressive": True}),
    ("t_big.jpg", (2500, 1000), {"quality": 90}),        # would be downscaled
    ("t.png", (700, 600), {}),
    ("t_big.png", (2500, 1000), {}),
    ("t.webp", (700, 600), {}),
    ("t.tif", (700, 600), {}),
])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.995])
def test_truncated_files_are_refused(tmp_path: Path, name: str, size: tuple[int, int],
                                     params: dict[str, object], keep: float) -> None:
    data = _encoded(photo(size), name, params)
    src = tmp_path / name
    src.write_bytes(data[: int(len(data) * keep)])
    assert "damaged or truncated" in refusal(src)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _encoded(img: Image.Image, name: str, params: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF"}[Path(name).suffix]
    img.save(buf, fmt, **params)
    return buf.getvalue()


def test_garbage_inside_a_jpeg_is_refused(tmp_path: Path) -> None:
    data = bytearray(_encoded(photo((700, 600)), "x.jpg", {"quality": 95}))
    noise = random.Random(3)
    mid = len(data) // 2
    data[mid:mid + 2000] = bytes(noise.getrandbits(8) for _ in range(2000))
    src = tmp_path / "garbled.jpg"
    src.write_bytes(bytes(data))
    assert "damaged or truncated" in refusal(src)


def test_png_with_a_broken_chunk_is_refused(tmp_path: Path) -> None:
    data = bytearray(_encoded(photo((700, 600)), "x.png", {}))
    data[len(data) // 2] ^= 0xFF
    src = tmp_path / "flip.png"
    src.write_bytes(bytes(data))
    assert "CRC mismatch" in refusal(src)


def test_decompression_bomb_header_is_refused(tmp_path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    assert "decompression bomb" in refusal(bomb)
    with pytest.raises(ImageError, match="decompression bomb"):
        image_size(bomb)


def test_pixel_limit_between_pillows_warning_and_error_is_refused(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = save(photo((1200, 1000)), tmp_path / "big.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # 1.2 Mpx: Pillow itself only warns
    with pytest.warns(Image.DecompressionBombWarning):
        assert "more than 1,000,000 pixels" in refusal(src)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500_000)  # > 2×: Pillow raises
    assert "decompression bomb" in refusal(src)


@contextlib.contextmanager
def _as_user(uid: int) -> Iterator[None]:
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="onemin3d-perm-"))
    try:
        folder.chmod(0o755)
        src = save(photo(), folder / "secret.jpg")
        src.chmod(0o000)
        hidden = folder / "closed"
        hidden.mkdir(mode=0o700)
        inner = save(photo(), hidden / "inner.jpg")
        if os.geteuid() != 0:
            assert "permission denied" in refusal(src)
            return
        # root reads anything; drop to "nobody" for the check, as a normal user would meet it
        with _as_user(65534):
            msg = refusal(src)
            msg_inner = refusal(inner)
        assert "cannot be read (permission denied): allow reading it" in msg
        assert "permission denied" in msg_inner
    finally:
        for p in sorted(folder.rglob("*"), reverse=True):
            p.chmod(0o700)
            p.unlink() if p.is_file() else p.rmdir()
        folder.rmdir()


def test_image_size_reads_only_the_header(tmp_path: Path) -> None:
    src = save(photo((1234, 567)), tmp_path / "a.jpg")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 3])  # the pixels are gone; the header is enough
    assert image_size(src) == (1234, 567)
    with pytest.raises(ImageError, match="not an image"):
        image_size(save_bytes(tmp_path / "x.jpg", b"hello"))
    with pytest.raises(ImageError, match="does not exist"):
        image_size(tmp_path / "missing.png")


def save_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_constants_match_the_contract() -> None:
    assert images.MIN_SIDE == 512
    assert prepare.__defaults__ == (2048, False)
