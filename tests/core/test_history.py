"""History: the durable per-job JSON journal (atomic rewrites, corrupt files skipped, never a secret)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from onemin3d_addon.core import history as history_mod
from onemin3d_addon.core.errors import Onemin3DError, register_secret
from onemin3d_addon.core.history import SCHEMA_VERSION, History, HistoryEntry, is_secret_name

KEY = "sk-history-test-key-7f3a9c"


def full_entry(job_id: str = "job1", **over: object) -> HistoryEntry:
    entry = HistoryEntry(
        id=job_id, created=1000.0, updated=1000.0, source_path="/photos/chaise é.jpg",
        settings={"mode": "AUTO", "resolution": 512, "strength": 0.15, "base_url": "http://127.0.0.1:1"},
        state="done", stage="download", asset_key="images/a.jpg", uuid="u-123",
        result_file="results/a.glb", result_kind="glb", credits_used=10, credits_left=90,
        error=None, blend_file="/scenes/room.blend",
        times={"prepare": 1000.0, "upload": 1000.5, "generate": 1001.0, "download": 1005.0},
    )
    for name, value in over.items():
        setattr(entry, name, value)
    return entry


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    h = History(tmp_path)
    entry = full_entry(files=["results/a"])
    h.save(entry)
    loaded = h.load("job1")
    assert loaded == entry
    assert entry.updated > 1000.0  # save stamps the time
    data = json.loads((tmp_path / "history" / "job1.json").read_text("utf-8"))
    assert data["version"] == SCHEMA_VERSION and data["source_path"] == "/photos/chaise é.jpg"
    assert h.load("missing") is None


def test_every_save_is_a_full_atomic_rewrite(tmp_path: Path) -> None:
    h = History(tmp_path)
    entry = full_entry(state="running", stage="upload", uuid=None)
    h.save(entry)
    entry.state, entry.stage, entry.uuid = "running", "poll", "u-9"
    h.save(entry)
    assert h.load("job1") == entry
    files = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert files == ["job1.json"]  # no temp file left behind


def test_concurrent_saves_never_leave_a_half_file(tmp_path: Path) -> None:
    h = History(tmp_path)
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        path = tmp_path / "history" / "job1.json"
        while not stop.is_set():
            try:
                json.loads(path.read_text("utf-8"))
            except FileNotFoundError:
                continue
            except ValueError as exc:
                bad.append(str(exc))

    def writer(n: int) -> None:
        for i in range(40):
            h.save(full_entry(settings={"writer": n, "i": i, "pad": "x" * 5000}))

    threads = [threading.Thread(target=reader)] + [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert bad == []
    assert [p.name for p in (tmp_path / "history").iterdir()] == ["job1.json"]


def test_a_leftover_temp_file_from_a_crash_is_ignored(tmp_path: Path) -> None:
    h = History(tmp_path)
    h.save(full_entry())
    # a crash between writing the temp file and renaming it leaves this behind
    (tmp_path / "history" / ".job1.abc123.tmp").write_text('{"id": "job1", "state": "imp')
    (tmp_path / "history" / ".job2.def456.tmp").write_text("")
    assert [e.id for e in h.entries()] == ["job1"]
    assert h.load("job1") == full_entry(updated=h.load("job1").updated)  # type: ignore[union-attr]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    h = History(tmp_path)
    h.save(full_entry(stage="upload"))

    def no_space(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(history_mod.os, "replace", no_space)
    with pytest.raises(Onemin3DError, match="No space left on device.*check the free space"):
        h.save(full_entry(stage="download"))
    monkeypatch.undo()
    assert h.load("job1").stage == "upload"  # type: ignore[union-attr]
    assert [p.name for p in (tmp_path / "history").iterdir()] == ["job1.json"]


@pytest.mark.parametrize("content", [
    b"", b"{", b"[]", b"null", b'{"id": "other", "state": "done"}', b"\xff\xfe garbage",
    b'{"id": "bad", "state": 3}', b'{"id": "bad", "created": "yesterday"}',
    b'{"id": "bad", "times": {"upload": "soon"}}', b'{"id": "bad", "version": 0}',
    b'{"id": "bad", "credits_left": true}',
])
def test_corrupt_files_are_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  content: bytes) -> None:
    h = History(tmp_path)
    h.save(full_entry("good"))
    (tmp_path / "history" / "bad.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="onemin3d_addon.core.history"):
        assert [e.id for e in h.entries()] == ["good"]
        assert h.load("bad") is None
        h.entries()
    warnings = [r for r in caplog.records if "bad.json" in r.getMessage()]
    assert len(warnings) == 1  # once, not at every redraw of the panel


def test_entries_are_newest_first_and_follow_changes(tmp_path: Path) -> None:
    h = History(tmp_path)
    for i, created in enumerate([300.0, 100.0, 200.0]):
        h.save(full_entry(f"j{i}", created=created))
    assert [e.id for e in h.entries()] == ["j0", "j2", "j1"]
    h.update("j1", created=400.0, state="imported")
    listed = h.entries()
    assert [e.id for e in listed] == ["j1", "j0", "j2"] and listed[0].state == "imported"
    listed[0].settings["mutated"] = True  # callers get copies: the cache is not changed
    assert "mutated" not in h.entries()[0].settings
    (tmp_path / "history" / "j0.json").unlink()
    assert [e.id for e in h.entries()] == ["j1", "j2"]
    assert History(tmp_path / "nowhere").entries() == []


def test_a_file_from_a_newer_version_is_read_for_the_known_fields(tmp_path: Path) -> None:
    h = History(tmp_path)
    data = json.loads(json.dumps({**full_entry().__dict__, "version": SCHEMA_VERSION + 1, "new_field": 1}))
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "job1.json").write_text(json.dumps(data))
    loaded = h.load("job1")
    assert loaded is not None and loaded.uuid == "u-123"


def test_a_minimal_old_file_gets_defaults(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "old.json").write_text('{"id": "old", "uuid": "u-1", "state": "running"}')
    (loaded,) = History(tmp_path).entries()
    assert loaded.uuid == "u-1" and loaded.settings == {} and loaded.files == []


def test_resumable_lists_what_can_still_pay_off(tmp_path: Path) -> None:
    h = History(tmp_path)
    cases = {
        "crashed-polling": dict(state="running", stage="poll", uuid="u1", result_file=None),
        "downloaded": dict(state="done", stage="download", uuid="u2", result_file="results/r.glb"),
        "queued-uuid": dict(state="queued", uuid="u3", result_file=None),
        "not-finished": dict(state="failed", uuid="u4", result_file=None, error_kind="StillRunning"),
        "imported": dict(state="imported", uuid="u5"),
        "failed": dict(state="failed", uuid="u6", result_file=None, error_kind="BadResponse"),
        "cancelled": dict(state="cancelled", uuid="u7", result_file=None),
        "no-uuid-yet": dict(state="running", stage="upload", uuid=None, result_file=None, asset_key="k"),
        "nothing": dict(state="queued", uuid=None, result_file=None, asset_key=None),
    }
    for i, (job_id, over) in enumerate(cases.items()):
        h.save(full_entry(job_id, created=1000.0 - i, **over))
    # a cancelled generation with a uuid is paid for: the next start fetches it (not the one with no uuid)
    assert [e.id for e in h.resumable()] == ["crashed-polling", "downloaded", "queued-uuid", "not-finished",
                                             "cancelled"]


def test_remove_forgets_and_optionally_deletes_only_files_inside_the_folder(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    result = results / "r.glb"
    result.write_bytes(b"glTF")
    extracted = results / "r"
    (extracted / "tex").mkdir(parents=True)
    (extracted / "tex" / "a.png").write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("keep me")
    try:
        h = History(tmp_path)
        h.save(full_entry("keep", result_file=str(result)))
        h.remove("keep")
        assert h.load("keep") is None and result.exists()

        h.save(full_entry("gone", result_file="results/r.glb",
                          files=[str(extracted), str(outside), "../" + outside.name, str(tmp_path), "missing"]))
        h.remove("gone", delete_files=True)
        assert h.load("gone") is None
        assert not result.exists() and not extracted.exists()
        assert outside.read_text() == "keep me" and tmp_path.is_dir() and results.is_dir()
        h.remove("never-was")  # no error
    finally:
        outside.unlink()


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "", ".hidden", "x" * 200, "nul\x00"])
def test_ids_cannot_escape_the_history_folder(tmp_path: Path, bad_id: str) -> None:
    h = History(tmp_path)
    with pytest.raises(ValueError, match="invalid history id"):
        h.save(HistoryEntry(id=bad_id))
    with pytest.raises(ValueError):
        h.load(bad_id)


def test_the_api_key_is_never_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    register_secret(KEY)
    h = History(tmp_path)
    settings = {
        "api_key": KEY, "API-KEY": KEY, "apiKey": KEY, "key": KEY, "token": KEY, "access_token": KEY,
        "password": KEY, "nested": {"Authorization": f"Bearer {KEY}", "ok": 1},
        "list": [{"secret": KEY}], "note": f"sent with {KEY} inside", "asset_key": "images/a.jpg",
        "mode": "AUTO",
    }
    with caplog.at_level(logging.WARNING, logger="onemin3d_addon.core.history"):
        h.save(full_entry(settings=settings, error=f"failed with API-KEY: {KEY}"))
    raw = (tmp_path / "history" / "job1.json").read_text("utf-8")
    assert KEY not in raw
    loaded = h.load("job1")
    assert loaded is not None
    assert loaded.settings == {"nested": {"ok": 1}, "list": [{}], "note": "sent with *** inside",
                               "asset_key": "images/a.jpg", "mode": "AUTO"}
    assert "api_key" not in HistoryEntry.__dataclass_fields__
    assert any("looks like a secret" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("name", "secret"), [
    ("api_key", True), ("API-KEY", True), ("apiKey", True), ("key", True), ("token", True),
    ("refresh_token", True), ("password", True), ("client_secret", True), ("Authorization", True),
    ("asset_key", False), ("result_kind", False), ("mode", False), ("keyframe", False), ("monkey", False),
])
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_update_creates_and_changes_in_one_step(tmp_path: Path) -> None:
    h = History(tmp_path)
    entry = h.update("new-job", source_path="/a.jpg", state="running")
    assert entry.id == "new-job" and h.load("new-job") == entry
    h.update("new-job", uuid="u-1", times={"poll": time.time()})
    assert h.load("new-job").uuid == "u-1"  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="no field"):
        h.update("new-job", api_key=KEY)
    assert KEY not in (tmp_path / "history" / "new-job.json").read_text()


def test_non_finite_numbers_and_paths_in_settings_are_written_as_json(tmp_path: Path) -> None:
    h = History(tmp_path)
    h.save(full_entry(settings={"strength": float("nan"), "dir": Path("/x/y")}))
    loaded = h.load("job1")
    assert loaded is not None and loaded.settings == {"strength": None, "dir": "/x/y"}
    assert os.path.getsize(tmp_path / "history" / "job1.json") > 0
