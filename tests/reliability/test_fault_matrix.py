"""Every fault of the stand-in at every stage it can happen (upload, generate, poll, download), through api.submit + pump() in the bpy wheel.

Each cell is one job against its own stand-in and result folder, in an empty file. A cell holds
when the job ends exactly once, in the expected state, with a message naming the cause (failures),
with no objects or orphan datablocks left (failures) or a clean import (recoveries), no partial
file in the result folder, no add-on thread alive afterwards, and no billed generation sent
twice. The poll stage runs in asynchronous mode (there is no poll otherwise); the others in the
default synchronous mode. Persistent faults (`times=-1`) must fail the job with a clear message;
a single transient fault where the retry policy allows a retry must be absorbed.

The module writes fault_matrix.json (cells tried and held) in a temporary folder, quoted in
docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_onemin_server import FakeOneMinServer
from reliability_harness import (
    ThreadBaseline,
    assert_unchanged,
    datablock_names,
    files_under,
    job_settings,
    orphans,
    partial_files,
    run_job,
)

STAGES = ("upload", "generate", "poll", "download")
ALWAYS = -1  # times=-1: the fault stays until cleared


@dataclass(frozen=True)
class Cell:
    fault: str  # the stand-in's fault name, or "refused"
    stage: str
    times: int = ALWAYS
    expect: str = "failed"  # or "imported"
    words: tuple[str, ...] = ()  # the user message must contain each (case-insensitive)
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    result: str = "depth"

    @property
    def id(self) -> str:
        variant = "always" if self.times < 0 else f"x{self.times}"
        return f"{self.fault}@{self.stage}-{variant}"


def _http_word(status: int) -> tuple[str, ...]:
    return (f"HTTP {status}",)


_400 = {
    "UNSUPPORTED_MODEL": "not supported",
    "MISSING_REQUIRED_FIELDS": "Missing required fields",
    "UNKNOWN_ERROR": "Unsupported feature type",
    "EXTERNAL_API_RESPONSE_WITH_ERROR": "could not be segmented",
}
# A persistent fault that the retry policy may retry, and the word that names it.
_TRANSIENT = {
    "429": ("rate-limiting",),
    "429-no-retry-after": ("rate-limiting",),
    "500": _http_word(500),
    "502-html": _http_word(502),
    "522-html": _http_word(522),
    "slow-headers": ("did not answer",),
    "drop-mid-body": ("dropped",),
    "truncated": ("dropped",),
}
#: error kinds that, once the generation is paid (uuid known), leave the job to be fetched again
_FETCH_AGAIN = {"NetworkError", "ServerError", "RateLimited", "ResultUnavailable", "AuthError", "GarbledResponse"}
#: the timeouts a slow-headers delay must outlast (job_settings': reads 0.8 s, the generation
#: request reliability_harness.GENERATE_TIMEOUT)
_SLOW = {"delay": 3.0}
_SLOW_GENERATE = {"delay": 8.0}


def _cells() -> list[Cell]:
    cells: list[Cell] = []
    for stage in STAGES:
        on_download = stage == "download"
        cells += [
            Cell("401", stage, words=_http_word(401)),
            Cell("403", stage, words=_http_word(403)),
            Cell("credits", stage, words=("credits",)),
            Cell("413", stage, words=_http_word(413) if on_download else ("too large",)),
        ]
        for code, word in _400.items():
            cells.append(Cell(f"400:{code}", stage, words=_http_word(400) if on_download else (word,)))
        for fault, words in _TRANSIENT.items():
            params = (_SLOW_GENERATE if stage == "generate" else _SLOW) if fault == "slow-headers" else {}
            cells.append(Cell(fault, stage, words=words, params=params))
            # Once: a 429 is retried anywhere (the server did nothing); the rest only where the
            # request is safe to repeat (GETs). A POST that reached the server is never re-sent.
            retried = fault.startswith("429") or stage in ("poll", "download")
            cells.append(Cell(fault, stage, times=1, params=params,
                              expect="imported" if retried else "failed", words=() if retried else words))
        cells.append(Cell("refused", stage if stage != "generate" else "upload", words=("refused",)))
        if stage in ("upload", "generate", "poll"):
            cells.append(Cell("invalid-json", stage, words=("not valid JSON",)))
            # once: a status check (a GET) is asked again; a POST's garbled answer is final
            cells.append(Cell("invalid-json", stage, times=1, expect="imported" if stage == "poll" else "failed",
                              words=() if stage == "poll" else ("not valid JSON",)))
        if stage in ("generate", "poll"):
            cells += [
                Cell("status-failure", stage, words=("could not make a 3D result", "upstream FAILURE")),
                # the client falls back to the result key on the asset host: the job still imports
                Cell("temporary-url-empty", stage, expect="imported"),
                Cell("temporary-url-missing", stage, expect="imported"),
                Cell("temporary-url-toplevel", stage, expect="imported"),
            ]
    cells += [
        Cell("result-404", "download", times=2, expect="imported"),  # within RetryPolicy.not_found_retries
        Cell("result-404", "download", words=_http_word(404)),
        Cell("corrupt-result", "download", words=("not a 3D model or an image",)),
        Cell("invalid-glb", "download", words=("damaged",), result="glb"),
    ]
    # "refused" at generate: the features POST rides the upload's keep-alive connection, so a
    # refused connect cannot be staged there; it is the same connect-time path as the upload's.
    unique = {c.id: c for c in cells}
    return list(unique.values())


CELLS = _cells()
_records: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _summary(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Write the cells tried and held to fault_matrix.json in a temporary folder when the module ends."""
    _records.clear()
    started = time.monotonic()
    yield
    held = sum(r["held"] for r in _records)
    (tmp_path_factory.mktemp("reliability") / "fault_matrix.json").write_text(json.dumps({
        "cells_defined": len(CELLS), "cells_tried": len(_records), "cells_held": held,
        "faults": len({r["fault"] for r in _records}), "seconds": round(time.monotonic() - started, 1),
        "cells": _records,
    }, indent=1), encoding="utf-8")


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_when_polling(server: FakeOneMinServer) -> Any:
    def on_tick(job: Any) -> None:
        if job.stage == "poll" and server._httpd is not None:
            server.stop()  # the API host goes away while the job polls: the next poll is refused
    return on_tick


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_fault_cell_holds(cell: Cell, fresh_file: Any, reliability_addon: Any, module_photo: Path,
                          tmp_path: Path) -> None:
    import bpy

    record: dict[str, Any] = {"cell": cell.id, "fault": cell.fault, "stage": cell.stage, "times": cell.times,
                              "expect": cell.expect, "held": False}
    _records.append(record)
    result_dir = tmp_path / "results"
    use_async = cell.stage == "poll"
    server = FakeOneMinServer(result=cell.result, async_latency=2.0 if cell.fault == "refused" else 0.0)
    server.start()
    try:
        base_url = server.base_url
        on_tick = None
        if cell.fault == "refused":
            if cell.stage == "upload":
                base_url = f"http://127.0.0.1:{_closed_port()}"
            elif cell.stage == "poll":
                on_tick = _stop_when_polling(server)
            else:  # download: the storage host is down (the presigned URL redirects to a dead port)
                server.inject("redirect-scheme", stage="download", times=ALWAYS,
                              location=f"http://127.0.0.1:{_closed_port()}/s3/result.png")
        else:
            server.inject(cell.fault, stage=cell.stage, times=cell.times, **cell.params)

        before = datablock_names()
        threads = ThreadBaseline()
        outcome = run_job(module_photo, base_url=base_url, result_dir=result_dir, use_async=use_async,
                          on_tick=on_tick, timeout=40.0, **job_settings())
        job = outcome.job
        record.update(state=outcome.state, message=outcome.message, seconds=round(outcome.seconds, 2),
                      error=type(job.error).__name__ if job.error is not None else None)

        # exactly one terminal state, the expected one
        assert outcome.terminal_transitions == 1, outcome.states_seen
        assert not any(s.startswith("reopened") for s in outcome.states_seen), outcome.states_seen
        assert outcome.state == cell.expect, f"{outcome.state}: {outcome.message}"
        entry = json.loads((result_dir / "history" / f"{job.id}.json").read_text(encoding="utf-8"))
        assert entry["state"] == outcome.state

        # what the user sees
        state = bpy.context.window_manager.onemin3d
        assert job.id not in {item.job_id for item in state.jobs}, "a finished job is still listed as running"
        if cell.expect == "failed":
            message = outcome.message
            assert message and entry["error"] == message
            for word in cell.words:
                assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
            assert message in state.last_error
            assert not job.objects
            assert_unchanged(before)
        else:
            assert job.objects and all(ob.name in bpy.context.scene.objects for ob in job.objects)
            assert not outcome.message
        assert orphans() == []

        # files: nothing partial; a result on disk only when it was downloaded whole
        assert partial_files(result_dir) == []
        results = [p for p in files_under(result_dir) if p.parent.name != "history"]
        if cell.fault == "invalid-glb":
            # complete but unusable: kept as the paid result (named in the history), never imported
            assert [str(p) for p in results] == [entry["result_file"]]
        elif cell.expect == "failed":
            assert results == [] and entry["result_file"] is None
        else:
            assert [str(p) for p in results] == [entry["result_file"]]

        # a paid generation whose record or result could not be fetched is kept, to be fetched free
        from onemin3d_addon.core.history import History

        paid_and_kept = (cell.expect == "failed" and entry["uuid"] is not None and entry["result_file"] is None
                         and record["error"] in _FETCH_AGAIN)
        assert (job.id in {e.id for e in History(result_dir).resumable()}) == paid_and_kept
        if paid_and_kept:
            assert "paid for" in outcome.message and "fetched again" in outcome.message
        if cell.stage in ("poll", "download") and record["error"] in _FETCH_AGAIN:
            assert paid_and_kept, "a paid generation was dropped from the resumable jobs"

        # threads
        assert threads.wait_back() == []

        # billing: at most one generation done, and the POST re-sent only after a 429 refusal
        posts = server.count("POST", "/api/features")
        assert server.generations <= 1
        if cell.fault.startswith("429") and cell.stage == "generate":
            assert posts <= 3  # RetryPolicy.attempts of job_settings
        else:
            assert posts <= 1, f"the features POST was sent {posts} times"
        if cell.expect == "imported":
            assert server.generations == 1
        record["held"] = True
    finally:
        server.close()


def test_a_paid_result_that_failed_to_download_is_fetched_free_on_the_next_start(
        fresh_file: Any, reliability_addon: Any, module_photo: Path, tmp_path: Path) -> None:
    """The S3 host fails for good: the job fails, saying it is kept; the next start fetches it
    (poll + download only), the history imports it, and the generation is still paid once."""
    from onemin3d_addon.blender import runtime

    result_dir = tmp_path / "results"
    with FakeOneMinServer() as server:
        server.inject("502-html", stage="download", times=ALWAYS)
        failed = run_job(module_photo, base_url=server.base_url, result_dir=result_dir, **job_settings())
        assert failed.state == "failed" and "paid for" in failed.message
        server.clear_faults()
        previous = reliability_addon.result_folder
        base_url = reliability_addon.base_url
        reliability_addon.base_url = server.base_url
        try:
            # what a restart does: forget this session's jobs, then resume the folder's history
            rt = runtime.get_runtime()
            rt.jobs.pop(failed.job.id)
            reliability_addon.result_folder = str(result_dir)  # lists and resumes that folder
            resumed = rt.jobs.get(failed.job.id)
            assert resumed is not None and not resumed.done, (resumed, list(rt.jobs))
            resumed.wait(timeout=20.0)
        finally:
            reliability_addon.base_url = base_url
            reliability_addon.result_folder = previous
        # made in an unsaved file, so it is fetched and listed, then imported from the history
        assert resumed.state == "done", resumed.error_message
        assert resumed.result_file is not None and resumed.result_file.is_file()
        assert rt.reimport(resumed.id)
        assert server.generations == 1 and server.count("POST", "/api/features") == 1
        assert server.count("POST", "/api/assets") == 1
        assert partial_files(result_dir) == []
