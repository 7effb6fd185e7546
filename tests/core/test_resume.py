"""core.resume: the one policy of Re-import and --resume (bpy-free)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from onemin3d_addon.core import resume
from onemin3d_addon.core.history import HistoryEntry

UUID = "0f0f0f0f-0000-0000-0000-000000000000"


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "result.png"
    Image.new("L", (8, 8), 128).save(path)
    return path


def entry(**kw: object) -> HistoryEntry:
    return HistoryEntry(id="j1", source_path="/photos/dress.jpg", **kw)  # type: ignore[arg-type]


def test_a_whole_result_on_disk_is_imported(png: Path) -> None:
    d = resume.decide(entry(state="imported", uuid=UUID, result_file=str(png)))
    assert (d.action, d.result_file) == (resume.IMPORT, png)


def test_a_paid_generation_without_its_result_is_fetched_free(tmp_path: Path) -> None:
    assert resume.decide(entry(state="failed", stage="poll", uuid=UUID)).action == resume.FETCH
    gone = entry(state="imported", uuid=UUID, result_file=str(tmp_path / "gone.png"))
    assert resume.decide(gone).action == resume.FETCH


def test_a_damaged_download_is_fetched_again(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert resume.decide(entry(state="done", uuid=UUID, result_file=str(bad))).action == resume.FETCH


def test_a_failed_import_is_fetched_again_unless_tried_with_other_settings(png: Path) -> None:
    failed = entry(state="failed", stage="import", uuid=UUID, result_file=str(png))
    assert resume.decide(failed).action == resume.FETCH
    assert resume.decide(failed, retry_import=True).action == resume.FETCH
    assert resume.decide(failed, new_options=True).action == resume.IMPORT
    no_uuid = entry(state="failed", stage="import", result_file=str(png))
    assert resume.decide(no_uuid).action == resume.NOTHING      # --resume: generate again
    assert resume.decide(no_uuid, retry_import=True).action == resume.IMPORT  # Re-import: try the file


def test_an_unanswered_generation_is_refused_never_sent_again() -> None:
    d = resume.decide(entry(state="failed", stage="generate", generation_sent=True))
    assert d.action == resume.REFUSE


def test_a_dead_generation_or_one_never_sent_leads_nowhere() -> None:
    dead = entry(state="failed", stage="poll", uuid=UUID, error_kind="GenerationFailed")
    assert resume.decide(dead).action == resume.NOTHING
    assert resume.decide(entry(state="failed", stage="upload")).action == resume.NOTHING


def test_a_paid_background_removal_goes_on_and_one_unanswered_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.png"
    Image.new("RGBA", (8, 8), (1, 2, 3, 255)).save(cut)
    # its uuid or its cut-out journalled, no generation sent yet: the cut-out free, the generation once
    for paid in (entry(state="running", stage="poll", bg_sent=True, bg_uuid=UUID),
                 entry(state="cancelled", stage="upload", bg_sent=True, bg_uuid=UUID, bg_file=str(cut))):
        assert resume.decide(paid).action == resume.FETCH
        cp = resume.checkpoint_for(paid)
        assert (cp.bg_sent, cp.bg_uuid, cp.uuid, cp.sent) == (True, UUID, None, False)
        assert cp.bg_file == (Path(paid.bg_file) if paid.bg_file else None)
    # sent, never answered: it may be charged and nothing can fetch it
    assert resume.decide(entry(state="running", stage="generate", bg_sent=True)).action == resume.REFUSE
    # and the generation after it, likewise
    both = entry(state="running", stage="generate", bg_sent=True, bg_uuid=UUID, bg_file=str(cut),
                 generation_sent=True)
    assert resume.decide(both).action == resume.REFUSE and resume.checkpoint_for(both).sent
    # a removal that failed on 1min.ai's side leads nowhere
    dead = entry(state="failed", stage="poll", error_kind="GenerationFailed", bg_sent=True, bg_uuid=UUID)
    assert resume.decide(dead).action == resume.NOTHING
