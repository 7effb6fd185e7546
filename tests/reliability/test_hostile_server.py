"""A hostile or broken server, through api.submit + pump() in the bpy wheel: each case is refused or contained, with a clear message, and nothing is written outside the result folder.

Each case runs one job against its own stand-in, with the result folder inside a parent folder
that is snapshotted before and after: apart from the result folder itself, the parent must not
change (and neither may the system temp folder gain a file a traversal aimed at). Refused cases
must fail exactly once with a message naming the cause and leave no object, orphan or partial
file; contained cases must import a result whose file is a plain, short, printable name inside
the result folder.
"""

from __future__ import annotations

import json
import tempfile
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
    snapshot,
)

ALWAYS = -1
CAP = 4 * 1024 * 1024  # max_download_bytes of these jobs: the caps are exercised, not the disk


@dataclass(frozen=True)
class Case:
    id: str
    fault: str
    stage: str
    expect: str  # "refused" or "contained"
    words: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    result: str = "depth"
    use_async: bool = False
    max_download_bytes: int = CAP
    within: float = 15.0  # a guard against a hung job, not a figure (never-ends streams for 60 s)


_KEY_PREFIX = "images/2026_01_01_00_00_00_000_"
CASES = [
    # result keys: only a sanitised basename ever reaches the disk
    Case("key-dotdot", "hostile-key", "generate", "contained", params={"key": "../../../../escaped.png"}),
    Case("key-dotdot-nested", "hostile-key", "generate", "contained",
         params={"key": _KEY_PREFIX + "a/../../../../../escaped-nested.png"}),
    Case("key-absolute", "hostile-key", "generate", "contained", params={"key": "/tmp/onemin3d-absolute-result.png"}),
    Case("key-backslashes", "hostile-key", "generate", "contained",
         params={"key": "..\\..\\..\\windows-escaped.png"}),
    Case("key-nul", "hostile-key", "generate", "contained", params={"key": _KEY_PREFIX + "a\x00b.png"}),
    Case("key-control-chars", "hostile-key", "generate", "contained",
         params={"key": _KEY_PREFIX + "\x1b[31mred\x07\r\nbell\t.png"}),
    Case("key-500-chars", "hostile-key", "generate", "contained", params={"key": _KEY_PREFIX + "n" * 500 + ".png"}),
    Case("key-only-dots", "hostile-key", "poll", "contained", params={"key": "../.."}, use_async=True),
    # archives
    Case("zip-traversal", "zip-traversal", "download", "refused", words=("refused", "climbs out")),
    Case("zip-absolute", "zip-traversal", "download", "refused", words=("refused", "absolute path"),
         params={"names": "/tmp/onemin3d-evil-absolute.txt"}),
    Case("zip-bomb-ratio", "zip-bomb", "download", "refused", words=("bomb",), params={"size": 64 << 20}),
    # headers that under-declare the sizes: extraction stops at the declared size, and the CRC
    # then fails, so the bomb never inflates
    Case("zip-bomb-lying-headers", "zip-bomb", "download", "refused", words=("archive is damaged",),
         params={"size": 64 << 20, "lie": True}),
    # sizes
    Case("content-length-over-cap", "huge-content-length", "download", "refused", words=("over the", "limit")),
    Case("body-over-cap", "", "download", "refused", words=("over the 4 KB limit",), max_download_bytes=4096),
    Case("gzip-bomb-over-cap", "gzip-bomb", "download", "refused", words=("larger than", "limit"),
         params={"size": 64 << 20}),
    Case("gzip-within-cap", "gzip", "download", "contained"),
    # redirects to another scheme
    Case("redirect-file-download", "redirect-scheme", "download", "refused", words=("non-web address", "file:")),
    Case("redirect-ftp-poll", "redirect-scheme", "poll", "refused", words=("non-web address", "ftp:"),
         params={"location": "ftp://example.com/x"}, use_async=True),
    Case("redirect-file-upload", "redirect-scheme", "upload", "refused", words=("non-web address",)),
    Case("redirect-javascript-generate", "redirect-scheme", "generate", "refused", words=("non-web address",),
         params={"location": "javascript:alert(1)", "status": 307}),
    # HTML where JSON is expected
    Case("html-upload", "html-instead-of-json", "upload", "refused", words=("not valid JSON", "Just a moment")),
    Case("html-generate", "html-instead-of-json", "generate", "refused", words=("not valid JSON",)),
    Case("html-poll", "html-instead-of-json", "poll", "refused", words=("not valid JSON",), use_async=True),
    # a response that never ends: the timeouts hold (read timeout of these jobs: 0.8 s)
    Case("never-ends-upload", "never-ends", "upload", "refused", words=("without finishing",), within=8.0),
    Case("never-ends-generate", "never-ends", "generate", "refused", words=("without finishing",), within=8.0),
    Case("never-ends-poll", "never-ends", "poll", "refused", words=("without finishing",), use_async=True,
         within=12.0),
    Case("never-ends-download", "never-ends", "download", "refused", words=("too slowly",), within=12.0),
]
_records: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _summary(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Write the cases tried and held to hostile_server.json in a temporary folder when the module ends."""
    _records.clear()
    yield
    summary = {"cases_tried": len(_records), "cases_held": sum(r["held"] for r in _records), "cases": _records}
    (tmp_path_factory.mktemp("reliability") / "hostile_server.json").write_text(json.dumps(summary, indent=1),
                                                                                 encoding="utf-8")


def _temp_names() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case_is_refused_or_contained(case: Case, fresh_file: Any, reliability_addon: Any,
                                             module_photo: Path, tmp_path: Path) -> None:

    record: dict[str, Any] = {"case": case.id, "expect": case.expect, "held": False}
    _records.append(record)
    parent = tmp_path / "parent"
    result_dir = parent / "results"
    parent.mkdir()
    (parent / "neighbour.txt").write_text("must stay as it is\n")
    before_parent = snapshot(parent)
    before_temp = _temp_names()
    with FakeOneMinServer(result=case.result) as server:
        if case.fault:
            server.inject(case.fault, stage=case.stage, times=ALWAYS, **case.params)
        before = datablock_names()
        threads = ThreadBaseline()
        started = time.monotonic()
        outcome = run_job(module_photo, base_url=server.base_url, result_dir=result_dir, use_async=case.use_async,
                          timeout=case.within + 30.0, **job_settings(max_download_bytes=case.max_download_bytes))
        elapsed = time.monotonic() - started
        record.update(state=outcome.state, message=outcome.message, seconds=round(elapsed, 2))
        job = outcome.job

        assert outcome.terminal_transitions == 1
        if case.expect == "refused":
            assert outcome.state == "failed", f"{outcome.state}: a hostile answer was accepted"
            for word in case.words:
                assert word.lower() in outcome.message.lower(), f"{word!r} not in {outcome.message!r}"
            assert not job.objects
            assert_unchanged(before)
            kept = [str(p) for p in files_under(result_dir) if p.parent.name != "history"]
            if outcome.job.stage == "import":
                # a whole, paid download that was refused on inspection stays as the history's
                # result file (never extracted, never imported); nothing else is written
                assert kept == [str(job.result_file)]
            else:
                assert kept == []
        else:
            assert outcome.state == "imported", outcome.message
            assert job.objects
            result = job.result_file
            assert result is not None and result.parent == result_dir
            name = result.name
            assert name.isprintable() and "\\" not in name and not name.startswith(".")
            assert len(name.encode()) <= 200
        assert orphans() == []
        assert partial_files(result_dir) == []
        assert threads.wait_back() == []
        assert server.generations <= 1 and server.count("POST", "/api/features") <= 1

    # nothing written outside the result folder
    after_parent = {k: v for k, v in snapshot(parent).items() if not k.startswith("results")}
    assert after_parent == {k: v for k, v in before_parent.items() if not k.startswith("results")}
    new_temp = {n for n in _temp_names() - before_temp if "evil" in n or "escaped" in n or "absolute" in n}
    assert not new_temp, f"written into the temp folder: {new_temp}"
    record["held"] = True
