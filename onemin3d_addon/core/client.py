"""bpy-free, thread-confined: `OneMinClient`, the add-on's one door into HTTP (the 1min.ai API, uploads, downloads): the streaming transport.

What is said (addresses, bodies, the `aiRecord`, error answers and their exceptions) is
core/protocol.py's; every name it had here is still importable from here. This module moves the
bytes: sessions, retries, timeouts, streamed uploads and downloads, cancellation.

Every byte the add-on sends or receives goes through `OneMinClient._call()`:

* explicit `(connect, read)` timeouts on every request, and a bound on how long and how much a
  body may take, so a server that never finishes cannot hold a job forever;
* transport exceptions become `NetworkError` (`raise … from exc`), status codes become our
  exceptions through protocol's one table (`error_from_response`), and an error body is parsed
  once (`parse_error_body`), whichever of the API's two error shapes, or an HTML page, it is;
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
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urljoin, urlsplit

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
    GarbledResponse,
    ImageError,
    NetworkError,
    Onemin3DError,
    RateLimited,
    ResultError,
    ResultUnavailable,
    StillRunning,
    advised,
    get_logger,
    register_secret,
)
from .protocol import (
    ASSETS_PATH,
    DEFAULT_ASSET_BASE_URL,
    DEFAULT_BASE_URL,
    FAILURE_STATUSES,
    FEATURE_TYPE,
    FEATURES_PATH,
    MODEL,
    SUCCESS_STATUSES,
    ZERO_UUID,
    ErrorBody,
    GenerationRecord,
    RetryPolicy,
    Timeouts,
    asset_base_url_for,
    asset_key,
    background_body,
    check_record,
    clip,
    error_from_response,
    generation_body,
    int_or_none,
    parse_error_body,
    parse_record,
    result_path,
)
from .protocol import download_urls as _download_urls
from .ratelimit import RateLimiter, limiter_for

#: the names protocol.py took over, still importable from here (core.pipeline, the runtime, tests)
__all__ = [
    "CHUNK_SIZE", "DEFAULT_ASSET_BASE_URL", "DEFAULT_BASE_URL", "FAILURE_STATUSES", "FEATURE_TYPE", "MODEL",
    "SUCCESS_STATUSES", "ZERO_UUID", "ErrorBody", "GenerationRecord", "OneMinClient", "ProgressCallback",
    "ResultUnavailable", "RetryPolicy", "Timeouts", "check_record", "error_from_response", "parse_error_body",
    "parse_record",
]

log = get_logger(__name__)

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


# --- the client ------------------------------------------------------------------------------

T = TypeVar("T")
_DEFAULT_TIMEOUTS: Final = Timeouts()
_DEFAULT_RETRY: Final = RetryPolicy()
ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes in all; 0 when unknown)


class OneMinClient:
    """The 1min.ai API: upload an image, generate, poll, download. See the module docstring."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, timeouts: Timeouts = _DEFAULT_TIMEOUTS,
                 session: requests.Session | None = None, *, retry: RetryPolicy = _DEFAULT_RETRY,
                 asset_base_url: str | None = None, cancel: threading.Event | None = None,
                 proxy: str | None = None, ca_bundle: str | None = None,
                 max_download_bytes: int = results.MAX_RESULT_BYTES,
                 rate_limiter: RateLimiter | None = None) -> None:
        register_secret(api_key)
        self.__api_key = api_key
        self.base_url = base_url.rstrip("/")
        if asset_base_url is None:
            asset_base_url = asset_base_url_for(self.base_url)
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
            payload = self._call("POST", self._api_url(ASSETS_PATH), what="upload", api=True,
                                 idempotent=False, body=body, read_timeout=self.timeouts.read,
                                 consume=self._json_consumer(self.timeouts.read, "upload"))
        key = asset_key(payload)
        log.info("uploaded %s (%d bytes) as %s", body.filename, body.file_size, key)
        return key

    def generate_3d(self, image_key: str, use_async: bool = False, *, poll_interval: float = 1.0,
                    deadline: float = 900.0, on_record: Callable[[GenerationRecord], None] | None = None,
                    model: str = MODEL) -> GenerationRecord:
        """Start the generation from an uploaded asset key (or an https image URL) and wait for it.

        Synchronous mode holds the connection until the result is ready (read timeout
        `timeouts.generate`); a cancel closes it at once, and the answer (the only way to the
        result) is lost. Async mode sends `"async": true`: the answer comes at once with the
        generation's uuid, and the client polls for it. A cancel then waits for that short
        answer, so the uuid always reaches `on_record` (and the journal) before Cancelled is
        raised: a cancelled async job can still be fetched later, free. An async answer that is
        already finished is used as it is, with no poll. `on_record` fires with the record as
        soon as its uuid is known and the work is still running. The POST is never re-sent once
        it may have reached the server. `model`: the API model id (protocol.MODELS).
        """
        return self._start_feature(generation_body(image_key, use_async, model), use_async,
                                   poll_interval=poll_interval, deadline=deadline, on_record=on_record)

    def remove_background(self, image_key: str, use_async: bool = False, *, poll_interval: float = 1.0,
                          deadline: float = 900.0,
                          on_record: Callable[[GenerationRecord], None] | None = None) -> GenerationRecord:
        """Start BACKGROUND_REMOVER on an uploaded asset key and wait for it, as `generate_3d`
        does (same modes, same journalling hooks); its result is a PNG with alpha."""
        return self._start_feature(background_body(image_key, use_async), use_async,
                                   poll_interval=poll_interval, deadline=deadline, on_record=on_record)

    def _start_feature(self, body: dict[str, Any], use_async: bool, *, poll_interval: float,
                       deadline: float, on_record: Callable[[GenerationRecord], None] | None
                       ) -> GenerationRecord:
        read_timeout = self.timeouts.read if use_async else self.timeouts.generate
        started = time.monotonic()
        # Once the answer is coming, it is read whole whatever happens: it holds the uuid.
        consume = self._json_consumer(read_timeout, "generation request", cancellable=False)
        with self._abort_on_cancel() if not use_async else contextlib.nullcontext():
            payload = self._call("POST", self._api_url(FEATURES_PATH), what="generation request",
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
            payload = self._call("GET", self._api_url(result_path(uuid)),
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
            raise advised(ResultError, f"The result folder {dest} cannot be created ({exc.strerror or exc}): ",
                          "{result_folder}.") from exc
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
        """The result's download addresses, best first (see `download`, protocol.download_urls)."""
        return _download_urls(record, self.asset_base_url)

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
                shown = body.message if body.is_html else clip(body.text, 80)
                raise GarbledResponse(f"the {what} answer is not valid JSON ({shown or 'empty'})",
                                      may_have_run=what == "generation request") from exc
        return consume

    def _save(self, resp: requests.Response, dest: Path, progress: ProgressCallback | None
              ) -> tuple[Path, str]:
        """Stream a result body into a temporary file in `dest`: (the file, its kind).
        The file is removed on every failure."""
        cap = self.max_download_bytes
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        length = int_or_none(resp.headers.get("Content-Length"))
        if length is not None and length > cap:
            raise ResultError(f"The result is {_mb(length)}, over the {_mb(cap)} limit for downloads: "
                              "it was not downloaded.")
        total = length if (length is not None and encoding in ("", "identity")) else 0
        try:
            fd, tmp_name = _mkstemp(dest)
        except OSError as exc:
            raise advised(ResultError, f"Cannot write to the result folder {dest} ({exc.strerror or exc}): ",
                          "{result_folder}.") from exc
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
        if self.base_url != DEFAULT_BASE_URL.rstrip("/") and url.startswith(self.base_url):
            err.server = _loggable(self.base_url)  # not 1min.ai: the message names the server asked
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



# --- small helpers -------------------------------------------------------------------------------


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
    return clip(text, 120) or type(innermost).__name__


def _sniff_or_fail(head: bytes) -> str:
    kind = results.sniff_kind(head)
    if kind is None:
        shown = "empty" if not head else ("text or HTML" if head.lstrip()[:1] in (b"<", b"{") else "unknown bytes")
        raise advised(ResultError, f"1min.ai returned a file that is not a 3D model or an image ({shown}): "
                      "nothing was kept; ",
                      "download it again, free, {download_again}, and if the same comes back, {regenerate}.")
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
