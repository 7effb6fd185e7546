"""core.ratelimit: the sliding window, cancel, the per-key registry, and OneMinClient taking a slot per API request."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from onemin3d_addon.core import pipeline, ratelimit
from onemin3d_addon.core.client import OneMinClient
from onemin3d_addon.core.errors import Cancelled


@pytest.fixture(scope="module")
def sample_image(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("ratelimit") / "photo.jpg"
    y, x = np.mgrid[0:512, 0:512] / 512.0
    rgb = np.stack([x, y, 0.5 * (x + y)], axis=-1)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path, quality=90)
    return path


def test_no_more_than_the_limit_in_any_window():
    now = [1000.0]
    limiter = ratelimit.RateLimiter(limit=3, window=60.0, clock=lambda: now[0])
    assert all(limiter.acquire() for _ in range(3))
    cancelled = threading.Event()
    cancelled.set()
    assert limiter.acquire(cancelled) is False  # a 4th within the window must wait (and was cancelled)
    now[0] += 59.9
    assert limiter.acquire(timeout=0.01) is False
    now[0] += 0.2  # the first three are now more than 60 s old
    assert limiter.acquire(cancelled) is False  # a cancelled caller never takes a slot
    assert limiter.acquire() is True
    assert limiter.in_window() == 1


def test_threads_share_the_window_and_wait_for_it():
    # the stamps are the limiter's own: the clock value it took each slot at, read by that thread
    seen = threading.local()

    def clock() -> float:
        seen.now = time.monotonic()
        return float(seen.now)

    limiter = ratelimit.RateLimiter(limit=5, window=0.3, clock=clock)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            assert limiter.acquire(timeout=60.0)
            with lock:
                stamps.append(seen.now)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60.0)
    assert len(stamps) == 12
    stamps.sort()
    # no window of 0.3 s ever holds more than 5
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.3
    assert limiter.waited > 0


def test_a_cancel_ends_the_wait_at_once():
    limiter = ratelimit.RateLimiter(limit=1, window=3600.0)  # returning at all is the cancel's doing
    assert limiter.acquire()
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    assert limiter.acquire(cancel) is False
    assert limiter.in_window() == 1


def test_limit_zero_is_no_limit():
    limiter = ratelimit.RateLimiter(limit=0, window=60.0)
    assert all(limiter.acquire() for _ in range(1000))


def test_registry_shares_one_limiter_per_key_and_origin_and_never_keeps_the_key(monkeypatch):
    ratelimit.reset_registry()
    key = "sk-ratelimit-test-key-0123456789"
    a = ratelimit.limiter_for(key, "https://api.1min.ai")
    assert ratelimit.limiter_for(key, "https://API.1min.ai/api") is a
    assert ratelimit.limiter_for(key, "http://127.0.0.1:9") is not a
    assert ratelimit.limiter_for("another-key", "https://api.1min.ai") is not a
    assert a.limit == ratelimit.DEFAULT_LIMIT == 170 and a.window == 60.0
    assert all(key not in repr(slot) for slot in ratelimit._registry)
    assert key not in repr(a)
    monkeypatch.setenv(ratelimit.ENV_VAR, "12")
    ratelimit.reset_registry()
    assert ratelimit.limiter_for(key, "https://api.1min.ai").limit == 12
    monkeypatch.setenv(ratelimit.ENV_VAR, "many")
    assert ratelimit.default_limit() == ratelimit.DEFAULT_LIMIT
    ratelimit.reset_registry()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_every_api_request_of_a_job_takes_a_slot(stand_in, api_key, tmp_path, sample_image, use_async):
    ratelimit.reset_registry()
    limiter = ratelimit.limiter_for(api_key, stand_in.base_url)
    before = len(stand_in.requests)
    request = pipeline.Request(image_path=sample_image, api_key=api_key, result_dir=tmp_path,
                               base_url=stand_in.base_url, use_async=use_async, poll_interval=0.05)
    pipeline.run(request)
    sent = [(m, p) for m, p in stand_in.requests[before:] if p.startswith("/api/")]
    assert len(sent) >= (3 if use_async else 2)
    assert limiter.in_window() == len(sent)  # uploads, features, polls; downloads are not counted
    ratelimit.reset_registry()


def test_a_client_waits_for_the_shared_budget_and_a_cancel_stops_it(stand_in, api_key):
    budget = ratelimit.RateLimiter(limit=2, window=3600.0)  # returning at all is the cancel's doing
    cancel = threading.Event()
    client = OneMinClient(api_key, stand_in.base_url, rate_limiter=budget, cancel=cancel)
    assert client.check_key() and client.check_key()
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(Cancelled):
        client.check_key()
    assert budget.in_window() == 2
    client.close()
