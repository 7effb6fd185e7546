"""The API key leaks nowhere: after a representative slice of the whole path, a recognisable test key is searched for in every file, log, report, output and error text.

The slice: in Blender (api.submit + pump()), a job that imports, jobs that fail at each stage
(a rejected key, a server error, a dropped connection, a server that echoes the key back in its
error text), an async job that polls, a key check, then the file saved as a .blend; the headless
converter run as a user runs it (a subprocess with --json report, --output .blend and --verbose).
Once with the key in the add-on's preferences / --api-key, once in ONEMIN_API_KEY only.

Searched: every file under the test's folders (.blend files, history JSON, results, reports,
the converter's log file), the system temp folder's new files, everything logged (caplog, at
DEBUG, every logger), the process's stdout/stderr (capfd) and the subprocesses', every error's
str, repr, detail and traceback, and the WindowManager's job and history texts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pytest
from fake_onemin_server import FakeOneMinServer
from reliability_harness import ROOT, files_under, job_settings, make_photo, run_job

#: long and unmistakable: finding it, or a telling piece of it, anywhere is a leak
KEY = "sk-onemin3d-CANARY-5e1f0c7a93d4-must-never-leak"
PIECES = (KEY, "CANARY-5e1f0c7a93d4", KEY.encode("utf-16-le").decode("latin-1"))
CLI = ROOT / "scripts" / "image_to_3d.py"


def _hits_in_text(text: str, where: str) -> list[str]:
    return [f"{where}: {piece[:12]}…" for piece in PIECES if piece in text]


def _hits_in_files(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        text = data.decode("latin-1")
        found += _hits_in_text(text, str(path))
        if path.suffix == ".blend" and data[:2] == b"\x1f\x8b":  # a compressed .blend
            import gzip

            found += _hits_in_text(gzip.decompress(data).decode("latin-1"), f"{path} (gunzipped)")
        elif data[:4] == b"\x28\xb5\x2f\xfd":  # zstd, as Blender 3.0+ compresses a .blend
            import io

            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as r:
                found += _hits_in_text(r.read().decode("latin-1"), f"{path} (unzstd)")
    return found


def _error_texts(jobs: list[Any]) -> str:
    parts = []
    for job in jobs:
        parts += [job.error_message or "", repr(job), str(job.entry)]
        err = job.error
        if err is not None:
            parts += [str(err), repr(err), str(err.detail or ""),
                      "".join(traceback.format_exception(type(err), err, err.__traceback__))]
    return "\n".join(parts)


def _wm_texts() -> str:
    import bpy

    state = bpy.context.window_manager.onemin3d
    parts = [state.last_error, state.key_message]
    parts += [f"{i.name} {i.status}" for i in state.jobs]
    parts += [f"{i.name} {i.error} {i.source_path} {i.result_file}" for i in state.history]
    return "\n".join(parts)


def _blender_slice(photo: Path, folder: Path, *, key_in_prefs: bool, addon_prefs: Any) -> list[Any]:
    """Run the in-Blender slice against a stand-in that accepts KEY; returns the jobs."""
    import bpy

    from onemin3d_addon.blender import preferences, runtime

    jobs = []
    with FakeOneMinServer(api_key=KEY) as server:
        common = dict(base_url=server.base_url, result_dir=folder / "results", **job_settings())
        jobs.append(run_job(photo, **common).job)  # imports
        assert jobs[-1].state == "imported", jobs[-1].error_message
        server.inject("401", stage="generate", times=-1)
        jobs.append(run_job(photo, **common).job)
        server.clear_faults()
        server.inject("400:UNKNOWN_ERROR", stage="upload", times=-1,
                      message=f"Invalid API-KEY header {KEY}", details=json.dumps({"apiKey": KEY}))
        jobs.append(run_job(photo, **common).job)  # a server that echoes the key back
        server.clear_faults()
        server.inject("500", stage="poll", times=-1)
        jobs.append(run_job(photo, use_async=True, **common).job)
        server.clear_faults()
        server.inject("drop-mid-body", stage="download", times=-1)
        jobs.append(run_job(photo, **common).job)
        server.clear_faults()
        assert all(j.state == "failed" for j in jobs[1:]), [j.error_message for j in jobs]

        # a key check, the way the preferences' button does it
        conn = preferences.connection_settings(base_url=server.base_url)
        assert conn.api_key == KEY and KEY not in repr(conn)
        status, _message = runtime.get_runtime().check_key(conn, wait=True)
        assert status == "VALID"
        assert addon_prefs.api_key == (KEY if key_in_prefs else "")

    blend = folder / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=False)
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "scene-copy.blend"), copy=True, compress=False)
    return jobs


def _cli(photo: Path, out: Path, server: FakeOneMinServer, *, key_arg: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEMIN_API_KEY", "ONEMIN_API_BASE_URL")}
    env["BLENDER_USER_RESOURCES"] = str(out / "blender-user")
    env["ONEMIN3D_REQUESTS_PER_MINUTE"] = "0"
    args = [sys.executable, str(CLI), str(photo), str(out / "missing.jpg"), "-o", str(out / "batch.blend"),
            "--json", str(out / "report.json"), "--result-dir", str(out / "cli-results"),
            "--base-url", server.base_url, "--resolution", "48", "--verbose"]
    if key_arg:
        args += ["--api-key", KEY]
    else:
        env["ONEMIN_API_KEY"] = KEY
    return subprocess.run(args, env=env, cwd=out, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("source", ["preferences", "environment"])
def test_the_key_appears_nowhere(source: str, fresh_file: Any, reliability_addon: Any, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's included
    temp_before = {p.name for p in Path(tempfile.gettempdir()).iterdir()}
    photo = make_photo(tmp_path / "photos" / "shoe.jpg")
    work = tmp_path / "work"
    work.mkdir()

    previous_key = reliability_addon.api_key
    if source == "preferences":
        reliability_addon.api_key = KEY
    else:
        reliability_addon.api_key = ""
        monkeypatch.setenv("ONEMIN_API_KEY", KEY)
    try:
        jobs = _blender_slice(photo, work, key_in_prefs=source == "preferences", addon_prefs=reliability_addon)
    finally:
        reliability_addon.api_key = previous_key

    # the headless converter, as a user runs it: one good input and one missing, and the second
    # run with an unreachable server, so its report and log carry errors too
    with FakeOneMinServer(api_key=KEY) as server:
        cli_out = work / "cli"
        cli_out.mkdir()
        ok = _cli(photo, cli_out, server, key_arg=source == "preferences")
        server.inject("500", stage="generate", times=-1)
        cli_failed = work / "cli-failed"
        cli_failed.mkdir()
        failed = _cli(photo, cli_failed, server, key_arg=source == "preferences")
    assert (cli_out / "report.json").is_file() and (cli_out / "batch.blend").is_file(), ok.stderr[-2000:]
    assert (cli_failed / "report.json").is_file() and failed.returncode != 0, failed.stderr[-2000:]
    report = json.loads((cli_out / "report.json").read_text(encoding="utf-8"))
    logs = [Path(p) for p in (report.get("log"),) if p] if isinstance(report, dict) else []

    leaks: list[str] = []
    searched = files_under(tmp_path) + [p for p in logs if p.is_file() and not p.is_relative_to(tmp_path)]
    new_temp = [p for p in Path(tempfile.gettempdir()).iterdir()
                if p.name not in temp_before and p.is_file()]
    leaks += _hits_in_files(searched + new_temp)
    leaks += _hits_in_text(caplog.text, "log records")
    leaks += _hits_in_text("\n".join(r.getMessage() for r in caplog.records), "log messages")
    captured = capfd.readouterr()
    leaks += _hits_in_text(captured.out + captured.err, "stdout/stderr")
    for name, proc in (("converter", ok), ("converter (failing)", failed)):
        leaks += _hits_in_text(proc.stdout + proc.stderr, f"{name} stdout/stderr")
    leaks += _hits_in_text(_error_texts(jobs), "errors")
    leaks += _hits_in_text(_wm_texts(), "the WindowManager")
    assert not leaks, f"the API key leaked: {leaks}"

    # and the search did look at what it claims to
    blends = [p for p in searched if p.suffix == ".blend"]
    histories = [p for p in searched if p.parent.name == "history" and p.suffix == ".json"]
    assert len(blends) >= 3 and len(histories) >= 5 + 1, (blends, histories)
    assert any(j.error is not None and "***" in str(j.error) + str(j.error.detail or "") for j in jobs), \
        "the echoed key was expected to show up masked"
    assert caplog.records, "nothing was logged: the log search proved nothing"
