"""pipeline.run against the local stand-in: stages, progress, checkpoints, resume, cancel and clean-up."""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_onemin_server import FakeOneMinServer
from PIL import Image
from stand_in_helpers import FAST, QUICK

from onemin3d_addon.core import pipeline, results
from onemin3d_addon.core.client import GenerationRecord
from onemin3d_addon.core.errors import (
    Cancelled,
    ImageError,
    Onemin3DError,
    UnansweredGeneration,
    user_message,
)
from onemin3d_addon.core.pipeline import STAGES, Checkpoint, Request


def _photo(path: Path, size: tuple[int, int] = (640, 512), fmt: str | None = None) -> Path:
    w, h = size
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255.0 / w, yy * 255.0 / h, np.full((h, w), 120.0)], -1) + rng.normal(0, 6, (h, w, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, fmt)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _photo(tmp_path_factory.mktemp("photo") / "vase.jpg")


@pytest.fixture
def result_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def key_never_logged(caplog: pytest.LogCaptureFixture, api_key: str) -> Any:
    caplog.set_level(logging.DEBUG)
    yield
    assert api_key not in caplog.text


def make_request(stand_in: FakeOneMinServer, api_key: str, image: Path, result_dir: Path, **kw: Any) -> Request:
    kw.setdefault("timeouts", QUICK)
    kw.setdefault("retry", FAST)
    kw.setdefault("poll_interval", 0.02)
    kw.setdefault("use_async", False)  # these tests were written for one mode; async ones say so
    return Request(image, api_key, result_dir, base_url=stand_in.base_url, **kw)


class Recorder:
    def __init__(self) -> None:
        self.progress: list[tuple[str, float, str]] = []
        self.checkpoints: list[Checkpoint] = []

    def on_progress(self, stage: str, fraction: float, message: str) -> None:
        self.progress.append((stage, fraction, message))

    def stages(self) -> list[str]:
        out: list[str] = []
        for stage, _, _ in self.progress:
            if not out or out[-1] != stage:
                out.append(stage)
        return out


@pytest.mark.parametrize("use_async", [False, True])
def test_a_job_runs_every_stage_in_order_and_lands_in_the_result_folder(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path, use_async: bool) -> None:
    stand_in.result = "glb"
    stand_in.async_latency = 0.2
    rec = Recorder()
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir, use_async=use_async),
                          progress=rec.on_progress, checkpoint=rec.checkpoints.append)
    expected = ["prepare", "upload", "generate", "poll", "download"] if use_async else \
        ["prepare", "upload", "generate", "download"]
    assert rec.stages() == expected
    assert all(s in STAGES and 0.0 <= f <= 1.0 and m for s, f, m in rec.progress)
    for stage in expected:
        fractions = [f for s, f, _ in rec.progress if s == stage]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0, stage
    assert result.kind == "glb" and result.file.parent == result_dir.resolve()
    assert [p.name for p in result_dir.iterdir()] == [result.file.name]
    assert result.source_image == photo and result.record.succeeded
    assert set(result.timings) >= set(expected) | {"total"}
    # the checkpoints grow: asset key, then "sent" (before the generation request leaves), then
    # uuid (and record), then the file
    cps = rec.checkpoints
    assert cps[0].asset_key and cps[0].uuid is None and not cps[0].sent
    assert cps[1].sent and cps[1].uuid is None and cps[1].asset_key == cps[0].asset_key
    assert next(c for c in cps if c.uuid).asset_key == cps[0].asset_key
    assert cps[-2].record is not None and cps[-2].record.succeeded and cps[-2].result_file is None
    assert cps[-1].result_file == result.file and cps[-1].uuid == result.record.uuid
    if use_async:
        assert cps[2].record is not None and cps[2].record.status == "PROCESSING"


def test_transfer_progress_comes_from_bytes(stand_in: FakeOneMinServer, api_key: str, tmp_path: Path,
                                            result_dir: Path) -> None:
    big = _photo(tmp_path / "big.png", (2048, 2048), "PNG")  # ~12 MB: many chunks each way
    stand_in.result = "glb"
    rec = Recorder()
    pipeline.run(make_request(stand_in, api_key, big, result_dir), progress=rec.on_progress)
    uploads = [(f, m) for s, f, m in rec.progress if s == "upload"]
    assert len(uploads) > 10 and any(0.0 < f < 1.0 for f, _ in uploads)
    assert any(" of " in m and m.endswith("MB") for _, m in uploads)
    assert len(uploads) < 150  # thinned out: not one report per chunk of a large file
    downloads = [f for s, f, _ in rec.progress if s == "download"]
    assert downloads[0] == 0.0 and downloads[-1] == 1.0


def test_an_image_error_is_blamed_on_prepare_and_sends_nothing(stand_in: FakeOneMinServer, api_key: str,
                                                               tmp_path: Path, result_dir: Path) -> None:
    small = _photo(tmp_path / "tiny.jpg", (100, 100))
    with pytest.raises(ImageError) as info:
        pipeline.run(make_request(stand_in, api_key, small, result_dir))
    assert info.value.stage == "prepare" and "512" in user_message(info.value)
    with pytest.raises(ImageError) as info:
        pipeline.run(make_request(stand_in, api_key, tmp_path / "missing.jpg", result_dir))
    assert info.value.stage == "prepare"
    assert stand_in.requests == []


def test_a_converted_image_is_uploaded_and_its_temp_file_removed(
        stand_in: FakeOneMinServer, api_key: str, tmp_path: Path, result_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the job's work folder goes
    bmp = _photo(tmp_path / "scan.bmp", (700, 600), "BMP")  # the service does not take BMP
    rec = Recorder()
    result = pipeline.run(make_request(stand_in, api_key, bmp, result_dir), progress=rec.on_progress)
    assert any("converted" in m for s, _, m in rec.progress if s == "prepare")
    assert result.source_image == bmp
    assert list(scratch.iterdir()) == []
    # and after a failure too
    stand_in.inject("500", stage="upload")
    with pytest.raises(Onemin3DError):
        pipeline.run(make_request(stand_in, api_key, bmp, result_dir))
    assert list(scratch.iterdir()) == []


def test_resume_with_a_result_file_returns_at_once(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                   result_dir: Path) -> None:
    first = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    stand_in.requests.clear()
    again = pipeline.run(make_request(stand_in, api_key, photo, result_dir),
                         resume=Checkpoint(uuid=first.record.uuid, record=first.record, result_file=first.file))
    assert again.file == first.file and again.kind == first.kind and again.record == first.record
    assert stand_in.requests == []


def test_resume_with_a_record_only_downloads(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                             result_dir: Path) -> None:
    first = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    stand_in.requests.clear()
    rec = Recorder()
    again = pipeline.run(make_request(stand_in, api_key, photo, result_dir), progress=rec.on_progress,
                         resume=Checkpoint(uuid=first.record.uuid, record=first.record))
    assert [m for m, _ in stand_in.requests] == ["GET"]
    assert rec.stages() == ["download"]
    assert again.file != first.file and again.file.read_bytes() == first.file.read_bytes()


def test_resume_with_a_lost_result_file_downloads_it_again(stand_in: FakeOneMinServer, api_key: str,
                                                           photo: Path, result_dir: Path) -> None:
    first = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    first.file.unlink()
    stand_in.requests.clear()
    again = pipeline.run(make_request(stand_in, api_key, photo, result_dir),
                         resume=Checkpoint(record=first.record, result_file=first.file))
    assert again.file.is_file() and stand_in.count("POST") == 0


def test_resume_with_a_processing_record_polls_its_uuid(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                        result_dir: Path) -> None:
    stand_in.async_latency = 0.2
    seen: list[Checkpoint] = []

    class Stop(Exception):
        pass

    def stop_at_uuid(cp: Checkpoint) -> None:
        seen.append(cp)
        if cp.uuid:
            raise Stop

    req = make_request(stand_in, api_key, photo, result_dir, use_async=True)
    with pytest.raises(Stop):
        pipeline.run(req, checkpoint=stop_at_uuid)
    processing = seen[-1].record
    assert processing is not None and processing.status == "PROCESSING"
    result = pipeline.run(req, resume=Checkpoint(asset_key=seen[-1].asset_key, record=processing))
    assert result.record.succeeded and stand_in.count("POST", "/api/features") == 1


def test_a_sent_generation_without_a_uuid_is_never_generated_again(stand_in: FakeOneMinServer, api_key: str,
                                                                   photo: Path, result_dir: Path) -> None:
    with pytest.raises(UnansweredGeneration) as info:
        pipeline.run(make_request(stand_in, api_key, photo, result_dir),
                     resume=Checkpoint(asset_key="images/2025_01_01_00_00_00_000_vase.jpg", sent=True))
    assert info.value.stage == "generate"
    assert user_message(info.value) == (
        "vase.jpg: its generation may already have been sent and charged, but its answer never arrived, so it "
        "is not sent again; to generate it again on purpose, choose the photo and press Generate.")
    assert stand_in.requests == []


def test_an_asset_key_whose_generation_never_left_starts_over(stand_in: FakeOneMinServer, api_key: str,
                                                              photo: Path, result_dir: Path) -> None:
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir),
                          resume=Checkpoint(asset_key="images/2025_01_01_00_00_00_000_vase.jpg"))
    assert result.record.succeeded
    assert stand_in.count("POST", "/api/assets") == 1 and stand_in.generations == 1


def test_cancel_during_the_upload_stops_it(stand_in: FakeOneMinServer, api_key: str, tmp_path: Path,
                                           result_dir: Path) -> None:
    big = _photo(tmp_path / "big.png", (2048, 2048), "PNG")
    cancel = threading.Event()

    def cancel_midway(stage: str, fraction: float, message: str) -> None:
        if stage == "upload" and 0.2 < fraction < 1.0:
            cancel.set()

    with pytest.raises(Cancelled) as info:
        pipeline.run(make_request(stand_in, api_key, big, result_dir), progress=cancel_midway, cancel=cancel)
    assert info.value.stage == "upload"
    assert stand_in.count("POST", "/api/features") == 0
    assert not result_dir.exists() or list(result_dir.iterdir()) == []


def test_cancel_before_start_sends_nothing(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                           result_dir: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled) as info:
        pipeline.run(make_request(stand_in, api_key, photo, result_dir), cancel=cancel)
    assert info.value.stage == "prepare" and stand_in.requests == []


def test_cancel_while_polling_stops_within_a_poll(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                  result_dir: Path) -> None:
    stand_in.async_latency = 30.0
    cancel = threading.Event()

    def cancel_when_polling(stage: str, fraction: float, message: str) -> None:
        if stage == "poll":
            cancel.set()

    with pytest.raises(Cancelled) as info:
        pipeline.run(make_request(stand_in, api_key, photo, result_dir, use_async=True, poll_interval=5.0),
                     progress=cancel_when_polling, cancel=cancel)
    assert info.value.stage == "poll"
    assert stand_in.count("GET", "/api/results/") <= 1


def test_the_request_repr_hides_the_key(api_key: str, photo: Path, result_dir: Path) -> None:
    req = Request(photo, api_key, result_dir)
    assert api_key not in repr(req) and api_key not in str(req)


def test_a_result_record_without_credits_still_works(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                     result_dir: Path) -> None:
    first = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    bare = GenerationRecord(first.record.uuid, "COMPLETED", first.record.result_keys, None, None, None)
    again = pipeline.run(make_request(stand_in, api_key, photo, result_dir), resume=Checkpoint(record=bare))
    assert again.record.credits_left is None and results.sniff_file(again.file) == first.kind
    assert stand_in.requests[-1][1].startswith("/asset/")
