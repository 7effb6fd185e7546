"""bpy-free: what a downloaded result is (byte sniffing), where it may live (safe names), and safe zip extraction.

Everything the server sends is treated as hostile input here:

* the result *kind* comes from the bytes, never from the key's suffix or a Content-Type;
* a result *key* only ever contributes a sanitised basename: `safe_name()` cannot return a path
  outside `dest_dir` or one that already exists;
* a zip is extracted member by member into a private staging folder with streaming size checks
  (the header sizes are not trusted), refusing traversal, absolute paths, links and bombs; the
  files are moved into place only when every member came out whole, so a failure leaves nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
import unicodedata
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .errors import ResultError, get_logger
from .images import decode_errors

if TYPE_CHECKING:
    import zipfile

log = get_logger(__name__)

KINDS = ("glb", "gltf", "png", "jpeg", "webp", "zip")
MODEL_KINDS = {"glb", "gltf", "zip"}  # zip is inspected after extraction (gltf/obj/...)
IMAGE_KINDS = {"png", "jpeg", "webp"}

#: the suffix written for each kind, and the suffixes a key may already carry for it
KIND_SUFFIX: dict[str, str] = {
    "glb": ".glb", "gltf": ".gltf", "png": ".png", "jpeg": ".jpg", "webp": ".webp", "zip": ".zip",
}
_KIND_ALIASES: dict[str, tuple[str, ...]] = {"jpeg": (".jpg", ".jpeg", ".jpe", ".jfif")}

#: model files `find_model_in_dir` looks for, best first
MODEL_SUFFIXES = (".glb", ".gltf", ".obj", ".fbx", ".ply", ".stl")

#: the most one result may hold once decoded: a download's cap (the client's `max_download_bytes`
#: default) and the cap on what a model embeds in data: URIs (core.model_refs)
MAX_RESULT_BYTES = 512 * 1024 * 1024

_SNIFF_BYTES = 4096
_JSON_SNIFF_BYTES = 4 * 1024 * 1024  # "asset" may follow a long "buffers" array in a .gltf

# Windows refuses these as a file's stem, whatever the extension ("CON.txt" is the console).
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{p}{n}" for p in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")}
)
_WINDOWS_FORBIDDEN = set('<>:"/\\|?*')
_MAX_NAME_BYTES = 200  # below every common filesystem's 255-byte limit, leaving room for "-NNNN"


# --- sniffing ----------------------------------------------------------------------------------


def sniff_kind(head: bytes) -> str | None:
    """The result kind ("glb", "gltf", "png", "jpeg", "webp", "zip") from a file's first bytes, else None."""
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if text.lstrip(b" \t\r\n").startswith(b"{") and b'"asset"' in text:
        return "gltf"
    return None


def sniff_file(path: str | os.PathLike[str]) -> str | None:
    """`sniff_kind` of a file on disk (reads only as much as it needs); None when unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
            kind = sniff_kind(head)
            if kind is None and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
                kind = sniff_kind(head + fh.read(_JSON_SNIFF_BYTES))
            return kind
    except OSError as exc:
        log.warning("cannot read %s to sniff it: %s", path, exc)
        return None


# --- safe names --------------------------------------------------------------------------------

# Names handed out by safe_name() but perhaps not written yet: two workers downloading results
# with the same key at the same moment must still get different files.
_reserved: OrderedDict[str, None] = OrderedDict()
_reserved_lock = threading.Lock()
_RESERVED_MAX = 4096


def safe_name(key: str, dest_dir: Path, *, kind: str | None = None, max_len: int = 120) -> Path:
    """A new, safe path in `dest_dir` for the result stored under the server key `key`.

    Only the key's last path component is used (a URL's path, percent-decoded, for http keys).
    Control and format characters, characters Windows forbids, leading dots and trailing
    dots/spaces are removed; Windows device names ("CON", "LPT1"...) get a leading underscore;
    the name is capped at `max_len` characters (and 200 UTF-8 bytes), keeping its suffix. When
    `kind` is given the suffix is the kind's own, so a mislabelled key still gets the right one.

    Decision: a key that leaves nothing usable ("", "..", "///", "\\x00") does not fail the
    job (the result may have cost credits): it gets a stable generated name,
    `result-<sha1 of the key, 12 hex>.<suffix>`.

    The path returned does not exist, and was not returned before in this process, so it is
    free for the caller to create; on a clash "-1", "-2"... is appended to the stem.
    ResultError only if no free name can be found or `dest_dir` is not a folder.
    """
    if kind is not None and kind not in KIND_SUFFIX:
        raise ValueError(f"unknown result kind {kind!r}")
    if dest_dir.exists() and not dest_dir.is_dir():
        raise ResultError(f"The result folder {dest_dir} is a file, not a folder: choose another "
                          "result folder in the add-on preferences.")
    stem, suffix = _split_name(_clean_component(_last_component(key)))
    if kind is not None:
        wanted = KIND_SUFFIX[kind]
        if suffix.lower() not in _KIND_ALIASES.get(kind, (wanted,)):
            suffix = wanted
    if not stem:
        stem = "result-" + hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    if stem.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    max_len = max(max_len, len(suffix) + 8)
    stem = _cap(stem, max_len - len(suffix), _MAX_NAME_BYTES - len(suffix.encode()))

    base = dest_dir.resolve()
    with _reserved_lock:
        for n in range(10_000):
            name = f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}"
            candidate = base / name
            if candidate.parent != base or name in (".", ".."):  # cannot happen; belt and braces
                raise ResultError(f"The result name {key!r} is unsafe: report it to the add-on's developers.")
            if os.path.lexists(candidate) or str(candidate).casefold() in _reserved:
                continue
            _reserved[str(candidate).casefold()] = None
            while len(_reserved) > _RESERVED_MAX:
                _reserved.popitem(last=False)
            return candidate
    raise ResultError(f"No free file name is left for {stem}{suffix} in {dest_dir}: "
                      "clear old results from the result folder, then try again.")


def _last_component(key: str) -> str:
    if key.lower().startswith(("http://", "https://")):
        key = unquote(urlsplit(key).path)
    # both separators, whatever the OS: a Windows path from the server must not survive on posix
    return key.replace("\\", "/").rsplit("/", 1)[-1]


def _clean_component(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    # Cc control (NUL, newline, ESC...), Cf format (bidi overrides that disguise a suffix),
    # Cs surrogates, Co private use, Cn unassigned.
    kept = [
        "_" if ch in _WINDOWS_FORBIDDEN else ch
        for ch in name
        if not unicodedata.category(ch).startswith("C")
    ]
    cleaned = "".join(kept).strip(" ").lstrip(".").rstrip(". ")
    return "" if set(cleaned) <= {"_", ".", " "} else cleaned


def _split_name(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 1 <= len(ext) <= 8 and ext.isascii() and ext.isalnum():
        return stem.rstrip(". "), "." + ext.lower()
    return name, ""


def _cap(stem: str, max_chars: int, max_bytes: int) -> str:
    stem = stem[: max(max_chars, 1)]
    while len(stem.encode("utf-8", "surrogatepass")) > max_bytes:
        stem = stem[:-1]
    return stem.rstrip(". ")


# --- zip extraction ----------------------------------------------------------------------------

_CHUNK = 1 << 16
_RATIO_FLOOR = 1 << 20  # small members may compress absurdly well (a blank texture); judge ratio above 1 MiB


def safe_extract_zip(zip_path: str | os.PathLike[str], dest_dir: str | os.PathLike[str], *,
                     max_total: int = 1 << 30, max_ratio: float = 200.0,
                     max_files: int = 10_000) -> list[Path]:
    """Extract the zip at `zip_path` into `dest_dir` and return the files written, in archive order.

    Refused with ResultError, leaving `dest_dir` as it was: members with absolute paths, drive
    letters, UNC names, ".." components, control characters or characters Windows cannot store,
    symbolic links and other special files, encrypted members, duplicate names, more than
    `max_files` members, more than `max_total` bytes in all, or a member that inflates more than
    `max_ratio` times its compressed size (once past 1 MiB). Sizes are counted while inflating;
    the sizes the archive declares are only used to refuse early. Files already in `dest_dir`
    with a member's name are replaced, but only once the whole archive has been extracted.
    """
    import zipfile  # on first use: registering the add-on does not load it

    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ResultError(f"The result archive is not a readable zip ({exc}): generate the result again.") from exc
    dest = Path(dest_dir)
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        archive.close()
        raise ResultError(f"Could not create the folder {dest} for the extracted result ({exc}): check the "
                          "permissions of the result folder.") from exc
    base = dest.resolve()
    with archive:
        try:
            members = _checked_members(archive, base, max_total=max_total, max_files=max_files)
            staging = Path(tempfile.mkdtemp(prefix=".onemin3d-extract-", dir=base))
            try:
                staged: list[tuple[Path, Path]] = []
                total = 0
                for info, rel in members:
                    if info.is_dir():
                        continue
                    tmp = staging / f"{len(staged)}.part"
                    total = _inflate(archive, info, tmp, total, max_total=max_total, max_ratio=max_ratio)
                    staged.append((tmp, base.joinpath(*rel)))
                return _move_into_place(staged, base)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            if created:  # leave no empty folder behind either
                shutil.rmtree(dest, ignore_errors=True)
            raise


def _checked_members(archive: zipfile.ZipFile, base: Path, *, max_total: int,
                     max_files: int) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    infos = archive.infolist()
    if len(infos) > max_files:
        raise ResultError(f"The result archive holds {len(infos)} entries, more than the {max_files} allowed: "
                          "it was refused as unsafe, so generate the result again.")
    declared = sum(i.file_size for i in infos)
    if declared > max_total:
        raise ResultError(f"The result archive would unpack to {declared} bytes, more than the {max_total} "
                          "allowed: it was refused as a possible zip bomb, so generate the result again.")
    seen: set[str] = set()
    out: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    for info in infos:
        rel = _member_parts(info)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode) or (mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR)):
            raise _unsafe(info.filename, "is a link or special file")
        if info.flag_bits & 0x1:
            raise _unsafe(info.filename, "is encrypted")
        folded = "/".join(rel).casefold()
        if folded in seen and not info.is_dir():
            raise _unsafe(info.filename, "appears twice")
        seen.add(folded)
        target = base.joinpath(*rel)
        if not _is_within(target, base):
            raise _unsafe(info.filename, "points outside the result folder")
        out.append((info, rel))
    return out


def _member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    raw = info.filename
    name = raw.replace("\\", "/")
    if "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _unsafe(raw, "has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts:
        raise _unsafe(raw, "has an empty name")
    for part in parts:
        if part == "..":
            raise _unsafe(raw, "climbs out of the archive with '..'")
        if (any(unicodedata.category(ch).startswith("C") or ch in _WINDOWS_FORBIDDEN for ch in part)
                or part.rstrip(". ") != part
                or part.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED):
            raise _unsafe(raw, "has a name that cannot be stored safely")
    return parts


def _unsafe(name: str, why: str) -> ResultError:
    shown = name.encode("unicode_escape").decode("ascii")[:120]
    return ResultError(f"The result archive was refused: its member '{shown}' {why}; "
                       "generate the result again, and report it if it keeps happening.")


def _is_within(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base)
    except ValueError:
        return False
    return True


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, tmp: Path, total: int, *,
             max_total: int, max_ratio: float) -> int:
    import zipfile  # already loaded by safe_extract_zip: this binds the name for the except clause

    written = 0
    limit = max(info.compress_size, 1) * max_ratio
    try:
        with archive.open(info) as src, open(tmp, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                total += len(chunk)
                if total > max_total:
                    raise ResultError(f"The result archive unpacks to more than {max_total} bytes: it was "
                                      "refused as a possible zip bomb, so generate the result again.")
                if written > _RATIO_FLOOR and written > limit:
                    raise ResultError(f"The archive member '{info.filename[:120]}' inflates more than "
                                      f"{max_ratio:g}× its compressed size: it was refused as a possible "
                                      "zip bomb, so generate the result again.")
                dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
            RuntimeError, ValueError) as exc:
        raise ResultError(f"The result archive is damaged ({info.filename[:120]}: {exc}): "
                          "generate the result again.") from exc
    except OSError as exc:
        raise ResultError(f"Could not write the extracted result ({exc}): check the free space and "
                          "permissions of the result folder.") from exc
    return total


def _move_into_place(staged: list[tuple[Path, Path]], base: Path) -> list[Path]:
    done: list[Path] = []
    try:
        for tmp, target in staged:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _is_within(target, base):  # a folder created meanwhile must not lead elsewhere
                raise _unsafe(str(target.relative_to(base)), "points outside the result folder")
            if target.is_dir():
                raise _unsafe(str(target.relative_to(base)), "clashes with a folder")
            os.replace(tmp, target)
            done.append(target)
    except OSError as exc:
        for path in done:
            path.unlink(missing_ok=True)
        raise ResultError(f"Could not write the extracted result ({exc}): check the free space and "
                          "permissions of the result folder.") from exc
    except ResultError:
        for path in done:
            path.unlink(missing_ok=True)
        raise
    return done


def find_model_in_dir(folder: str | os.PathLike[str]) -> Path | None:
    """The model file to import from an extracted result: .glb > .gltf > .obj > .fbx > .ply > .stl.

    Among files of the same type the shallowest wins, then the first by name; macOS resource
    forks ("__MACOSX", "._x") and hidden files are ignored.
    """
    best: tuple[int, int, str] | None = None
    found: Path | None = None
    root = Path(folder)
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in rel) or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix not in MODEL_SUFFIXES:
            continue
        rank = (MODEL_SUFFIXES.index(suffix), len(rel), "/".join(rel).casefold())
        if best is None or rank < best:
            best, found = rank, path
    return found


# --- greyscale -----------------------------------------------------------------------------------

_GREY_SAMPLE = 256  # judge on a thumbnail: averaging keeps grey grey, and it is fast on any size
_GREY_OUTLIERS = 0.002  # share of pixels allowed to disagree (JPEG chroma noise on a grey map)


def is_greyscale(path: str | os.PathLike[str], tolerance: int = 3) -> bool:
    """True when the image's colour channels agree within `tolerance` (0-255): a depth map, not a photo.

    Single-channel images (L, LA, I, I;16, F, 1) are greyscale by definition. Otherwise the image
    is decoded at reduced size (`draft` for JPEG, then a thumbnail of at most 256 px), and it is
    greyscale when at most 0.2% of those pixels have two channels further apart than `tolerance`.
    ResultError when the file is not a readable image.
    """
    from PIL import Image, ImageChops  # on first use: registering the add-on does not load Pillow

    try:
        with Image.open(path) as src:
            if src.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                return True
            src.draft("RGB", (_GREY_SAMPLE, _GREY_SAMPLE))
            img: Image.Image = src
            if img.mode not in ("RGB", "RGBA"):
                img = img.convert("RGB")  # P, CMYK, YCbCr, HSV...
            img.thumbnail((_GREY_SAMPLE, _GREY_SAMPLE), Image.Resampling.BOX)
            rgb = img.convert("RGB")
    except decode_errors() as exc:  # what Pillow raises on broken or hostile input
        raise ResultError(f"The result image cannot be read ({exc}): generate the result again.") from exc
    r, g, b = rgb.split()
    pixels = rgb.width * rgb.height
    if pixels == 0:
        return True
    worst = ImageChops.lighter(ImageChops.lighter(ImageChops.difference(r, g), ImageChops.difference(g, b)),
                               ImageChops.difference(r, b))
    hist = worst.histogram()
    disagreeing = sum(hist[max(tolerance, 0) + 1:])
    return disagreeing <= pixels * _GREY_OUTLIERS
