"""bpy-free: the files a 3D model names besides itself (glTF/GLB uris, OBJ mtllib, MTL texture maps), checked before an importer reads them.

The rule: importing a model reads only files that came with the result, inside its own folder.
`check_model()` resolves every external reference the way Blender's importers do, keeps it only
when it names one of the result's files, and drops everything else with one warning sentence
that names it:

* absolute paths, Windows drive paths (``C:\\``, ``C:/``) and UNC paths (``\\\\host\\share``,
  ``//host/share``);
* ``..`` that climbs out of the folder, and links whose target lies outside it;
* ``file:`` URLs, ``http(s):`` and every other scheme: nothing is ever fetched;
* a name that is not one of the result's files (Blender's OBJ importer would then try it
  relative to the current folder, or as it stands).

glTF uris are percent-decoded first, as the importer decodes them. ``data:`` URIs are kept, made
canonical base64 (the only form Blender's glTF importer decodes; any other it takes for a file
path), and their decoded size counts against the result size limit: more is a ResultError. A
dropped texture is simply left out, and so are the textures stored in a dropped glTF buffer; a
buffer that holds geometry cannot be left out, so naming one outside the result refuses the
model (a ResultError naming it). A GLB whose first buffer names a file falls back on its own
binary chunk, as the format intends.

The model and the material libraries it uses are rewritten in place when they are the add-on's
own extracted copies (`out_dir=None`); otherwise checked copies are written into `out_dir` and
the originals are left alone. Nothing is written when nothing needs to change. Formats without a
hook (FBX, PLY, STL) pass through unchanged: `CheckedModel.refusal()` lets the Blender side judge
what their importers loaded.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import posixpath
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from . import results
from .errors import ResultError, get_logger

log = get_logger(__name__)

#: keywords of the MTL lines that name an image (compared in lower case): every ``map_*`` plus these
MTL_TEXTURE_KEYWORDS = frozenset({"bump", "disp", "decal", "refl", "norm"})

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_DRIVE = re.compile(r"^[A-Za-z]:")
_MEDIA_TYPE = re.compile(r"^[\w.+\-]+/[\w.+\-]+$")
# What Blender's OBJ/MTL reader joins: a backslash, optional blanks, a newline (lines go on).
_CONTINUATION = re.compile(rb"\\[\x00-\x09\x0b-\x20]*\n")
_TRIM = " \t\n\v\f\r"  # StringRef::trim() in Blender's readers
# MTL texture options as Blender's reader skips them: (name, kind, count)
_MTL_OPTIONS: tuple[tuple[str, str, int], ...] = (
    ("-o", "floats", 3), ("-s", "floats", 3), ("-bm", "floats", 1), ("-type", "words", 1),
    ("-blendu", "words", 1), ("-blendv", "words", 1), ("-boost", "words", 1), ("-cc", "words", 1),
    ("-clamp", "words", 1), ("-imfchan", "words", 1), ("-mm", "words", 2), ("-t", "words", 3),
    ("-texres", "words", 1),
)
_FLOAT = re.compile(r"\+?(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|-?(?:inf(?:inity)?|nan))", re.IGNORECASE)

OUTSIDE = "it points outside the result's folder"
NOT_INCLUDED = "no such file came with the result"


@dataclass(frozen=True)
class CheckedModel:
    """What `check_model` found: the file to hand to the importer, and what it may read."""

    path: Path                     # the model to import: the original, or its checked copy
    root: Path                     # the result's own folder (resolved)
    warnings: tuple[str, ...]      # one sentence per dropped reference
    embedded_bytes: int            # decoded size of the data: URIs kept
    allowed: frozenset[str] = frozenset()  # normcased real paths of the files it may read
    any_file_in_root: bool = False  # files=None: every file inside `root` is the result's

    def refusal(self, path: str | os.PathLike[str]) -> str | None:
        """Why an importer must not read `path` (a reason for a warning), or None when it may."""
        real = _real(path)
        if real is None or not _within(real, str(self.root)):
            return OUTSIDE
        if self.any_file_in_root or os.path.normcase(real) in self.allowed:
            return None
        return NOT_INCLUDED


def check_model(model: str | os.PathLike[str], *, root: str | os.PathLike[str],
                files: Iterable[str | os.PathLike[str]] | None = None, out_dir: str | os.PathLike[str] | None = None,
                max_bytes: int | None = None, fmt: str | None = None) -> CheckedModel:
    """Check every file `model` names and return what to import.

    `root` is the result's own folder; `files` the files that came with the result (None: any
    regular file inside `root`). References are kept only when they resolve, links followed, to
    one of those files. With `out_dir` None the model and its material libraries are rewritten in
    place (they must be the add-on's own extracted copies); otherwise changed files are written
    to `out_dir` (inside `root`), keeping their layout relative to `root`.

    `fmt` is the importer's format (".glb", ".gltf", ".obj", ...; default: the model's suffix).
    ResultError when the data: URIs decode to more than `max_bytes` (default
    results.MAX_RESULT_BYTES) or a checked file cannot be written.
    """
    checker = _Checker(Path(model), Path(root), files, None if out_dir is None else Path(out_dir),
                       results.MAX_RESULT_BYTES if max_bytes is None else max_bytes)
    kind = (fmt or Path(model).suffix).lower()
    if kind in (".gltf", ".glb"):
        path = checker.gltf()
    elif kind == ".obj":
        path = checker.obj()
    else:
        path = checker.model
    return checker.outcome(path)


# --- resolving one reference -------------------------------------------------------------------


@dataclass(frozen=True)
class _Keep:
    target: Path  # absolute, lexical (links not resolved: the importer opens this path)


@dataclass(frozen=True)
class _Drop:
    reason: str


def _real(path: str | os.PathLike[str]) -> str | None:
    try:
        return os.path.realpath(os.path.abspath(path))
    except (OSError, ValueError):  # NUL in the name, a loop of links, a name too long
        return None


def _within(path: str, root: str) -> bool:
    p, r = os.path.normcase(path), os.path.normcase(root)
    try:
        return os.path.commonpath([p, r]) == r
    except ValueError:  # different drives
        return False


def _scheme_reason(scheme: str) -> str:
    scheme = scheme.lower()
    if scheme == "file":
        return "it is a file: URL, outside the result's folder"
    if scheme in ("http", "https"):
        return "it is a web address, and nothing is ever downloaded for a model"
    return f"it is a '{scheme}:' address, and nothing is ever fetched for a model"


def _path_problem(path: str) -> str | None:
    """Why a '/'-separated path (already decoded) names nothing inside a folder, or None."""
    if not path.strip(_TRIM):
        return "it is empty"
    if "\x00" in path:
        return "it is not a usable file name"
    if _DRIVE.match(path):
        return "it is a Windows drive path, outside the result's folder"
    if path.startswith("//"):
        return "it is a network (UNC) path, outside the result's folder"
    scheme = _SCHEME.match(path)
    if scheme:
        return _scheme_reason(scheme.group(1))
    if path.startswith("/"):
        return "it is an absolute path, outside the result's folder"
    return None


def _shown(ref: str, limit: int = 120) -> str:
    if ref[:5].lower() == "data:" and len(ref) > 48:
        ref = ref[:40] + "…"
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in ref)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _b64_decoded_size(payload: str) -> int:
    return len(payload) * 3 // 4  # an upper bound: the importer's decoder skips stray characters


def _relative(target: Path, base: Path) -> str:
    return Path(os.path.relpath(target, base)).as_posix()


# --- the checker ---------------------------------------------------------------------------------


class _Checker:
    def __init__(self, model: Path, root: Path, files: Iterable[str | os.PathLike[str]] | None,
                 out_dir: Path | None, max_bytes: int) -> None:
        # Everything is compared resolved: the result folder's own path may pass through a link
        # (/var -> /private/var), and the importer is handed the resolved model.
        root_real, model_real = _real(root), _real(model)
        if root_real is None or model_real is None:
            raise ResultError(f"The result folder {root} cannot be read: check that it exists, then "
                              "import the result again.")
        if not _within(model_real, root_real):
            raise ResultError(f"The model '{Path(model).name}' is a link that leads outside the result's folder: "
                              "it was not imported, so generate the result again.")
        self.model = Path(model_real)
        self.root = Path(root_real)
        self.any_file = files is None
        self.allowed: set[str] = {os.path.normcase(model_real)}
        for f in files or ():
            real = _real(f)
            if real is not None:
                self.allowed.add(os.path.normcase(real))
        out_real = None if out_dir is None else _real(out_dir)
        self.out_dir = None if out_real is None else Path(out_real)
        if self.out_dir is not None and not _within(str(self.out_dir), str(self.root)):
            raise ValueError(f"out_dir {out_dir} is not inside the result folder {root}")
        self.max_bytes = max_bytes
        self.warnings: list[str] = []
        self.data_bytes = 0
        self.written: list[Path] = []

    # -- shared --

    def warn(self, what: str, ref: str, where: Path, reason: str) -> None:
        message = f"Ignored the {what} '{_shown(ref)}' in {where.name}: {reason}."
        log.debug("%s", message)  # the caller reports it (scene_build logs and returns it once)
        self.warnings.append(message)

    def judge(self, path: str, base: Path) -> _Keep | _Drop:
        """A '/'-separated path, decoded as the importer decodes it, resolved against `base`."""
        problem = _path_problem(path)
        if problem:
            return _Drop(problem)
        lexical = Path(os.path.normpath(os.path.join(base, path)))
        if not _within(str(lexical), str(self.root)):
            return _Drop(OUTSIDE)
        real = _real(lexical)
        if real is None:
            return _Drop("it is not a usable file name")
        if not _within(real, str(self.root)):
            return _Drop("it is a link that leads outside the result's folder")
        try:
            is_file = os.path.isfile(real)
        except (OSError, ValueError):
            is_file = False
        if not is_file or not (self.any_file or os.path.normcase(real) in self.allowed):
            return _Drop(NOT_INCLUDED)
        return _Keep(lexical)

    def dest(self, src: Path) -> Path:
        """Where the checked version of `src` (the model or a material library) is written."""
        if self.out_dir is None:
            return src
        real = _real(src)
        if real is None or not _within(real, str(self.root)):
            return self.out_dir / src.name
        return self.out_dir / os.path.relpath(real, self.root)

    def write(self, dest: Path, data: bytes) -> None:
        tmp = dest.with_name(f".{dest.name}.onemin3d-tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink():  # never write through a link
                dest.unlink()
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ResultError(f"Could not write the checked copy of '{dest.name}' ({exc}): check the free "
                              "space and permissions of the result folder.") from exc
        self.written.append(dest)

    def charge(self, size: int) -> None:
        self.data_bytes += size

    def check_budget(self) -> None:
        if self.data_bytes > self.max_bytes:
            raise ResultError(f"The model '{self.model.name}' embeds {_size(self.data_bytes)} in data: URIs, "
                              f"more than the {_size(self.max_bytes)} a result may hold: it was not imported, "
                              "so generate the result again.")

    def outcome(self, path: Path) -> CheckedModel:
        allowed = set(self.allowed)
        for p in (path, *self.written):
            real = _real(p)
            if real is not None:
                allowed.add(os.path.normcase(real))
        return CheckedModel(path=path, root=self.root, warnings=tuple(self.warnings),
                            embedded_bytes=self.data_bytes, allowed=frozenset(allowed),
                            any_file_in_root=self.any_file)

    # -- glTF / GLB --

    def gltf(self) -> Path:
        try:
            data = self.model.read_bytes()
        except OSError as exc:
            raise ResultError(f"The model '{self.model.name}' cannot be read ({exc}): generate the result "
                              "again.") from exc
        glb = _split_glb(data) if data[:4] == b"glTF" else None
        if data[:4] == b"glTF" and glb is None:
            return self.model  # Blender's importer refuses this container the same way
        doc = _load_gltf_json(glb[1] if glb else data)
        if not isinstance(doc, dict):
            return self.model  # not JSON (or not an object): the importer reads no uri from it
        refs: list[tuple[dict[str, Any], str, int]] = []
        _collect_uris(doc, refs)
        base = self.model.parent
        plan: list[tuple[dict[str, Any], str, int, _Keep | _Drop | str]] = []
        changed = False
        for holder, what, index in refs:
            uri = holder["uri"]
            verdict = self._judge_uri(uri, base)
            if isinstance(verdict, _Drop) and what == "buffer" and index == 0 and glb and _has_bin_chunk(glb):
                self.warn(what, uri, self.model, verdict.reason + " (the GLB's own binary data is used instead)")
                changed = True
                verdict = _Drop("")  # no uri: the importer reads the BIN chunk, as the format intends
            elif isinstance(verdict, _Drop):
                if what == "buffer" and _feeds_geometry(doc, index):
                    raise ResultError(f"The model '{self.model.name}' keeps its geometry in the buffer "
                                      f"'{_shown(uri)}', but {verdict.reason}: it was not imported, so generate "
                                      "the result again.")
                self.warn(what, uri, self.model, verdict.reason + (
                    " (the textures stored in it are left out)" if what == "buffer" else ""))
                changed = True
            elif isinstance(verdict, str):
                changed |= verdict != uri
            elif quote(_relative(verdict.target, base)) != uri:
                changed = True
            plan.append((holder, what, index, verdict))
        self.check_budget()
        if not changed:
            return self.model
        dest = self.dest(self.model)
        for holder, what, index, verdict in plan:
            if isinstance(verdict, _Keep):
                holder["uri"] = quote(_relative(verdict.target, dest.parent))
            elif isinstance(verdict, str):
                holder["uri"] = verdict
            else:
                del holder["uri"]
                if what == "buffer" and verdict.reason:  # only images read it (see above): no pixels
                    _unlink_images_of_buffer(doc, index)
        text = json.dumps(doc, separators=(",", ":")).encode("ascii")  # ASCII, escaped: valid whatever it holds
        self.write(dest, _pack_glb(glb, text) if glb else text)
        return dest

    def _judge_uri(self, uri: str, base: Path) -> _Keep | _Drop | str:
        """A glTF uri: keep (a file), drop, or the canonical data: URI (a str) to write instead."""
        if _DRIVE.match(uri):
            return _Drop("it is a Windows drive path, outside the result's folder")
        scheme = _SCHEME.match(uri)
        if scheme:
            if scheme.group(1).lower() == "data":
                return self._data_uri(uri)
            return _Drop(_scheme_reason(scheme.group(1)))
        # Blender: uri.replace('\\', '/'), unquote, normpath, joined to the model's folder
        return self.judge(unquote(uri.replace("\\", "/")), base)

    def _data_uri(self, uri: str) -> _Drop | str:
        marker = ";base64,"
        if uri.startswith("data:") and marker in uri:  # exactly what the importer decodes
            self.charge(_b64_decoded_size(uri[uri.find(marker) + len(marker):]))
            return uri
        head, comma, payload = uri[5:].partition(",")
        if not comma:
            return _Drop("it is a malformed data: URI")
        media, is_b64 = head, False
        if head.lower().endswith(";base64"):
            media, is_b64 = head[: -len(";base64")], True
        if len(payload) * (3 / 4 if is_b64 else 1) + self.data_bytes > self.max_bytes:
            self.charge(int(len(payload) * (3 / 4 if is_b64 else 1)))  # over the limit: no need to decode
            return uri
        try:
            raw = base64.b64decode(unquote(payload)) if is_b64 else unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            return _Drop("it is a malformed data: URI")
        self.charge(len(raw))
        media = media.split(";")[0].strip()
        if not _MEDIA_TYPE.match(media):
            media = "application/octet-stream"
        return f"data:{media};base64,{base64.b64encode(raw).decode('ascii')}"

    # -- OBJ / MTL --

    def obj(self) -> Path:
        try:
            raw = self.model.read_bytes()
        except OSError as exc:
            raise ResultError(f"The model '{self.model.name}' cannot be read ({exc}): generate the result "
                              "again.") from exc
        data, joined = _fixup_continuations(raw)
        lines = data.split(b"\n")
        base = self.model.parent
        plan: list[tuple[int, _Keep | _Drop]] = []
        for i, line in enumerate(lines):
            value = _keyword_value(line, b"mtllib")
            if value is None:
                continue
            ref = value.decode("utf-8", "surrogateescape").strip(_TRIM)
            if len(ref) > 2 and ref.startswith('"') and ref.endswith('"'):
                ref = ref[1:-1]  # as Blender's reader does
            verdict = self.judge(ref.replace("\\", "/"), base)
            if isinstance(verdict, _Keep) and (verdict.target.suffix.lower() != ".mtl"
                                               or _same(verdict.target, self.model)):
                verdict = _Drop("it is not a material library (.mtl)")
            if isinstance(verdict, _Drop):
                self.warn("material library", ref, self.model, verdict.reason)
            plan.append((i, verdict))
        libraries: list[Path] = []
        for _, verdict in plan:
            if isinstance(verdict, _Keep) and not any(_same(verdict.target, lib) for lib in libraries):
                libraries.append(verdict.target)
        # Blender also reads "<model stem>.mtl" beside the model, named by an mtllib line or not.
        default = base / f"{self.model.stem}.mtl"
        default_verdict: _Keep | _Drop | None = None
        if os.path.exists(default):
            default_verdict = self.judge(default.name, base)
            if isinstance(default_verdict, _Keep):
                if not any(_same(default, lib) for lib in libraries):
                    libraries.append(default)
            else:
                self.warn("material library", default.name, self.model, default_verdict.reason)
        mtls = [(lib, self._mtl_statements(lib)) for lib in libraries]

        obj_changed = joined or any(
            isinstance(v, _Drop) or _mtllib_line(v.target, base) != lines[i].rstrip(b"\r") for i, v in plan)
        mtl_changed = [_mtl_changed(lib, st) for lib, st in mtls]
        if not (obj_changed or any(mtl_changed) or isinstance(default_verdict, _Drop)):
            return self.model

        copying = self.out_dir is not None
        written_mtls: list[Path] = []
        for (lib, statements), changed in zip(mtls, mtl_changed, strict=True):
            if copying or changed:
                dest_lib = self.dest(lib)
                self.write(dest_lib, _render_mtl(statements, dest_lib.parent))
                written_mtls.append(dest_lib)
        if not (copying or obj_changed or isinstance(default_verdict, _Drop)):
            return self.model
        dest = self.dest(self.model)
        if copying or isinstance(default_verdict, _Drop):
            # the file imported must not find a "<stem>.mtl" beside it that was not checked here
            dest = self._free_obj_name(dest, written_mtls if isinstance(default_verdict, _Keep) else [])
        out = list(lines)
        for i, verdict in plan:
            cr = b"\r" if lines[i].endswith(b"\r") else b""
            if isinstance(verdict, _Drop):
                out[i] = b"# onemin3d: a material library was ignored here" + cr
            else:
                target = self.dest(verdict.target) if copying else verdict.target
                out[i] = _mtllib_line(target, dest.parent) + cr
        if isinstance(default_verdict, _Keep) and not _same(dest.with_suffix(".mtl"), self.dest(default)):
            out.append(_mtllib_line(self.dest(default), dest.parent))  # renamed: name the library outright
        self.write(dest, b"\n".join(out))
        return dest

    def _free_obj_name(self, dest: Path, ours: list[Path]) -> Path:
        """`dest`, or a new name beside it, whose "<stem>.mtl" is absent or one of `ours`."""
        candidate = dest
        for n in range(1, 1000):
            mtl = candidate.with_suffix(".mtl")
            if not os.path.lexists(mtl) or any(_same(mtl, p) for p in ours):
                return candidate
            candidate = dest.with_name(f"{dest.stem}.checked{n if n > 1 else ''}{dest.suffix}")
        raise ResultError(f"No free name is left for a checked copy of '{dest.name}': clear old results from "
                          "the result folder, then try again.")

    def _mtl_statements(self, lib: Path) -> _MtlStatements:
        """The lines of one material library, and a verdict for each line that names an image."""
        try:
            raw = lib.read_bytes()
        except OSError as exc:
            log.warning("cannot read the material library %s: %s", lib, exc)
            return _MtlStatements([], {}, False, lib)
        data, joined = _fixup_continuations(raw)
        lines = data.split(b"\n")
        textures: dict[int, tuple[bytes, _Keep | _Drop]] = {}
        for j, line in enumerate(lines):
            parsed = _texture_statement(line)
            if parsed is None:
                continue
            prefix, ref = parsed
            verdict = self._texture(ref, lib.parent)
            if isinstance(verdict, _Drop):
                self.warn("texture", ref, lib, verdict.reason)
            textures[j] = (prefix, verdict)
        return _MtlStatements(lines, textures, joined, lib)

    def _texture(self, ref: str, base: Path) -> _Keep | _Drop:
        """An MTL image path, with the fall-backs of Blender's reader that stay inside the folder."""
        first = self.judge(ref.replace("\\", "/"), base)
        if isinstance(first, _Keep) or first.reason != NOT_INCLUDED:
            return first
        unquoted = ref.replace('"', "")
        for candidate in (unquoted, unquoted.replace("_", " "), posixpath.basename(ref.replace("\\", "/"))):
            if candidate and candidate != ref:
                verdict = self.judge(candidate.replace("\\", "/"), base)
                if isinstance(verdict, _Keep):
                    return verdict
        return first


# --- glTF helpers ----------------------------------------------------------------------------


def _load_gltf_json(content: bytes) -> Any:
    """The JSON as Blender's glTF importer reads it (strict UTF-8, no NaN/Infinity); None if it cannot."""
    def bad_constant(value: str) -> Any:
        raise ValueError(value)

    try:
        return json.loads(str(content, encoding="utf-8"), parse_constant=bad_constant)
    except (ValueError, RecursionError):
        return None


def _split_glb(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(version, JSON chunk, everything after it) of a GLB as Blender's importer accepts it, else None."""
    if len(data) < 20:
        return None
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2 or total != len(data):
        return None
    length, kind = struct.unpack_from("<I4s", data, 12)
    if kind != b"JSON" or 20 + length > len(data):
        return None
    return version, data[20:20 + length], data[20 + length:]


def _has_bin_chunk(glb: tuple[int, bytes, bytes]) -> bool:
    rest = glb[2]
    return len(rest) >= 8 and rest[4:8] == b"BIN\0"


def _pack_glb(glb: tuple[int, bytes, bytes], text: bytes) -> bytes:
    version, _, rest = glb
    text += b" " * (-len(text) % 4)
    if rest and len(rest) >= 8:  # keep the BIN chunk, its length checked and padded
        length, kind = struct.unpack_from("<I4s", rest, 0)
        body = rest[8:8 + length]
        if kind == b"BIN\0" and len(body) == length:
            body += b"\0" * (-len(body) % 4)
            rest = struct.pack("<I4s", len(body), kind) + body + rest[8 + length:]
    total = 12 + 8 + len(text) + len(rest)
    return struct.pack("<4sII", b"glTF", version, total) + struct.pack("<I4s", len(text), b"JSON") + text + rest


def _views_of_buffer(doc: dict[str, Any], buffer: int) -> set[int]:
    """The bufferViews that read `buffer` (directly, or through an extension such as meshopt)."""
    def names(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("buffer") == buffer or any(names(v) for v in node.values())
        return isinstance(node, list) and any(names(v) for v in node)

    views = doc.get("bufferViews")
    return {i for i, v in enumerate(views) if names(v)} if isinstance(views, list) else set()


def _image_views(doc: dict[str, Any]) -> set[int]:
    images = doc.get("images")
    if not isinstance(images, list):
        return set()
    return {img["bufferView"] for img in images if isinstance(img, dict) and isinstance(img.get("bufferView"), int)}


def _feeds_geometry(doc: dict[str, Any], buffer: int) -> bool:
    """Whether anything but an image reads `buffer`: then the model cannot be imported without it."""
    return bool(_views_of_buffer(doc, buffer) - _image_views(doc))


def _unlink_images_of_buffer(doc: dict[str, Any], buffer: int) -> None:
    views = _views_of_buffer(doc, buffer)
    for img in doc.get("images") or []:
        if isinstance(img, dict) and img.get("bufferView") in views:
            del img["bufferView"]  # neither uri nor bufferView: the importer skips the image


def _collect_uris(doc: dict[str, Any], out: list[tuple[dict[str, Any], str, int]]) -> None:
    """Every object holding a string "uri", anywhere (extensions included): (object, what it is, index)."""
    def walk(node: Any, what: str, index: int) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("uri"), str):
                out.append((node, what, index))
            for key, value in node.items():
                if key != "uri":
                    walk(value, "file", 0)
        elif isinstance(node, list):
            for item in node:
                walk(item, "file", 0)

    for key, value in doc.items():
        if key in ("buffers", "images") and isinstance(value, list):
            what = "buffer" if key == "buffers" else "texture"
            for i, item in enumerate(value):
                walk(item, what, i)
        else:
            walk(value, "file", 0)


# --- OBJ / MTL helpers -------------------------------------------------------------------------


def _fixup_continuations(data: bytes) -> tuple[bytes, bool]:
    """Lines joined the way Blender's reader joins them ("\\" + newline), so what is checked is what is read."""
    if b"\\" not in data or not _CONTINUATION.search(data):
        return data, False
    return _CONTINUATION.sub(lambda m: b" " * len(m.group()), data), True


def _keyword_value(line: bytes, keyword: bytes) -> bytes | None:
    """The rest of `line` when it is a `keyword` statement (Blender: blanks are bytes up to ' ')."""
    i = 0
    while i < len(line) and line[i] <= 0x20:
        i += 1
    end = i + len(keyword)
    if line[i:end] != keyword or end >= len(line) or line[end] > 0x20:
        return None
    return line[end + 1:]


def _texture_statement(line: bytes) -> tuple[bytes, str] | None:
    """(keyword + canonical options, image path) of an MTL line that names an image, else None."""
    i = 0
    while i < len(line) and line[i] <= 0x20:
        i += 1
    j = i
    while j < len(line) and line[j] > 0x20:
        j += 1
    keyword = line[i:j]
    low = keyword.lower()
    if not (low.startswith(b"map_") or low in {k.encode() for k in MTL_TEXTURE_KEYWORDS}) or j >= len(line):
        return None
    rest = line[j + 1:].decode("utf-8", "surrogateescape")
    options, path = _split_options(rest)
    path = path.strip(_TRIM)
    if not path:
        return None
    return keyword + options.encode("utf-8", "surrogateescape"), path


def _split_options(rest: str) -> tuple[str, str]:
    """Blender's option parsing of a texture line: (the options it understood, canonical; the path)."""
    out: list[str] = []
    pos = 0
    while True:
        k = pos
        while k < len(rest) and rest[k] <= " ":
            k += 1
        match = next(((name, kind, n) for name, kind, n in _MTL_OPTIONS
                      if rest.startswith(name, k) and k + len(name) < len(rest) and rest[k + len(name)] <= " "),
                      None)
        if match is None:
            return "".join(out), rest[k:]
        name, kind, count = match
        pos = k + len(name) + 1
        values: list[float] = []
        for _ in range(count):
            if kind == "words":
                while pos < len(rest) and rest[pos] <= " ":
                    pos += 1
                while pos < len(rest) and rest[pos] > " ":
                    pos += 1
                continue
            p = pos
            while p < len(rest) and rest[p] <= " ":
                p += 1
            number = _FLOAT.match(rest, p)
            if number and (number.end() == len(rest) or rest[number.end()] <= " "):
                values.append(float(number.group(1)))
                pos = number.end()
        if name in ("-o", "-s"):
            fill = 0.0 if name == "-o" else 1.0
            values += [fill] * (3 - len(values))
            out.append(f" {name} " + " ".join(repr(v) for v in values))
        elif name == "-bm":
            out.append(f" -bm {repr(values[0]) if values else '1.0'}")
        elif name == "-type":
            out.append(" -type sphere")  # Blender makes any -type a sphere projection


@dataclass(frozen=True)
class _MtlStatements:
    lines: list[bytes]
    textures: dict[int, tuple[bytes, _Keep | _Drop]]  # line -> (keyword + canonical options, verdict)
    joined: bool                                       # had line continuations (rewritten joined)
    path: Path


def _mtl_changed(lib: Path, st: _MtlStatements) -> bool:
    return st.joined or any(isinstance(v, _Drop) or _texture_line(prefix, v.target, lib.parent)
                            != st.lines[j].rstrip(b"\r") for j, (prefix, v) in st.textures.items())


def _render_mtl(st: _MtlStatements, base: Path) -> bytes:
    out = list(st.lines)
    for j, (prefix, verdict) in st.textures.items():
        cr = b"\r" if st.lines[j].endswith(b"\r") else b""
        out[j] = (b"# onemin3d: a texture was ignored here" if isinstance(verdict, _Drop)
                  else _texture_line(prefix, verdict.target, base)) + cr
    return b"\n".join(out)


def _texture_line(prefix: bytes, target: Path, base: Path) -> bytes:
    rel = _relative(target, base)
    if rel.startswith("-"):
        rel = "./" + rel  # never read as an option
    return prefix + b" " + rel.encode("utf-8", "surrogateescape")


def _mtllib_line(target: Path, base: Path) -> bytes:
    return b"mtllib " + _relative(target, base).encode("utf-8", "surrogateescape")


def _same(a: Path, b: Path) -> bool:
    ra, rb = _real(a), _real(b)
    return ra is not None and rb is not None and os.path.normcase(ra) == os.path.normcase(rb)


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n} bytes"

