"""bpy-free, thread-confined: `OneMinClient`, the add-on's one door into HTTP (the 1min.ai API, uploads, downloads).

Every byte the add-on sends or receives goes through `OneMinClient._call()`:

* explicit `(connect, read)` timeouts on every request, and a bound on how long and how much a
  body may take, so a server that never finishes cannot hold a job forever;
* transport exceptions become `NetworkError` (`raise … from exc`), status codes become our
  exceptions through one table (`_STATUS_ERRORS`), and an error body is parsed once
  (`parse_error_body`), whichever of the API's two error shapes, or an HTML page, it is;
* retries follow one policy (`RetryPolicy`): a 429 is retried on any call, because the server
  did nothing; GETs are also retried on 5xx, on dropped connections and on a result that 404s
  right after success; a POST (upload, generation) is re-sent only when the connection failed
  *before* anything was sent. A generation that reached the server is never sent again:
  it may already have cost credits;
* every wait (backoff, polling) ends early on the cancel Event, and a cancel also aborts a
  request that is blocked on the network (a synchronous generation can hold its connection
  for minutes) by shutting its socket down.

The API key travels only in the `API-KEY` header of requests to the API's own origin. It is
never put on the session (so a presigned download URL on another host, or a redirect, never
sees it), it is registered with `errors.register_secret` so every message and log line is
masked, and it is not part of any repr.

Before each try to the API (never a download from the storage host) the client takes a slot
from the process-wide limiter of its key and API (`core.ratelimit.limiter_for`), so all jobs
together stay under 1min.ai's documented 180 requests per minute; a cancel ends that wait too.

One client serves one job on one thread (the pipeline makes one per job); it is not meant to be
shared between threads.
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import json
import math
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from . import results
from .errors import (
    AuthError,
    BadResponse,
    Cancelled,
    CreditsExhausted,
    GarbledResponse,
    GenerationFailed,
    ImageError,
    InvalidInput,
    NetworkError,
    Onemin3DError,
    RateLimited,
    ResultError,
    ResultUnavailable,
    ServerError,
    StillRunning,
    get_logger,
    redact,
    register_secret,
)
from .ratelimit import RateLimiter, limiter_for

log = get_logger(__name__)

DEFAULT_BASE_URL: Final = "https://api.1min.ai"
DEFAULT_ASSET_BASE_URL: Final = "https://asset.1min.ai"

FEATURE_TYPE: Final = "IMAGE_3D_GENERATOR"
MODEL: Final = "stable-image"
ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"

#: the statuses a finished record can have; anything else means "still working"
SUCCESS_STATUSES: Final = frozenset({"SUCCESS", "COMPLETED"})
FAILURE_STATUSES: Final = frozenset({"FAILURE", "FAILED", "ERROR", "CANCELLED", "CANCELED"})

#: transfer chunk: big enough that Python's per-chunk cost vanishes, small enough that progress
#: and cancel checks stay fine-grained (about 100 checks per 25 MB)
CHUNK_SIZE: Final = 256 * 1024

_MAX_JSON_BYTES: Final = 16 * 1024 * 1024  # an API answer larger than this is not an answer
_MAX_ERROR_BYTES: Final = 256 * 1024  # enough of an error page to say what it is
_MAX_REDIRECTS: Final = 5
_SNIFF_BYTES: Final = 64
_MIN_RATE: Final = 1024  # bytes/s: a body slower than this, after the read timeout, is stopped
_WATCH_INTERVAL: Final = 0.1  # how often a blocked request looks at the cancel Event
# Consecutive {"aiRecord": null} polls tolerated for a uuid we were given (the record may not
# be visible yet right after an async submit); after that the uuid is taken as unknown.
_NULL_POLLS_TOLERATED: Final = 5
# Polling starts at the caller's interval and grows by _POLL_GROWTH per poll up to
# _MAX_POLL_INTERVAL: a job of a minute or two costs a dozen polls, and once slowed down every
# waiting job takes at most 6 requests a minute, so 8 parallel jobs stay far under the 180 a
# minute per key. While the key's request budget (core.ratelimit) is more than half used, the
# next poll waits the longest interval at once.
_POLL_GROWTH: Final = 1.5
_MAX_POLL_INTERVAL: Final = 10.0


# --- settings and results ------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `generate` is the read timeout of the synchronous generation POST."""

    connect: float = 10.0
    generate: float = 300.0
    read: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, requests that are safe to repeat are repeated."""

    attempts: int = 4  # tries in all, for retryable GETs and 429s
    backoff: float = 0.5  # base seconds, doubled each try, with jitter
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    not_found_retries: int = 5  # a result that 404s right after success

    def delay(self, n: int) -> float:
        """The wait before retry number `n` (1-based): exponential, capped, with jitter."""
        base = min(self.max_backoff, self.backoff * (2.0 ** max(0, n - 1)))
        return base * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class GenerationRecord:
    """What the API says about one generation (`aiRecord`)."""

    uuid: str
    status: str  # SUCCESS / PROCESSING / FAILURE / ... (upper case)
    result_keys: tuple[str, ...]
    download_url: str | None  # aiRecord.temporaryUrl, else the top-level temporaryUrl
    credit_limit: int | None  # aiRecord.teamUser.creditLimit
    used_credit: int | None  # aiRecord.teamUser.usedCredit
    error_message: str | None = None  # aiRecordDetail.errorMessage

    @property
    def credits_left(self) -> int | None:
        if self.credit_limit is None or self.used_credit is None:
            return None
        return self.credit_limit - self.used_credit

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def failed(self) -> bool:
        return self.status in FAILURE_STATUSES

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed


# --- parsing (pure functions: also the target of the fuzz tests) ---------------------------


@dataclass(frozen=True)
class ErrorBody:
    """An error answer, whichever shape it came in."""

    code: str | None  # errorCode / error.code
    message: str | None  # message / error.message, or an HTML page's title
    cause: str | None  # the real reason dug out of `details`, when there is one
    is_html: bool
    text: str  # the raw text, clipped


def parse_error_body(raw: bytes, content_type: str = "") -> ErrorBody:
    """Parse an error body once: `{"errorCode","message","details","context"}`,
    `{"success": false, "error": {"code","message"}}`, an HTML page, or plain text."""
    text = raw.decode("utf-8", "replace").strip()
    clipped = _clip(text, 2000)
    payload: Any = None
    if text[:1] in ("{", "["):
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            payload = None
    if isinstance(payload, dict):
        code = _str(payload.get("errorCode")) or _str(payload.get("code"))
        message = _str(payload.get("message"))
        err = payload.get("error")
        if isinstance(err, dict):
            code = code or _str(err.get("code"))
            message = message or _str(err.get("message"))
            cause = _cause_from(err.get("details"))
        else:
            message = message or _str(err)
            cause = None
        cause = _cause_from(payload.get("details")) or cause
        return ErrorBody(code, message, cause, False, clipped)
    looks_html = "html" in content_type.lower() or text[:200].lstrip().lower().startswith(("<!doctype", "<html"))
    if looks_html:
        return ErrorBody(None, _html_summary(text), None, True, clipped)
    return ErrorBody(None, _clip(text, 300) or None, None, False, clipped)


def error_from_response(status: int, raw: bytes, headers: Mapping[str, str], *, api: bool = True,
                        what: str = "request") -> Onemin3DError:
    """The exception for an HTTP error answer. `api` is False for result downloads."""
    body = parse_error_body(raw, headers.get("Content-Type", ""))
    if 400 <= status < 500 and status != 429 and _mentions_credit(body):
        return CreditsExhausted(_describe(body, status) or "not enough credits")
    factory = _STATUS_ERRORS.get(status)
    if factory is None:
        if status >= 500:
            factory = _server_error
        elif status >= 400:
            factory = _invalid_input
        else:
            factory = _unexpected_status
    return factory(status, body, headers, api, what)


def parse_record(payload: object) -> GenerationRecord | None:
    """The `aiRecord` of a features or results answer; None for `{"aiRecord": null}`.

    BadResponse when the answer is not the documented shape (no uuid, no status, not an object).
    The status is upper-cased; failure statuses are *not* raised here (see `check_record`).
    """
    if not isinstance(payload, dict):
        raise BadResponse(f"expected a JSON object, got {_kind_of(payload)}")
    if "aiRecord" not in payload:
        message = _str(payload.get("message"))
        raise BadResponse("the answer has no aiRecord" + (f" ({_clip(message, 120)})" if message else ""))
    rec = payload["aiRecord"]
    if rec is None:
        return None
    if not isinstance(rec, dict):
        raise BadResponse(f"aiRecord is {_kind_of(rec)}, not an object")
    uuid = _str(rec.get("uuid"))
    if not uuid:
        raise BadResponse("the aiRecord has no uuid")
    if len(uuid) > 200:
        raise BadResponse("the aiRecord's uuid is not an id (over 200 characters)")
    status = _str(rec.get("status"))
    if not status:
        raise BadResponse("the aiRecord has no status")
    detail = rec.get("aiRecordDetail")
    detail = detail if isinstance(detail, dict) else {}
    team = rec.get("teamUser")
    team = team if isinstance(team, dict) else {}
    error_message = _str(detail.get("errorMessage")) or _str(rec.get("errorMessage"))
    return GenerationRecord(
        uuid=uuid,
        status=status.strip().upper()[:64],
        result_keys=_result_keys(detail.get("resultObject")),
        download_url=_http_url(rec.get("temporaryUrl")) or _http_url(payload.get("temporaryUrl")),
        credit_limit=_int(team.get("creditLimit")),
        used_credit=_int(team.get("usedCredit")),
        error_message=_clip(error_message, 500) if error_message else None,
    )


def check_record(record: GenerationRecord) -> GenerationRecord:
    """`record` when it is a usable success; BadResponse when it failed or has nothing to download."""
    if record.failed:
        raise GenerationFailed(record.error_message or f"status {record.status}, no reason given",
                               status=record.status, uuid=record.uuid)
    if record.succeeded and not (record.download_url or record.result_keys):
        raise BadResponse("the generation finished but named no result file")
    return record


# --- the client ------------------------------------------------------------------------------

T = TypeVar("T")
ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes in all; 0 when unknown)


class OneMinClient:
    """The 1min.ai API: upload an image, generate, poll, download. See the module docstring."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, timeouts: Timeouts = Timeouts(),
                 session: requests.Session | None = None, *, retry: RetryPolicy = RetryPolicy(),
                 asset_base_url: str | None = None, cancel: threading.Event | None = None,
                 proxy: str | None = None, ca_bundle: str | None = None,
                 max_download_bytes: int = 512 * 1024 * 1024,
                 rate_limiter: RateLimiter | None = None) -> None:
        register_secret(api_key)
        self.__api_key = api_key
        self.base_url = base_url.rstrip("/")
        if asset_base_url is None:
            asset_base_url = (DEFAULT_ASSET_BASE_URL if self.base_url == DEFAULT_BASE_URL.rstrip("/")
                              else f"{self.base_url}/asset")
        self.asset_base_url = asset_base_url.rstrip("/")
        self.timeouts = timeouts
        self.retry = retry
        self.max_download_bytes = max_download_bytes
        self._cancel = cancel
        self._proxies = {"http": proxy, "https": proxy} if proxy else None
        self._verify: str | None = ca_bundle or None
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            adapter = _AbortableAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._session = session
        self._api_origin = _origin(self.base_url)
        # Shared by every client of this key and API in the process (see core.ratelimit).
        self._limiter = rate_limiter if rate_limiter is not None else limiter_for(api_key, self.base_url)

    def __repr__(self) -> str:
        return f"OneMinClient(base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the connections of a session this client made (a given session is left open)."""
        if self._own_session:
            self._session.close()

    def __enter__(self) -> OneMinClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- endpoints ---------------------------------------------------------------------------

    def upload_asset(self, path: str | os.PathLike[str], progress: ProgressCallback | None = None, *,
                     filename: str | None = None, mime: str | None = None) -> str:
        """Upload an image (multipart field `asset`, streamed); returns the asset key to generate from.

        `progress(sent, total)` follows the bytes actually handed to the socket. The upload is
        retried only when the connection failed before anything was sent.
        """
        body = _MultipartBody(Path(path), filename=filename, mime=mime, progress=progress,
                              check_cancel=self._check_cancel)
        with self._abort_on_cancel():
            payload = self._call("POST", self._api_url("/api/assets"), what="upload", api=True,
                                 idempotent=False, body=body, read_timeout=self.timeouts.read,
                                 consume=self._json_consumer(self.timeouts.read, "upload"))
        key = _asset_key(payload)
        log.info("uploaded %s (%d bytes) as %s", body.filename, body.file_size, key)
        return key

    def generate_3d(self, image_key: str, use_async: bool = False, *, poll_interval: float = 1.0,
                    deadline: float = 900.0, on_record: Callable[[GenerationRecord], None] | None = None
                    ) -> GenerationRecord:
        """Start the generation from an uploaded asset key (or an https image URL) and wait for it.

        Synchronous mode holds the connection until the result is ready (read timeout
        `timeouts.generate`); a cancel closes it at once, and the answer (the only way to the
        result) is lost. Async mode sends `"async": true`: the answer comes at once with the
        generation's uuid, and the client polls for it. A cancel then waits for that short
        answer, so the uuid always reaches `on_record` (and the journal) before Cancelled is
        raised: a cancelled async job can still be fetched later, free. An async answer that is
        already finished is used as it is, with no poll. `on_record` fires with the record as
        soon as its uuid is known and the work is still running. The POST is never re-sent once
        it may have reached the server.
        """
        body: dict[str, Any] = {"type": FEATURE_TYPE, "model": MODEL, "promptObject": {"imageUrl": image_key}}
        if use_async:
            body["async"] = True
        read_timeout = self.timeouts.read if use_async else self.timeouts.generate
        started = time.monotonic()
        # Once the answer is coming, it is read whole whatever happens: it holds the uuid.
        consume = self._json_consumer(read_timeout, "generation request", cancellable=False)
        with self._abort_on_cancel() if not use_async else contextlib.nullcontext():
            payload = self._call("POST", self._api_url("/api/features"), what="generation request",
                                 api=True, idempotent=False, json_body=body, read_timeout=read_timeout,
                                 consume=consume)
        record = parse_record(payload)
        if record is None:
            raise BadResponse("the generation request was answered without a record")
        log.info("generation %s: %s", record.uuid, record.status)
        if record.finished:
            return check_record(record)
        if on_record is not None:
            on_record(record)
        self._sleep(min(max(0.01, poll_interval), deadline))  # it was running a moment ago
        remaining = deadline - (time.monotonic() - started)
        return self.wait_for_result(record.uuid, poll_interval=poll_interval, deadline=remaining,
                                    on_record=on_record, known=True)

    def get_result(self, uuid: str) -> GenerationRecord | None:
        """The record of generation `uuid` as it is now; None when the API knows no such record."""
        with self._abort_on_cancel():
            payload = self._call("GET", self._api_url("/api/results/" + quote(uuid, safe="")),
                                 what="status check", api=True, idempotent=True,
                                 read_timeout=self.timeouts.read,
                                 consume=self._json_consumer(self.timeouts.read, "status check"))
        return parse_record(payload)

    def wait_for_result(self, uuid: str, *, poll_interval: float = 2.0, deadline: float = 900.0,
                        on_record: Callable[[GenerationRecord], None] | None = None,
                        known: bool = False) -> GenerationRecord:
        """Poll `GET /api/results/{uuid}` until the record is final; returns it when it succeeded.

        BadResponse when it failed; StillRunning when `deadline` seconds pass first (the job
        keeps its uuid, so it can be resumed). `on_record` fires after every poll that found
        the work still running. `known`: the uuid came from this session's own POST, so a null
        record only means "not visible yet".
        """
        started = time.monotonic()
        poll_interval = max(0.01, poll_interval)
        cap = max(poll_interval, _MAX_POLL_INTERVAL)
        interval = poll_interval
        nulls = 0
        while True:
            record = self.get_result(uuid)
            elapsed = time.monotonic() - started
            if record is None:
                nulls += 1
                if nulls > _NULL_POLLS_TOLERATED and not (known and elapsed < 60.0):
                    raise BadResponse(f"1min.ai has no generation {uuid} (it may have expired)")
            else:
                nulls = 0
                if record.finished:
                    log.info("generation %s: %s after %.1f s of polling", uuid, record.status, elapsed)
                    return check_record(record)
                if on_record is not None:
                    on_record(record)
            if self._budget_tight():
                interval = cap
            if elapsed + interval > deadline:
                raise StillRunning(f"the generation is still running after {elapsed:.0f} s", uuid=uuid)
            self._sleep(interval)
            interval = min(cap, interval * _POLL_GROWTH)

    def _budget_tight(self) -> bool:
        """More than half of the key's request budget is used: polls make room for the others."""
        limit = self._limiter.limit
        return limit > 0 and self._limiter.in_window() * 2 > limit

    def download(self, record: GenerationRecord, dest_dir: str | os.PathLike[str],
                 progress: ProgressCallback | None = None) -> Path:
        """Download the record's result into `dest_dir`; returns the new file.

        The body is streamed to a temporary file in `dest_dir` and renamed into place only when it
        is complete, within `max_download_bytes` (decoded), and of a known kind (sniffed from its
        first bytes). No partial file is ever left behind. The addresses are tried in order:
        `record.download_url`, a result key that is already an http(s) URL, then
        `{asset_base_url}/{key}`; the next is tried when one answers 403/404/410.
        """
        dest = Path(dest_dir)
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultError(f"The result folder {dest} cannot be created ({exc.strerror or exc}): "
                              "choose another result folder in the add-on preferences.") from exc
        urls = self.download_urls(record)
        if not urls:
            raise BadResponse("the generation named no result file to download")
        key = record.result_keys[0] if record.result_keys else urlsplit(urls[0]).path
        last: Onemin3DError | None = None
        with self._abort_on_cancel():
            for n, url in enumerate(urls):
                try:
                    tmp, kind = self._call("GET", url, what="download", api=False, idempotent=True,
                                           read_timeout=self.timeouts.read,
                                           not_found_retries=self.retry.not_found_retries,
                                           consume=lambda resp: self._save(resp, dest, progress))
                except ResultUnavailable as err:
                    if err.status not in (401, 403, 404, 410) or n + 1 == len(urls):
                        raise
                    log.warning("result address %d of %d failed (HTTP %d); trying the next",
                                n + 1, len(urls), err.status)
                    last = err
                    continue
                try:
                    final = results.safe_name(key, dest, kind=kind)
                    os.replace(tmp, final)
                except BaseException:
                    _unlink(tmp)
                    raise
                log.info("downloaded %s result to %s", kind, final)
                return final
        raise last or BadResponse("no result address worked")  # pragma: no cover - loop returns or raises

    def download_urls(self, record: GenerationRecord) -> list[str]:
        """The result's download addresses, best first (see `download`)."""
        urls: list[str] = []
        if record.download_url:
            urls.append(record.download_url)
        for key in record.result_keys:
            if _http_url(key):
                urls.append(key)
        for key in record.result_keys:
            if not _http_url(key) and "://" not in key:
                segments = [s for s in key.replace("\\", "/").split("/") if s not in ("", ".", "..")]
                if segments:
                    urls.append(f"{self.asset_base_url}/{quote('/'.join(segments), safe='/')}")
        return list(dict.fromkeys(urls))

    def check_key(self) -> bool:
        """True when the API accepts the key (a free call: the zero uuid's record); False on 401/403."""
        try:
            self.get_result(ZERO_UUID)
        except AuthError:
            return False
        return True

    # --- the one door --------------------------------------------------------------------------

    def _call(self, method: str, url: str, *, what: str, api: bool, idempotent: bool,
              read_timeout: float, consume: Callable[[requests.Response], T],
              json_body: Any = None, body: _MultipartBody | None = None,
              not_found_retries: int = 0) -> T:
        """Send one logical request, with the retry policy, and hand the 2xx answer to `consume`.

        `idempotent`: safe to repeat after it reached the server (GETs). Otherwise it is
        repeated only after a 429, or a connection that failed before anything was sent.
        Transport errors while `consume` reads the body are retried by the same rules.
        """
        policy = self.retry
        tries = 0  # failed tries so far (429, 5xx, transport)
        not_found = 0
        data: bytes | None = None
        headers: dict[str, str] = {}
        if api:
            headers["API-KEY"] = self.__api_key
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Type"] = body.content_type
        while True:
            if self._is_cancelled():
                raise _never_sent(Cancelled("cancelled before the " + what))
            # Every try to the API takes a slot (retries too: the server counts them); a download
            # from the storage host carries no key and is not counted.
            if api and not self._limiter.acquire(self._cancel):
                raise _never_sent(Cancelled("cancelled while waiting for the request budget"))
            t0 = time.perf_counter()
            try:
                resp = self._send(method, url, headers=headers, data=body if body is not None else data,
                                  read_timeout=read_timeout, api=api, what=what)
                status = resp.status_code
                log.debug("%s %s -> %d in %.0f ms", method, _loggable(url), status,
                          (time.perf_counter() - t0) * 1000)
                if status < 400:
                    with resp:
                        return consume(resp)
            except GarbledResponse as garbled:
                if idempotent and tries + 1 < policy.attempts:
                    tries += 1
                    log.warning("%s: %s; retry %d of %d", what, garbled.message, tries, policy.attempts - 1)
                    self._sleep(policy.delay(tries))
                    continue
                raise
            except requests.RequestException as exc:
                if self._is_cancelled():
                    raise Cancelled("cancelled during the " + what) from exc
                net = self._transport_error(exc, url, what, read_timeout, idempotent)
                if (idempotent or _nothing_sent(exc)) and tries + 1 < policy.attempts:
                    tries += 1
                    log.warning("%s to %s failed (%s); retry %d of %d", what, _loggable(url), net.message,
                                tries, policy.attempts - 1)
                    self._retry_sleep(policy.delay(tries), idempotent)
                    continue
                raise net from exc
            with resp:
                raw = _read_capped(resp, _MAX_ERROR_BYTES, read_timeout)
            err = error_from_response(status, raw, resp.headers, api=api, what=what)
            if isinstance(err, RateLimited) and tries + 1 < policy.attempts:
                tries += 1
                wait = (min(err.retry_after, policy.max_retry_after) if err.retry_after is not None
                        else policy.delay(tries))
                log.warning("%s rate-limited (HTTP 429); waiting %.1f s, retry %d of %d", what, wait,
                            tries, policy.attempts - 1)
                self._retry_sleep(wait, idempotent)
                continue
            if idempotent and status >= 500 and tries + 1 < policy.attempts:
                tries += 1
                log.warning("%s: HTTP %d; retry %d of %d", what, status, tries, policy.attempts - 1)
                self._sleep(policy.delay(tries))
                continue
            if idempotent and status == 404 and not_found < not_found_retries:
                not_found += 1
                log.info("%s: not there yet (HTTP 404); retry %d of %d", what, not_found, not_found_retries)
                self._sleep(policy.delay(not_found))
                continue
            log.warning("%s %s failed: %s", method, _loggable(url), err.message)
            raise err

    def _send(self, method: str, url: str, *, headers: dict[str, str], data: Any, read_timeout: float,
              api: bool, what: str) -> requests.Response:
        """One HTTP exchange, up to the response headers. Redirects are followed by hand, for GETs
        only, to http(s) only, and with the key only while the origin stays the API's."""
        for _hop in range(_MAX_REDIRECTS + 1):
            resp = self._session.request(method, url, data=data, headers=headers,
                                         timeout=(self.timeouts.connect, read_timeout),
                                         allow_redirects=False, stream=True,
                                         proxies=self._proxies, verify=self._verify)
            if not (resp.is_redirect and resp.headers.get("Location")):
                return resp
            target = urljoin(url, resp.headers["Location"])
            resp.close()
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise _refusal(api, f"the {what} was redirected to a non-web address "
                               f"({urlsplit(target).scheme}:), which is refused")
            if method != "GET":
                raise BadResponse(f"the {what} was redirected to {_loggable(target)}: check the base URL")
            if "API-KEY" in headers and _origin(target) != self._api_origin:
                headers = {k: v for k, v in headers.items() if k != "API-KEY"}
            log.debug("%s redirected to %s", what, _loggable(target))
            url = target
        raise _refusal(api, f"the {what} was redirected more than {_MAX_REDIRECTS} times")

    def _json_consumer(self, read_timeout: float, what: str, *, cancellable: bool = True
                       ) -> Callable[[requests.Response], Any]:
        """Reads and parses a JSON answer. `cancellable` False: a cancel does not stop the reading
        (the answer to a generation request holds its uuid, the only way to fetch what was paid)."""
        def consume(resp: requests.Response) -> Any:
            buf = bytearray()
            for chunk in _body_chunks(resp, 64 * 1024, what=what, read_timeout=read_timeout,
                                      whole_within=read_timeout):
                buf += chunk
                if len(buf) > _MAX_JSON_BYTES:
                    raise BadResponse(f"the {what} answer is larger than {_MAX_JSON_BYTES >> 20} MB")
                if cancellable:
                    self._check_cancel()
            if cancellable:
                self._check_cancel()  # a cancel's socket shutdown can look like the end of the body
            try:
                return json.loads(bytes(buf))
            except (ValueError, RecursionError) as exc:  # a hostile "[[[[…" nests past the parser
                body = parse_error_body(bytes(buf), resp.headers.get("Content-Type", ""))
                shown = body.message if body.is_html else _clip(body.text, 80)
                raise GarbledResponse(f"the {what} answer is not valid JSON ({shown or 'empty'})",
                                      may_have_run=what == "generation request") from exc
        return consume

    def _save(self, resp: requests.Response, dest: Path, progress: ProgressCallback | None
              ) -> tuple[Path, str]:
        """Stream a result body into a temporary file in `dest`: (the file, its kind).
        The file is removed on every failure."""
        cap = self.max_download_bytes
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        length = _int(resp.headers.get("Content-Length"))
        if length is not None and length > cap:
            raise ResultError(f"The result is {_mb(length)}, over the {_mb(cap)} limit for downloads: "
                              "it was not downloaded.")
        total = length if (length is not None and encoding in ("", "identity")) else 0
        try:
            fd, tmp_name = _mkstemp(dest)
        except OSError as exc:
            raise ResultError(f"Cannot write to the result folder {dest} ({exc.strerror or exc}): "
                              "choose another result folder in the add-on preferences.") from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                received = 0
                head = b""
                kind: str | None = None
                for chunk in _body_chunks(resp, CHUNK_SIZE, what="download",
                                          read_timeout=self.timeouts.read):
                    received += len(chunk)
                    if received > cap:
                        raise ResultError(f"The result is larger than the {_mb(cap)} limit for downloads: "
                                          "it was not kept.")
                    if kind is None:
                        head += chunk[:_SNIFF_BYTES]
                        if len(head) >= _SNIFF_BYTES:
                            kind = _sniff_or_fail(head[:_SNIFF_BYTES])
                    fh.write(chunk)
                    if progress is not None:
                        progress(received, total)
                    self._check_cancel()
                self._check_cancel()  # a cancel's socket shutdown can look like the end of the body
                if kind is None:
                    kind = _sniff_or_fail(head)
                if kind == "glb" and len(head) >= 12:
                    declared = int.from_bytes(head[8:12], "little")
                    if received < declared:
                        # the close-delimited body ended early: a transport fault, retried like one
                        raise requests.exceptions.ChunkedEncodingError(
                            f"GLB ended after {received} of {declared} bytes")
                fh.flush()
                os.fsync(fh.fileno())  # the result may have cost credits: it must survive a crash
            return tmp, kind
        except BaseException:
            _unlink(tmp)
            raise

    # --- helpers -------------------------------------------------------------------------------

    def _api_url(self, path: str) -> str:
        return self.base_url + path

    def _is_cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def _check_cancel(self) -> None:
        if self._is_cancelled():
            raise Cancelled("cancelled")

    def _retry_sleep(self, seconds: float, idempotent: bool) -> None:
        """The wait before a retry. A POST is retried only when nothing of it was done (a 429, or a
        connection that failed before sending), so a cancel meanwhile leaves nothing sent."""
        try:
            self._sleep(seconds)
        except Cancelled as err:
            raise (err if idempotent else _never_sent(err)) from None

    def _sleep(self, seconds: float) -> None:
        """Wait, unless the job is cancelled first (then Cancelled)."""
        if seconds <= 0:
            self._check_cancel()
            return
        if self._cancel is None:
            time.sleep(seconds)
        elif self._cancel.wait(seconds):
            raise Cancelled("cancelled while waiting")

    @contextmanager
    def _abort_on_cancel(self) -> Iterator[None]:
        """While the block runs, a cancel shuts down the socket this thread is blocked on."""
        cancel = self._cancel
        if cancel is None or not self._own_session:
            yield
            return
        ident = threading.get_ident()
        done = threading.Event()

        def watch() -> None:
            while not done.wait(_WATCH_INTERVAL):
                if cancel.is_set():
                    _abort_connection_of(ident)
                    return

        watcher = threading.Thread(target=watch, name="onemin3d-cancel-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()
            with _inflight_lock:
                _inflight.pop(ident, None)

    def _transport_error(self, exc: requests.RequestException, url: str, what: str, read_timeout: float,
                         idempotent: bool) -> NetworkError:
        host = urlsplit(url).hostname or url
        port = urlsplit(url).port
        where = f"{host}:{port}" if port else host
        chain = list(_chain(exc))
        if isinstance(exc, requests.exceptions.SSLError):
            text = (f"the secure connection to {where} failed ({_short_reason(chain)}); behind a "
                    "corporate proxy, set its CA bundle in the preferences")
        elif isinstance(exc, requests.exceptions.ProxyError):
            text = f"the proxy failed to connect to {where} ({_short_reason(chain)})"
        elif any(isinstance(e, NameResolutionError) for e in chain):
            text = f"could not find {host} (DNS lookup failed)"
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            text = f"connecting to {where} timed out after {self.timeouts.connect:g} s"
        elif any(isinstance(e, ConnectionRefusedError) for e in chain):
            text = f"{where} refused the connection"
        elif any(isinstance(e, NewConnectionError) for e in chain):
            text = f"could not connect to {where} ({_short_reason(chain)})"
        elif isinstance(exc, requests.exceptions.ReadTimeout) or any(
                isinstance(e, (ReadTimeoutError, TimeoutError, socket.timeout)) for e in chain):
            text = f"{where} did not answer the {what} within {read_timeout:g} s"
        elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
            text = f"the connection to {where} dropped in the middle of the {what}"
        elif isinstance(exc, requests.exceptions.ContentDecodingError):
            text = f"the {what} from {where} could not be decompressed"
        elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                              requests.exceptions.InvalidSchema)):
            text = f"the address {_loggable(url)} is not valid; check the base URL"
        elif isinstance(exc, requests.ConnectionError):
            text = f"the connection to {where} was dropped ({_short_reason(chain)})"
        else:
            text = f"the {what} to {where} failed ({_short_reason(chain)})"
        never_sent = not idempotent and _nothing_sent(exc)
        if not idempotent and what == "generation request" and not never_sent:
            text += "; the generation may still have run, so check your 1min.ai history before retrying"
        err = NetworkError(text)
        if never_sent:
            err.may_have_run = False
        return err


# --- the multipart body ----------------------------------------------------------------------


class _MultipartBody:
    """A multipart/form-data body with one file field (`asset`), streamed from disk.

    It has a length (so requests sends Content-Length, not chunked encoding) and can be iterated
    more than once (a retry after a failed connect starts it again). Progress is reported for
    the bytes of chunks the socket has taken; cancel is checked before each chunk.
    """

    def __init__(self, path: Path, *, filename: str | None, mime: str | None,
                 progress: ProgressCallback | None, check_cancel: Callable[[], None]) -> None:
        try:
            st = path.stat()
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise ImageError(f"The image {path} cannot be read ({exc.strerror or exc}): "
                             "check that the file exists and is readable.") from exc
        self.path = path
        self.file_size = st.st_size
        self.filename = _header_safe(filename or path.name) or "image"
        self.mime = mime or _mime_of(head)
        boundary = "onemin3d-" + secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._head = (f"--{boundary}\r\n"
                      f'Content-Disposition: form-data; name="asset"; filename="{self.filename}"\r\n'
                      f"Content-Type: {self.mime}\r\n\r\n").encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._progress = progress
        self._check_cancel = check_cancel

    def __len__(self) -> int:
        return len(self._head) + self.file_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        total = len(self)
        sent = 0
        progress = self._progress
        self._check_cancel()
        yield self._head
        sent += len(self._head)
        with open(self.path, "rb") as fh:
            read = 0
            while True:
                chunk = fh.read(CHUNK_SIZE)
                if not chunk:
                    break
                read += len(chunk)
                if read > self.file_size:
                    break
                self._check_cancel()
                yield chunk
                # control is back: the previous chunk is in the socket
                sent += len(chunk)
                if progress is not None:
                    progress(sent, total)
        if read != self.file_size:
            raise ImageError(f"The image {self.path.name} changed while it was being uploaded: "
                             "wait until it is saved, then try again.")
        yield self._tail
        if progress is not None:
            progress(total, total)


# --- cancelling a blocked request --------------------------------------------------------------
# A cancel can only be noticed between chunks, but a synchronous generation blocks in one recv()
# for up to minutes. The session's connections record themselves per thread when they start a
# request; a watcher thread shuts the socket down on cancel, so the blocked call fails at once.

_inflight: dict[int, HTTPConnection] = {}
_inflight_lock = threading.Lock()


def _track(conn: HTTPConnection) -> None:
    with _inflight_lock:
        _inflight[threading.get_ident()] = conn


def _abort_connection_of(ident: int) -> None:
    with _inflight_lock:
        conn = _inflight.get(ident)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            # socket.socket's own shutdown, not SSLSocket's (which also drops its TLS state
            # under the feet of the thread that is reading)
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: nothing is blocked on it
        log.debug("aborted a blocked request on cancel")


class _TrackedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self)
        super().request(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self)
        super().request(*args, **kwargs)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _AbortableAdapter(HTTPAdapter):
    """requests' adapter, with connections a cancel can abort (plain and http(s)-proxied)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}
        return manager


# --- the status table ------------------------------------------------------------------------


def _auth_error(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str) -> Onemin3DError:
    if not api:
        return ResultUnavailable(f"The result file was refused by its host (HTTP {status}); its link may "
                                 "have expired", status=status, detail=body.message)
    if body.is_html:
        # a JSON API does not answer with a page: a proxy, firewall or Cloudflare stopped the call
        blocked = NetworkError(f"the {what} was blocked before it reached 1min.ai (HTTP {status}: "
                               f"{body.message or 'an HTML page'})")
        blocked.may_have_run = False
        return blocked
    return AuthError(_describe(body, status) or f"HTTP {status}", status=status)


def _rate_limited(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str
                  ) -> Onemin3DError:
    return RateLimited(_describe(body, status) or "too many requests",
                       retry_after=_retry_after(headers.get("Retry-After")))


def _credits(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str) -> Onemin3DError:
    return CreditsExhausted(_describe(body, status) or "not enough credits")


def _too_large(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str
               ) -> Onemin3DError:
    if not api:  # a download sends no body: this is the host refusing the result, not our image
        return ResultUnavailable(f"The result could not be downloaded (HTTP {status})",
                                 status=status, detail=body.message)
    return InvalidInput(_describe(body, status) or "the upload is too large", code=body.code,
                        status=413)


def _not_found(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str) -> Onemin3DError:
    if not api:
        return ResultUnavailable("The result file is not on the server (HTTP 404): it may have expired",
                                 status=404, detail=body.message)
    return BadResponse(f"the API has no such address (HTTP 404 for the {what}); check the base URL")


def _invalid_input(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str
                   ) -> Onemin3DError:
    if not api:
        return ResultUnavailable(f"The result could not be downloaded (HTTP {status})",
                                 status=status, detail=body.message)
    if body.code == "EXTERNAL_API_RESPONSE_WITH_ERROR":
        # the message says "busy, try again", but retrying does not help: the cause is in details
        cause = body.cause or body.message or "the model rejected the image"
        return InvalidInput(f"the 3D model rejected the image: {cause}", code=body.code,
                            detail=cause, status=status)
    message = body.message or body.code or f"HTTP {status}"
    detail = f"{message}: {body.cause}" if body.cause and body.cause not in message else None
    return InvalidInput(message, code=body.code, detail=detail, status=status)


def _server_error(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str
                  ) -> Onemin3DError:
    return ServerError(f"HTTP {status} for the {what}: {_describe(body, status) or 'no details'}",
                       status=status, detail=body.text[:500] if body.text else None)


def _unexpected_status(status: int, body: ErrorBody, headers: Mapping[str, str], api: bool, what: str
                       ) -> Onemin3DError:
    return BadResponse(f"unexpected HTTP {status} for the {what}")


_ErrorFactory = Callable[[int, ErrorBody, Mapping[str, str], bool, str], Onemin3DError]

#: status → exception; 5xx not listed → ServerError, other 4xx → InvalidInput. Credit errors
#: (any 4xx whose code or message mentions credits, and 402) → CreditsExhausted, checked first.
_STATUS_ERRORS: dict[int, _ErrorFactory] = {
    400: _invalid_input,
    401: _auth_error,
    402: _credits,
    403: _auth_error,
    404: _not_found,
    413: _too_large,
    429: _rate_limited,
}


# --- small pure helpers ----------------------------------------------------------------------

_CREDIT_RE = re.compile(r"credit", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]+>")
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_H1_RE = re.compile(r"<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.DOTALL)


def _mentions_credit(body: ErrorBody) -> bool:
    if body.code and _CREDIT_RE.search(body.code):
        return True
    return bool(body.message and _CREDIT_RE.search(body.message))


def _describe(body: ErrorBody, status: int) -> str:
    parts = [p for p in (body.message, body.cause) if p]
    if body.code and not any(body.code in p for p in parts):
        parts.append(f"[{body.code}]")
    return _clip(": ".join(parts), 300)


def _cause_from(details: object, depth: int = 0) -> str | None:
    """The human reason inside a `details` value (often a JSON string of the upstream error)."""
    if depth > 6 or details is None:
        return None
    if isinstance(details, str):
        text = details.strip()
        if not text:
            return None
        if text[:1] in ("{", "[", '"'):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                return _clip(text, 300)
            if parsed != text:
                return _cause_from(parsed, depth + 1) or _clip(text, 300)
        return _clip(text, 300)
    if isinstance(details, list):
        found = [c for c in (_cause_from(d, depth + 1) for d in details[:10]) if c]
        return _clip("; ".join(found), 300) if found else None
    if isinstance(details, dict):
        for key in ("errors", "error", "message", "reason", "detail", "details", "description",
                    "missingFields", "fields", "msg", "name"):
            if key in details:
                cause = _cause_from(details[key], depth + 1)
                if cause:
                    return cause
        # no known key: show what there is, "supportedModels: stable-image"
        parts = []
        for key, value in list(details.items())[:4]:
            shown = _cause_from(value, depth + 1)
            if shown:
                parts.append(f"{key}: {shown}")
        return _clip("; ".join(parts), 300) if parts else None
    if isinstance(details, (int, float)) and not isinstance(details, bool):
        return str(details)
    return None


def _html_summary(text: str) -> str:
    for pattern in (_TITLE_RE, _H1_RE):
        m = pattern.search(text)
        if m:
            summary = " ".join(html.unescape(_TAG_RE.sub(" ", m.group(1))).split())
            if summary:
                return _clip(summary, 160)
    return _clip(" ".join(html.unescape(_TAG_RE.sub(" ", text)).split()), 160) or "an HTML page"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _asset_key(payload: object) -> str:
    if isinstance(payload, dict):
        fc = payload.get("fileContent")
        asset = payload.get("asset")
        key = (_str(fc.get("path")) if isinstance(fc, dict) else None) or (
            _str(asset.get("key")) if isinstance(asset, dict) else None)
        if key:
            return key
    raise BadResponse("the upload answer names no asset key (fileContent.path or asset.key)")


def _result_keys(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    keys: list[str] = []
    for item in items[:100]:
        if isinstance(item, dict):
            item = next((item[k] for k in ("url", "path", "key") if isinstance(item.get(k), str)), None)
        text = _str(item)
        if text and len(text) <= 4096:
            keys.append(text)
    return tuple(keys)


def _http_url(value: object) -> str | None:
    text = _str(value)
    if text and urlsplit(text).scheme.lower() in ("http", "https") and urlsplit(text).netloc:
        return text
    return None


def _str(value: object) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
        return int(value.strip())
    return None


def _kind_of(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), "a value")


def _clip(text: str | None, limit: int) -> str:
    text = " ".join(redact(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def _loggable(url: str) -> str:
    """A URL without its query (presigned URLs carry signatures) or user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}{':' + str(port) if port else ''}{parts.path}"


def _refusal(api: bool, text: str) -> Onemin3DError:
    if api:
        return BadResponse(text)
    return ResultError(f"The result download was refused: {text}.")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps (cause, context, urllib3's `.reason`, args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or len(seen) > 50:
            continue
        seen.add(id(e))
        yield e
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _never_sent(err: Cancelled) -> Cancelled:
    """`err`, marked as stopping a request before any of it left this machine."""
    err.may_have_run = False
    return err


def _nothing_sent(exc: BaseException) -> bool:
    """True when the request failed while connecting, so the server cannot have seen it."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False  # persistent (certificates): retrying does not help
    return any(isinstance(e, ConnectTimeoutError) for e in _chain(exc))  # incl. refused, DNS


def _short_reason(chain: list[BaseException]) -> str:
    for e in reversed(chain):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    innermost = chain[-1] if chain else None
    text = str(innermost) if innermost is not None else ""
    text = re.sub(r"<[^>]*object at 0x[0-9a-f]+>:?\s*", "", text)
    return _clip(text, 120) or type(innermost).__name__


def _sniff_or_fail(head: bytes) -> str:
    kind = results.sniff_kind(head)
    if kind is None:
        shown = "empty" if not head else ("text or HTML" if head.lstrip()[:1] in (b"<", b"{") else "unknown bytes")
        raise ResultError(f"1min.ai returned a file that is not a 3D model or an image ({shown}): "
                          "nothing was kept; download it again, free, with Re-import in the history, and if "
                          "the same comes back, generate it again.")
    return kind


def _mb(n: int) -> str:
    """A size for a message: "600 MB", "64 KB", "900 bytes" (never a misleading "0 MB")."""
    if n >= 1 << 20:
        return f"{n / (1 << 20):,.0f} MB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):,.0f} KB"
    return f"{n} bytes"


def _mime_of(head: bytes) -> str:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _header_safe(name: str) -> str:
    return "".join("_" if (c in '"\\' or ord(c) < 32 or ord(c) == 127) else c for c in name)[:200]


def _read_capped(resp: requests.Response, limit: int, read_timeout: float) -> bytes:
    """At most `limit` bytes of an error body, within `read_timeout`; what came, if it breaks off."""
    buf = bytearray()
    try:
        for chunk in _body_chunks(resp, 64 * 1024, what="error answer", read_timeout=read_timeout,
                                  whole_within=read_timeout):
            buf += chunk
            if len(buf) >= limit:
                break
    except (requests.RequestException, NetworkError) as exc:
        log.debug("error body cut short: %s", exc)
    return bytes(buf[:limit])


def _body_chunks(resp: requests.Response, size: int, *, what: str, read_timeout: float,
                 whole_within: float | None = None) -> Iterator[bytes]:
    """The decoded body, as it arrives (at most `size` bytes a piece: a slow sender is seen at once).

    Transport errors come out as requests' exceptions, as `iter_content` raises them. A body that
    trickles (under 1 KB/s after `read_timeout` s), or takes longer than `whole_within` s in all,
    raises NetworkError: a server that never finishes must not hold the job forever.
    """
    raw = resp.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # not urllib3 (a caller's own session adapter): no early sight of trickles
        yield from resp.iter_content(size)
        return
    started = time.monotonic()
    got = 0
    while True:
        try:
            data = read1(size, decode_content=True)
        except ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(exc) from exc
        except ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        except DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from exc
        except Urllib3SSLError as exc:
            raise requests.exceptions.SSLError(exc) from exc
        except OSError as exc:
            raise requests.ConnectionError(exc) from exc
        if not data:
            return
        got += len(data)
        yield data
        elapsed = time.monotonic() - started
        if whole_within is not None and elapsed > whole_within:
            raise NetworkError(f"1min.ai kept sending the {what} for more than {whole_within:g} s "
                               "without finishing")
        if elapsed > read_timeout and got < _MIN_RATE * elapsed:
            raise NetworkError(f"the {what} came too slowly ({got / elapsed:.0f} bytes/s after "
                               f"{elapsed:.0f} s) and was stopped")


def _mkstemp(dest: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=".onemin3d-", suffix=".part", dir=dest)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove the partial file %s: %s", path, exc)
