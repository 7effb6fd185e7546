"""Interrupted generations against the local stand-in: what is journalled, what a resume does, and that nothing is paid twice.

Async (the default): the uuid is journalled the moment 1min.ai answers, a cancel during the
generation request waits for that answer, and a resume polls the same uuid. Sync: a generation
that was sent and cut off keeps `sent` with no uuid, and a resume refuses it in one sentence.
Polling slows down (×1.5 up to 10 s) and yields to a busy request budget.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fake_onemin_server import FakeOneMinServer
from stand_in_helpers import FAST, QUICK, write_photo

from onemin3d_addon.core import history as history_mod
from onemin3d_addon.core import pipeline
from onemin3d_addon.core.client import OneMinClient
from onemin3d_addon.core.errors import (
    Cancelled,
    InvalidInput,
    Onemin3DError,
    ServerError,
    UnansweredGeneration,
    may_have_run,
    user_message,
)
from onemin3d_addon.core.history import History, HistoryEntry
from onemin3d_addon.core.pipeline import Checkpoint, Request
from onemin3d_addon.core.ratelimit import RateLimiter


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo(tmp_path_factory.mktemp("photo") / "lamp.jpg")


def request(stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path, **kw: Any) -> Request:
    kw.setdefault("timeouts", QUICK)
    kw.setdefault("retry", FAST)
    kw.setdefault("poll_interval", 0.05)
    return Request(photo, api_key, result_dir, base_url=stand_in.base_url, **kw)


def test_async_is_the_default_request() -> None:
    assert Request(Path("x.jpg"), "k", Path("r")).use_async is True


def test_cancel_during_the_async_request_waits_for_the_uuid_and_the_resume_fetches_it(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, tmp_path: Path) -> None:
    # the answer to the generation request takes a second: the cancel comes while it is awaited
    stand_in.inject("slow-headers", stage="generate", delay=1.0)
    stand_in.async_latency = 0.3
    cancel = threading.Event()
    checkpoints: list[Checkpoint] = []

    def cancel_once_sent(cp: Checkpoint) -> None:
        checkpoints.append(cp)
        if cp.sent and cp.uuid is None:  # the request leaves now; cancel while its answer is awaited
            threading.Timer(0.4, cancel.set).start()

    req = request(stand_in, api_key, photo, tmp_path / "r")
    with pytest.raises(Cancelled) as info:
        pipeline.run(req, cancel=cancel, checkpoint=cancel_once_sent)
    assert stand_in.generations == 1
    uuid = checkpoints[-1].uuid
    assert uuid is not None and info.value.uuid == uuid  # journalled before the cancel took effect
    result = pipeline.run(req, resume=Checkpoint(asset_key=checkpoints[-1].asset_key, uuid=uuid))
    assert result.record.uuid == uuid and result.file.is_file()
    assert stand_in.generations == 1 and stand_in.count("POST", "/api/features") == 1


def test_cancel_during_a_sync_generation_leaves_it_sent_without_a_uuid_and_the_resume_refuses_it(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, tmp_path: Path) -> None:
    stand_in.latency = 2.0
    cancel = threading.Event()
    checkpoints: list[Checkpoint] = []

    def on_progress(stage: str, fraction: float, message: str) -> None:
        if stage == "generate":
            threading.Timer(0.3, cancel.set).start()  # once the request is on its way

    req = request(stand_in, api_key, photo, tmp_path / "r", use_async=False)
    with pytest.raises(Cancelled) as info:
        pipeline.run(req, cancel=cancel, progress=on_progress, checkpoint=checkpoints.append)
    assert may_have_run(info.value)
    assert checkpoints[-1].sent and checkpoints[-1].uuid is None
    stand_in.latency = 0.0
    with pytest.raises(UnansweredGeneration) as refused:
        pipeline.run(req, resume=checkpoints[-1])
    assert user_message(refused.value).startswith("lamp.jpg: its generation may already have been sent and charged")
    assert stand_in.generations == 1


def test_a_cancel_before_the_request_leaves_clears_sent(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                         tmp_path: Path) -> None:
    cancel = threading.Event()
    checkpoints: list[Checkpoint] = []

    def on_checkpoint(cp: Checkpoint) -> None:
        checkpoints.append(cp)
        if cp.sent:
            cancel.set()  # after "sent" is journalled, before the request is made

    with pytest.raises(Cancelled) as info:
        pipeline.run(request(stand_in, api_key, photo, tmp_path / "r"), cancel=cancel, checkpoint=on_checkpoint)
    assert not may_have_run(info.value)
    assert not checkpoints[-1].sent and stand_in.count("POST", "/api/features") == 0


@pytest.mark.parametrize(("fault", "sent"), [("400:UNSUPPORTED_MODEL", False), ("credits", False),
                                             ("522-html", True), ("reset", True)])
def test_sent_stays_only_when_the_generation_may_have_run(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                          tmp_path: Path, fault: str, sent: bool) -> None:
    stand_in.inject(fault, stage="generate")
    checkpoints: list[Checkpoint] = []
    with pytest.raises(Onemin3DError) as info:
        pipeline.run(request(stand_in, api_key, photo, tmp_path / "r", use_async=False),
                     checkpoint=checkpoints.append)
    assert checkpoints[-1].sent is sent and checkpoints[-1].uuid is None
    if isinstance(info.value, ServerError):  # the advice: look before generating again
        assert "check your 1min.ai history before you generate it again" in user_message(info.value)
    if isinstance(info.value, InvalidInput):
        assert "try again" in user_message(info.value)


class AnswersFinished(FakeOneMinServer):
    """A service that answers an async request with a record that is already finished."""

    def features(self, body: bytes) -> Any:
        req = json.loads(body)
        req.pop("async", None)
        return super().features(json.dumps(req).encode())


def test_an_async_answer_that_is_already_finished_is_used_without_polling(api_key: str, photo: Path,
                                                                          tmp_path: Path) -> None:
    with AnswersFinished(api_key=api_key) as server:
        result = pipeline.run(request(server, api_key, photo, tmp_path / "r", use_async=True))
        assert result.record.succeeded and result.file.is_file()
        assert server.count("GET", "/api/results/") == 0
        assert server.generations == 1


class EnoughPolls(Exception):
    pass


class RecordsSleeps(OneMinClient):
    """Records the waits between polls instead of waiting, and stops after `polls` of them."""

    def __init__(self, *args: Any, polls: int = 12, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sleeps: list[float] = []
        self.polls = polls

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 4))
        if len(self.sleeps) >= self.polls:
            raise EnoughPolls


def _uuid_of_running_job(stand_in: FakeOneMinServer, api_key: str, photo: Path) -> str:
    stand_in.async_latency = 60.0
    with OneMinClient(api_key, stand_in.base_url, QUICK, retry=FAST, rate_limiter=RateLimiter(0)) as c:
        key = c.upload_asset(photo)
        seen: list[str] = []

        class Stop(Exception):
            pass

        def stop(record: Any) -> None:
            seen.append(record.uuid)
            raise Stop

        with pytest.raises(Stop):
            c.generate_3d(key, use_async=True, on_record=stop)
    return seen[0]


def test_polling_slows_down_by_half_each_time_up_to_ten_seconds(stand_in: FakeOneMinServer, api_key: str,
                                                                photo: Path) -> None:
    uuid = _uuid_of_running_job(stand_in, api_key, photo)
    with RecordsSleeps(api_key, stand_in.base_url, QUICK, retry=FAST, rate_limiter=RateLimiter(0),
                       polls=20) as client:
        with pytest.raises(Onemin3DError):  # StillRunning: the deadline is counted in real seconds
            client.wait_for_result(uuid, poll_interval=1.0, deadline=0.3)
        assert client.sleeps == []  # the first wait already outlasts the deadline: given up at once
        with pytest.raises(EnoughPolls):
            client.wait_for_result(uuid, poll_interval=0.01, deadline=900.0)
    assert client.sleeps[:6] == [round(0.01 * 1.5 ** i, 4) for i in range(6)]
    assert client.sleeps[-1] == 10.0 and max(client.sleeps) == 10.0  # the cap: 6 polls a minute a job


def test_polling_waits_the_longest_interval_while_the_request_budget_is_busy(
        stand_in: FakeOneMinServer, api_key: str, photo: Path) -> None:
    uuid = _uuid_of_running_job(stand_in, api_key, photo)
    budget = RateLimiter(limit=20, window=60.0)
    for _ in range(11):  # more than half of it taken by other jobs
        budget.acquire()
    with RecordsSleeps(api_key, stand_in.base_url, QUICK, retry=FAST, rate_limiter=budget, polls=2) as client:
        with pytest.raises(EnoughPolls):
            client.wait_for_result(uuid, poll_interval=0.5, deadline=900.0)
    assert client.sleeps == [10.0, 10.0]  # not 0.5, then 0.75...: the longest wait at once


# --- the journal's rules --------------------------------------------------------------------------


def _entry(**kw: Any) -> HistoryEntry:
    return HistoryEntry(id=kw.pop("id", "job"), source_path="/photos/lamp.jpg", **kw)


def test_unanswered_and_fetchable() -> None:
    assert history_mod.unanswered(_entry(asset_key="k", generation_sent=True, state="cancelled"))
    assert not history_mod.unanswered(_entry(asset_key="k", generation_sent=False, state="failed"))
    assert not history_mod.unanswered(_entry(asset_key="k", generation_sent=True, uuid="u"))
    assert history_mod.fetchable(_entry(uuid="u", state="cancelled"))
    assert history_mod.fetchable(_entry(uuid="u", state="failed", stage="import", error_kind="ImportFailed"))
    assert history_mod.fetchable(_entry(uuid="u", state="failed", stage="download", error_kind="ResultError"))
    assert not history_mod.fetchable(_entry(uuid="u", state="failed", error_kind="GenerationFailed"))
    assert not history_mod.fetchable(_entry(state="running"))


@pytest.mark.parametrize(("fields", "sent"), [
    ({"state": "running", "stage": "generate", "asset_key": "k"}, True),
    ({"state": "running", "stage": "upload", "asset_key": "k"}, True),  # a crash after the upload: assume sent
    ({"state": "cancelled", "stage": "generate", "asset_key": "k"}, True),
    ({"state": "failed", "stage": "generate", "asset_key": "k", "error_kind": "ServerError"}, True),
    ({"state": "failed", "stage": "generate", "asset_key": "k", "error_kind": "InvalidInput"}, False),
    ({"state": "cancelled", "stage": "upload", "asset_key": "k"}, False),
    ({"state": "running", "stage": "poll", "asset_key": "k", "uuid": "u"}, False),
])
def test_an_entry_written_before_the_sent_flag_is_read_conservatively(tmp_path: Path, fields: dict[str, Any],
                                                                       sent: bool) -> None:
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "old.json").write_text(json.dumps({"id": "old", **fields}))
    (entry,) = History(tmp_path).entries()
    assert entry.generation_sent is sent
