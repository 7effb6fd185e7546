"""The headless batch converter (scripts/image_to_3d.py) and the demo, run as a user runs them.

Each test starts the converter in a subprocess with the bpy wheel, against one real local
stand-in of the 1min.ai API shared by the module, and checks what a user sees: exit codes,
files, the report, stderr, and the stand-in's own request counters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_onemin_server import FakeOneMinServer
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "scripts" / "image_to_3d.py"
DEMO = ROOT / "scripts" / "demo.py"
#: long and unmistakable, so finding it anywhere is proof of a leak
KEY = "sk-onemin-test-KEY-7f3a9c1e5b-must-never-leak"
FAST = ["--resolution", "48", "--jobs", "2"]  # small reliefs: the tests are about the batch


@pytest.fixture(scope="module")
def server():
    with FakeOneMinServer(api_key=KEY, result="depth") as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def _reset_server(server):
    server.clear_faults()
    server.result, server.latency, server.async_latency = "depth", 0.0, None
    yield


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Two good 512×512 photos, a corrupt file, a 100×100 image."""
    folder = tmp_path_factory.mktemp("photos")
    y, x = np.mgrid[0:512, 0:512] / 512.0
    out = {}
    for i, name in enumerate(("apple", "pear")):
        blob = np.exp(-((x - 0.3 - 0.4 * i) ** 2 + (y - 0.5) ** 2) / 0.02)
        rgb = np.stack([0.3 + 0.6 * blob, 0.2 + 0.5 * x, 0.4 + 0.4 * y * (1 - blob)], axis=-1)
        path = folder / f"{name}.jpg"
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path, quality=90)
        out[name] = path
    out["corrupt"] = folder / "corrupt.jpg"
    out["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" + bytes(range(256)) * 8)
    out["tiny"] = folder / "tiny.png"
    Image.new("RGB", (100, 100), (200, 120, 40)).save(out["tiny"])
    return out


def cli_env(server: FakeOneMinServer | None, *, key: str | None = KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEMIN_")}
    if key is not None:
        env["ONEMIN_API_KEY"] = key
    if server is not None:
        env["ONEMIN_API_BASE_URL"] = server.base_url
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def report_of(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def by_name(report: dict) -> dict[str, dict]:
    return {Path(i["input"]).name: i for i in report["items"]}


def assert_no_key(*blobs: str | bytes) -> None:
    for blob in blobs:
        data = blob.encode() if isinstance(blob, str) else blob
        assert KEY.encode() not in data


# --- exit code 2: usage and configuration errors -------------------------------------------------


def test_bad_arguments_exit_2(server, photos, tmp_path):
    proc = run_cli([photos["apple"], "--output-dir", tmp_path, "--jobs", "9"], cli_env(server))
    assert proc.returncode == 2
    assert "--jobs" in proc.stderr and "between 1 and 8" in proc.stderr


def test_missing_key_exits_2_and_says_how_to_set_it(server, photos, tmp_path):
    before = len(server.requests)
    proc = run_cli([photos["apple"], "--output-dir", tmp_path / "out"], cli_env(server, key=None))
    assert proc.returncode == 2
    assert "ONEMIN_API_KEY" in proc.stderr and "--api-key" in proc.stderr
    assert len(server.requests) == before  # nothing was sent
    assert "Traceback" not in proc.stderr


def test_rejected_key_exits_2_before_anything_is_paid(server, photos, tmp_path):
    features = server.count("POST", "/api/features")
    proc = run_cli([photos["apple"], "--output-dir", tmp_path], cli_env(server, key="sk-wrong-key-000000"))
    assert proc.returncode == 2
    assert "rejected the API key" in proc.stderr and "ONEMIN_API_KEY" in proc.stderr
    assert server.count("POST", "/api/features") == features
    assert "Traceback" not in proc.stderr


def test_unreachable_output_folder_exits_2(server, photos, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli([photos["apple"], "--output", blocker / "sub" / "out.blend"], cli_env(server))
    assert proc.returncode == 2
    assert "Cannot write to the output folder" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- exit code 0: a clean batch, exports, the key, resume ----------------------------------------


@pytest.fixture(scope="module")
def clean_batch(server, photos, tmp_path_factory):
    """Two photos into one scene, exported as GLB, with a report (one run, shared below)."""
    out = tmp_path_factory.mktemp("clean")
    args = [photos["apple"], photos["pear"], "--output", out / "scene.blend", "--export", "glb",
            "--json", out / "report.json", *FAST]
    features_before = server.count("POST", "/api/features")
    proc = run_cli(args, cli_env(server))
    return {"out": out, "args": args, "proc": proc,
            "features": server.count("POST", "/api/features") - features_before}


@pytest.mark.smoke  # one CLI conversion on every bpy tier
def test_clean_batch_exits_0_with_summary_and_stage_lines(clean_batch):
    proc = clean_batch["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "2 converted, 0 failed" in proc.stdout
    # stderr is not a terminal here: one line per stage change per image
    assert "apple.jpg: upload" in proc.stderr and "pear.jpg: download" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert clean_batch["features"] == 2


def test_clean_batch_report_has_status_files_stage_and_timings(clean_batch):
    report = report_of(clean_batch["out"] / "report.json")
    assert report["summary"]["converted"] == 2 and report["summary"]["failed"] == 0
    for item in report["items"]:
        assert item["status"] == "converted" and item["error"] is None
        assert Path(item["files"]["result"]).is_file()
        assert item["files"]["blend"] == str(clean_batch["out"] / "scene.blend")
        assert {"upload", "generate", "download", "import"} <= set(item["timings"])


#: Runs in a fresh bpy process (this one may hold other tests' Blender state): opens the batch's
#: .blend, then reads each exported GLB back with Blender's glTF importer; prints what it found.
INSPECT = """
import json, sys
import bpy
blend, glbs = sys.argv[1], sys.argv[2:]
bpy.ops.wm.open_mainfile(filepath=blend)
colls = {}
for c in bpy.context.scene.collection.children:
    roots = [o for o in c.all_objects if o.parent is None]
    if roots:
        colls[c.name] = sum(o.matrix_world.translation.x for o in roots) / len(roots)
bpy.ops.wm.read_homefile(use_empty=True)
imported = {}
for glb in glbs:
    before = set(bpy.data.objects)
    status = bpy.ops.import_scene.gltf(filepath=glb)
    meshes = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
    imported[glb] = [sorted(status), max((len(o.data.vertices) for o in meshes), default=0)]
print("INSPECT" + json.dumps({"collections": colls, "imported": imported}))
"""


@pytest.fixture(scope="module")
def inspected(clean_batch) -> dict:
    glbs = sorted(str(p) for p in clean_batch["out"].glob("*.glb"))
    proc = subprocess.run([sys.executable, "-c", INSPECT, str(clean_batch["out"] / "scene.blend"), *glbs],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("INSPECT"))
    return json.loads(line[len("INSPECT"):])


def test_clean_batch_scene_has_one_collection_per_result_side_by_side(inspected):
    colls = inspected["collections"]
    assert sorted(colls) == ["1min3d apple", "1min3d pear"]
    assert abs(colls["1min3d apple"] - colls["1min3d pear"]) > 0.5  # side by side, not stacked


@pytest.mark.smoke  # one CLI conversion on every bpy tier
def test_exported_glb_is_read_back_by_blenders_importer(clean_batch, inspected):
    assert sorted(p.name for p in clean_batch["out"].glob("*.glb")) == ["apple.glb", "pear.glb"]
    for status, vertices in inspected["imported"].values():
        assert status == ["FINISHED"]
        assert vertices > 100


def test_key_never_appears_in_output_report_blend_history_or_log(clean_batch):
    proc = clean_batch["proc"]
    out = clean_batch["out"]
    assert_no_key(proc.stdout, proc.stderr)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".blend" for p in files) and any(p.suffix == ".log" for p in files)
    assert any(p.parent.name == "history" for p in files)
    for path in files:
        assert_no_key(path.read_bytes())


def test_resume_sends_no_new_generation(server, clean_batch):
    before = server.count("POST", "/api/features")
    uploads = server.count("POST", "/api/assets")
    proc = run_cli([*clean_batch["args"], "--resume"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert server.count("POST", "/api/features") == before
    assert server.count("POST", "/api/assets") == uploads
    items = report_of(clean_batch["out"] / "report.json")["items"]
    assert all(i["status"] == "converted" and i["reused_result"] for i in items)


# --- exit code 1: one bad input never aborts the batch -------------------------------------------


def test_mixed_batch_converts_the_good_ones_and_names_each_failure(server, photos, tmp_path):
    missing = tmp_path / "no-such-photo.jpg"
    report = tmp_path / "report.json"
    proc = run_cli([photos["apple"], photos["corrupt"], photos["tiny"], missing,
                    "--output", tmp_path / "mixed.blend", "--json", report, *FAST], cli_env(server))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "1 converted, 3 failed (see report" in proc.stdout
    assert (tmp_path / "mixed.blend").is_file()
    items = by_name(report_of(report))
    assert items["apple.jpg"]["status"] == "converted"
    for name in ("corrupt.jpg", "tiny.png", "no-such-photo.jpg"):
        assert items[name]["status"] == "failed"
        assert items[name]["error"], name
        assert items[name]["error"] in proc.stderr  # named on the console as well
    assert "not found" in items["no-such-photo.jpg"]["error"]
    assert "512" in items["tiny.png"]["error"]  # says why: below the minimum size


# --- async ---------------------------------------------------------------------------------------


def polls_of_real_generations(server: FakeOneMinServer) -> int:
    """GETs of /api/results/<uuid>, leaving out the free key check (the all-zero uuid)."""
    return sum(1 for m, p in list(server.requests)
               if m == "GET" and p.startswith("/api/results/") and not p.endswith("0000-000000000000"))


def test_async_polls_results(server, photos, tmp_path):
    server.latency = 0.5
    polls = polls_of_real_generations(server)
    proc = run_cli([photos["pear"], "--output-dir", tmp_path, "--async", "--poll-interval", "0.1", *FAST],
                   cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert polls_of_real_generations(server) - polls >= 2  # a PROCESSING answer, then SUCCESS
    assert "pear.jpg: poll" in proc.stderr
    assert (tmp_path / "pear.blend").is_file()


def test_credits_running_out_stops_the_batch_with_the_reason(server, photos, tmp_path):
    server.inject("credits", stage="generate")
    report = tmp_path / "report.json"
    proc = run_cli([photos["apple"], photos["pear"], "--output-dir", tmp_path, "--json", report,
                    "--resolution", "48", "--jobs", "1"], cli_env(server))
    assert proc.returncode == 1
    items = by_name(report_of(report))
    assert "run out of credits" in items["apple.jpg"]["error"]
    assert items["pear.jpg"]["status"] == "failed" and "run out of credits" in items["pear.jpg"]["error"]
    assert "Traceback" not in proc.stderr


# --- Ctrl-C --------------------------------------------------------------------------------------


def test_ctrl_c_cancels_saves_what_finished_and_reports_the_rest(server, photos, tmp_path):
    server.latency = 1.5
    report = tmp_path / "report.json"
    args = [photos["apple"], photos["pear"], "--output", tmp_path / "part.blend", "--json", report,
            "--resolution", "48", "--jobs", "1"]
    proc = subprocess.Popen([sys.executable, str(CLI), *map(str, args)], env=cli_env(server), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # wait until the second photo is being generated
        seen.append(line)
        if "pear.jpg: generate" in line or time.monotonic() > deadline:
            break
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    data = report_of(report)
    assert data["interrupted"] is True
    items = by_name(data)
    assert items["apple.jpg"]["status"] == "converted"
    assert items["pear.jpg"]["status"] == "interrupted" and items["pear.jpg"]["error"]
    assert (tmp_path / "part.blend").is_file()


# --- the demo --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_writes_a_scene_and_a_picture_that_is_not_blank(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEMIN_")}
    proc = subprocess.run([sys.executable, str(DEMO), "--out", str(tmp_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not from 1min.ai" in proc.stdout
    assert (tmp_path / "demo.blend").is_file()
    picture = np.asarray(Image.open(tmp_path / "demo.png").convert("L"), dtype=np.float32)
    assert picture.shape[1] >= 128
    assert picture.std() > 12.0  # a blank or flat frame is a few units at most
    report = report_of(tmp_path / "demo-report.json")
    assert report["summary"]["converted"] == 3
    assert all(i["reused_result"] for i in report["items"])


# --- command line ------------------------------------------------------------------------------


def test_script_takes_its_arguments_after_the_double_dash_under_blender():
    import image_to_3d

    blender = ["/opt/blender/blender", "-b", "--factory-startup", "--python-exit-code", "1",
               "--python", str(CLI), "--", "a.jpg", "--output", "o.blend"]
    assert image_to_3d.script_argv(blender) == ["a.jpg", "--output", "o.blend"]
    assert image_to_3d.script_argv([str(CLI), "b.jpg", "--", "c.jpg"]) == ["b.jpg", "--", "c.jpg"]
