"""The client and pipeline over real HTTP against the local stand-in: every fault it can play, and what the user sees.

Each fault test asserts the exception type, the one sentence the user is shown (it names the
cause), the stage, that nothing half-written is left in the result folder, and (autouse) that
the API key appears in no message, repr, traceback or log line.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_onemin_server import FakeOneMinServer
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from stand_in_helpers import FAST, QUICK, write_photo

from onemin3d_addon.core import pipeline, results
from onemin3d_addon.core.client import (
    GenerationRecord,
    OneMinClient,
    ResultUnavailable,
    RetryPolicy,
    Timeouts,
    error_from_response,
    parse_error_body,
    parse_record,
)
from onemin3d_addon.core.errors import (
    AuthError,
    BadResponse,
    Cancelled,
    CreditsExhausted,
    GarbledResponse,
    GenerationFailed,
    InvalidInput,
    NetworkError,
    Onemin3DError,
    RateLimited,
    ResultError,
    ServerError,
    StillRunning,
    user_message,
)
from onemin3d_addon.core.pipeline import Checkpoint, Request

# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo(tmp_path_factory.mktemp("photo") / "dress photo.jpg")


@pytest.fixture
def result_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def key_never_logged(caplog: pytest.LogCaptureFixture, api_key: str) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert api_key not in caplog.text


def make_request(stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path,
                 **kw: Any) -> Request:
    kw.setdefault("timeouts", QUICK)
    kw.setdefault("retry", FAST)
    kw.setdefault("poll_interval", 0.02)
    kw.setdefault("use_async", False)  # these tests were written for one mode; async ones say so
    return Request(photo, api_key, result_dir, base_url=stand_in.base_url, **kw)


def make_client(stand_in: FakeOneMinServer, api_key: str, **kw: Any) -> OneMinClient:
    kw.setdefault("retry", FAST)
    kw.setdefault("timeouts", QUICK)
    return OneMinClient(api_key, stand_in.base_url, **kw)


def _cancel_once(cancel: threading.Event, when: Any) -> threading.Thread:
    """Set `cancel` as soon as `when()` holds (a request reached the stand-in), from a thread."""
    def watch() -> None:
        while not when():
            time.sleep(0.005)
        cancel.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def fails(request: Request, **kw: Any) -> Onemin3DError:
    with pytest.raises(Onemin3DError) as info:
        pipeline.run(request, **kw)
    return info.value


def assert_clean_failure(err: Onemin3DError, kind: type[Onemin3DError], *needles: str, stage: str,
                         api_key: str, result_dir: Path) -> str:
    """The error is `kind`, from `stage`, its user message names the cause, no key, no files."""
    assert type(err) is kind, f"{type(err).__name__}: {err}"
    assert err.stage == stage
    text = user_message(err)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    everything = " ".join([text, str(err), repr(err), err.detail or "",
                           "".join(traceback.format_exception(err))])
    assert api_key not in everything
    assert_nothing_left(result_dir)
    return text


def assert_nothing_left(result_dir: Path) -> None:
    assert not result_dir.exists() or sorted(p.name for p in result_dir.iterdir()) == []


def assert_only_result(result: pipeline.Result, result_dir: Path) -> None:
    assert result.file.parent == result_dir.resolve()
    assert [p.name for p in result_dir.iterdir()] == [result.file.name]
    assert results.sniff_file(result.file) == result.kind


# --- the fault matrix: faults that end the job ------------------------------------------------------

# (fault, stage, inject params, times, error class, words the user must see, stage it is blamed on,
#  request overrides)
FATAL: list[tuple[str, str, dict[str, Any], int, type[Onemin3DError], tuple[str, ...], str, dict[str, Any]]] = [
    ("401", "upload", {}, 1, AuthError, ("HTTP 401", "API key", "ONEMIN_API_KEY"), "upload", {}),
    ("401", "generate", {}, 1, AuthError, ("HTTP 401", "API key"), "generate", {}),
    ("403", "generate", {}, 1, AuthError, ("HTTP 403", "API key"), "generate", {}),
    ("403", "poll", {}, 1, AuthError, ("HTTP 403",), "poll", {"use_async": True}),
    ("400:UNSUPPORTED_MODEL", "generate", {}, 1, InvalidInput,
     ("refused the request", "not supported", "stable-image"), "generate", {}),
    ("400:MISSING_REQUIRED_FIELDS", "generate", {}, 1, InvalidInput,
     ("Missing required fields", "imageUrl"), "generate", {}),
    ("400:UNKNOWN_ERROR", "generate", {}, 1, InvalidInput, ("Unsupported feature type",), "generate", {}),
    ("400:EXTERNAL_API_RESPONSE_WITH_ERROR", "generate", {}, 1, InvalidInput,
     ("the subject could not be segmented",), "generate", {}),
    ("credits", "generate", {}, 1, CreditsExhausted, ("run out of credits", "top up"), "generate", {}),
    ("credits", "generate", {"status": 402}, 1, CreditsExhausted, ("run out of credits",), "generate", {}),
    ("credits", "generate", {"status": 403, "code": "NOT_ENOUGH_CREDIT"}, 1, CreditsExhausted,
     ("run out of credits",), "generate", {}),
    ("413", "upload", {}, 1, InvalidInput, ("too large", "50 MB"), "upload", {}),
    ("429", "generate", {"retry_after": 7}, -1, RateLimited, ("rate-limiting", "wait 7 s"), "generate", {}),
    ("429-no-retry-after", "upload", {}, -1, RateLimited, ("rate-limiting", "a minute"), "upload", {}),
    ("500", "generate", {}, 1, ServerError, ("HTTP 500", "credits may have been spent"), "generate", {}),
    ("500", "poll", {}, -1, ServerError, ("HTTP 500",), "poll", {"use_async": True}),
    ("500", "download", {}, -1, ServerError, ("HTTP 500",), "download", {}),
    ("502-html", "upload", {}, 1, ServerError, ("HTTP 502",), "upload", {}),
    ("502-html", "download", {}, -1, ServerError, ("HTTP 502",), "download", {}),
    ("522-html", "generate", {}, 1, ServerError, ("HTTP 522",), "generate", {}),
    ("slow-headers", "generate", {"delay": 2.0}, 1, NetworkError,
     ("did not answer the generation request within 0.4 s", "may still have run"), "generate",
     {"timeouts": Timeouts(connect=2.0, generate=0.4, read=5.0)}),
    ("slow-headers", "upload", {"delay": 2.0}, 1, NetworkError, ("did not answer the upload within 0.4 s",),
     "upload", {"timeouts": Timeouts(connect=2.0, generate=5.0, read=0.4)}),
    ("drop-mid-body", "generate", {}, 1, NetworkError, ("dropped in the middle of the generation request",),
     "generate", {}),
    ("drop-mid-body", "download", {}, -1, NetworkError, ("dropped in the middle of the download",),
     "download", {}),
    ("truncated", "download", {"fraction": 0.3}, -1, NetworkError, ("dropped in the middle of the download",),
     "download", {}),
    ("truncated", "poll", {}, -1, NetworkError, ("dropped in the middle of the status check",), "poll",
     {"use_async": True}),
    ("reset", "upload", {}, 1, NetworkError, ("connection", "dropped", "reset"), "upload", {}),
    ("reset", "generate", {}, 1, NetworkError, ("dropped", "may still have run"), "generate", {}),
    ("reset", "download", {}, -1, NetworkError, ("dropped",), "download", {}),
    ("invalid-json", "generate", {}, 1, GarbledResponse, ("garbled", "not valid JSON", "may still have run"),
     "generate", {}),
    ("invalid-json", "upload", {}, 1, GarbledResponse, ("upload answer is not valid JSON", "proxy"), "upload", {}),
    ("html-instead-of-json", "poll", {}, -1, GarbledResponse, ("not valid JSON", "Just a moment"), "poll",
     {"use_async": True}),
    ("huge-content-length", "download", {}, 1, ResultError, ("over the 512 MB limit",), "download", {}),
    ("redirect-scheme", "download", {}, 1, ResultError, ("non-web address", "file:"), "download", {}),
    ("redirect-scheme", "poll", {"location": "ftp://example.com/x"}, 1, BadResponse, ("non-web address", "ftp:"),
     "poll", {"use_async": True}),
    ("never-ends", "download", {"interval": 0.05, "limit": 20}, 1, NetworkError, ("download came too slowly",),
     "download", {"timeouts": Timeouts(connect=2.0, generate=5.0, read=0.5)}),
    ("never-ends", "generate", {"interval": 0.05, "limit": 20}, 1, NetworkError,
     ("kept sending the generation request", "without finishing"), "generate",
     {"timeouts": Timeouts(connect=2.0, generate=0.5, read=5.0)}),
    ("result-404", "download", {}, -1, ResultUnavailable, ("not on the server", "HTTP 404"), "download", {}),
    ("gzip-bomb", "download", {"size": 48 << 20}, 1, ResultError, ("larger than the 8 MB limit",), "download",
     {"max_download_bytes": 8_000_000}),
    ("status-failure", "generate", {}, 1, GenerationFailed,
     ("could not make a 3D result", "could not be generated from this image"), "generate", {}),
    ("status-failure", "poll", {"status": "FAILED", "message": "NSFW content detected"}, 1, GenerationFailed,
     ("could not make a 3D result", "NSFW content detected"), "poll", {"use_async": True}),
    ("corrupt-result", "download", {}, 1, ResultError, ("not a 3D model or an image",), "download", {}),
]


@pytest.mark.parametrize(("fault", "stage", "params", "times", "kind", "needles", "blamed", "overrides"), FATAL,
                         ids=[f"{f[0]}@{f[1]}{'' if not f[2] else '+' + ','.join(map(str, f[2]))}" for f in FATAL])
def test_fault_fails_the_job_with_a_message_naming_the_cause(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path, fault: str, stage: str,
        params: dict[str, Any], times: int, kind: type[Onemin3DError], needles: tuple[str, ...], blamed: str,
        overrides: dict[str, Any]) -> None:
    stand_in.inject(fault, stage=stage, times=times, **params)
    err = fails(make_request(stand_in, api_key, photo, result_dir, **overrides))
    assert_clean_failure(err, kind, *needles, stage=blamed, api_key=api_key, result_dir=result_dir)
    # whatever happened, a generation that reached the server was sent once, at most
    assert stand_in.count("POST", "/api/features") <= (FAST.attempts if fault.startswith("429") else 1)


def test_a_522_on_the_generation_is_not_resent(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                               result_dir: Path) -> None:
    stand_in.inject("522-html", stage="generate", times=-1)
    err = fails(make_request(stand_in, api_key, photo, result_dir))
    assert isinstance(err, ServerError) and err.status == 522
    assert stand_in.count("POST", "/api/features") == 1
    assert stand_in.generations == 1  # the origin did the work: the history must say so, not a retry


@pytest.mark.parametrize("fault", ["500", "502-html", "slow-headers", "reset", "drop-mid-body", "invalid-json"])
def test_a_generation_that_reached_the_server_is_never_resent(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path, fault: str) -> None:
    stand_in.inject(fault, stage="generate", times=-1, delay=1.0)
    fails(make_request(stand_in, api_key, photo, result_dir,
                       timeouts=Timeouts(connect=2.0, generate=0.3, read=5.0)))
    assert stand_in.count("POST", "/api/features") == 1


def test_the_external_api_error_shows_the_real_cause_not_busy(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path) -> None:
    stand_in.inject("400:EXTERNAL_API_RESPONSE_WITH_ERROR", stage="generate")
    err = fails(make_request(stand_in, api_key, photo, result_dir))
    assert isinstance(err, InvalidInput) and err.code == "EXTERNAL_API_RESPONSE_WITH_ERROR"
    assert "busy" not in user_message(err)
    assert stand_in.count("POST", "/api/features") == 1  # "try again later" is not taken literally


# --- the fault matrix: faults the client rides out ------------------------------------------------------


def test_429_with_retry_after_is_retried_after_that_wait(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                         result_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    stand_in.inject("429", stage="generate", retry_after=1)
    with caplog.at_level(logging.WARNING):
        result = pipeline.run(make_request(stand_in, api_key, photo, result_dir,
                                           retry=RetryPolicy(attempts=3, backoff=0.01, max_retry_after=60.0)))
    assert "rate-limited (HTTP 429); waiting 1.0 s" in caplog.text
    assert stand_in.count("POST", "/api/features") == 2  # refused, then done: nothing was done twice
    assert_only_result(result, result_dir)


def test_a_long_retry_after_is_capped(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                      result_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    stand_in.inject("429", stage="upload", retry_after=3600)
    with caplog.at_level(logging.WARNING):
        pipeline.run(make_request(stand_in, api_key, photo, result_dir))  # FAST caps waits at 0.3 s
    assert "rate-limited (HTTP 429); waiting 0.3 s" in caplog.text
    assert stand_in.count("POST", "/api/assets") == 2


@pytest.mark.parametrize(("fault", "stage", "params", "route", "calls", "overrides"), [
    ("429-no-retry-after", "upload", {}, ("POST", "/api/assets"), 2, {}),
    ("429", "poll", {"retry_after": 0}, ("GET", "/api/results/"), None, {"use_async": True}),
    ("500", "poll", {}, ("GET", "/api/results/"), None, {"use_async": True}),
    ("500", "download", {}, ("GET", "/s3/"), 2, {}),
    ("502-html", "download", {}, ("GET", "/s3/"), 2, {}),
    ("522-html", "download", {}, ("GET", "/s3/"), 2, {}),
    ("slow-headers", "poll", {"delay": 1.0}, ("GET", "/api/results/"), None,
     {"use_async": True, "timeouts": Timeouts(connect=2.0, generate=5.0, read=0.3)}),
    ("slow-headers", "download", {"delay": 1.0}, ("GET", "/s3/"), 2,
     {"timeouts": Timeouts(connect=2.0, generate=5.0, read=0.3)}),
    ("drop-mid-body", "download", {}, ("GET", "/s3/"), 2, {}),
    ("drop-mid-body", "poll", {}, ("GET", "/api/results/"), None, {"use_async": True}),
    ("truncated", "download", {}, ("GET", "/s3/"), 2, {}),
    ("reset", "download", {}, ("GET", "/s3/"), 2, {}),
    ("reset", "poll", {}, ("GET", "/api/results/"), None, {"use_async": True}),
    ("invalid-json", "poll", {}, ("GET", "/api/results/"), None, {"use_async": True}),
    ("html-instead-of-json", "poll", {}, ("GET", "/api/results/"), None, {"use_async": True}),
])
def test_transient_fault_on_a_safe_call_is_retried(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path, fault: str, stage: str,
        params: dict[str, Any], route: tuple[str, str] | None, calls: int | None,
        overrides: dict[str, Any]) -> None:
    stand_in.inject(fault, stage=stage, **params)
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir, **overrides))
    assert_only_result(result, result_dir)
    assert stand_in.count("POST", "/api/features") == 1
    assert route is not None
    if calls is not None:
        assert stand_in.count(*route) == calls
    else:
        assert stand_in.count(*route) >= 2


def test_a_result_that_404s_right_after_success_is_fetched_on_a_later_try(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path) -> None:
    stand_in.inject("result-404", stage="download", times=2)
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    assert_only_result(result, result_dir)
    assert stand_in.count("GET", "/s3/") == 3


@pytest.mark.parametrize(("fault", "route"), [
    ("temporary-url-empty", "/asset/"),
    ("temporary-url-missing", "/asset/"),
    ("temporary-url-toplevel", "/s3/"),
    ("key-is-url", "/s3/"),
])
def test_download_address_fallbacks(stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path,
                                    fault: str, route: str) -> None:
    stand_in.inject(fault, stage="generate")
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    assert_only_result(result, result_dir)
    assert stand_in.count("GET", route) == 1
    assert stand_in.count("GET") == 1  # the first address that exists is the one used


def test_the_result_key_url_is_used_when_there_is_no_temporary_url(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path) -> None:
    stand_in.inject("key-is-url", stage="generate")
    stand_in.inject("temporary-url-missing", stage="generate")
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    assert_only_result(result, result_dir)
    assert stand_in.requests[-1][1].startswith("/asset/")


def test_an_expired_temporary_url_falls_back_to_the_asset_host(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path) -> None:
    with make_client(stand_in, api_key) as client:
        key = client.upload_asset(photo)
        record = client.generate_3d(key)
        assert record.download_url is not None
        stale = GenerationRecord(record.uuid, record.status, record.result_keys,
                                 record.download_url.replace("X-Amz-Signature=", "X-Amz-Signature=0"),
                                 None, None)
        file = client.download(stale, result_dir)
    assert results.sniff_file(file) == "png"
    assert [p for _, p in stand_in.requests[-2:]][0].startswith("/s3/")
    assert stand_in.requests[-1][1].startswith("/asset/")


@pytest.mark.parametrize("key", ["../../x", "..\\..\\evil\\x.png", "/etc/passwd\x00\x1b[31m" + "a" * 300])
def test_a_hostile_result_key_only_names_a_file_inside_the_result_folder(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path, key: str) -> None:
    stand_in.inject("hostile-key", stage="generate", key=key)
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    assert_only_result(result, result_dir)
    assert result.record.result_keys == (key,)
    name = result.file.name
    assert ".." not in name.replace(".png", "") and "\x00" not in name and "\x1b" not in name
    assert len(name) <= 120


def test_a_gzip_encoded_result_is_stored_decoded(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                 result_dir: Path) -> None:
    stand_in.inject("gzip", stage="download")
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    assert_only_result(result, result_dir)
    assert result.kind == "png"
    Image.open(result.file).verify()


def test_the_size_cap_counts_decoded_bytes(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                           result_dir: Path) -> None:
    # the bomb is a few hundred KB on the wire and 24 MB decoded: the cap is on what it becomes
    stand_in.inject("gzip-bomb", stage="download", size=24 << 20)
    err = fails(make_request(stand_in, api_key, photo, result_dir, max_download_bytes=4_000_000))
    assert_clean_failure(err, ResultError, "larger than the 4 MB limit", stage="download", api_key=api_key,
                         result_dir=result_dir)


@pytest.mark.parametrize(("fault", "result_kind", "kind"), [
    ("invalid-glb", "glb", "glb"),
    ("zip-traversal", "zip-gltf", "zip"),
    ("zip-bomb", "zip-gltf", "zip"),
])
def test_content_the_client_cannot_judge_is_kept_for_the_importer(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path, fault: str, result_kind: str,
        kind: str) -> None:
    # the bytes say what they are; whether the model inside is sound is for the importer (and
    # results.safe_extract_zip) to decide, with the file safely kept in the result folder
    stand_in.result = result_kind
    stand_in.inject(fault, stage="download", size=1 << 20)
    result = pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    assert_only_result(result, result_dir)
    assert result.kind == kind


# --- transport failures the stand-in cannot play ---------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_a_network_error_after_retries(api_key: str, photo: Path, result_dir: Path) -> None:
    port = _closed_port()
    req = Request(photo, api_key, result_dir, base_url=f"http://127.0.0.1:{port}", retry=FAST, timeouts=QUICK)
    err = fails(req)
    # not 1min.ai's own address: the message names that server, not the internet connection
    text = assert_clean_failure(err, NetworkError, f"127.0.0.1:{port} refused the connection",
                                "check that it runs", stage="upload", api_key=api_key,
                                result_dir=result_dir)
    assert f"Could not reach the server at http://127.0.0.1:{port}" in text and "internet" not in text


def test_dns_failure_is_a_network_error(api_key: str, photo: Path, result_dir: Path) -> None:
    req = Request(photo, api_key, result_dir, base_url="http://api.onemin3d-test.invalid", retry=FAST,
                  timeouts=QUICK)
    err = fails(req)
    assert_clean_failure(err, NetworkError, "could not find api.onemin3d-test.invalid", stage="upload",
                         api_key=api_key, result_dir=result_dir)


def test_a_refused_connection_is_retried_even_for_the_generation(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path) -> None:
    # nothing was sent, so nothing can have been paid: the one case where a POST is repeated
    port = _closed_port()
    with make_client(stand_in, api_key) as client:
        key = client.upload_asset(photo)
    late = FakeOneMinServer(api_key=api_key, port=port)
    starter = threading.Timer(0.3, late.start)  # refused until then
    starter.start()
    try:
        with OneMinClient(api_key, f"http://127.0.0.1:{port}", QUICK,
                          retry=RetryPolicy(attempts=8, backoff=0.1, max_backoff=0.2)) as client:
            with pytest.raises(InvalidInput):  # the new server does not know the asset: it was reached
                client.generate_3d(key)
        assert late.count("POST", "/api/features") == 1
    finally:
        starter.join()
        late.close()


# --- the API key -------------------------------------------------------------------------------------


def test_the_key_is_sent_as_the_api_key_header_and_nowhere_else(stand_in: FakeOneMinServer, api_key: str,
                                                                photo: Path, result_dir: Path) -> None:
    with make_client(stand_in, api_key) as client:
        assert api_key not in repr(client)
        assert api_key not in repr(client._session.headers)
        assert client.check_key()
    req = make_request(stand_in, api_key, photo, result_dir)
    assert api_key not in repr(req)
    result = pipeline.run(req)
    assert api_key not in repr(result) and api_key.encode() not in result.file.read_bytes()


def test_a_wrong_key_is_reported_and_never_shown(stand_in: FakeOneMinServer, photo: Path, result_dir: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    wrong = "sk-wrong-key-ABCDEF0123456789"
    with OneMinClient(wrong, stand_in.base_url, QUICK, retry=FAST) as client:
        assert client.check_key() is False
    req = Request(photo, wrong, result_dir, base_url=stand_in.base_url, retry=FAST, timeouts=QUICK)
    err = fails(req)
    assert_clean_failure(err, AuthError, "HTTP 401", stage="upload", api_key=wrong, result_dir=result_dir)
    assert wrong not in caplog.text


def test_a_key_echoed_by_the_server_is_masked(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                              result_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    stand_in.inject("400:UNKNOWN_ERROR", stage="generate", message=f"Bad key {api_key} for this feature",
                    details=f'{{"apiKey": "{api_key}"}}')
    err = fails(make_request(stand_in, api_key, photo, result_dir))
    text = assert_clean_failure(err, InvalidInput, "Bad key *** for this feature", stage="generate",
                                api_key=api_key, result_dir=result_dir)
    assert "***" in text
    assert "Bad key ***" in caplog.text


def test_check_key_uses_the_zero_uuid(stand_in: FakeOneMinServer, api_key: str) -> None:
    with make_client(stand_in, api_key) as client:
        assert client.check_key() is True
    assert stand_in.requests == [("GET", "/api/results/00000000-0000-0000-0000-000000000000")]


# --- async mode and resuming ---------------------------------------------------------------------------


def test_async_mode_polls_until_success(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                        result_dir: Path) -> None:
    stand_in.async_latency = 0.3
    seen: list[GenerationRecord] = []
    with make_client(stand_in, api_key) as client:
        key = client.upload_asset(photo)
        record = client.generate_3d(key, use_async=True, poll_interval=0.05, on_record=seen.append)
        file = client.download(record, result_dir)
    assert record.succeeded and seen and seen[0].status == "PROCESSING" and seen[0].uuid == record.uuid
    assert stand_in.count("GET", "/api/results/") >= 3
    assert stand_in.count("POST", "/api/features") == 1
    assert results.sniff_file(file) == "png"
    assert record.credits_left == record.credit_limit - record.used_credit  # type: ignore[operator]


def test_polling_past_the_deadline_says_the_job_can_be_resumed(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path) -> None:
    stand_in.async_latency = 5.0
    checkpoints: list[Checkpoint] = []
    err = fails(make_request(stand_in, api_key, photo, result_dir, use_async=True, poll_deadline=0.3),
                checkpoint=checkpoints.append)
    text = assert_clean_failure(err, StillRunning, "not finished", "fetched again, free", stage="poll",
                                api_key=api_key, result_dir=result_dir)
    assert "paid for twice" in text
    assert isinstance(err, StillRunning) and err.uuid == checkpoints[-1].uuid


def test_an_unknown_uuid_is_a_bad_response(stand_in: FakeOneMinServer, api_key: str) -> None:
    with make_client(stand_in, api_key) as client:
        assert client.get_result("4f0c1a22-0000-4000-8000-000000000000") is None
        with pytest.raises(BadResponse, match="has no generation"):
            client.wait_for_result("4f0c1a22-0000-4000-8000-000000000000", poll_interval=0.01, deadline=5)


def test_resume_from_a_uuid_polls_and_downloads_without_generating_again(
        stand_in: FakeOneMinServer, api_key: str, photo: Path, result_dir: Path) -> None:
    stand_in.async_latency = 0.3
    checkpoints: list[Checkpoint] = []

    class Crash(Exception):
        pass

    def crash_once_uuid_is_known(cp: Checkpoint) -> None:
        checkpoints.append(cp)
        if cp.uuid is not None:
            raise Crash  # as if Blender died right after journalling the uuid

    req = make_request(stand_in, api_key, photo, result_dir, use_async=True)
    with pytest.raises(Crash):
        pipeline.run(req, checkpoint=crash_once_uuid_is_known)
    before = list(stand_in.requests)
    result = pipeline.run(req, resume=Checkpoint(uuid=checkpoints[-1].uuid))
    after = stand_in.requests[len(before):]
    assert all(m == "GET" for m, _ in after)
    assert stand_in.count("POST", "/api/features") == 1 and stand_in.count("POST", "/api/assets") == 1
    assert result.record.uuid == checkpoints[-1].uuid
    assert_only_result(result, result_dir)


# --- the client directly --------------------------------------------------------------------------------


def test_upload_streams_with_progress_from_bytes_sent(stand_in: FakeOneMinServer, api_key: str,
                                                      photo: Path) -> None:
    seen: list[tuple[int, int]] = []
    with make_client(stand_in, api_key) as client:
        key = client.upload_asset(photo, lambda done, total: seen.append((done, total)))
    assert key.startswith("images/") and key.endswith("dress photo.jpg")
    totals = {t for _, t in seen}
    assert len(totals) == 1 and totals.pop() > photo.stat().st_size
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == seen[-1][1]


def test_download_streams_with_progress_from_bytes_received(stand_in: FakeOneMinServer, api_key: str,
                                                            photo: Path, result_dir: Path) -> None:
    stand_in.result = "glb"
    seen: list[tuple[int, int]] = []
    with make_client(stand_in, api_key) as client:
        record = client.generate_3d(client.upload_asset(photo))
        file = client.download(record, result_dir, lambda done, total: seen.append((done, total)))
    size = file.stat().st_size
    assert seen[-1] == (size, size) and len(seen) >= 2
    assert results.sniff_file(file) == "glb"


def test_one_connection_serves_the_whole_job(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                             result_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline.run(make_request(stand_in, api_key, photo, result_dir))
    assert caplog.text.count("Starting new HTTP connection") == 1


def test_a_cancel_aborts_a_blocked_synchronous_generation(stand_in: FakeOneMinServer, api_key: str,
                                                          photo: Path, result_dir: Path) -> None:
    stand_in.hold("generate")  # never answered: the job can only end by the cancel
    cancel = threading.Event()
    trigger = _cancel_once(cancel, lambda: stand_in.count("POST", "/api/features") == 1)
    err = fails(make_request(stand_in, api_key, photo, result_dir, use_async=False), cancel=cancel)
    trigger.join()
    assert_clean_failure(err, Cancelled, "cancelled", stage="generate", api_key=api_key, result_dir=result_dir)
    assert stand_in.count("POST", "/api/features") == 1
    assert not [t for t in threading.enumerate() if t.name == "onemin3d-cancel-watch"]


def test_a_cancel_interrupts_a_rate_limit_wait(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                               result_dir: Path) -> None:
    stand_in.inject("429", stage="upload", retry_after=3600)  # returning at all is the cancel's doing
    cancel = threading.Event()
    trigger = _cancel_once(cancel, lambda: stand_in.count("POST", "/api/assets") == 1)
    err = fails(make_request(stand_in, api_key, photo, result_dir,
                             retry=RetryPolicy(max_retry_after=7200.0)), cancel=cancel)
    trigger.join()
    assert isinstance(err, Cancelled) and stand_in.count("POST", "/api/assets") == 1


def test_a_cancel_mid_download_leaves_no_partial_file(stand_in: FakeOneMinServer, api_key: str, photo: Path,
                                                      result_dir: Path) -> None:
    stand_in.inject("never-ends", stage="download", interval=0.05, limit=20)
    cancel = threading.Event()
    timers: list[threading.Timer] = []

    def cancel_once_downloading(stage: str, fraction: float, message: str) -> None:
        if stage == "download" and not timers:  # a moment into the endless body, whatever the load
            timers.append(threading.Timer(0.3, cancel.set))
            timers[0].start()

    err = fails(make_request(stand_in, api_key, photo, result_dir), cancel=cancel, progress=cancel_once_downloading)
    timers[0].join()
    assert_clean_failure(err, Cancelled, "cancelled", stage="download", api_key=api_key, result_dir=result_dir)


# --- parsing (no HTTP) ---------------------------------------------------------------------------------


def test_both_error_shapes_and_html_are_parsed() -> None:
    a = parse_error_body(b'{"errorCode": "UNSUPPORTED_MODEL", "message": "nope", "details": "{\\"x\\": 1}"}')
    assert (a.code, a.message, a.cause) == ("UNSUPPORTED_MODEL", "nope", "x: 1")
    b = parse_error_body(b'{"success": false, "error": {"code": "INSUFFICIENT_CREDITS", "message": "no credits"}}')
    assert (b.code, b.message) == ("INSUFFICIENT_CREDITS", "no credits")
    c = parse_error_body(b"<!DOCTYPE html><html><head><title>api.1min.ai | 524: A timeout occurred</title>",
                         "text/html")
    assert c.is_html and c.message == "api.1min.ai | 524: A timeout occurred"
    d = parse_error_body(b"upstream connect error")
    assert d.message == "upstream connect error" and not d.is_html


@pytest.mark.parametrize(("status", "body", "kind"), [
    (400, b'{"success": false, "error": {"code": "INSUFFICIENT_CREDITS", "message": "x"}}', CreditsExhausted),
    (402, b"", CreditsExhausted),
    (403, b'{"errorCode": "HTTP_EXCEPTION", "message": "Forbidden resource"}', AuthError),
    (403, b"<html><title>Attention Required! | Cloudflare</title></html>", NetworkError),
    (408, b"", InvalidInput),
    (503, b"", ServerError),
    (524, b"<html><title>524: A timeout occurred</title></html>", ServerError),
    (304, b"", BadResponse),
])
def test_one_table_maps_statuses(status: int, body: bytes, kind: type[Onemin3DError]) -> None:
    err = error_from_response(status, body, {"Content-Type": "text/html" if body.startswith(b"<") else ""})
    assert type(err) is kind
    assert user_message(err)


def test_retry_after_as_an_http_date() -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    err = error_from_response(429, b"", {"Retry-After": when})
    assert isinstance(err, RateLimited) and err.retry_after is not None and 25 <= err.retry_after <= 31


def test_record_parsing() -> None:
    payload = {"aiRecord": {"uuid": "u1", "status": "completed",
                            "teamUser": {"creditLimit": "1000", "usedCredit": 250.0},
                            "aiRecordDetail": {"resultObject": ["images/a.glb", 7, {"url": "https://x/y.png"}]}},
               "temporaryUrl": "https://s3/x"}
    rec = parse_record(payload)
    assert rec is not None and rec.succeeded and rec.status == "COMPLETED"
    assert rec.result_keys == ("images/a.glb", "https://x/y.png") and rec.download_url == "https://s3/x"
    assert rec.credits_left == 750
    assert parse_record({"aiRecord": None}) is None
    for bad in ([], {"aiRecord": {"status": "SUCCESS"}}, {"aiRecord": {"uuid": "u"}}, {"x": 1}, "text"):
        with pytest.raises(BadResponse):
            parse_record(bad)


def test_download_addresses_in_order(api_key: str) -> None:
    client = OneMinClient(api_key, "http://127.0.0.1:9")
    rec = GenerationRecord("u", "SUCCESS", ("images/a b.png", "https://cdn/x.png", "../../etc/passwd"),
                           "https://s3/presigned?sig=1", None, None)
    assert client.download_urls(rec) == ["https://s3/presigned?sig=1", "https://cdn/x.png",
                                         "http://127.0.0.1:9/asset/images/a%20b.png",
                                         "http://127.0.0.1:9/asset/etc/passwd"]
    assert OneMinClient(api_key).asset_base_url == "https://asset.1min.ai"


def test_a_credit_message_under_a_generic_code_is_a_credits_error() -> None:
    err = error_from_response(403, b'{"errorCode": "HTTP_EXCEPTION", "message": "You do not have enough credits"}',
                              {})
    assert isinstance(err, CreditsExhausted)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
                     max_leaves=20)
_record_like = st.fixed_dictionaries({"aiRecord": st.none() | st.dictionaries(
    st.sampled_from(["uuid", "status", "teamUser", "aiRecordDetail", "temporaryUrl", "x"]), _json, max_size=6)})


@settings(max_examples=150, deadline=None)
@given(payload=_json | _record_like)
def test_the_record_parser_raises_only_our_errors(payload: object) -> None:
    try:
        rec = parse_record(payload)
    except BadResponse:
        return
    if rec is not None:
        assert rec.uuid and rec.status == rec.status.upper()
        assert all(isinstance(k, str) for k in rec.result_keys)


@settings(max_examples=150, deadline=None)
@given(status=st.integers(300, 599), body=_json.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200),
       retry_after=st.none() | st.text(max_size=30))
def test_the_error_parser_always_gives_one_of_our_errors(status: int, body: bytes, retry_after: str | None) -> None:
    err = error_from_response(status, body, {"Retry-After": retry_after} if retry_after is not None else {})
    assert isinstance(err, Onemin3DError)
    assert user_message(err)
