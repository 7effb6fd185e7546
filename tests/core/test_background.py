"""Background removal before the generation, and the Trellis model, through pipeline.run on the stand-in: credits charged once per step, the cut-out checked, and a resume from every checkpoint never paying for either step twice."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_onemin_server import FakeOneMinServer
from PIL import Image

from onemin3d_addon.core import background, pipeline, protocol
from onemin3d_addon.core.errors import InvalidInput, ResultError, UnansweredGeneration
from onemin3d_addon.core.pipeline import Checkpoint, Request
from onemin3d_addon.core.protocol import RetryPolicy, Timeouts

BG, STABLE, TRELLIS = 20_000, 20_000, 40_000
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, max_retry_after=0.3, not_found_retries=3)
QUICK = Timeouts(connect=2.0, generate=10.0, read=5.0)


def make_request(stand_in: FakeOneMinServer, api_key: str, image: Path, result_dir: Path, *,
                 use_async: bool = False, **kw: Any) -> Request:
    return Request(image, api_key, result_dir, base_url=stand_in.base_url, timeouts=QUICK, retry=FAST,
                   poll_interval=0.02, use_async=use_async, **kw)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A red disc on a plain grey-blue backdrop: what a product photo looks like to the stand-in."""
    h, w = 512, 640
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[...] = (200, 210, 220)
    img[(xx - 320) ** 2 + (yy - 256) ** 2 < 150 ** 2] = (180, 40, 30)
    path = tmp_path_factory.mktemp("product") / "mug.png"
    Image.fromarray(img).save(path)
    return path


def features_sent(stand_in: FakeOneMinServer) -> list[tuple[str, str]]:
    return [(r["type"], r["model"]) for r in stand_in.records.values()]


@pytest.mark.parametrize("model", [protocol.MODEL, protocol.TRELLIS_MODEL])
def test_the_background_is_removed_then_the_cutout_generated(stand_in: FakeOneMinServer, api_key: str,
                                                             product: Path, tmp_path: Path, model: str) -> None:
    before = stand_in.used_credit
    result = pipeline.run(make_request(stand_in, api_key, product, tmp_path, use_async=True,
                                       remove_background=True, model=model))
    assert features_sent(stand_in) == [("BACKGROUND_REMOVER", "stable-image"), ("IMAGE_3D_GENERATOR", model)]
    assert stand_in.used_credit - before == BG + (TRELLIS if model == protocol.TRELLIS_MODEL else STABLE)
    assert result.kind == ("glb" if model == protocol.TRELLIS_MODEL else "png")
    cut = result.cutout_image
    assert cut is not None and cut.parent == tmp_path.resolve() and result.texture_image == cut
    with Image.open(cut) as im:
        assert im.mode == "RGBA" and im.size == (640, 512)
        alpha = np.asarray(im.getchannel("A"))
    assert alpha[256, 320] == 255 and alpha[10, 10] == 0
    share = float((alpha >= 128).mean())
    assert abs(share - np.pi * 150 ** 2 / (640 * 512)) < 0.02  # the disc, and only the disc
    # the 3D step was made from the cut-out (uploaded again), not from the photo
    image_urls = [r["aiRecordDetail"]["promptObject"]["imageUrl"] for r in stand_in.records.values()]
    assert image_urls[0].endswith("_mug.png") and image_urls[1].endswith("background_removed.png")


def test_the_cutout_key_can_be_sent_as_it_is(stand_in: FakeOneMinServer, api_key: str, product: Path,
                                            tmp_path: Path) -> None:
    result = pipeline.run(make_request(stand_in, api_key, product, tmp_path, remove_background=True,
                                       reupload_cutout=False))
    assert stand_in.count("POST", "/api/assets") == 1  # the photo only
    bg_key = next(iter(stand_in.records.values()))["aiRecordDetail"]["resultObject"][0]
    assert list(stand_in.records.values())[1]["aiRecordDetail"]["promptObject"]["imageUrl"] == bg_key
    assert result.cutout_image is not None


def test_without_background_removal_nothing_changes(stand_in: FakeOneMinServer, api_key: str, product: Path,
                                                    tmp_path: Path) -> None:
    before = stand_in.used_credit
    result = pipeline.run(make_request(stand_in, api_key, product, tmp_path))
    assert features_sent(stand_in) == [("IMAGE_3D_GENERATOR", "stable-image")]
    assert stand_in.used_credit - before == STABLE
    assert result.cutout_image is None and result.texture_image == product


def test_an_unknown_model_is_refused_and_charges_nothing(stand_in: FakeOneMinServer, api_key: str,
                                                         product: Path, tmp_path: Path) -> None:
    before = stand_in.used_credit
    with pytest.raises(InvalidInput) as info:
        pipeline.run(make_request(stand_in, api_key, product, tmp_path, model="Qubico/nope"))
    assert info.value.stage == "generate" and stand_in.used_credit == before


def test_a_damaged_cutout_is_refused_and_left_nowhere(stand_in: FakeOneMinServer, api_key: str, product: Path,
                                                      tmp_path: Path) -> None:
    stand_in.inject("corrupt-result", stage="download")  # the first download is the cut-out's
    cps: list[Checkpoint] = []
    with pytest.raises(ResultError):
        pipeline.run(make_request(stand_in, api_key, product, tmp_path, remove_background=True),
                     checkpoint=cps.append)
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []
    assert cps[-1].bg_record is not None and cps[-1].bg_file is None and not cps[-1].sent
    # the paid removal is downloaded again, free, and the job goes on
    before = stand_in.used_credit
    result = pipeline.run(make_request(stand_in, api_key, product, tmp_path, remove_background=True),
                          resume=cps[-1])
    assert stand_in.used_credit - before == STABLE and result.cutout_image is not None


def test_the_cutout_check(tmp_path: Path) -> None:
    opaque = tmp_path / "opaque.png"
    Image.new("RGB", (600, 600), (10, 20, 30)).save(opaque)
    assert not background.check_cutout(opaque).has_alpha
    empty = tmp_path / "empty.png"
    Image.new("RGBA", (600, 600), (10, 20, 30, 0)).save(empty)
    with pytest.raises(ResultError, match="nothing of the subject"):
        background.check_cutout(empty)
    text = tmp_path / "text.png"
    text.write_bytes(b"not an image at all")
    with pytest.raises(ResultError, match="not an image"):
        background.check_cutout(text)


@pytest.mark.parametrize("use_async", [False, True])
def test_a_resume_from_every_checkpoint_pays_for_each_step_once(stand_in: FakeOneMinServer, api_key: str,
                                                               product: Path, tmp_path: Path,
                                                               use_async: bool) -> None:
    """Each checkpoint of a whole run is where a crash could have left the journal: what was
    paid before it (its `bg_sent`, `sent`) plus what a resume from it pays is each price once."""
    stand_in.async_latency = 0.1
    cps: list[Checkpoint] = []
    req = make_request(stand_in, api_key, product, tmp_path / "first", use_async=use_async,
                       remove_background=True)
    pipeline.run(req, checkpoint=cps.append)
    assert len(cps) >= 7
    for n, cp in enumerate(cps):
        paid_before = (BG if cp.bg_sent else 0) + (STABLE if cp.sent else 0)
        before = stand_in.used_credit
        resumed = dataclasses.replace(req, result_dir=tmp_path / f"resume-{n}")
        unanswered = (cp.bg_sent and not (cp.bg_uuid or cp.bg_file)) or (cp.sent and not cp.uuid)
        if unanswered:  # sent, never answered (sync): refused, never sent again
            with pytest.raises(UnansweredGeneration):
                pipeline.run(resumed, resume=cp)
            assert stand_in.used_credit == before, n
            continue
        result = pipeline.run(resumed, resume=cp)
        assert paid_before + stand_in.used_credit - before == BG + STABLE, (n, cp)
        assert result.cutout_image is not None and result.file.is_file()


def test_a_journalled_cutout_is_not_fetched_again(stand_in: FakeOneMinServer, api_key: str, product: Path,
                                                  tmp_path: Path) -> None:
    cps: list[Checkpoint] = []
    req = make_request(stand_in, api_key, product, tmp_path, remove_background=True)
    pipeline.run(req, checkpoint=cps.append)
    at_file = next(c for c in cps if c.bg_file is not None)
    # what the history keeps of it: no record, only the file (core.resume.checkpoint_for)
    stand_in.requests.clear()
    # what was paid for goes on, even when the request no longer asks for the removal
    result = pipeline.run(dataclasses.replace(req, remove_background=False),
                          resume=Checkpoint(bg_sent=True, bg_uuid=at_file.bg_uuid, bg_file=at_file.bg_file))
    assert [p for _, p in stand_in.requests if "results" in p or "background" in p] == []
    assert features_sent(stand_in)[-1] == ("IMAGE_3D_GENERATOR", "stable-image")
    last = list(stand_in.records.values())[-1]
    assert last["aiRecordDetail"]["promptObject"]["imageUrl"].endswith("background_removed.png")
    assert result.cutout_image == at_file.bg_file


def test_a_refused_removal_clears_its_sent_flag_and_a_cancelled_one_keeps_its_uuid(
        stand_in: FakeOneMinServer, api_key: str, product: Path, tmp_path: Path) -> None:
    import threading

    from onemin3d_addon.core.errors import Cancelled, CreditsExhausted

    stand_in.inject("credits", stage="generate")  # refused before any work: nothing charged
    cps: list[Checkpoint] = []
    with pytest.raises(CreditsExhausted):
        pipeline.run(make_request(stand_in, api_key, product, tmp_path, remove_background=True),
                     checkpoint=cps.append)
    assert any(c.bg_sent for c in cps) and not cps[-1].bg_sent and not cps[-1].sent
    # a cancel while the asynchronous removal's answer is on its way waits for its uuid
    stand_in.inject("slow-headers", stage="generate", delay=0.5)
    stand_in.async_latency = 0.3
    cancel = threading.Event()
    cps.clear()

    def cancel_once_sent(cp: Checkpoint) -> None:
        cps.append(cp)
        if cp.bg_sent and cp.bg_uuid is None:
            threading.Timer(0.2, cancel.set).start()

    req = make_request(stand_in, api_key, product, tmp_path, remove_background=True, use_async=True)
    with pytest.raises(Cancelled) as info:
        pipeline.run(req, cancel=cancel, checkpoint=cancel_once_sent)
    assert cps[-1].bg_uuid is not None and info.value.uuid == cps[-1].bg_uuid and not cps[-1].sent
    before = stand_in.used_credit
    result = pipeline.run(req, resume=cps[-1])
    assert stand_in.used_credit - before == STABLE and result.cutout_image is not None


@pytest.mark.parametrize(("fault", "stage"), [("429", "poll"), ("drop-mid-body", "download"),
                                              ("result-404", "download"), ("key-is-url", "poll")])
def test_faults_at_the_removal_are_weathered_and_cost_nothing_more(stand_in: FakeOneMinServer, api_key: str,
                                                                   product: Path, tmp_path: Path, fault: str,
                                                                   stage: str) -> None:
    stand_in.async_latency = 0.1
    stand_in.inject(fault, stage=stage, retry_after=0)  # the first poll or download is the removal's
    before = stand_in.used_credit
    result = pipeline.run(make_request(stand_in, api_key, product, tmp_path, use_async=True,
                                       remove_background=True))
    assert stand_in.used_credit - before == BG + STABLE and result.cutout_image is not None


def test_a_5xx_at_the_removal_request_is_never_sent_again(stand_in: FakeOneMinServer, api_key: str,
                                                          product: Path, tmp_path: Path) -> None:
    from onemin3d_addon.core.errors import ServerError

    stand_in.inject("502-html", stage="generate")  # the origin removed it and charged; the answer was lost
    cps: list[Checkpoint] = []
    req = make_request(stand_in, api_key, product, tmp_path, remove_background=True)
    with pytest.raises(ServerError):
        pipeline.run(req, checkpoint=cps.append)
    assert cps[-1].bg_sent and cps[-1].bg_uuid is None
    before = stand_in.used_credit
    with pytest.raises(UnansweredGeneration):
        pipeline.run(req, resume=cps[-1])
    assert stand_in.used_credit == before
