"""Bad input, fuzzed: the API answer parsers over arbitrary JSON and bytes, and images.prepare over hostile files.

Properties, deterministic (hypothesis derandomized, bounded examples) and each under a
pytest-timeout so a hang fails instead of stalling the suite:

* the error-body parser, the status table, the record parser and the record check never raise
  anything but our `Onemin3DError`s, whatever JSON (arbitrarily nested, deeper than the JSON
  parser goes) or bytes they get, and every error has a one-sentence user message;
* the client, over real HTTP from a local server that answers with those bytes, raises only our
  errors (upload, status check and synchronous generation answers);
* `images.prepare` over random bytes, mutated and truncated JPEG/PNG/WebP/GIF/BMP/TIFF files,
  lying headers, decompression bombs, empty files, 1×1 and 30000×10 images, symlinks (to a file,
  dangling, to a folder, to a device, in a loop), folders, FIFOs, names with spaces, Unicode or
  invalid UTF-8, and unreadable files (checked as `nobody`): either a clear `ImageError` or a
  correct result (a real image of the size it claims, sides within 512..max_side).

tests/core/test_client.py holds the first, shallow record/error-body properties; these go
deeper and wider rather than repeating them.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from onemin3d_addon.core import images
from onemin3d_addon.core.client import (
    ErrorBody,
    OneMinClient,
    RetryPolicy,
    Timeouts,
    check_record,
    error_from_response,
    parse_error_body,
    parse_record,
)
from onemin3d_addon.core.errors import ImageError, Onemin3DError, user_message

ROOT = Path(__file__).resolve().parents[2]
KEY = "fuzz-key-0123456789abcdef"

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_FEW = settings(FUZZ, max_examples=120)

# --- strategies ----------------------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
            | st.sampled_from(["", " ", "SUCCESS", "success", "FAILURE", "PROCESSING", "null", "{}", "[]",
                               "https://x.test/a.glb", "ftp://x/y", "../../etc/passwd", "\x00", "💥" * 10,
                               '{"message": "nested"}', '"\\"quoted\\""', "1e309", "-0"]))
_json = st.recursive(_scalars,
                     lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=15), kids, max_size=6),
                     max_leaves=40)
_known_keys = st.sampled_from(["uuid", "status", "teamUser", "aiRecordDetail", "temporaryUrl", "resultObject",
                               "errorMessage", "creditLimit", "usedCredit", "message", "errorCode", "error",
                               "details", "code", "aiRecord", "fileContent", "asset", "path", "key", "url"])
# dictionaries built from the names the parsers look for, nested at any level
_shaped = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4)
                       | st.dictionaries(_known_keys | st.text(max_size=8), kids, max_size=8), max_leaves=60)
_record_payload = st.fixed_dictionaries(
    {"aiRecord": st.none() | st.fixed_dictionaries(
        {"uuid": _scalars, "status": _scalars},
        optional={"teamUser": _shaped, "aiRecordDetail": st.fixed_dictionaries(
            {}, optional={"resultObject": _shaped, "errorMessage": _shaped}) | _shaped,
            "temporaryUrl": _scalars, "errorMessage": _shaped})},
    optional={"temporaryUrl": _scalars, "message": _scalars})


def _deep(depth: int, opener: str) -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return (b'{"a":' * depth) + b"1" + (b"}" * depth)
    return (opener.encode() * depth) + (closer.encode() * depth)


_deep_json = st.builds(_deep, st.sampled_from([10, 500, 999, 1001, 5000, 200_000]), st.sampled_from(["[", "{"]))
_bodies = (_json.map(lambda v: json.dumps(v).encode()) | _shaped.map(lambda v: json.dumps(v).encode())
           | st.binary(max_size=600) | _deep_json
           | _deep_json.map(lambda d: b'{"errorCode": "X", "details": ' + json.dumps(d.decode()).encode() + b"}")
           | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
           | st.sampled_from([b"", b"<!DOCTYPE html><title>502</title>", b"<html>", b"\xef\xbb\xbf{}", b"null",
                              b'{"message": null}', b'{"error": "x"}', b'{"error": {"details": [1, {}]}}',
                              b"\x00" * 50, b"\xff\xfe{\x00}\x00"]))
_content_types = st.sampled_from(["", "application/json", "text/html; charset=UTF-8", "text/plain",
                                  "application/xml", "TEXT/HTML", "\x00garbage"])


def _assert_our_error(err: BaseException) -> None:
    assert isinstance(err, Onemin3DError), f"{type(err).__name__}: {err}"
    message = user_message(err)
    assert message and "\n" not in message and KEY not in message


# --- the parsers, as pure functions ----------------------------------------------------------------


@FUZZ
@given(body=_bodies, content_type=_content_types)
def test_the_error_body_parser_never_raises_over_any_bytes(body: bytes, content_type: str) -> None:
    parsed = parse_error_body(body, content_type)
    assert isinstance(parsed, ErrorBody)
    assert len(parsed.text) <= 2000
    for part in (parsed.code, parsed.message, parsed.cause):
        assert part is None or (isinstance(part, str) and part)


@FUZZ
@given(status=st.integers(100, 999), body=_bodies, content_type=_content_types, api=st.booleans(),
       retry_after=st.none() | st.text(max_size=40) | st.sampled_from(["0", "-5", "1e400", "nan", "inf",
                                                                       "Wed, 21 Oct 2015 07:28:00 GMT"]))
def test_every_http_error_answer_becomes_one_of_our_errors(status: int, body: bytes, content_type: str,
                                                           api: bool, retry_after: str | None) -> None:
    headers = {"Content-Type": content_type}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    err = error_from_response(status, body, headers, api=api, what="fuzzed request")
    _assert_our_error(err)
    retry = getattr(err, "retry_after", None)
    assert retry is None or (retry >= 0 and retry != float("inf"))


@FUZZ
@given(payload=_record_payload | _shaped | _json)
def test_the_record_parser_and_check_raise_only_our_errors_over_nested_json(payload: object) -> None:
    try:
        record = parse_record(payload)
        if record is not None:
            assert record.uuid and len(record.uuid) <= 200
            assert record.status == record.status.upper() and len(record.status) <= 64
            assert all(isinstance(k, str) and 0 < len(k) <= 4096 for k in record.result_keys)
            assert record.download_url is None or record.download_url.lower().startswith(("http://", "https://"))
            for n in (record.credit_limit, record.used_credit):
                assert n is None or (isinstance(n, int) and not isinstance(n, bool))
            check_record(record)
    except Onemin3DError as err:
        _assert_our_error(err)


@FUZZ_FEW
@given(body=_bodies)
def test_the_record_parser_over_whatever_a_body_decodes_to(body: bytes) -> None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return
    try:
        parse_record(payload)
    except Onemin3DError as err:
        _assert_our_error(err)


# --- the same parsers behind real HTTP ---------------------------------------------------------------


class _Scripted(ThreadingHTTPServer):
    daemon_threads = True
    reply: tuple[int, str, bytes] = (200, "application/json", b"{}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Scripted

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, ctype, body = self.server.reply
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


@pytest.fixture(scope="module")
def scripted() -> Iterator[_Scripted]:
    server = _Scripted(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="fuzz-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2.0)


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-upload") / "photo.jpg"
    Image.new("RGB", (512, 512), (90, 120, 150)).save(path, "JPEG")
    return path


def _client(server: _Scripted) -> OneMinClient:
    from onemin3d_addon.core import ratelimit

    host, port = server.server_address[:2]
    return OneMinClient(KEY, f"http://{host}:{port}", Timeouts(connect=2.0, generate=3.0, read=3.0),
                        retry=RetryPolicy(attempts=1, backoff=0.0, max_backoff=0.0, max_retry_after=0.0,
                                          not_found_retries=0),
                        rate_limiter=ratelimit.RateLimiter(0))


@pytest.mark.timeout(120)
@FUZZ_FEW
@given(status=st.sampled_from([200, 200, 200, 201, 400, 401, 404, 413, 429, 500, 502]), body=_bodies,
       content_type=_content_types, call=st.sampled_from(["result", "upload", "generate"]))
def test_the_client_raises_only_our_errors_whatever_the_api_answers(scripted: _Scripted, upload_file: Path,
                                                                    status: int, body: bytes, content_type: str,
                                                                    call: str) -> None:
    scripted.reply = (status, content_type or "application/octet-stream", body)
    with _client(scripted) as client:
        try:
            if call == "result":
                client.get_result("0f0f0f0f-aaaa-bbbb-cccc-000000000000")
            elif call == "upload":
                assert client.upload_asset(upload_file)
            else:
                record = client.generate_3d("images/x.jpg", poll_interval=0.01, deadline=0.05)
                assert record.succeeded
        except Onemin3DError as err:
            _assert_our_error(err)


# --- images.prepare over hostile files --------------------------------------------------------------


def _encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _photo(size: tuple[int, int]) -> Image.Image:
    w, h = size
    rng = random.Random(w * 31 + h)
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    img.paste((rng.randrange(256), 0, 0), (0, 0, max(1, w // 4), max(1, h // 4)))
    return img


_SEEDS: dict[str, bytes] = {}


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every format prepare meets: the material the mutations start from."""
    if not _SEEDS:
        img = _photo((530, 520))
        _SEEDS.update({
            "a.jpg": _encode(img, "JPEG", quality=80),
            "p.jpg": _encode(img, "JPEG", quality=70, progressive=True),
            "a.png": _encode(img, "PNG"),
            "rgba.png": _encode(img.convert("RGBA"), "PNG"),
            "a.webp": _encode(img, "WEBP", quality=60),
            "a.gif": _encode(img.convert("P"), "GIF"),
            "a.bmp": _encode(img, "BMP"),
            "a.tif": _encode(img, "TIFF"),
            "big.jpg": _encode(_photo((2300, 900)), "JPEG", quality=60),
        })
    return _SEEDS


def _check_prepared(src: Path | bytes, work: Path, *, max_side: int = 2048, allow_upscale: bool = False) -> None:
    """prepare(src) is either a clear ImageError or a correct, readable result."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data" on broken TIFF tags
            out = images.prepare(src, max_side, allow_upscale, work_dir=work)
    except ImageError as err:
        message = user_message(err)
        assert message.endswith(".") and ":" in message, message  # the problem, then the fix
        assert not list(work.glob("*")) or all(p.stat().st_size > 0 for p in work.glob("*")), "partial output"
        return
    assert images.MIN_SIDE <= min(out.width, out.height) and max(out.width, out.height) <= max_side
    assert out.mime in ("image/jpeg", "image/png", "image/webp")
    with Image.open(out.path) as check:
        check.load()
        assert check.size == (out.width, out.height)
        assert {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png",
                "WEBP": "image/webp"}[check.format or ""] == out.mime
    assert out.converted == (out.path != Path(os.fsdecode(src)))


_mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), min_size=1,
                                         max_size=8)),
    st.tuples(st.just("splice"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("cut"), st.floats(0.0, 1.0), st.integers(1, 4000)),
    st.tuples(st.just("head"), st.binary(min_size=1, max_size=24)),
)


def _mutate(data: bytes, mutation: tuple[Any, ...]) -> bytes:
    buf = bytearray(data)
    kind = mutation[0]
    if kind == "truncate":
        return bytes(buf[: int(len(buf) * mutation[1])])
    if kind == "flip":
        for where, xor in mutation[1]:
            i = min(len(buf) - 1, int(len(buf) * where))
            buf[i] ^= xor
        return bytes(buf)
    if kind == "splice":
        i = int(len(buf) * mutation[1])
        return bytes(buf[:i] + mutation[2] + buf[i:])
    if kind == "cut":
        i = int(len(buf) * mutation[1])
        return bytes(buf[:i] + buf[i + mutation[2]:])
    head = mutation[1]
    return bytes(head + buf[len(head):])


@pytest.mark.timeout(90)
@FUZZ
@given(name=st.sampled_from(sorted(_seed_files())), mutation=_mutation)
def test_prepare_over_mutated_and_truncated_images(tmp_path_factory: pytest.TempPathFactory, name: str,
                                                   mutation: tuple[Any, ...]) -> None:
    folder = tmp_path_factory.mktemp("mut")
    src = folder / name
    src.write_bytes(_mutate(_seed_files()[name], mutation))
    _check_prepared(src, folder / "work")


@pytest.mark.timeout(60)
@FUZZ_FEW
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".jpg", ".png", ".webp", ".gif", "", ".txt"]),
       prefix=st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"RIFF\x10\x00\x00\x00WEBPVP8 ",
                               b"GIF89a", b"BM", b"II*\x00", b"\x00\x00\x00\x0cjP  "]))
def test_prepare_over_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str,
                                   prefix: bytes) -> None:
    folder = tmp_path_factory.mktemp("rnd")
    src = folder / f"random{suffix}"
    src.write_bytes(prefix + data)
    _check_prepared(src, folder / "work")


def _png(width: int, height: int, idat: bytes, *, bit_depth: int = 8, colour: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.timeout(60)
@FUZZ_FEW
@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1),
       bit_depth=st.sampled_from([1, 2, 4, 8, 16]), colour=st.sampled_from([0, 2, 3, 4, 6]),
       idat=st.binary(max_size=200) | st.just(zlib.compress(b"\x00" * 5000)))
def test_prepare_over_png_headers_that_lie(tmp_path_factory: pytest.TempPathFactory, width: int, height: int,
                                           bit_depth: int, colour: int, idat: bytes) -> None:
    folder = tmp_path_factory.mktemp("lie")
    src = folder / "liar.png"
    src.write_bytes(_png(width, height, idat, bit_depth=bit_depth, colour=colour))
    _check_prepared(src, folder / "work")


def _zlib_zeros(rows: int, row_bytes: int) -> bytes:
    comp = zlib.compressobj(9)
    row = bytes(row_bytes + 1)  # filter byte 0, then the pixels
    parts = [comp.compress(row) for _ in range(rows)]
    parts.append(comp.flush())
    return b"".join(parts)


@pytest.mark.timeout(60)
def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS or 89_478_485
    side = int((limit * 1.5) ** 0.5)  # between Pillow's warning and its error: prepare's own check
    cases = {
        "warned.png": _png(side, side, _zlib_zeros(64, side), colour=0),   # real zlib data, 1.5× the limit
        "refused.png": _png(20_000, 20_000, _zlib_zeros(8, 20_000), colour=0),  # 400 Mpx: Pillow refuses
        "tiny-idat-huge.png": _png(60_000, 60_000, zlib.compress(b"\x00" * 10)),
    }
    # a GIF whose logical screen claims 65535×65535
    cases["huge.gif"] = (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0xF0, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
                         + b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00;")
    for name, data in cases.items():
        src = tmp_path / name
        src.write_bytes(data)
        with pytest.raises(ImageError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            images.prepare(src, work_dir=tmp_path / "work")
        assert "decompression bomb" in user_message(info.value) or "damaged" in user_message(info.value), name
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").iterdir())


@pytest.mark.timeout(60)
def test_extreme_sizes_get_a_clear_answer(tmp_path: Path) -> None:
    work = tmp_path / "work"
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(one)
    with pytest.raises(ImageError, match="at least 512"):
        images.prepare(one, work_dir=work)
    up = images.prepare(one, allow_upscale=True, work_dir=work)
    assert (up.width, up.height) == (512, 512) and up.converted
    with Image.open(up.path) as check:
        assert check.size == (512, 512) and check.convert("RGB").getpixel((256, 256))[0] > 150
    for size in ((30000, 10), (10, 30000), (30000, 600)):
        strip = tmp_path / f"strip-{size[0]}x{size[1]}.png"
        Image.new("L", size, 128).save(strip)
        for upscale in (False, True):
            with pytest.raises(ImageError, match="too long and narrow|at least 512"):
                images.prepare(strip, allow_upscale=upscale, work_dir=work)
    wide = tmp_path / "wide.jpg"
    _photo((4000, 1000)).save(wide, quality=70)  # 4:1 fits exactly: 2048×512
    out = images.prepare(wide, work_dir=work)
    assert (out.width, out.height) == (2048, 512)


@pytest.mark.timeout(60)
def test_paths_that_are_not_plain_image_files(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    _photo((600, 540)).save(good, quality=80)
    work = tmp_path / "work"
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "folder.jpg").mkdir()
    (odd / "link-to-file.jpg").symlink_to(good)
    (odd / "dangling.jpg").symlink_to(odd / "nowhere.jpg")
    (odd / "link-to-folder.jpg").symlink_to(odd / "folder.jpg")
    (odd / "link-to-dev.jpg").symlink_to("/dev/zero")
    (odd / "loop-a.jpg").symlink_to(odd / "loop-b.jpg")
    (odd / "loop-b.jpg").symlink_to(odd / "loop-a.jpg")
    os.mkfifo(odd / "fifo.jpg")
    (odd / "empty.jpg").touch()
    expect = {
        "folder.jpg": "is a folder", "link-to-folder.jpg": "is a folder", "dangling.jpg": "broken link",
        "link-to-dev.jpg": "not a regular file", "loop-a.jpg": "cannot be used", "fifo.jpg": "not a regular file",
        "empty.jpg": "is empty (0 bytes)", "missing.jpg": "does not exist",
    }
    for name, words in expect.items():
        with pytest.raises(ImageError) as info:
            images.prepare(odd / name, work_dir=work)
        assert words in user_message(info.value), (name, user_message(info.value))
    linked = images.prepare(odd / "link-to-file.jpg", work_dir=work)
    assert linked.path == odd / "link-to-file.jpg" and not linked.converted
    with pytest.raises(ImageError, match="cannot be used"):
        images.prepare(tmp_path / ("x" * 300 + ".jpg"), work_dir=work)  # ENAMETOOLONG
    with pytest.raises(ImageError, match="cannot be used"):
        images.prepare(str(tmp_path / "nul\x00.jpg"), work_dir=work)


_NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                 max_size=40).filter(lambda n: n not in (".", "..") and len(n.encode()) < 200)


@pytest.mark.timeout(90)
@FUZZ_FEW
@given(stem=_NAMES, suffix=st.sampled_from([".jpg", ".JPG", ".png", ".tiff", ".webp"]),
       raw=st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\x00" not in b),
       size=st.sampled_from([(600, 520), (2600, 800), (300, 300)]))
def test_any_file_name_spaces_unicode_or_invalid_utf8(tmp_path_factory: pytest.TempPathFactory, stem: str,
                                                      suffix: str, raw: bytes, size: tuple[int, int]) -> None:
    folder = tmp_path_factory.mktemp("names")
    fmt = {".jpg": "JPEG", ".JPG": "JPEG", ".png": "PNG", ".tiff": "TIFF", ".webp": "WEBP"}[suffix]
    data = _encode(_photo(size), fmt)
    unicode_path = folder / f"{stem} {suffix}"
    byte_path = os.fsencode(folder) + b"/" + raw + b"\xff\xfe " + suffix.encode()
    for path in (unicode_path, Path(os.fsdecode(byte_path))):
        path.write_bytes(data)
        _check_prepared(path, folder / "work", allow_upscale=size == (300, 300))
    _check_prepared(byte_path, folder / "work2")  # bytes, as os.fsencode gives them


_NOBODY_SCRIPT = r"""
import json, os, sys
from pathlib import Path
from PIL import Image
from onemin3d_addon.core import images
from onemin3d_addon.core.errors import ImageError, user_message
Image.init()  # every plugin loaded while the interpreter's own files are still readable
os.setgid(65534); os.setuid(65534)
out = {}
for p in sys.argv[1:]:
    try:
        images.prepare(p, work_dir=Path(p).parent.parent / "work-nobody")
        out[p] = "ok"
    except ImageError as err:
        out[p] = "ImageError: " + user_message(err)
    except BaseException as exc:
        out[p] = "CRASH " + type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""


@pytest.mark.timeout(60)
def test_unreadable_files_are_refused_for_a_normal_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to 'nobody' (as a normal user, the refusal is tested directly)")
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"onemin3d-fuzz-perm-{os.getpid()}"
    base.mkdir(mode=0o755)
    try:
        open_dir = base / "open"
        open_dir.mkdir(mode=0o755)
        closed = base / "closed"
        closed.mkdir(mode=0o700)
        img = _photo((600, 540))
        img.save(open_dir / "mode000.jpg")
        (open_dir / "mode000.jpg").chmod(0o000)
        img.save(closed / "inside.jpg")
        (open_dir / "link-into-closed.jpg").symlink_to(closed / "inside.jpg")
        img.save(open_dir / "fine.jpg")
        (open_dir / "fine.jpg").chmod(0o644)
        paths = [str(open_dir / n) for n in ("mode000.jpg", "link-into-closed.jpg", "fine.jpg")]
        paths.append(str(closed / "inside.jpg"))
        env = dict(os.environ, PYTHONPATH=str(ROOT), HOME="/tmp")
        proc = subprocess.run([sys.executable, "-c", _NOBODY_SCRIPT, *paths], capture_output=True, text=True,
                              timeout=60, env=env, cwd="/")
        assert proc.returncode == 0, proc.stderr[-2000:]
        found = json.loads(proc.stdout.strip().splitlines()[-1])
        assert found[paths[2]] == "ok"
        for p in (paths[0], paths[1], paths[3]):
            assert found[p].startswith("ImageError: ") and "permission denied" in found[p], (p, found[p])
    finally:
        for p in sorted(base.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            if not p.is_symlink():
                p.chmod(0o700)
            p.unlink() if (p.is_symlink() or p.is_file()) else p.rmdir()
        base.rmdir()
