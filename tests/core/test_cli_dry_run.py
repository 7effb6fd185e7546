"""--dry-run without Blender: each photo priced from core.prices; with --resume, what an earlier run paid for costs 0.

The earlier run is a real journal written by core.history (the batch's own reader reads it back).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from onemin3d_addon.cli import arguments, dry_run
from onemin3d_addon.core.history import History, HistoryEntry


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    args = arguments.parse(arguments.build_parser(), [*argv, "--dry-run"])
    return dry_run.run(args, "image_to_3d", out=out), out.getvalue()


def _tree(folder: Path) -> set[str]:
    return {str(Path(root, name)) for root, dirs, files in os.walk(folder) for name in (*dirs, *files)}


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    out = {}
    for i, name in enumerate(("done", "paid", "cut", "sent", "new")):
        out[name] = folder / f"{name}.png"
        Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(out[name])
    return out


def _journal(results: Path, photos: dict[str, Path]) -> None:
    """What an earlier run left: a result on disk, a generation paid and not fetched, a cut-out
    paid for with Trellis chosen, a generation sent but never answered; nothing for `new`."""
    history = History(results)
    results.mkdir(parents=True)
    depth = results / "done-depth.png"
    Image.new("L", (8, 8), 128).save(depth)
    trellis = {"options": {"model": "trellis", "remove_background": True}}
    for entry in (
        HistoryEntry(id="a", source_path=str(photos["done"]), state="imported", stage="import",
                     uuid="u-a", result_file=str(depth), result_kind="png"),
        HistoryEntry(id="b", source_path=str(photos["paid"]), state="running", stage="poll",
                     asset_key="k-b", generation_sent=True, uuid="u-b"),
        HistoryEntry(id="c", source_path=str(photos["cut"]), state="failed", stage="upload", settings=trellis,
                     asset_key="k-c", bg_sent=True, bg_uuid="bg-c", bg_file=str(depth)),
        HistoryEntry(id="d", source_path=str(photos["sent"]), state="failed", stage="generate",
                     asset_key="k-d", generation_sent=True),
    ):
        history.save(entry)


def test_each_photo_costs_its_model_and_background_removal_and_nothing_is_written(tmp_path, photos) -> None:
    out = tmp_path / "out"
    code, text = _run(*map(str, photos.values()), str(tmp_path / "gone.jpg"), "--output-dir", str(out),
                      "--model", "Qubico/trellis", "--remove-background", "--json", str(out / "r.json"))
    assert code == 0
    lines = text.splitlines()
    assert "Model: Trellis 3D (Qubico/trellis); background removal: on" in lines[0]
    assert sum(line.endswith("  60,000 credits") for line in lines) == 5
    assert "gone.jpg  -  (no such file: it would fail, and cost nothing)" in text
    assert lines[-1].startswith("Total: 300,000 credits for 5 of 6 photos")
    assert not out.exists()  # no output folder, result folder, log or report
    assert _run(str(photos["new"]))[1].splitlines()[1].endswith("new.png  20,000 credits")  # no output needed


def test_with_resume_what_an_earlier_run_paid_for_costs_nothing_and_says_why(tmp_path, photos) -> None:
    results = tmp_path / "out" / arguments.RESULT_DIR_NAME
    _journal(results, photos)
    before = _tree(tmp_path)
    code, text = _run(*map(str, photos.values()), "--output-dir", str(tmp_path / "out"), "--resume",
                      "--remove-background")
    assert code == 0
    said = {line.split()[0]: line for line in text.splitlines()[1:-1]}
    assert "0 credits  (its result is on disk" in said["done.png"]
    assert "0 credits  (already paid for: its generation is fetched again, free)" in said["paid.png"]
    # the cut-out is paid for; the generation goes on with the model it was started with (Trellis)
    assert "40,000 credits  (goes on from what an earlier run paid for)" in said["cut.png"]
    assert "0 credits  (its earlier generation may already be charged" in said["sent.png"]
    assert "--regenerate sent.png" in said["sent.png"]
    assert said["new.png"].endswith("new.png   40,000 credits")  # stable-image + background removal
    assert text.splitlines()[-1].startswith("Total: 80,000 credits for 2 of 5 photos")
    assert _tree(tmp_path) == before  # read, not written

    _code, text = _run(*map(str, photos.values()), "--output-dir", str(tmp_path / "out"), "--resume",
                       "--regenerate", "sent.png")
    assert "20,000 credits  (--regenerate: a new generation, on purpose)" in text
    assert "Total: 80,000 credits for 3 of 5 photos" in text  # 40,000 (cut) + 20,000 × 2


def test_resume_needs_to_know_the_result_folder_and_an_output_is_needed_without_dry_run(
        tmp_path, photos, capsys) -> None:
    assert _run(str(photos["new"]), "--resume")[0] == arguments.EXIT_USAGE
    assert "give the run's --output, --output-dir or --result-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        arguments.parse(arguments.build_parser(), [str(photos["new"])])
    assert exc.value.code == 2 and "-o/--output -d/--output-dir is required" in capsys.readouterr().err


def test_the_command_line_takes_the_model_and_background_removal_as_the_api_does() -> None:
    args = arguments.parse(arguments.build_parser(), ["a.jpg", "-d", "out"])
    assert (args.model, args.remove_background, args.dry_run) == ("stable-image", False, False)
    chosen = arguments.import_options(arguments.parse(arguments.build_parser(),
                                                      ["a.jpg", "-d", "out", "--model", "TRELLIS",
                                                       "--remove-background"]))
    assert (chosen["model"], chosen["remove_background"]) == ("trellis", True)
    with pytest.raises(SystemExit):
        arguments.parse(arguments.build_parser(), ["a.jpg", "-d", "out", "--model", "dall-e"])
