"""Durability: the stand-in SIGKILLs the headless converter at chosen requests; a --resume (or a re-register in Blender) finds every downloaded result and never pays twice.

`scripts/image_to_3d.py` is driven from outside, as a user runs it (a subprocess, the key in
ONEMIN_API_KEY), against the stand-in in this process with 0.3 s of latency. No kill is timed
by a clock. Each cell of `CELLS` arms the stand-in's `kill_at(event, nth, when)`: the stand-in
itself sends SIGKILL (no handler, no cleanup) from inside the k-th upload, features POST,
status check of a generation, or result download, at a chosen point of that request:

* ``before-answer``: the request was done (an upload stored, a generation made and charged)
  but never answered;
* ``mid-body``: the headers and half the body were written (the download phase);
* ``after-answer``: the whole answer was written; whether the converter journalled it before
  dying is the one thing left open, and the checks below hold either way.

So every phase is covered by construction, in synchronous and asynchronous mode (polls only
exist in asynchronous mode), and every planned kill must have fired. Each run converts three
small images with two jobs in parallel, is killed, then run again with --resume. After each
kill and after each resume:

* every history file parses and loads (writes are atomic: temp file, fsync, rename), and a temp
  file a kill left behind is ignored by the loader;
* every result that was downloaded and journalled before the kill is reused by the resume: no
  new generation for that image, the same file in the report;
* every generation whose uuid reached the journal is delivered by the resume (results lost = 0);
* no image is generated twice over the kill and the resume (the stand-in's features POSTs per
  image). A generation that may have been sent but whose answer was never journalled is refused
  by the resume, with "may already have been sent", instead of being sent again.

The figures are printed (pytest -s) and written to durability.json in the test's temporary
folder; docs/RELIABILITY.md quotes them.

One more test kills an in-Blender session (the add-on's own runtime, through api.submit) once
its result is on disk but before it is imported; a re-register of the add-on finds the result
in the history and re-imports it without a single request.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "blender"))

import addon_harness
from addon_harness import make_photo, prefs

addon = addon_harness.addon
blender = addon_harness.blender

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "scripts" / "image_to_3d.py"
LATENCY = 0.3
IMAGES = 3  # per run, two jobs in parallel: later requests come while earlier results are on disk
BOTH, ASYNC = ("sync", "async"), ("async",)
#: (event, nth, when, modes): where the stand-in kills the converter; one run per cell and mode
CELLS: tuple[tuple[str, int, str, tuple[str, ...]], ...] = (
    ("upload", 1, "before-answer", BOTH),     # stored by the server, its key never received
    ("upload", 3, "after-answer", BOTH),      # the third image's key answered, others done or under way
    ("generate", 1, "before-answer", BOTH),   # made and charged, never answered
    ("generate", 2, "after-answer", BOTH),    # answered: the uuid (async) or the record (sync)
    ("generate", 3, "before-answer", BOTH),   # charged while earlier results are on disk
    ("poll", 1, "before-answer", ASYNC),      # the uuid is journalled, the first status check unanswered
    ("poll", 2, "after-answer", ASYNC),
    ("download", 1, "mid-body", BOTH),        # half the result sent
    ("download", 2, "after-answer", BOTH),    # the whole result sent, maybe not yet journalled
    ("download", 3, "mid-body", BOTH),
)


@functools.cache
def _has_sync_flag() -> bool:
    """Whether the converter has --sync (then its default may be async, so the mode is always given)."""
    shown = subprocess.run([sys.executable, str(CLI), "--help"], capture_output=True, text=True, timeout=60)
    return "--sync" in shown.stdout


def _env(api_key: str, user_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEMIN", "PYTEST"))}
    env.update(ONEMIN_API_KEY=api_key, BLENDER_USER_RESOURCES=str(user_dir), PYTHONUNBUFFERED="1")
    return env


def _cli(inputs: list[Path], folder: Path, base_url: str, *, resume: bool = False,
         use_async: bool = False) -> list[str]:
    args = [sys.executable, str(CLI), *map(str, inputs), "--output", str(folder / "out.blend"),
            "--result-dir", str(folder / "R"), "--json", str(folder / "report.json"), "--base-url", base_url,
            "--mode", "plane", "--jobs", "2", "-q"]
    if use_async:
        args += ["--async", "--poll-interval", "0.1"]
    elif _has_sync_flag():
        args += ["--sync"]
    return args + (["--resume"] if resume else [])


def _generations(stand_in: Any, name: str) -> int:
    """Features POSTs that reached the server (and were charged) for the image named `name`."""
    return sum(1 for rec in stand_in.records.values()
               if str(rec["aiRecordDetail"]["promptObject"]["imageUrl"]).endswith("_" + name))


def _history(folder: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every history file, parsed (each must parse), and the names of temp files left beside them."""
    from onemin3d_addon.core.history import History

    hist_dir = folder / "R" / "history"
    parsed: dict[str, dict[str, Any]] = {}
    temps: list[str] = []
    if not hist_dir.is_dir():
        return parsed, temps
    for f in hist_dir.iterdir():
        if f.name.startswith("."):
            temps.append(f.name)
            continue
        assert f.suffix == ".json", f"unexpected file in the history folder: {f.name}"
        text = f.read_text(encoding="utf-8")
        try:
            parsed[f.stem] = json.loads(text)
        except ValueError as exc:
            raise AssertionError(f"half-written history file {f.name}: {exc}\n{text[:300]!r}") from exc
    loaded = History(folder / "R").entries()  # the add-on's own loader: nothing to trip over
    assert {e.id for e in loaded} == set(parsed), "the loader skipped a history file"
    return parsed, temps


def _by_input(entries: dict[str, dict[str, Any]], photo: Path) -> list[dict[str, Any]]:
    return sorted((e for e in entries.values() if e.get("source_path") == str(photo)),
                  key=lambda e: e.get("created", 0.0), reverse=True)


def _downloaded(entries: list[dict[str, Any]]) -> str | None:
    from onemin3d_addon.core import results

    for e in entries:
        rf = e.get("result_file")
        if rf and Path(rf).is_file() and results.sniff_file(Path(rf)) is not None:
            return str(rf)
    return None


def _run_to_end(args: list[str], env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


@pytest.fixture
def cli_env(api_key: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    user = tmp_path / "blender-user"
    user.mkdir()
    yield _env(api_key, user)


@pytest.mark.timeout(300)
def test_sigkill_at_every_phase_then_resume_finds_every_result_and_never_pays_twice(
        stand_in: Any, cli_env: dict[str, str], tmp_path: Path) -> None:
    stand_in.latency = LATENCY
    photos_dir = tmp_path / "photos"
    runs = [(cell, mode) for cell in CELLS for mode in cell[3]]
    figures: dict[str, Any] = {"images_per_run": IMAGES, "latency_s": LATENCY, "runs": []}
    totals = {"runs": 0, "runs_sync": 0, "runs_async": 0, "kills_planned": 0, "kills_fired": 0,
              "images": 0, "generations": 0, "paid_twice": 0, "results_lost": 0,
              "downloaded_before_kill": 0, "reused_on_resume": 0, "uuid_journalled_then_delivered": 0,
              "refused_sent_unanswered": 0, "refused_before_send": 0,
              "temp_files_after_kill": 0, "orphan_results_after_kill": 0}
    for run, ((event, nth, when, _modes), mode) in enumerate(runs):
        use_async = mode == "async"
        cell = f"{event} #{nth} {when} ({mode})"
        photos = [make_photo(photos_dir / f"r{run:02d}_in{i}.jpg", size=(512, 512), seed=run * 10 + i)
                  for i in range(IMAGES)]
        folder = tmp_path / f"run{run:02d}"
        proc = subprocess.Popen(_cli(photos, folder, stand_in.base_url, use_async=use_async), env=cli_env,
                                cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # armed before the converter can have sent anything: Python and bpy take far longer to start
        switch = stand_in.kill_at(event, nth=nth, pid=proc.pid, when=when)
        try:
            _out, err = proc.communicate(timeout=90)
        finally:
            stand_in.clear_kills()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        totals["runs"] += 1
        totals[f"runs_{mode}"] += 1
        totals["kills_planned"] += 1
        assert switch.fired and proc.returncode == -signal.SIGKILL, (
            f"{cell}: the planned kill did not fire (exit {proc.returncode}, {switch.seen} such requests)\n"
            f"{err[-2000:]}")
        totals["kills_fired"] += 1

        # straight after the kill: every history file whole, nothing the loader trips over
        entries, temps = _history(folder)
        totals["temp_files_after_kill"] += len(temps)
        state: dict[str, dict[str, Any]] = {}
        for photo in photos:
            mine = _by_input(entries, photo)
            downloaded = _downloaded(mine)
            gens = _generations(stand_in, photo.name)
            uuid_known = any(e.get("uuid") for e in mine)
            state[photo.name] = {"downloaded": downloaded, "generations_before": gens, "uuid_known": uuid_known,
                                 # the generation reached the service, its uuid never reached the journal
                                 "sent_unanswered": downloaded is None and gens > 0 and not uuid_known,
                                 "journal": [(e.get("state"), e.get("stage"), bool(e.get("asset_key")),
                                              bool(e.get("uuid"))) for e in mine]}
            assert gens <= 1, f"{cell}: {photo.name} generated {gens} times in one run"
        known = {s["downloaded"] for s in state.values() if s["downloaded"]}
        result_files = {str(p) for p in (folder / "R").glob("*") if p.is_file() and not p.name.startswith(".")}
        totals["orphan_results_after_kill"] += len(result_files - known)

        # the resume, in the same mode
        resumed = _run_to_end(_cli(photos, folder, stand_in.base_url, resume=True, use_async=use_async), cli_env)
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        items = {Path(i["path"]).name: i for i in report["items"]}
        after, _temps = _history(folder)
        assert all(e.get("source_path") for e in after.values())
        row: dict[str, Any] = {"run": run, "event": event, "nth": nth, "when": when, "mode": mode,
                               "killed_on": list(switch.request or ()), "resume_exit": resumed.returncode,
                               "images": {}}
        for photo in photos:
            s = state[photo.name]
            item = items[photo.name]
            gens = _generations(stand_in, photo.name)
            delivered = item["status"] in ("converted", "skipped") and bool(item["files"].get("result"))
            totals["images"] += 1
            totals["generations"] += gens
            totals["paid_twice"] += gens > 1
            if s["downloaded"]:
                totals["downloaded_before_kill"] += 1
                assert gens == s["generations_before"], (
                    f"{cell}: {photo.name} was downloaded before the kill but generated again on resume")
                assert item["status"] in ("converted", "skipped"), (cell, item)
                assert item["files"]["result"] == s["downloaded"], (cell, item, s)
                totals["reused_on_resume"] += 1
            if s["downloaded"] or s["uuid_known"]:
                totals["results_lost"] += not delivered
                totals["uuid_journalled_then_delivered"] += bool(s["uuid_known"] and delivered
                                                                 and not s["downloaded"])
            # sent but never answered included: the resume reports it instead of generating it again
            assert gens <= 1, (f"{cell}: {photo.name} paid {gens} times over the kill and the resume; "
                               f"journal after the kill: {s['journal']}")
            if s["sent_unanswered"]:  # nothing to poll: refused, never sent again behind the user's back
                totals["refused_sent_unanswered"] += 1
                assert item["status"] == "failed" and "may already have been sent" in item["error"], (cell, item)
            elif not (s["downloaded"] or s["uuid_known"]) and item["status"] == "failed":
                # Nothing reached the service, but the journal may not tell "about to be sent" from
                # "sent": a refusal is allowed then (a false alarm, never a double charge), with the same words.
                totals["refused_before_send"] += 1
                assert "may already have been sent" in item["error"], (cell, item)
            else:
                assert delivered, (cell, item, resumed.stderr[-2000:])
                assert Path(item["files"]["result"]).is_file()
            row["images"][photo.name] = {
                "downloaded_before_kill": bool(s["downloaded"]), "uuid_journalled": s["uuid_known"],
                "generations": gens, "status": item["status"], "resumed_from": item.get("resumed_from"),
                "journal_after_kill": s["journal"]}
        figures["runs"].append(row)
    figures["totals"] = totals
    (tmp_path / "durability.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print("\ndurability totals:", json.dumps(totals))
    assert totals["kills_fired"] == totals["kills_planned"] == len(runs)
    assert totals["paid_twice"] == 0 and totals["results_lost"] == 0, totals


#: (event, nth, when): kills in a job with background removal (one photo, asynchronous). Its
#: requests come in a fixed order: upload #1 (the photo), generate #1 (BACKGROUND_REMOVER), its
#: polls, download #1 (the cut-out), upload #2 (the cut-out), generate #2 (IMAGE_3D_GENERATOR),
#: its polls, download #2 (the result).
BG_CELLS = (
    ("generate", 1, "before-answer"),  # the removal charged, its uuid never received: refused
    ("poll", 1, "before-answer"),      # the removal's uuid journalled: polled again, free
    ("download", 1, "mid-body"),       # half the cut-out: downloaded again, free
    ("upload", 2, "before-answer"),    # the cut-out journalled, its upload unanswered
    ("generate", 2, "before-answer"),  # the generation charged, its uuid never received: refused
)


@pytest.mark.timeout(300)
def test_sigkill_around_the_background_removal_then_resume_pays_each_step_once(
        stand_in: Any, cli_env: dict[str, str], tmp_path: Path) -> None:
    stand_in.latency = LATENCY
    for run, (event, nth, when) in enumerate(BG_CELLS):
        cell = f"background removal, {event} #{nth} {when}"
        photo = make_photo(tmp_path / "photos" / f"bg{run}_in0.jpg", size=(512, 512), seed=50 + run)
        folder = tmp_path / f"bg{run}"
        args = [*_cli([photo], folder, stand_in.base_url, use_async=True), "--remove-background"]
        credits, known = stand_in.used_credit, set(stand_in.records)
        proc = subprocess.Popen(args, env=cli_env, cwd=str(ROOT), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        switch = stand_in.kill_at(event, nth=nth, pid=proc.pid, when=when)
        try:
            _out, err = proc.communicate(timeout=90)
        finally:
            stand_in.clear_kills()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert switch.fired and proc.returncode == -signal.SIGKILL, (cell, err[-2000:])
        _history(folder)  # every history file whole after the kill
        stand_in.latency = 0.0
        resumed = _run_to_end([*_cli([photo], folder, stand_in.base_url, resume=True, use_async=True),
                               "--remove-background"], cli_env)
        stand_in.latency = LATENCY
        made = [r["type"] for u, r in stand_in.records.items() if u not in known]
        assert made.count("BACKGROUND_REMOVER") == 1 and made.count("IMAGE_3D_GENERATOR") <= 1, (cell, made)
        assert stand_in.used_credit - credits == 20_000 * len(made), (cell, made)  # each step once, at its price
        item = json.loads((folder / "report.json").read_text(encoding="utf-8"))["items"][0]
        if event == "generate":  # sent, never answered: refused, never sent again
            assert item["status"] == "failed" and "may already have been sent" in item["error"], (cell, item)
        else:
            assert item["status"] == "converted" and made.count("IMAGE_3D_GENERATOR") == 1, (
                cell, item, resumed.stderr[-2000:])


@pytest.mark.timeout(120)
def test_a_kill_during_a_synchronous_generation_is_not_paid_again_on_resume(
        stand_in: Any, cli_env: dict[str, str], tmp_path: Path) -> None:
    stand_in.latency = LATENCY
    photo = make_photo(tmp_path / "photos" / "window_in0.jpg", size=(512, 512), seed=3)
    folder = tmp_path / "window"
    proc = subprocess.Popen(_cli([photo], folder, stand_in.base_url), env=cli_env, cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the generation is made and charged, and the converter dies before its answer
    switch = stand_in.kill_at("generate", pid=proc.pid, when="before-answer")
    try:
        proc.wait(90)
    finally:
        stand_in.clear_kills()
    assert switch.fired and proc.returncode == -signal.SIGKILL, "the generation was never sent"
    entries, _temps = _history(folder)
    mine = _by_input(entries, photo)
    assert mine and mine[0]["asset_key"] and not mine[0]["uuid"], mine  # journalled before the POST
    assert _generations(stand_in, photo.name) == 1
    stand_in.latency = 0.0
    _run_to_end(_cli([photo], folder, stand_in.base_url, resume=True), cli_env)
    assert _generations(stand_in, photo.name) == 1, "the resume paid for the generation a second time"
    item = json.loads((folder / "report.json").read_text(encoding="utf-8"))["items"][0]
    assert item["status"] == "failed" and "may already have been sent" in item["error"], item
    assert f"--regenerate {photo.name}" in item["error"], item  # how to generate it again on purpose


_KILLED_SESSION = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    sys.path[:0] = [sys.argv[1], str(Path(sys.argv[1]) / "tests" / "blender")]
    import bpy
    import addon_harness as H
    bpy.ops.wm.read_homefile(use_empty=True)
    H.set_online(True)
    H.enable()
    p = H.prefs()
    p.api_key, p.base_url, p.result_folder = os.environ["ONEMIN_API_KEY"], sys.argv[2], sys.argv[3]
    p.request_mode = 'SYNC'
    from onemin3d_addon import api
    job = api.submit(sys.argv[4], mode="plane")
    history = Path(sys.argv[3]) / "history" / (job.id + ".json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # no pump at all: the worker journals the result itself
        try:
            if json.loads(history.read_text(encoding="utf-8")).get("result_file"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    print(job.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.timeout(120)
def test_a_killed_blender_session_leaves_its_result_for_the_next_register(
        addon: Any, stand_in: Any, api_key: str, tmp_path: Path) -> None:
    import bpy

    from onemin3d_addon.blender import runtime

    stand_in.latency = LATENCY
    photo = make_photo(tmp_path / "photos" / "killed_session.jpg", size=(512, 512), seed=5)
    folder = tmp_path / "session-results"
    prefs().result_folder = str(folder)  # the folder both sessions use (empty now)
    env = _env(api_key, Path(tempfile.mkdtemp(prefix="onemin3d-user-", dir=tmp_path)))
    proc = subprocess.run([sys.executable, "-c", _KILLED_SESSION, str(ROOT), stand_in.base_url, str(folder),
                           str(photo)], env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    job_id = proc.stdout.strip().splitlines()[-1]
    _history(folder)  # whole files, even after a kill
    hist = json.loads((folder / "history" / f"{job_id}.json").read_text(encoding="utf-8"))
    assert hist["result_file"] and hist["state"] != "imported"
    generations = len(stand_in.records)
    requests = len(stand_in.requests)

    # the next session: the add-on registers again (its preferences, kept by Blender, name the folder)
    import onemin3d_addon

    onemin3d_addon.unregister()
    assert runtime.peek_runtime() is None
    onemin3d_addon.register()
    assert prefs().result_folder == str(folder)
    rt = runtime.get_runtime()
    assert rt.flush()
    entry = rt.history.load(job_id)
    assert entry is not None and entry.state == "done" and entry.result_file == hist["result_file"]
    assert job_id not in {j.id for j in rt.jobs.values() if not j.done}, "a downloaded result was fetched again"
    items = {i.entry_id: i for i in bpy.context.window_manager.onemin3d.history}
    assert items[job_id].result_exists and items[job_id].state == "done"

    before = len(bpy.data.objects)
    objects = rt.reimport(job_id)
    assert objects and len(bpy.data.objects) > before
    assert len(stand_in.records) == generations and len(stand_in.requests) == requests, "the re-import used the network"
    assert rt.history.load(job_id).state == "imported"
