"""bpy-free: turn a user's image file into one 1min.ai accepts (JPEG/PNG/WebP, 512..2048 px), re-encoding only when needed; the one reader of image headers and EXIF orientation.

`prepare()` is the only door to the upload: it checks the file, decodes it safely (Pillow's
decompression-bomb guard stays on and truncated files are refused, never padded), applies the
EXIF orientation, converts what the service does not take, and scales into range. A file that is
already fine is returned as it is, so the user's bytes are uploaded untouched and nothing is
re-encoded.

`image_info()` (and `exif_orientation()` for an image already open) is the one place that says
how big an image is as stored, as Blender shows it (Blender ignores EXIF orientation), and how
its EXIF turns it upright, as `prepare()` sends it and a photo viewer shows it, without decoding
a pixel: the scene builders size and map their planes and reliefs from it, so the upload, the
depth map that comes back and the texture in Blender agree for every format and orientation.

`IMAGE_SUFFIXES` are the photos the add-on offers to send, everywhere (file browser, panel, drop,
command line). Pillow is imported on first use: registering the add-on does not load it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import stat
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from . import options
from .errors import ImageError, ImportFailed, advised, get_logger

if TYPE_CHECKING:
    from PIL import Image, ImageFile

log = get_logger(__name__)

MIN_SIDE = 512
DEFAULT_MAX_SIDE = 2048
JPEG_QUALITY = 95
#: a file above this is re-encoded even when its pixels are fine (huge metadata, odd encoders);
#: 1min.ai refuses uploads over 50 MB with a 413.
PASSTHROUGH_MAX_BYTES = 20 * 1024 * 1024

#: The photo files the add-on offers to send: one list, declared in core/options.py.
IMAGE_SUFFIXES: Final = options.IMAGE_SUFFIXES

_MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_PASSTHROUGH_MODES = {"JPEG": {"RGB", "L"}, "MPO": {"RGB", "L"}, "PNG": {"RGB", "RGBA", "L"},
                      "WEBP": {"RGB", "RGBA"}}
_LOSSY = {"JPEG", "MPO", "WEBP"}
_EXIF_ORIENTATION = 0x0112
_SWAPPING = (5, 6, 7, 8)  # the EXIF orientations that turn by 90°: width and height trade places
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
_MAX_PNG_CHUNKS = 1 << 16  # a walk of chunk headers for a late eXIf stops here (no PNG has so many)


@functools.cache
def decode_errors() -> tuple[type[BaseException], ...]:
    """What Pillow's decoders raise on hostile or broken input. Pillow documents OSError
    (UnidentifiedImageError, "image file is truncated") and DecompressionBombError; its own
    fuzzers also meet the rest on crafted headers. MemoryError is a crafted header within the
    pixel limit."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, KeyError,
            ZeroDivisionError, NotImplementedError, MemoryError, Image.DecompressionBombError)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PreparedImage:
    """The file to upload and what it is."""

    path: Path        # the original when it was already fine, else a new file in work_dir
    width: int
    height: int
    mime: str         # image/jpeg | image/png | image/webp
    converted: bool   # True when re-encoded (then `path` is in a temp dir the caller may delete)


def prepare(path: PathLike, max_side: int = DEFAULT_MAX_SIDE, allow_upscale: bool = False, *,
            work_dir: Path | None = None) -> PreparedImage:
    """The image at `path`, ready for upload: untouched when it already fits, else re-encoded into `work_dir`.

    Untouched means: JPEG, PNG or WebP; 8-bit RGB, RGBA or grey (RGB/RGBA for WebP); no EXIF
    rotation pending; not animated; both sides within MIN_SIDE..max_side; under 20 MB; and whole
    to its end, checked by a walk of its structure (JPEG segments to EOI, PNG chunk CRCs to IEND,
    WebP RIFF sizes), and decodable (one decode, JPEG at 1/8 scale: the walk cannot see damage
    inside the compressed data).

    Anything else is decoded once (JPEG at reduced scale via `draft()` when it will be shrunk),
    turned upright, converted, scaled with Lanczos, and written as:
    PNG when it has alpha, came from a palette/bilevel source (graphics), or is grey from a
    lossless source (likely depth-like data); JPEG quality 95 (4:4:4) for opaque colour images
    and for anything that was lossy already. The EXIF block is not copied (the rotation
    is applied, and the location of a photo has no business at the service).

    ImageError, with the fix in the message, when the file is missing, a folder, unreadable,
    empty, not an image, truncated or corrupt, a decompression bomb, smaller than 512×512
    without `allow_upscale`, or too long and narrow to fit both limits.
    """
    from PIL import Image, UnidentifiedImageError

    if max_side < MIN_SIDE:
        raise ValueError(f"max_side must be at least {MIN_SIDE}, not {max_side}")
    src = Path(os.fsdecode(path))
    size_bytes = _check_file(src)
    name = src.name
    with contextlib.ExitStack() as stack:
        try:
            img = stack.enter_context(open_image(src))
        except Image.DecompressionBombError as exc:
            raise _bomb(name) from exc
        except PermissionError as exc:
            raise _unreadable(src) from exc
        except UnidentifiedImageError as exc:
            raise ImageError(f"'{name}' is not an image this add-on can read: save it as JPEG or PNG "
                             "and choose that file.") from exc
        except decode_errors() as exc:
            raise _corrupt(name, exc) from exc
        info = _header(img, src)
        if info.width * info.height > (Image.MAX_IMAGE_PIXELS or math.inf):
            # Pillow only warns between 1× and 2× its limit; a warning filter is process-global
            # and not thread-safe, so the limit is enforced here instead.
            raise _bomb(name)
        w, h = info.upright_size
        target = _target_size(name, w, h, max_side, allow_upscale)
        fmt = info.format
        if (target == (w, h) and info.orientation == 1 and fmt in _PASSTHROUGH_MODES
                and img.mode in _PASSTHROUGH_MODES[fmt] and (fmt == "MPO" or not getattr(img, "is_animated", False))
                and size_bytes <= PASSTHROUGH_MAX_BYTES):
            if _walk_container(src, name, fmt) and _decodes(img, name, fmt):
                return PreparedImage(src, w, h, _MIME[fmt], converted=False)
        out, size, mime = _convert(img, info, src, name, target, work_dir)
        return PreparedImage(out, size[0], size[1], mime, converted=True)


@contextlib.contextmanager
def open_image(path: PathLike) -> Iterator[ImageFile.ImageFile]:
    """`PIL.Image.open(path)`, through a file object: how the add-on opens every image it decodes.

    Pillow 13 reads an uncompressed TIFF (grey, RGBA, 16-bit, palette, CMYK) whose EXIF turns it
    by 90° through a memory map with the turned row length, which garbles its pixels; from a file
    object it decodes them normally (and turns them upright itself, as it does every TIFF).
    """
    from PIL import Image

    with open(os.fsdecode(path), "rb") as fh, Image.open(fh) as img:
        yield img


@contextlib.contextmanager
def upright(path: PathLike, what: str, fix: str) -> Iterator[Image.Image]:
    """The image at `path` turned upright by its EXIF orientation, for an import to read: a missing,
    damaged or too large file (found while opening it or while its pixels are read inside the
    block) is an ImportFailed naming `what` ("depth map", "photo"), a damaged one ending with `fix`."""
    from PIL import Image, ImageOps

    try:
        with open_image(path) as src:
            yield ImageOps.exif_transpose(src) if exif_orientation(src, path) != 1 else src
    except FileNotFoundError as exc:
        raise ImportFailed(f"The {what} '{Path(path).name}' was not found: check that the file still exists.") \
            from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImportFailed(f"The {what} '{Path(path).name}' cannot be read ({_short(exc)}): it may be damaged, "
                           f"so {fix}.") from exc


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says; no pixel is decoded."""

    width: int          # as stored: as Blender shows the file (Blender ignores EXIF orientation)
    height: int
    has_alpha: bool
    orientation: int    # EXIF orientation 1..8; 1 when there is none or it is broken
    format: str         # Pillow's name of the format: JPEG, PNG, TIFF, WEBP, ...

    @property
    def upright_size(self) -> tuple[int, int]:
        """The size as a photo viewer shows it, and `prepare()` sends it (EXIF rotation applied)."""
        return (self.height, self.width) if self.orientation in _SWAPPING else (self.width, self.height)


def image_info(path: PathLike) -> ImageInfo:
    """Stored size, alpha, EXIF orientation and format of the image at `path`, from its header only.

    ImageError, with the fix in the message, when the file is missing, unreadable, not an image
    or claims more pixels than the decompression-bomb limit.
    """
    from PIL import Image

    src = Path(os.fsdecode(path))
    _check_file(src)
    try:
        with open_image(src) as img:
            info = _header(img, src)
    except Image.DecompressionBombError as exc:
        raise _bomb(src.name) from exc
    except PermissionError as exc:
        raise _unreadable(src) from exc
    except decode_errors() as exc:
        raise ImageError(f"'{src.name}' is not an image this add-on can read ({_short(exc)}): "
                         "choose a JPEG, PNG or WebP file.") from exc
    if info.width <= 0 or info.height <= 0:
        raise ImageError(f"'{src.name}' is an empty image (no pixels): choose another image.")
    return info


def image_size(path: PathLike, *, oriented: bool = False) -> tuple[int, int]:
    """(width, height) read from the file header only, without decoding pixels.

    The stored size by default, as Blender shows the file (Blender ignores EXIF orientation);
    with `oriented=True` the size after the EXIF rotation, as `prepare()` sends it.
    """
    info = image_info(path)
    return info.upright_size if oriented else (info.width, info.height)


def exif_orientation(img: Image.Image, path: PathLike | None = None) -> int:
    """The EXIF orientation (1..8) of an opened image, known without decoding a pixel: the one
    EXIF reader of the add-on (`image_info`, `prepare` and the depth map's reader use it).

    JPEG, WebP, TIFF and the rest: Pillow's `getexif()`, which reads the header only (and, as
    `ImageOps.exif_transpose` does, an XMP orientation when EXIF has none). PNG: the eXIf chunk
    before the pixels, else, given `path`, one after them, found by a walk of the chunk headers
    (Pillow's own `getexif()` would decode the whole image to look there). A broken EXIF block
    counts as 1: the pixels are shown as stored rather than refused.
    """
    from PIL import Image

    try:
        if img.format == "PNG":
            raw = img.info.get("exif")
            if not isinstance(raw, bytes) and path is not None:
                raw = _late_png_exif(Path(os.fsdecode(path)))
            if not isinstance(raw, bytes):
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = img.getexif()
        value = exif.get(_EXIF_ORIENTATION, 1)
    except decode_errors():
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _header(img: Image.Image, src: Path) -> ImageInfo:
    orientation = exif_orientation(img, src)
    width, height = _stored_size(img, orientation)
    alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
    return ImageInfo(width, height, alpha, orientation, img.format or "")


def _stored_size(img: Image.Image, orientation: int) -> tuple[int, int]:
    """The size as the file stores it. Pillow (11 and later) reports a TIFF that its EXIF turns
    by 90° as upright already, and turns its pixels while loading them; Blender shows the TIFF as
    stored, like every other format, so the stored size comes from the TIFF's own tags."""
    w, h = img.size
    if img.format == "TIFF" and orientation in _SWAPPING:
        tags: Any = getattr(img, "tag_v2", None)
        stored = (tags.get(256), tags.get(257)) if tags is not None else (None, None)  # ImageWidth, ImageLength
        if stored == (h, w):
            return h, w
    return w, h


def _late_png_exif(src: Path) -> bytes | None:
    """The body of a PNG's eXIf chunk wherever it is, from a walk of the chunk headers (a seek
    past each body: about a millisecond for a large PNG); None when there is none."""
    try:
        with open(src, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            for _ in range(_MAX_PNG_CHUNKS):
                head = fh.read(8)
                if len(head) < 8:
                    return None
                length, ctype = struct.unpack(">I4s", head)
                if ctype == b"eXIf":
                    body = fh.read(length)
                    return body if len(body) == length else None
                if ctype == b"IEND":
                    return None
                fh.seek(length + 4, os.SEEK_CUR)
    except OSError:
        return None
    return None


# --- checks ----------------------------------------------------------------------------------------


def _check_file(src: Path) -> int:
    """Size in bytes of the regular, readable, non-empty file `src`; ImageError otherwise."""
    try:
        st = src.stat()  # follows symlinks: a link to a good image is fine
    except FileNotFoundError as exc:
        hint = " (it is a broken link)" if src.is_symlink() else ""
        raise ImageError(f"The image file '{src}' does not exist{hint}: check the path, or choose "
                         "the image again.") from exc
    except PermissionError as exc:
        raise _unreadable(src) from exc
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, embedded NUL...
        raise ImageError(f"The image path '{src}' cannot be used ({_short(exc)}): choose the image "
                         "again from its folder.") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"'{src}' is a folder, not an image: choose an image file inside it.")
    if not stat.S_ISREG(st.st_mode):
        # a FIFO or device would block or never end; refuse before opening it
        raise ImageError(f"'{src}' is not a regular file: choose a JPEG, PNG or WebP image file.")
    if st.st_size == 0:
        raise ImageError(f"The image file '{src.name}' is empty (0 bytes): choose another image, "
                         "or save this one again.")
    if not os.access(src, os.R_OK):
        raise _unreadable(src)
    return st.st_size


def _unreadable(src: Path) -> ImageError:
    return ImageError(f"The image file '{src}' cannot be read (permission denied): allow reading it, "
                      "or copy it somewhere you can read.")


def _bomb(name: str) -> ImageError:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS or 0
    return ImageError(f"'{name}' claims more than {limit:,} pixels, so it was refused as a possible "
                      "decompression bomb: scale it down to at most 2048 px in an image editor first.")


def _corrupt(name: str, exc: BaseException) -> ImageError:
    return ImageError(f"'{name}' is damaged or truncated ({_short(exc)}): open and re-save it in an "
                      "image editor, or choose another image.")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 100 else text[:99] + "…"


def _walk_container(src: Path, name: str, fmt: str) -> bool:
    """Check the file's structure to its end: True if it may be uploaded as it is.

    ImageError when it is truncated or damaged; False when it is intact but must be converted
    all the same (16-bit PNG, an eXIf rotation after the pixels, an exotic JPEG coding).
    A structural walk reads the bytes once in C-speed searches: a 2048² JPEG costs about 1 ms,
    against about 15 ms for a 1/8-scale decode and 25 ms for a full one. It catches what actually
    happens to files (cut-off copies and downloads, garbage, broken chunks); it cannot see a bit
    flip inside compressed data, which the decoders themselves mostly only warn about.
    """
    try:
        with open(src, "rb", buffering=0) as fh:
            data = fh.read()
    except PermissionError as exc:
        raise _unreadable(src) from exc
    except OSError as exc:
        raise _corrupt(name, exc) from exc
    try:
        if fmt == "PNG":
            return _walk_png(data)
        if fmt in ("JPEG", "MPO"):
            return _walk_jpeg(data)
        return _walk_riff(data)
    except _Damaged as exc:
        raise _corrupt(name, exc) from exc


def _decodes(img: ImageFile.ImageFile, name: str, fmt: str) -> bool:
    """Decode the pixels once (JPEG at 1/8 scale) before the user's bytes are sent untouched.

    The structural walk cannot see damage inside the compressed data (a PNG whose IDAT is not a
    whole zlib stream, a JPEG with a broken Huffman table): such a file would be uploaded, and
    paid for, as it is. The decode costs about 9 ms for a 2048² JPEG and 40 ms for a PNG or
    WebP, on the worker thread; ImageError when it fails.
    """
    try:
        if fmt in ("JPEG", "MPO"):
            img.draft(img.mode if img.mode in ("RGB", "L") else None, (1, 1))
        img.load()
    except decode_errors() as exc:
        raise _corrupt(name, exc) from exc
    return True


class _Damaged(ValueError):
    pass


def _walk_png(data: bytes) -> bool:
    """Every chunk's CRC up to IEND; 8-bit depth; no eXIf chunk asking for a rotation.

    Pillow reads 16-bit colour PNGs as 8-bit "RGB", so the depth comes from the IHDR, and an
    eXIf chunk after the pixels is only found here (Pillow would decode everything to see it).
    """
    pos, end, fine = 8, len(data), True
    while True:
        if pos + 12 > end:
            raise _Damaged("truncated PNG file: no IEND chunk")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        body_end = pos + 8 + length
        if body_end + 4 > end:
            raise _Damaged(f"truncated PNG file in a {ctype.decode('latin-1')} chunk")
        (crc,) = struct.unpack_from(">I", data, body_end)
        if zlib.crc32(memoryview(data)[pos + 4:body_end]) != crc:
            raise _Damaged(f"broken PNG chunk {ctype.decode('latin-1')} (CRC mismatch)")
        if ctype == b"IHDR":
            fine = fine and length >= 9 and data[pos + 16] == 8
        elif ctype == b"eXIf":
            from PIL import Image

            exif = Image.Exif()
            try:
                exif.load(data[pos + 8:body_end])
                fine = fine and exif.get(_EXIF_ORIENTATION, 1) in (1, None)
            except decode_errors():
                pass  # a broken EXIF block: the pixels are shown as stored
        elif ctype == b"IEND":
            return fine
        pos = body_end + 4


# a marker inside entropy-coded data: 0xFF not followed by a stuffed 0x00, a restart marker or fill
_JPEG_MARKER = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_COMMON_SOF = {0xC0, 0xC1, 0xC2}  # baseline, extended, progressive Huffman: every decoder


def _walk_jpeg(data: bytes) -> bool:
    """Segments from SOI to EOI with consistent lengths and scans; True for baseline/progressive."""
    pos, end, sof, scans = 2, len(data), -1, 0
    while True:
        if pos >= end:
            raise _Damaged("truncated JPEG file: no end-of-image marker")
        if data[pos] != 0xFF:
            raise _Damaged(f"broken JPEG structure at byte {pos}")
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            raise _Damaged("truncated JPEG file: no end-of-image marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            if sof < 0 or scans == 0:
                raise _Damaged("JPEG file without image data")
            return sof in _JPEG_COMMON_SOF
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if pos + 2 > end:
            raise _Damaged("truncated JPEG file in a segment header")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2 or pos + length > end:
            raise _Damaged("truncated JPEG file in a segment")
        pos += length
        if marker in _JPEG_SOF and sof < 0:
            sof = marker
        elif marker == 0xDA:
            scans += 1
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                raise _Damaged("truncated JPEG file: the image data is cut off")
            pos = found.start()


def _walk_riff(data: bytes) -> bool:
    """A WebP's RIFF size and chunk sizes add up to the file (a cut-off file cannot)."""
    end = len(data)
    if end < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise _Damaged("broken WebP header")
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > end:
        raise _Damaged("truncated WebP file")
    pos, chunks = 12, 0
    while pos + 8 <= riff_end:
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        pos += 8 + size + (size & 1)
        chunks += 1
        if pos > riff_end + 1:  # some encoders omit the last pad byte
            raise _Damaged("truncated WebP chunk")
    if chunks == 0:
        raise _Damaged("WebP file without image data")
    return True


def _target_size(name: str, w: int, h: int, max_side: int, allow_upscale: bool) -> tuple[int, int]:
    short, long = min(w, h), max(w, h)
    if long * MIN_SIDE > max_side * short:
        raise ImageError(f"The image '{name}' is {w}×{h} pixels, too long and narrow to fit "
                         f"{MIN_SIDE} px on its short side within {max_side} px on its long side: "
                         "crop it closer to square.")
    if short < MIN_SIDE:
        if not allow_upscale:
            raise advised(ImageError, f"The image is {w}×{h} pixels; 1min.ai needs at least "
                          f"{MIN_SIDE}×{MIN_SIDE}: ", "choose a larger image or {upscale}.")
        scale = MIN_SIDE / short
    elif long > max_side:
        scale = max_side / long
    else:
        return w, h

    def fit(side: int) -> int:
        return min(max(round(side * scale), MIN_SIDE), max_side)
    return fit(w), fit(h)


# --- conversion -----------------------------------------------------------------------------------


def _convert(img: ImageFile.ImageFile, info: ImageInfo, src: Path, name: str, target: tuple[int, int],
             work_dir: Path | None) -> tuple[Path, tuple[int, int], str]:
    """Decode, turn upright, convert and scale `img` to `target` (upright), into a new file."""
    from PIL import Image, ImageOps

    fmt = info.format
    try:
        if fmt in ("JPEG", "MPO"):
            # decode at the smallest DCT scale still at least as big as the target (in the
            # file's own orientation): a 6000 px photo decodes 4-8× faster
            tw, th = (target[1], target[0]) if info.orientation in _SWAPPING else target
            if tw < info.width and th < info.height:
                img.draft(img.mode if img.mode in ("RGB", "L") else None, (tw, th))
        img.load()  # LOAD_TRUNCATED_IMAGES stays False: a truncated file raises here
        icc = img.info.get("icc_profile")
        src_mode = img.mode
        frame: Image.Image = img
        # What is left to turn once loaded: a TIFF comes upright already (Pillow turns it while
        # loading, and drops its tag), the rest as stored.
        if _orientation_after_load(img) != 1:
            frame = ImageOps.exif_transpose(img)
        target = _facing(target, frame.size)
        frame = _normalise_mode(frame)
        if frame.size != target:
            frame = frame.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except Image.DecompressionBombError as exc:
        raise _bomb(name) from exc
    except decode_errors() as exc:
        raise _corrupt(name, exc) from exc

    if frame.mode == "RGBA" or src_mode in ("P", "PA", "1"):
        as_png = True  # alpha, or graphics with few colours that JPEG would ring around
    elif fmt in _LOSSY:
        as_png = False  # a lossy source gains nothing from a lossless copy but size
    else:
        as_png = frame.mode == "L"  # grey from a lossless source is likely depth-like data
    params: dict[str, Any] = {}
    same_space = (src_mode in ("RGB", "RGBA", "P", "PA") and frame.mode in ("RGB", "RGBA")
                  or src_mode == frame.mode == "L")
    if icc and same_space:
        params["icc_profile"] = icc  # keep the colour space, unless a conversion changed it (CMYK)
    if as_png:
        out_fmt, suffix, mime = "PNG", ".png", "image/png"
        params["compress_level"] = 1  # uploads are local-network-fast; zlib level 6 costs 3-5× the time
    else:
        out_fmt, suffix, mime = "JPEG", ".jpg", "image/jpeg"
        params.update(quality=JPEG_QUALITY, subsampling=0, optimize=False)
    folder = work_dir if work_dir is not None else Path(tempfile.mkdtemp(prefix="onemin3d-img-"))
    out = _write_new(folder, src.stem or "image", suffix, frame, out_fmt, params)
    log.debug("prepared %s: %s %s → %s %s", name, fmt, (info.width, info.height), out.name, frame.size)
    return out, frame.size, mime


def _orientation_after_load(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except decode_errors():
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _facing(target: tuple[int, int], upright: tuple[int, int]) -> tuple[int, int]:
    """`target`, turned by 90° when the decoded, upright frame stands the other way (landscape
    against portrait): a rotation only the decoder knew of is followed, never stretched."""
    if (target[0] - target[1]) * (upright[0] - upright[1]) < 0:
        return target[1], target[0]
    return target


def _normalise_mode(img: Image.Image) -> Image.Image:
    """8-bit RGB, RGBA or L: what JPEG/PNG carry everywhere. Opaque alpha is dropped."""
    mode = img.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode == "LA" or mode == "La":
        img = img.convert("RGBA")
    elif mode.startswith("I") or mode == "F":
        img = _to_8bit_grey(img)
    elif mode == "RGBa":
        img = img.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGB")  # CMYK (Adobe-inverted JPEGs are handled by Pillow), YCbCr, LAB, HSV
    if img.mode == "RGBA":
        alpha_min, _ = img.getchannel("A").getextrema()
        if isinstance(alpha_min, int) and alpha_min == 255:
            img = img.convert("RGB")
    return img


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer or float grey to 8-bit, keeping the full tonal range."""
    if img.mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    as_float = img.convert("F")
    lo, hi = as_float.getextrema()
    lo_f, hi_f = float(lo), float(hi)  # type: ignore[arg-type]
    if img.mode == "F" and 0.0 <= lo_f and hi_f <= 1.0:
        lo_f, hi_f = 0.0, 1.0
    elif img.mode == "I" and 0 <= lo_f and hi_f <= 255:
        lo_f, hi_f = 0.0, 255.0
    elif img.mode == "I" and 0 <= lo_f and hi_f <= 65535:
        lo_f, hi_f = 0.0, 65535.0
    span = (hi_f - lo_f) or 1.0
    return as_float.point(lambda v: (v - lo_f) * (255.0 / span)).convert("L")


def _write_new(folder: Path, stem: str, suffix: str, img: Image.Image, fmt: str,
               params: dict[str, Any]) -> Path:
    """Write `img` to a new file <stem>[-N]<suffix> in `folder`; no partial file survives a failure."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"Could not create the work folder '{folder}' ({_short(exc)}): check its "
                         "permissions and the free disk space.") from exc
    stem = stem[:100]
    for n in range(1000):
        out = folder / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
        try:
            fh = open(out, "xb")
        except FileExistsError:
            continue
        except OSError as exc:
            raise ImageError(f"Could not write the converted image to '{folder}' ({_short(exc)}): "
                             "check its permissions and the free disk space.") from exc
        try:
            with fh:
                img.save(fh, fmt, **params)
        except (OSError, ValueError) as exc:
            out.unlink(missing_ok=True)
            raise ImageError(f"Could not write the converted image to '{folder}' ({_short(exc)}): "
                             "check its permissions and the free disk space.") from exc
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return out
    raise ImageError(f"The work folder '{folder}' is full of converted images named '{stem}': "
                     "clear it, then try again.")
