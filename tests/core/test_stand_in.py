"""The local 1min.ai stand-in itself, driven with plain `requests`: shapes, validation, results, faults."""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import fake_onemin_server as fos
import numpy as np
import pytest
import requests
from fake_onemin_server import FakeOneMinServer
from PIL import Image

FEATURE = {"type": "IMAGE_3D_GENERATOR", "model": "stable-image"}
ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=16)
def photo(w: int = 800, h: int = 600, fmt: str = "JPEG", *, alpha: bool = False) -> bytes:
    """A photo-like test image: a bright textured disc up and to the left on a dark, noisy
    background, and a pure red 48-pixel square in the top-left corner."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[...] = (40, 50, 70)
    disc = (xx - 0.32 * w) ** 2 + (yy - 0.32 * h) ** 2 < (0.16 * min(w, h)) ** 2
    img[disc] = (235, 225, 200)
    img += rng.normal(0, 6, img.shape) + np.where(disc, 25 * np.sin(xx / 3.0), 0)[..., None]
    img[:48, :48] = (255, 0, 0)
    arr = np.clip(img, 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    if alpha:
        a = np.zeros((h, w), np.uint8)
        a[h // 6: -h // 6, w // 6: -w // 6] = 255
        im.putalpha(Image.fromarray(a))
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def upload(s: FakeOneMinServer, data: bytes, name: str = "photo.jpg", mime: str = "image/jpeg",
           key: str | None = None) -> requests.Response:
    return requests.post(f"{s.base_url}/api/assets", files={"asset": (name, data, mime)},
                         headers={"API-KEY": key or s.api_key}, timeout=10)


def features(s: FakeOneMinServer, body: dict[str, Any], key: str | None = None) -> requests.Response:
    return requests.post(f"{s.base_url}/api/features", json=body, headers={"API-KEY": key or s.api_key},
                         timeout=10)


def generate(s: FakeOneMinServer, image_key: str, **extra: Any) -> requests.Response:
    return features(s, {**FEATURE, "promptObject": {"imageUrl": image_key}, **extra})


def poll(s: FakeOneMinServer, uuid: str) -> requests.Response:
    return requests.get(f"{s.base_url}/api/results/{uuid}", headers={"API-KEY": s.api_key}, timeout=10)


@pytest.fixture
def image_key(stand_in: FakeOneMinServer) -> str:
    resp = upload(stand_in, photo())
    assert resp.status_code == 200, resp.text
    return str(resp.json()["fileContent"]["path"])


def result_of(s: FakeOneMinServer, image_key: str, kind: str) -> bytes:
    s.result = kind
    rec = generate(s, image_key).json()["aiRecord"]
    resp = requests.get(rec["temporaryUrl"], timeout=10)
    assert resp.status_code == 200
    return resp.content


# --- the API's shapes ----------------------------------------------------------------------


def test_upload_answers_the_documented_shape(stand_in: FakeOneMinServer) -> None:
    resp = upload(stand_in, photo(), name="my photo.jpg")
    assert resp.status_code == 200
    body = resp.json()
    key = body["asset"]["key"]
    assert re.fullmatch(r"images/\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d_\d{3}_my photo\.jpg", key)
    assert body["fileContent"]["path"] == key
    assert body["asset"]["mimetype"] == "image/jpeg" and body["asset"]["bucket"] == "asset.1min.ai"
    assert body["asset"]["size"] == len(photo())
    # the uploaded image is served back by the asset host, with no key
    assert requests.get(f"{stand_in.base_url}/asset/{key}", timeout=5).content == photo()


def test_upload_refuses_non_images_small_images_and_missing_fields(stand_in: FakeOneMinServer) -> None:
    not_image = upload(stand_in, b"just some text", name="notes.txt", mime="text/plain")
    assert not_image.status_code == 400 and not_image.json()["errorCode"] == "UNSUPPORTED_FILE_TYPE"
    small = upload(stand_in, photo(400, 600), name="small.jpg")
    assert small.status_code == 400 and "512" in small.json()["message"]
    wrong_field = requests.post(f"{stand_in.base_url}/api/assets", files={"file": ("a.jpg", photo())},
                                headers={"API-KEY": stand_in.api_key}, timeout=5)
    assert wrong_field.status_code == 400
    assert wrong_field.json()["errorCode"] == "MISSING_REQUIRED_FIELDS"


def test_upload_over_50_mb_is_413(stand_in: FakeOneMinServer) -> None:
    resp = upload(stand_in, photo()[:-2] + bytes(51 << 20), name="huge.jpg")
    assert resp.status_code == 413
    assert stand_in.count("POST", "/api/assets") == 1


def test_chunked_upload_is_accepted(stand_in: FakeOneMinServer) -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"asset\"; filename=\"c.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + photo(fmt="PNG") + f"\r\n--{boundary}--\r\n".encode()
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))  # no length: sent chunked
    resp = requests.post(f"{stand_in.base_url}/api/assets", data=chunks, timeout=5,
                         headers={"API-KEY": stand_in.api_key,
                                  "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["asset"]["key"].endswith("_c.png")


def test_api_calls_need_the_key(stand_in: FakeOneMinServer, image_key: str) -> None:
    expected = {"errorCode": "HTTP_EXCEPTION", "message": "API Key has been deleted"}
    for resp in (upload(stand_in, photo(), key="wrong"),
                 features(stand_in, {**FEATURE, "promptObject": {"imageUrl": image_key}}, key="wrong"),
                 requests.get(f"{stand_in.base_url}/api/results/{fos.ZERO_UUID}", timeout=5)):
        assert resp.status_code == 401
        assert {k: resp.json()[k] for k in expected} == expected
    assert stand_in.generations == 0


def test_features_validates_like_the_real_api(stand_in: FakeOneMinServer, image_key: str) -> None:
    wrong_type = features(stand_in, {**FEATURE, "type": "IMAGE_GENERATOR", "promptObject": {"imageUrl": image_key}})
    assert wrong_type.status_code == 400
    assert (wrong_type.json()["errorCode"], wrong_type.json()["message"]) == ("UNKNOWN_ERROR",
                                                                             "Unsupported feature type")
    wrong_model = features(stand_in, {**FEATURE, "model": "dall-e-3", "promptObject": {"imageUrl": image_key}})
    assert wrong_model.status_code == 400 and wrong_model.json()["errorCode"] == "UNSUPPORTED_MODEL"
    missing = features(stand_in, {**FEATURE, "promptObject": {}})
    assert missing.status_code == 400 and missing.json()["errorCode"] == "MISSING_REQUIRED_FIELDS"
    assert json.loads(missing.json()["details"]) == ["imageUrl"]
    unknown = generate(stand_in, "images/2025_01_01_00_00_00_000_nope.jpg")
    assert unknown.status_code == 400
    assert unknown.json()["errorCode"] == "EXTERNAL_API_RESPONSE_WITH_ERROR"
    assert "busy" in unknown.json()["message"]
    assert "does not exist" in json.loads(unknown.json()["details"])["message"]
    assert stand_in.generations == 0


def test_sync_generation_returns_a_success_record_and_spends_credits(stand_in: FakeOneMinServer,
                                                                     image_key: str) -> None:
    stand_in.latency = 0.3
    t0 = time.monotonic()
    first = generate(stand_in, image_key)
    assert time.monotonic() - t0 >= 0.3
    rec = first.json()["aiRecord"]
    assert rec["status"] == "SUCCESS" and rec["type"] == "IMAGE_3D_GENERATOR" and rec["model"] == "stable-image"
    assert rec["aiRecordDetail"]["promptObject"] == {"imageUrl": image_key}
    (key,) = rec["aiRecordDetail"]["resultObject"]
    assert re.fullmatch(r"images/[\d_]+_3d_generated\.png", key)
    assert "X-Amz-Signature=" in rec["temporaryUrl"] and "/asset.1min.ai/" in rec["temporaryUrl"]
    assert rec["teamUser"]["creditLimit"] == 100_000_000
    stand_in.latency = 0.0
    second = generate(stand_in, image_key).json()["aiRecord"]
    assert second["teamUser"]["usedCredit"] - rec["teamUser"]["usedCredit"] == fos.CREDITS_PER_GENERATION
    assert second["uuid"] != rec["uuid"]


def test_async_generation_is_processing_then_succeeds(stand_in: FakeOneMinServer, image_key: str) -> None:
    stand_in.latency = 0.4
    t0 = time.monotonic()
    rec = generate(stand_in, image_key, **{"async": True}).json()["aiRecord"]
    # answered at once: the record is still PROCESSING (a synchronous answer waits for SUCCESS)
    assert rec["status"] == "PROCESSING" and rec["aiRecordDetail"]["resultObject"] == []
    assert "temporaryUrl" not in rec
    seen = []
    while time.monotonic() - t0 < 60:  # a guard: computing the result takes a busy machine a while
        got = poll(stand_in, rec["uuid"]).json()["aiRecord"]
        seen.append(got["status"])
        if got["status"] != "PROCESSING":
            break
        time.sleep(0.05)
    assert seen[0] == "PROCESSING" and seen[-1] == "SUCCESS"
    assert time.monotonic() - t0 >= 0.4
    assert requests.get(got["temporaryUrl"], timeout=5).content[:4] == b"\x89PNG"


def test_unknown_and_zero_uuids_answer_a_null_record(stand_in: FakeOneMinServer) -> None:
    for uuid in (fos.ZERO_UUID, "5c7e1bb4-1111-4222-8333-444455556666"):
        resp = poll(stand_in, uuid)
        assert resp.status_code == 200 and resp.json() == {"aiRecord": None}


def test_results_download_without_a_key_from_both_urls(stand_in: FakeOneMinServer, image_key: str) -> None:
    rec = generate(stand_in, image_key).json()["aiRecord"]
    key = rec["aiRecordDetail"]["resultObject"][0]
    presigned = requests.get(rec["temporaryUrl"], timeout=5)
    from_host = requests.get(f"{stand_in.base_url}/asset/{key}", timeout=5)
    assert presigned.status_code == from_host.status_code == 200
    assert presigned.content == from_host.content == stand_in.result_bytes(key)
    assert presigned.headers["Content-Type"] == "image/png"
    tampered = requests.get(rec["temporaryUrl"].replace("X-Amz-Signature=", "X-Amz-Signature=00"), timeout=5)
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    ranged = requests.get(rec["temporaryUrl"], headers={"Range": "bytes=10-"}, timeout=5)
    assert ranged.status_code == 206 and ranged.content == presigned.content[10:]
    missing = requests.get(f"{stand_in.base_url}/asset/images/nothing.png", timeout=5)
    assert missing.status_code == 404 and b"NoSuchKey" in missing.content


# --- the computed results ------------------------------------------------------------------


def test_depth_is_a_smooth_greyscale_map_with_the_subject_near(stand_in: FakeOneMinServer, image_key: str) -> None:
    im = Image.open(io.BytesIO(result_of(stand_in, image_key, "depth")))
    assert im.format == "PNG" and im.mode == "L"
    assert im.size[0] * 3 == im.size[1] * 4  # the 800x600 input's aspect
    d = np.asarray(im, dtype=np.float32)
    h, w = d.shape
    disc = d[int(0.32 * h) - 5:int(0.32 * h) + 5, int(0.32 * w) - 5:int(0.32 * w) + 5].mean()
    far_corner = d[-h // 8:, -w // 8:].mean()
    assert disc > far_corner + 80  # white = near: the bright textured subject stands out
    assert d.max() >= 250 and d.min() <= 5  # uses the whole range
    assert np.abs(np.diff(d, axis=0)).max() <= 12 and np.abs(np.diff(d, axis=1)).max() <= 12  # smooth


def test_depth_puts_a_transparent_background_far(stand_in: FakeOneMinServer) -> None:
    key = upload(stand_in, photo(fmt="PNG", alpha=True), name="cutout.png", mime="image/png").json()["asset"]["key"]
    d = np.asarray(Image.open(io.BytesIO(result_of(stand_in, key, "depth"))), dtype=np.float32)
    assert d[:20, :].mean() < 5 and d[:, -20:].mean() < 5
    assert d[d.shape[0] // 2, d.shape[1] // 2] > 60


def test_colour_result_is_a_stylised_colour_jpeg(stand_in: FakeOneMinServer) -> None:
    grey = Image.fromarray(np.asarray(Image.open(io.BytesIO(photo())).convert("L")))
    buf = io.BytesIO()
    grey.save(buf, "PNG")
    key = upload(stand_in, buf.getvalue(), name="grey.png", mime="image/png").json()["asset"]["key"]
    im = Image.open(io.BytesIO(result_of(stand_in, key, "color")))
    assert im.format == "JPEG" and im.mode == "RGB" and im.size == (800, 600)
    rgb = np.asarray(im, dtype=np.int16)
    # even a grey photo comes back as colour (so the add-on never mistakes it for a depth map)
    assert np.percentile(np.abs(rgb[..., 0] - rgb[..., 2]), 50) > 6


def _glb_json(data: bytes) -> tuple[dict[str, Any], bytes]:
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    assert jtype == b"JSON" and jlen % 4 == 0
    doc = json.loads(data[20:20 + jlen])
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    assert btype == b"BIN\0"
    return doc, data[28 + jlen:28 + jlen + blen]


def test_glb_result_is_a_textured_relief_mesh(stand_in: FakeOneMinServer, image_key: str) -> None:
    doc, binary = _glb_json(result_of(stand_in, image_key, "glb"))
    prim = doc["meshes"][0]["primitives"][0]
    acc = doc["accessors"]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0"}
    n = acc[prim["attributes"]["POSITION"]]["count"]
    assert n == 128 * 96  # 128 vertices on the long side, the photo's 4:3 aspect
    assert acc[prim["indices"]]["count"] == 127 * 95 * 6
    assert acc[prim["attributes"]["POSITION"]]["max"][0] == pytest.approx(0.5)
    for view in doc["bufferViews"]:
        assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= len(binary)
    image = doc["images"][0]
    view = doc["bufferViews"][image["bufferView"]]
    texture = binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
    assert image["mimeType"] == "image/jpeg" and Image.open(io.BytesIO(texture)).size == (800, 600)
    material = doc["materials"][prim["material"]]
    assert material["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0


@pytest.mark.parametrize(("kind", "names"), [
    ("zip-gltf", {"model.gltf", "model.bin", "texture.png"}),
    ("zip-obj", {"model.obj", "model.mtl", "texture.png"}),
])
def test_zip_results_hold_a_model_and_its_texture(stand_in: FakeOneMinServer, image_key: str, kind: str,
                                                  names: set[str]) -> None:
    with zipfile.ZipFile(io.BytesIO(result_of(stand_in, image_key, kind))) as zf:
        assert set(zf.namelist()) == names
        assert Image.open(io.BytesIO(zf.read("texture.png"))).format == "PNG"
        if kind == "zip-gltf":
            doc = json.loads(zf.read("model.gltf"))
            assert doc["buffers"][0] == {"byteLength": len(zf.read("model.bin")), "uri": "model.bin"}
            assert doc["images"][0]["uri"] == "texture.png"
        else:
            obj = zf.read("model.obj").decode()
            assert "mtllib model.mtl" in obj and obj.count("\nv ") == 128 * 96
            assert "map_Kd texture.png" in zf.read("model.mtl").decode()


BLENDER_CHECK = r"""
import json, sys
import bpy
import numpy as np
from mathutils import Vector
out = {}
for label, path in json.loads(sys.argv[1]).items():
    bpy.ops.wm.read_homefile(use_empty=True)
    if path.endswith(".obj"):
        bpy.ops.wm.obj_import(filepath=path)
    else:
        bpy.ops.import_scene.gltf(filepath=path)
    obj = next(o for o in bpy.data.objects if o.type == "MESH")
    me = obj.data
    co = np.array([tuple(obj.matrix_world @ v.co) for v in me.vertices])
    near = co[np.argmin(co[:, 1])]            # the relief comes toward the viewer of the front view (-Y)
    top_left = int(np.argmin(co[:, 0] - co[:, 2]))
    loop = next(lp.index for lp in me.loops if lp.vertex_index == top_left)
    u, v = me.uv_layers.active.data[loop].uv
    img = next(n for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE").image
    w, h = img.size
    px = np.array(img.pixels[:]).reshape(h, w, img.channels)
    out[label] = {"verts": len(me.vertices), "faces": len(me.polygons), "near": near.tolist(),
                  "dims": list(obj.dimensions), "corner_colour": px[round(v * (h - 1)), round(u * (w - 1))][:3].tolist()}
print("RESULT " + json.dumps(out))
"""


def test_blender_imports_the_models(stand_in: FakeOneMinServer, image_key: str, tmp_path: Path) -> None:
    paths = {"glb": tmp_path / "result.glb"}
    paths["glb"].write_bytes(result_of(stand_in, image_key, "glb"))
    for kind, model in (("zip-gltf", "model.gltf"), ("zip-obj", "model.obj")):
        with zipfile.ZipFile(io.BytesIO(result_of(stand_in, image_key, kind))) as zf:
            zf.extractall(tmp_path / kind)
        paths[kind] = tmp_path / kind / model
    proc = subprocess.run([sys.executable, "-c", BLENDER_CHECK, json.dumps({k: str(v) for k, v in paths.items()})],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    for kind, got in json.loads(line[7:]).items():
        assert got["verts"] == 128 * 96 and got["faces"] == 127 * 95 * 2, kind
        x, _, z = got["near"]
        assert x < 0 and z > 0, (kind, got)  # the disc, up and to the left in the photo, is nearest
        r, g, b = got["corner_colour"]
        assert r > 0.8 and g < 0.2 and b < 0.2, (kind, got)  # the red corner maps to the top-left


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status", "code"), [
    ("401", 401, "HTTP_EXCEPTION"), ("403", 403, "HTTP_EXCEPTION"),
    ("400:UNSUPPORTED_MODEL", 400, "UNSUPPORTED_MODEL"),
    ("400:MISSING_REQUIRED_FIELDS", 400, "MISSING_REQUIRED_FIELDS"),
    ("400:UNKNOWN_ERROR", 400, "UNKNOWN_ERROR"),
    ("400:EXTERNAL_API_RESPONSE_WITH_ERROR", 400, "EXTERNAL_API_RESPONSE_WITH_ERROR"),
    ("credits", 400, "INSUFFICIENT_CREDITS"), ("413", 413, "PAYLOAD_TOO_LARGE"),
    ("429", 429, "RATE_LIMIT_EXCEEDED"), ("429-no-retry-after", 429, "RATE_LIMIT_EXCEEDED"),
    ("500", 500, "INTERNAL_SERVER_ERROR"), ("502-html", 502, None), ("522-html", 522, None),
])
def test_status_faults_answer_once_with_the_api_shapes(stand_in: FakeOneMinServer, fault: str, status: int,
                                                       code: str | None) -> None:
    stand_in.inject(fault, stage="upload")
    resp = upload(stand_in, photo())
    assert resp.status_code == status
    if code is None:
        assert resp.headers["Content-Type"].startswith("text/html")
        assert f"Error code {status}" in resp.text and "cloudflare" in resp.text.lower()
    else:
        assert resp.json()["errorCode"] == code
    if fault == "credits":
        assert "credits" in resp.json()["message"]
    if fault == "400:EXTERNAL_API_RESPONSE_WITH_ERROR":
        assert json.loads(resp.json()["details"])["message"]
    assert resp.headers.get("Retry-After") == ("1" if fault == "429" else None)
    assert upload(stand_in, photo()).status_code == 200  # consumed: the next one passes


def test_a_5xx_at_generate_still_spends_the_generation(stand_in: FakeOneMinServer, image_key: str) -> None:
    stand_in.inject("522-html", stage="generate")
    resp = generate(stand_in, image_key)
    assert resp.status_code == 522
    assert stand_in.count("POST", "/api/features") == 1 and stand_in.generations == 1
    assert list(stand_in.records.values())[0]["status"] == "SUCCESS"


def test_slow_headers_trip_a_read_timeout(stand_in: FakeOneMinServer) -> None:
    stand_in.inject("slow-headers", stage="poll", delay=1.0)
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{stand_in.base_url}/api/results/{fos.ZERO_UUID}", headers={"API-KEY": stand_in.api_key},
                     timeout=(2, 0.2))
    assert poll(stand_in, fos.ZERO_UUID).status_code == 200


@pytest.mark.parametrize("fault", ["drop-mid-body", "truncated"])
def test_broken_download_bodies_raise_in_the_client(stand_in: FakeOneMinServer, image_key: str, fault: str) -> None:
    url = generate(stand_in, image_key).json()["aiRecord"]["temporaryUrl"]
    stand_in.inject(fault, stage="download")
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, timeout=5)
    assert len(requests.get(url, timeout=5).content) == len(stand_in.result_bytes(
        stand_in.records[next(iter(stand_in.records))]["aiRecordDetail"]["resultObject"][0]) or b"")


@pytest.mark.parametrize("fault", ["reset", "drop-mid-body"])
def test_a_lost_generate_answer_was_still_generated(stand_in: FakeOneMinServer, image_key: str, fault: str) -> None:
    stand_in.inject(fault, stage="generate")
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        generate(stand_in, image_key)
    assert stand_in.generations == 1 and stand_in.count("POST", "/api/features") == 1


def test_non_json_answers(stand_in: FakeOneMinServer) -> None:
    stand_in.inject("invalid-json", stage="poll")
    stand_in.inject("html-instead-of-json", stage="upload")
    bad = poll(stand_in, fos.ZERO_UUID)
    assert bad.status_code == 200
    with pytest.raises(ValueError):
        bad.json()
    html = upload(stand_in, photo())
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert "<html" in html.text


def test_record_faults_change_what_the_record_says(stand_in: FakeOneMinServer, image_key: str) -> None:
    stand_in.inject("status-failure", stage="generate", message="upstream said no")
    failed = generate(stand_in, image_key).json()["aiRecord"]
    assert failed["status"] == "FAILURE" and failed["aiRecordDetail"]["errorMessage"] == "upstream said no"
    assert failed["aiRecordDetail"]["resultObject"] == [] and "temporaryUrl" not in failed

    stand_in.inject("temporary-url-empty")
    assert generate(stand_in, image_key).json()["aiRecord"]["temporaryUrl"] == ""
    stand_in.inject("temporary-url-missing")
    missing = generate(stand_in, image_key).json()
    assert "temporaryUrl" not in missing["aiRecord"] and "temporaryUrl" not in missing
    key = missing["aiRecord"]["aiRecordDetail"]["resultObject"][0]
    assert requests.get(f"{stand_in.base_url}/asset/{key}", timeout=5).status_code == 200  # the last fallback
    assert "temporaryUrl" not in poll(stand_in, missing["aiRecord"]["uuid"]).json()["aiRecord"]  # sticky
    stand_in.inject("temporary-url-toplevel")
    top = generate(stand_in, image_key).json()
    assert "temporaryUrl" not in top["aiRecord"] and requests.get(top["temporaryUrl"], timeout=5).ok
    stand_in.inject("key-is-url")
    url_key = generate(stand_in, image_key).json()["aiRecord"]["aiRecordDetail"]["resultObject"][0]
    assert url_key.startswith("http://") and requests.get(url_key, timeout=5).ok


def test_status_failure_can_arrive_while_polling(stand_in: FakeOneMinServer, image_key: str) -> None:
    stand_in.inject("status-failure", stage="poll", status="FAILED")
    rec = generate(stand_in, image_key, **{"async": True}).json()["aiRecord"]
    # Poll as a client does until the record settles (computing it takes a busy machine a while);
    # the fault was taken by the first poll and sticks to the record.
    deadline = time.monotonic() + 60
    while (got := poll(stand_in, rec["uuid"]).json()["aiRecord"])["status"] == "PROCESSING":
        assert time.monotonic() < deadline, "the record never settled"
        time.sleep(0.05)
    assert got["status"] == "FAILED" and got["aiRecordDetail"]["errorMessage"]


def test_hostile_key_is_served_by_its_presigned_url(stand_in: FakeOneMinServer, image_key: str) -> None:
    stand_in.inject("hostile-key", stage="generate")
    rec = generate(stand_in, image_key).json()["aiRecord"]
    assert rec["aiRecordDetail"]["resultObject"] == ["../../x"]
    resp = requests.get(rec["temporaryUrl"], timeout=5)  # requests folds the dot segments away
    assert resp.status_code == 200 and resp.content[:4] == b"\x89PNG"
    stand_in.inject("hostile-key", stage="generate", key="/etc/passwd\x00\x1b[31m" + "a" * 500)
    assert generate(stand_in, image_key).json()["aiRecord"]["aiRecordDetail"]["resultObject"][0].endswith("a" * 500)


def test_result_404s_for_the_first_n_gets(stand_in: FakeOneMinServer, image_key: str) -> None:
    url = generate(stand_in, image_key).json()["aiRecord"]["temporaryUrl"]
    stand_in.inject("result-404", times=3)
    assert [requests.get(url, timeout=5).status_code for _ in range(4)] == [404, 404, 404, 200]


def test_content_faults_replace_the_downloaded_bytes(stand_in: FakeOneMinServer, image_key: str) -> None:
    url = generate(stand_in, image_key).json()["aiRecord"]["temporaryUrl"]
    stand_in.inject("corrupt-result")
    corrupt = requests.get(url, timeout=5).content
    assert not corrupt.startswith((b"\x89PNG", b"\xff\xd8\xff", b"glTF", b"PK", b"RIFF", b"{"))
    stand_in.inject("invalid-glb")
    glb = requests.get(url, timeout=5).content
    assert glb[:4] == b"glTF"
    with pytest.raises(ValueError):
        json.loads(glb[20:])
    stand_in.inject("zip-traversal")
    with zipfile.ZipFile(io.BytesIO(requests.get(url, timeout=5).content)) as zf:
        assert "../../evil.txt" in zf.namelist() and any(n.startswith("/") for n in zf.namelist())
    stand_in.inject("zip-bomb", size=64 << 20)
    bomb = requests.get(url, timeout=5).content
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:
        info = zf.getinfo("texture.png")
        assert info.file_size == 64 << 20 and info.file_size / info.compress_size > 500
    assert requests.get(url, timeout=5).content[:4] == b"\x89PNG"


def test_transport_faults_on_downloads(stand_in: FakeOneMinServer, image_key: str) -> None:
    url = generate(stand_in, image_key).json()["aiRecord"]["temporaryUrl"]
    stand_in.inject("huge-content-length")
    with requests.get(url, stream=True, timeout=5) as resp:
        assert int(resp.headers["Content-Length"]) == 10**12
    stand_in.inject("redirect-scheme")
    redirect = requests.get(url, allow_redirects=False, timeout=5)
    assert redirect.status_code == 302 and redirect.headers["Location"] == "file:///etc/passwd"
    stand_in.inject("redirect-scheme", location="ftp://example.com/x")
    with pytest.raises(requests.exceptions.InvalidSchema):
        requests.get(url, timeout=5)
    stand_in.inject("gzip")
    assert requests.get(url, timeout=5).content == requests.get(url, timeout=5).content  # transparent
    stand_in.inject("gzip-bomb", size=32 << 20)
    with requests.get(url, stream=True, timeout=5) as resp:
        assert resp.headers["Content-Encoding"] == "gzip" and int(resp.headers["Content-Length"]) < 1 << 20
        inflated = 0
        for chunk in resp.iter_content(1 << 20):
            inflated += len(chunk)
            if inflated > 8 << 20:
                break
        assert inflated > 8 << 20 and chunk[:1] == b"\0"
    assert gzip.decompress(fos.gzip_bomb(b"\x89PNG", 1000))[:4] == b"\x89PNG"


def test_never_ends_streams_until_the_client_gives_up(stand_in: FakeOneMinServer, image_key: str) -> None:
    url = generate(stand_in, image_key).json()["aiRecord"]["temporaryUrl"]
    stand_in.inject("never-ends", interval=0.02)
    with requests.get(url, stream=True, timeout=(30, 30)) as resp:
        got = b""
        for chunk in resp.iter_content(16):
            got += chunk
            if len(got) >= 64 + 4 * 16:  # the first 64 bytes, then filler that keeps coming
                break
    assert "Content-Length" not in resp.headers and got[:4] == b"\x89PNG" and len(got) >= 128
    assert requests.get(url, timeout=5).status_code == 200


def test_kill_at_sigkills_the_process_at_the_chosen_request_and_point(stand_in: FakeOneMinServer) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    url, headers = f"{stand_in.base_url}/api/assets", {"API-KEY": stand_in.api_key}
    try:
        with pytest.raises(ValueError, match="unknown event"):
            stand_in.kill_at("import", pid=victim.pid)
        switch = stand_in.kill_at("upload", nth=2, pid=victim.pid, when="before-answer")
        assert requests.post(url, headers=headers, timeout=10).status_code == 400  # the first: counted only
        assert victim.poll() is None and not switch.fired
        with pytest.raises(requests.ConnectionError):  # the second: done, never answered
            requests.post(url, headers=headers, timeout=10)
        assert victim.wait(60) == -signal.SIGKILL
        assert switch.fired and switch.request == ("POST", "/api/assets") and stand_in.clear_kills() == []
    finally:
        victim.kill()
        victim.wait()


def test_a_hold_keeps_a_stage_unanswered_until_released(stand_in: FakeOneMinServer, image_key: str) -> None:
    held = stand_in.hold("generate")
    answers: list[int] = []
    t = threading.Thread(target=lambda: answers.append(generate(stand_in, image_key).status_code))
    t.start()
    deadline = time.monotonic() + 60  # a guard
    while not stand_in.generations:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    t.join(0.2)
    assert t.is_alive() and not answers  # made and charged, not answered
    held.set()
    t.join(60)
    assert answers == [200]


def test_fault_matching_times_and_validation(stand_in: FakeOneMinServer) -> None:
    stand_in.inject("429", times=2)  # any stage
    codes = [poll(stand_in, fos.ZERO_UUID).status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    stand_in.inject("500", stage="download", times=-1)
    assert poll(stand_in, fos.ZERO_UUID).status_code == 200  # other stages untouched
    assert len(stand_in.faults) == 1
    stand_in.clear_faults()
    assert stand_in.faults == []
    with pytest.raises(ValueError):
        stand_in.inject("no-such-fault")
    with pytest.raises(ValueError):
        stand_in.inject("result-404", stage="upload")
    f = fos.parse_fault("slow-headers@generate*3,delay=2.5")
    assert (f.name, f.stage, f.times, f.params) == ("slow-headers", "generate", 3, {"delay": 2.5})
    assert fos.parse_fault("400:UNSUPPORTED_MODEL*inf").times == -1


# --- counters, control, lifecycle ----------------------------------------------------------


def test_requests_are_counted_and_controllable_over_http(stand_in: FakeOneMinServer, image_key: str) -> None:
    base = stand_in.base_url
    assert requests.post(f"{base}/_control/result", json={"result": "glb"}, timeout=5).ok
    assert requests.post(f"{base}/_control/fault", json={"fault": "429", "stage": "generate", "times": 1,
                                                         "params": {"retry_after": 3}}, timeout=5).ok
    assert requests.post(f"{base}/_control/fault", json={"fault": "bogus"}, timeout=5).status_code == 400
    limited = generate(stand_in, image_key)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    rec = generate(stand_in, image_key).json()["aiRecord"]
    assert rec["aiRecordDetail"]["resultObject"][0].endswith(".glb")
    stats = requests.get(f"{base}/_control/stats", timeout=5).json()
    assert stats["counts"] == {"POST /api/assets": 1, "POST /api/features": 2}
    assert stats["generations"] == 1 and stats["result"] == "glb"
    assert stand_in.count("POST", "/api/features") == 2 and stand_in.count() == 3
    assert stand_in.requests[0] == ("POST", "/api/assets")


def test_concurrent_generations_overlap(stand_in: FakeOneMinServer, image_key: str) -> None:
    held = stand_in.hold("generate")
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(generate(stand_in, image_key).status_code))
               for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60  # a guard: all four are in the server at once, none answered
    while stand_in.generations < 4:
        assert time.monotonic() < deadline and not codes, (stand_in.generations, codes)
        time.sleep(0.01)
    held.set()
    for t in threads:
        t.join(60)
    assert codes == [200] * 4


def test_stop_ends_even_a_hanging_request(api_key: str) -> None:
    server = FakeOneMinServer(api_key=api_key).start()
    server.inject("slow-headers", stage="poll", delay=3600)
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            poll(server, fos.ZERO_UUID)
        except requests.RequestException as exc:
            errors.append(exc)

    t = threading.Thread(target=hang)
    t.start()
    deadline = time.monotonic() + 60  # guards, not figures: each wait ends as soon as it can
    while not server.count("GET", "/api/results/"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server.stop()
    t.join(60)
    # the hanging request was ended by the stop, not left to its hour nor to the client's timeout
    assert not t.is_alive() and errors and not isinstance(errors[0], requests.Timeout), errors
    while [th for th in threading.enumerate() if th.name.startswith("onemin-stand-in")]:
        assert time.monotonic() < deadline, "a stand-in thread outlived stop()"
        time.sleep(0.01)
    server.start()  # restarts on the same port
    assert poll(server, fos.ZERO_UUID).status_code == 200
    server.close()


def test_command_line_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "ONEMIN_API_KEY": "cli-key-42"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "fake_onemin_server.py"), "--port", "0",
                             "--result", "glb", "--latency", "0.1", "--fault", "429@poll*1,retry_after=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert m, line
        url = f"{m[1]}/api/results/{fos.ZERO_UUID}"
        first = requests.get(url, headers={"API-KEY": "cli-key-42"}, timeout=5)
        assert first.status_code == 429 and first.headers["Retry-After"] == "2"
        assert requests.get(url, headers={"API-KEY": "cli-key-42"}, timeout=5).json() == {"aiRecord": None}
        assert requests.get(f"{m[1]}/_control/stats", timeout=5).json()["result"] == "glb"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert proc.stderr is not None and "cli-key-42" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the other feature and model (issue 15) --------------------------------------------------


def test_background_remover_answers_a_feathered_cutout_and_charges_its_price(stand_in: FakeOneMinServer,
                                                                             image_key: str) -> None:
    before = stand_in.used_credit
    body = {"type": "BACKGROUND_REMOVER", "model": "stable-image",
            "promptObject": {"imageUrl": image_key, "output_format": "png"}}
    rec = features(stand_in, body).json()["aiRecord"]
    assert (rec["status"], rec["type"], rec["model"]) == ("SUCCESS", "BACKGROUND_REMOVER", "stable-image")
    assert stand_in.used_credit - before == fos.PRICES[("BACKGROUND_REMOVER", "stable-image")] == 20_000
    (key,) = rec["aiRecordDetail"]["resultObject"]
    with Image.open(io.BytesIO(requests.get(rec["temporaryUrl"], timeout=10).content)) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGBA", (800, 600))  # the photo's own size
        rgba = np.asarray(im)
    alpha = rgba[..., 3]
    assert alpha[300, 700] == 0 and alpha[int(0.32 * 600), int(0.32 * 800)] == 255  # background, disc
    assert 0 < np.count_nonzero((alpha > 0) & (alpha < 255)) < 0.05 * alpha.size  # a feathered edge
    assert rgba[int(0.32 * 600), int(0.32 * 800), 0] > 180  # the photo's colours are kept
    # its storage key is an imageUrl the 3D feature takes, as an uploaded asset's is
    assert generate(stand_in, key).status_code == 200


def test_trellis_answers_a_glb_at_its_price_and_unknown_models_are_refused(stand_in: FakeOneMinServer,
                                                                           image_key: str) -> None:
    stand_in.result = "depth"  # stable-image's kind; Trellis answers a model whatever it is
    before = stand_in.used_credit
    rec = features(stand_in, {**FEATURE, "model": "Qubico/trellis",
                              "promptObject": {"imageUrl": image_key}}).json()["aiRecord"]
    assert rec["model"] == "Qubico/trellis" and stand_in.used_credit - before == 40_000
    assert requests.get(rec["temporaryUrl"], timeout=10).content[:4] == b"glTF"
    assert generate(stand_in, image_key).json()["aiRecord"]["teamUser"]["usedCredit"] - before == 60_000
    for body in ({**FEATURE, "model": "Qubico/other"}, {"type": "BACKGROUND_REMOVER", "model": "Qubico/trellis"}):
        refused = features(stand_in, {**body, "promptObject": {"imageUrl": image_key}})
        assert refused.status_code == 400 and refused.json()["errorCode"] == "UNSUPPORTED_MODEL"
    assert stand_in.used_credit - before == 60_000


def test_faults_apply_to_the_background_remover(stand_in: FakeOneMinServer, image_key: str) -> None:
    body = {"type": "BACKGROUND_REMOVER", "model": "stable-image", "promptObject": {"imageUrl": image_key}}
    stand_in.inject("status-failure", stage="generate")
    assert features(stand_in, body).json()["aiRecord"]["status"] == "FAILURE"
    stand_in.inject("500", stage="generate")
    before = stand_in.used_credit
    assert features(stand_in, body).status_code == 500
    assert stand_in.used_credit - before == 20_000  # the origin did the work, the answer was lost
