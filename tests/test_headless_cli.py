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
    assert "does not exist: check the path" in items["no-such-photo.jpg"]["error"]
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


# --- async by default; interruptions and --resume ------------------------------------------------
# Each case counts what the stand-in was paid (its generations and usedCredit), interrupts the
# converter where a user would (Ctrl-C, a kill, a fault), follows the advice printed, and checks
# that the advice works: a paid result is fetched, never paid again, never lost.

CREDITS = 20_000  # the stand-in's price of one stable-image generation
UNANSWERED = ("apple.jpg: its generation may already have been sent and charged, but its answer never "
              "arrived, so --resume does not send it again; to generate it again on purpose, add "
              "--regenerate apple.jpg to the command.")


class Paid:
    """What the stand-in was paid since this was made."""

    def __init__(self, server: FakeOneMinServer) -> None:
        self.server = server
        self.generations = server.generations
        self.credits = server.used_credit

    @property
    def times(self) -> int:
        n = self.server.generations - self.generations
        assert self.server.used_credit - self.credits == n * CREDITS  # usedCredit rose with each
        return n


def _history(folder: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("onemin3d-results/history/*.json"))]


def interrupt_when(args: list, env: dict[str, str], ready, sig: int = signal.SIGINT, timeout: float = 60.0
                   ) -> subprocess.CompletedProcess[str]:
    """Run the converter, send `sig` once `ready()` holds, and wait for it to end."""
    proc = subprocess.Popen([sys.executable, str(CLI), *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the moment to interrupt never came"
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _one(report: Path) -> dict:
    (item,) = report_of(report)["items"]
    return item


def test_async_is_the_default_and_sync_is_asked_for(server, photos, tmp_path):
    polls = polls_of_real_generations(server)
    proc = run_cli([photos["apple"], "--output-dir", tmp_path / "a", "--json", tmp_path / "a.json", *FAST],
                   cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert polls_of_real_generations(server) > polls  # started, then polled
    assert report_of(tmp_path / "a.json")["settings"]["async"] is True
    polls = polls_of_real_generations(server)
    proc = run_cli([photos["apple"], "--output-dir", tmp_path / "s", "--sync", *FAST], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert polls_of_real_generations(server) == polls  # one long request: no poll
    proc = run_cli([photos["apple"], "--output-dir", tmp_path / "x", "--sync", "--async"], cli_env(server))
    assert proc.returncode == 2  # contradictory


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_an_async_generation_interrupted_then_resumed_is_paid_once_and_imported(server, photos, tmp_path, sig):
    server.latency = 3.0
    paid = Paid(server)
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, *FAST]
    # interrupted while 1min.ai generates: the uuid is journalled by then
    proc = interrupt_when(args, cli_env(server), lambda: any(e.get("uuid") for e in _history(out)), sig)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), proc.stderr
    assert paid.times == 1
    if sig == signal.SIGINT:
        item = _one(report)
        assert item["status"] == "interrupted"
        assert "run again with --resume to fetch the result without paying twice" in item["error"]
    uuid = next(e["uuid"] for e in _history(out) if e.get("uuid"))
    features = server.count("POST", "/api/features")
    server.latency = 0.0
    proc = run_cli([*args, "--resume"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    item = _one(report)
    assert item["status"] == "converted" and item["resumed_from"] == "generation" and item["uuid"] == uuid
    assert (out / "apple.blend").is_file()
    assert paid.times == 1 and server.count("POST", "/api/features") == features  # the same uuid, polled


def test_ctrl_c_while_the_async_request_is_answered_keeps_its_uuid(server, photos, tmp_path):
    server.inject("slow-headers", stage="generate", delay=2.0)  # the answer takes 2 s to come
    paid = Paid(server)
    features = server.count("POST", "/api/features")
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, *FAST]
    proc = interrupt_when(args, cli_env(server), lambda: server.count("POST", "/api/features") > features)
    assert proc.returncode == 130, proc.stderr
    assert paid.times == 1 and any(e.get("uuid") for e in _history(out))  # waited for the answer
    assert "--resume to fetch the result" in _one(report)["error"]
    proc = run_cli([*args, "--resume"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert _one(report)["status"] == "converted" and paid.times == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_a_sync_generation_cut_off_is_refused_on_resume_until_regenerated_on_purpose(
        server, photos, tmp_path, sig):
    server.latency = 3.0
    paid = Paid(server)
    features = server.count("POST", "/api/features")
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, "--sync", *FAST]
    proc = interrupt_when(args, cli_env(server), lambda: server.count("POST", "/api/features") > features, sig)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), proc.stderr
    if sig == signal.SIGINT:
        assert _one(report)["error"] == UNANSWERED  # what --resume will do, said before it is run
    server.latency = 0.0
    journal = _history(out)
    proc = run_cli([*args, "--resume"], cli_env(server))
    assert proc.returncode == 1, (journal, proc.stderr)
    item = _one(report)
    assert item["status"] == "failed" and item["error"] == UNANSWERED and UNANSWERED in proc.stderr
    assert item["resumed_from"] == "interrupted generation"
    assert not (out / "apple.blend").exists()
    assert paid.times == 1  # not sent again
    # the advice: regenerate it on purpose
    proc = run_cli([*args, "--resume", "--regenerate", "apple.jpg"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    assert _one(report)["status"] == "converted" and (out / "apple.blend").is_file()
    assert paid.times == 2


def test_interrupted_before_the_generation_is_sent_nothing_is_paid_and_resume_converts(server, photos, tmp_path):
    server.inject("slow-headers", stage="upload", delay=3.0)
    paid = Paid(server)
    uploads = server.count("POST", "/api/assets")
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, *FAST]
    proc = interrupt_when(args, cli_env(server), lambda: server.count("POST", "/api/assets") > uploads)
    assert proc.returncode == 130
    assert _one(report)["error"] == ("interrupted before the generation was sent: nothing was paid; run again "
                                     "with --resume to convert it")
    assert paid.times == 0
    server.clear_faults()
    assert run_cli([*args, "--resume"], cli_env(server)).returncode == 0
    assert _one(report)["status"] == "converted" and paid.times == 1


# --- every piece of advice, followed ------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "stage", "times", "result", "advice"), [
    # the download was not a model or an image: downloaded again, free
    ("corrupt-result", "download", 1, "depth", "by running again with --resume"),
    # the download looked whole but does not import (a damaged GLB): downloaded again, not re-read
    ("invalid-glb", "download", 1, "glb", "run again with --resume: it downloads the result again and retries, free"),
    # the storage host refuses the link: fetched again (a fresh link), free
    ("403", "download", -1, "depth", "the generation is paid for: run again with --resume to fetch it, free"),
    # status checks keep failing after the generation was paid: fetched again, free
    ("502-html", "poll", -1, "depth", "the generation is paid for: run again with --resume to fetch it, free"),
])
def test_advice_for_a_paid_result_that_did_not_arrive_works_and_costs_nothing(
        server, photos, tmp_path, fault, stage, times, result, advice):
    server.result = result
    server.inject(fault, stage=stage, times=times)
    paid = Paid(server)
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, *FAST]
    proc = run_cli(args, cli_env(server))
    assert proc.returncode == 1, proc.stderr
    item = _one(report)
    assert item["status"] == "failed" and advice in item["error"], item["error"]
    assert "Re-import" not in item["error"] and "add-on" not in item["error"]  # the converter's own words
    server.clear_faults()
    proc = run_cli([*args, "--resume"], cli_env(server))
    assert proc.returncode == 0, proc.stderr
    item = _one(report)
    assert item["status"] == "converted" and item["resumed_from"] == "generation"
    assert paid.times == 1


@pytest.mark.parametrize("mode", ["--sync", "--async"])
def test_advice_after_a_5xx_on_the_generation_request_is_to_look_then_regenerate_on_purpose(
        server, photos, tmp_path, mode):
    server.inject("522-html", stage="generate")  # Cloudflare's page; the origin did the work (and charged)
    paid = Paid(server)
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, mode, *FAST]
    assert run_cli(args, cli_env(server)).returncode == 1
    assert "check your 1min.ai history before you generate it again" in _one(report)["error"]
    assert paid.times == 1
    assert run_cli([*args, "--resume"], cli_env(server)).returncode == 1
    assert _one(report)["error"] == UNANSWERED and paid.times == 1
    assert run_cli([*args, "--resume", "--regenerate", str(photos["apple"])], cli_env(server)).returncode == 0
    assert _one(report)["status"] == "converted" and paid.times == 2


def test_advice_after_a_refusal_is_to_try_again_and_resume_does(server, photos, tmp_path):
    server.inject("400:EXTERNAL_API_RESPONSE_WITH_ERROR", stage="generate")
    paid = Paid(server)
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, *FAST]
    assert run_cli(args, cli_env(server)).returncode == 1
    assert "then try again" in _one(report)["error"] and paid.times == 0
    assert run_cli([*args, "--resume"], cli_env(server)).returncode == 0
    assert _one(report)["status"] == "converted" and paid.times == 1


def test_advice_after_a_failed_generation_is_to_try_again_and_resume_does(server, photos, tmp_path):
    server.inject("status-failure", stage="poll")
    paid = Paid(server)
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [photos["apple"], "--output-dir", out, "--json", report, *FAST]
    assert run_cli(args, cli_env(server)).returncode == 1
    assert "or try again later" in _one(report)["error"]
    assert run_cli([*args, "--resume"], cli_env(server)).returncode == 0
    assert _one(report)["status"] == "converted" and paid.times == 2  # a new attempt, as advised


def test_no_blend_is_written_when_every_input_failed(server, photos, tmp_path):
    proc = run_cli([photos["corrupt"], photos["tiny"], "--output", tmp_path / "none.blend", *FAST],
                   cli_env(server))
    assert proc.returncode == 1
    assert not (tmp_path / "none.blend").exists()
    assert "Nothing was converted, so none.blend was not written." in proc.stderr


def test_an_exit_2_still_writes_the_report(server, photos, tmp_path):
    report = tmp_path / "r.json"
    proc = run_cli([photos["apple"], "--output-dir", tmp_path, "--json", report],
                   cli_env(server, key="sk-wrong-key-000000"))
    assert proc.returncode == 2
    data = report_of(report)
    assert data["exit_code"] == 2 and "rejected the API key" in data["error"]
    assert data["items"][0]["status"] == "failed" and data["items"][0]["error"] == data["error"]
    assert "sk-wrong-key" not in report.read_text()
    proc = run_cli([photos["apple"], "--output-dir", tmp_path, "--jobs", "9", "--json", report], cli_env(server))
    assert proc.returncode == 2 and "--jobs" in report_of(report)["error"]
    proc = run_cli([tmp_path / "empty-folder-or-nothing", "--output-dir", tmp_path, "--json", report],
                   cli_env(server, key=None))
    assert proc.returncode == 2 and "ONEMIN_API_KEY" in report_of(report)["error"]


#: Opens each .blend in a fresh bpy process and prints its reliefs' vertex and face counts
COUNT_RELIEFS = """
import json, sys
import bpy
seen = {}
for blend in sys.argv[1:]:
    bpy.ops.wm.open_mainfile(filepath=blend)
    seen[blend] = [[len(o.data.vertices), len(o.data.polygons)] for o in bpy.data.objects
                   if o.get("onemin3d_kind") == "RELIEF"]
print("COUNTS" + json.dumps(seen))
"""


def test_a_photo_with_alpha_is_cut_out_unless_no_cutout_and_tear_is_passed_on(server, tmp_path):
    y, x = np.mgrid[0:512, 0:512] + 0.5
    alpha = np.where(np.hypot(x - 256, y - 256) < 200, 255, 0).astype(np.uint8)
    photo = tmp_path / "disc.png"
    Image.fromarray(np.dstack([np.full((512, 512, 3), 180, np.uint8), alpha]), "RGBA").save(photo)
    blends = {}
    for name, extra in (("cut", ["--tear", "0.5"]), ("whole", ["--no-cutout"])):
        out = tmp_path / name
        proc = run_cli([photo, "--output-dir", out, "--mode", "displacement", "--resolution", "33",
                        "--json", out / "report.json", *extra], cli_env(server))
        assert proc.returncode == 0, proc.stderr
        blends[name] = str(out / "disc.blend")
    report = report_of(tmp_path / "cut" / "report.json")
    assert report["settings"]["tear"] == 0.5 and report["settings"]["cutout"] is True
    proc = subprocess.run([sys.executable, "-c", COUNT_RELIEFS, *blends.values()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("COUNTS"))[len("COUNTS"):])
    (whole_v, whole_f), = counts[blends["whole"]]
    (cut_v, cut_f), = counts[blends["cut"]]
    assert (whole_v, whole_f) == (33 * 33, 32 * 32)
    assert cut_f < 0.85 * whole_f  # the disc covers π·200²/512² ≈ 48 % of the photo


def test_readme_and_help_say_async_is_the_default_and_quote_the_refusal():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert UNANSWERED in readme
    assert "`--sync`" in readme and "asynchronous by default" in readme
    proc = subprocess.run([sys.executable, str(CLI), "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    assert "--sync" in text and "--regenerate PHOTO" in text and "asynchronous by default" in text
    assert UNANSWERED.replace("apple.jpg", "PHOTO") in text
