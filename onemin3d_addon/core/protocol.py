"""bpy-free, no third-party imports: 1min.ai's wire format: addresses, request bodies, the `aiRecord` answer, where a result is downloaded from, and which exception each error answer is.

Everything here is a pure function or a frozen record: no socket, no thread, no `requests`
(so the add-on can register, and the history and pipeline can name a record, without loading
an HTTP stack). `core/client.py` is the transport that moves these bodies and answers; the
fuzz tests (tests/reliability/test_fuzz.py) feed the parsers hostile bytes.

* `generation_body(image_key, use_async, model)`, `background_body(image_key, use_async)`, `ASSETS_PATH`, `FEATURES_PATH`, `result_path(uuid)`,
  `asset_base_url_for(base_url)`: what is sent, and where;
* `parse_record(payload)` → `GenerationRecord`, `check_record`, `asset_key(payload)`,
  `download_urls(record, asset_base_url)`: what comes back;
* `parse_error_body(raw)` and `error_from_response(status, raw, headers)`: every error answer,
  whichever of the API's two shapes (or an HTML page) it is, mapped to our exception once,
  through one table (`_STATUS_ERRORS`);
* `Timeouts` and `RetryPolicy`: how long and how often the transport may wait and repeat.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import quote, urlsplit

# re-exported: the defaults the preferences are drawn with live apart, light to import at registration
from .defaults import CONNECT_TIMEOUT, GENERATE_TIMEOUT, READ_TIMEOUT
from .defaults import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from .errors import (
    AuthError,
    BadResponse,
    CreditsExhausted,
    GenerationFailed,
    InvalidInput,
    NetworkError,
    Onemin3DError,
    RateLimited,
    ResultUnavailable,
    ServerError,
    redact,
)

DEFAULT_ASSET_BASE_URL: Final = "https://asset.1min.ai"

FEATURE_TYPE: Final = "IMAGE_3D_GENERATOR"

MODEL: Final = "stable-image"

#: the second IMAGE_3D_GENERATOR model (Trellis 3D by Microsoft, through PiAPI): likely answers with a GLB
TRELLIS_MODEL: Final = "Qubico/trellis"

#: the API model ids IMAGE_3D_GENERATOR is known to take (README, API notes §5)
MODELS: Final = (MODEL, TRELLIS_MODEL)

#: the feature that cuts the subject out of a photo (answers with a PNG with alpha)
BACKGROUND_REMOVER: Final = "BACKGROUND_REMOVER"

#: the model BACKGROUND_REMOVER is sent with
BACKGROUND_MODEL: Final = "stable-image"

ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"

#: the statuses a finished record can have; anything else means "still working"
SUCCESS_STATUSES: Final = frozenset({"SUCCESS", "COMPLETED"})

FAILURE_STATUSES: Final = frozenset({"FAILURE", "FAILED", "ERROR", "CANCELLED", "CANCELED"})


# --- what is sent, and where ---------------------------------------------------------------

ASSETS_PATH: Final = "/api/assets"
FEATURES_PATH: Final = "/api/features"


def result_path(uuid: str) -> str:
    """The address, under the base URL, of generation `uuid`'s record."""
    return "/api/results/" + quote(uuid, safe="")


def asset_base_url_for(base_url: str) -> str:
    """Where result keys are downloaded from: 1min.ai's asset host for its own API, else
    `{base_url}/asset` (the local stand-in serves both)."""
    base = base_url.rstrip("/")
    return DEFAULT_ASSET_BASE_URL if base == DEFAULT_BASE_URL.rstrip("/") else f"{base}/asset"


def generation_body(image_key: str, use_async: bool, model: str = MODEL) -> dict[str, Any]:
    """The JSON body that starts (and bills) one generation from an uploaded asset key or an
    https image URL. `use_async`: the answer comes at once with the uuid, to be polled.
    `model`: the API model id (`MODEL` or `TRELLIS_MODEL`)."""
    body: dict[str, Any] = {"type": FEATURE_TYPE, "model": model, "promptObject": {"imageUrl": image_key}}
    if use_async:
        body["async"] = True
    return body


def background_body(image_key: str, use_async: bool) -> dict[str, Any]:
    """The JSON body that starts (and bills) one background removal of an uploaded asset key;
    its result is a PNG with alpha. `use_async` as for `generation_body`."""
    body: dict[str, Any] = {"type": BACKGROUND_REMOVER, "model": BACKGROUND_MODEL,
                            "promptObject": {"imageUrl": image_key, "output_format": "png"}}
    if use_async:
        body["async"] = True
    return body


def download_urls(record: GenerationRecord, asset_base_url: str) -> list[str]:
    """The result's download addresses, best first: the record's temporary URL, result keys
    that are already http(s) URLs, then each key under `asset_base_url` (its path cleaned of
    empty, "." and ".." segments)."""
    urls: list[str] = []
    if record.download_url:
        urls.append(record.download_url)
    for key in record.result_keys:
        if http_url(key):
            urls.append(key)
    for key in record.result_keys:
        if not http_url(key) and "://" not in key:
            segments = [s for s in key.replace("\\", "/").split("/") if s not in ("", ".", "..")]
            if segments:
                urls.append(f"{asset_base_url.rstrip('/')}/{quote('/'.join(segments), safe='/')}")
    return list(dict.fromkeys(urls))


# --- settings and records --------------------------------------------------------------------
# Frozen records as NamedTuples rather than frozen dataclasses: a NamedTuple class costs a tenth
# of a frozen dataclass to define. Build them with keywords.


class Timeouts(NamedTuple):
    """Seconds. `generate` is the read timeout of the synchronous generation POST."""

    connect: float = CONNECT_TIMEOUT
    generate: float = GENERATE_TIMEOUT
    read: float = READ_TIMEOUT


class RetryPolicy(NamedTuple):
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


class GenerationRecord(NamedTuple):
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


class ErrorBody(NamedTuple):
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
    clipped = clip(text, 2000)
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
    return ErrorBody(None, clip(text, 300) or None, None, False, clipped)


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
        raise BadResponse("the answer has no aiRecord" + (f" ({clip(message, 120)})" if message else ""))
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
        download_url=http_url(rec.get("temporaryUrl")) or http_url(payload.get("temporaryUrl")),
        credit_limit=int_or_none(team.get("creditLimit")),
        used_credit=int_or_none(team.get("usedCredit")),
        error_message=clip(error_message, 500) if error_message else None,
    )


def check_record(record: GenerationRecord) -> GenerationRecord:
    """`record` when it is a usable success; BadResponse when it failed or has nothing to download."""
    if record.failed:
        raise GenerationFailed(record.error_message or f"status {record.status}, no reason given",
                               status=record.status, uuid=record.uuid)
    if record.succeeded and not (record.download_url or record.result_keys):
        raise BadResponse("the generation finished but named no result file")
    return record

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

# Patterns as strings: `re` compiles each on its first use (and caches it), not at import.
_CREDIT_RE = r"(?i)credit"

_TAG_RE = r"<[^>]+>"

_TITLE_RE = r"(?is)<title[^>]*>(.*?)</title>"

_H1_RE = r"(?is)<h1[^>]*>(.*?)</h1>"


def _mentions_credit(body: ErrorBody) -> bool:
    if body.code and re.search(_CREDIT_RE, body.code):
        return True
    return bool(body.message and re.search(_CREDIT_RE, body.message))


def _describe(body: ErrorBody, status: int) -> str:
    parts = [p for p in (body.message, body.cause) if p]
    if body.code and not any(body.code in p for p in parts):
        parts.append(f"[{body.code}]")
    return clip(": ".join(parts), 300)


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
                return clip(text, 300)
            if parsed != text:
                return _cause_from(parsed, depth + 1) or clip(text, 300)
        return clip(text, 300)
    if isinstance(details, list):
        found = [c for c in (_cause_from(d, depth + 1) for d in details[:10]) if c]
        return clip("; ".join(found), 300) if found else None
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
        return clip("; ".join(parts), 300) if parts else None
    if isinstance(details, (int, float)) and not isinstance(details, bool):
        return str(details)
    return None


def _html_summary(text: str) -> str:
    import html  # on first use: an HTML error page is rare, and registering the add-on loads nothing it needs

    for pattern in (_TITLE_RE, _H1_RE):
        m = re.search(pattern, text)
        if m:
            summary = " ".join(html.unescape(re.sub(_TAG_RE, " ", m.group(1))).split())
            if summary:
                return clip(summary, 160)
    return clip(" ".join(html.unescape(re.sub(_TAG_RE, " ", text)).split()), 160) or "an HTML page"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # on first use: a Retry-After date is rare, and the email package is large

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


def asset_key(payload: object) -> str:
    """The asset key an upload answer names (fileContent.path, else asset.key); BadResponse otherwise."""
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


def http_url(value: object) -> str | None:
    """`value` when it is an absolute http(s) URL, else None."""
    text = _str(value)
    if text and urlsplit(text).scheme.lower() in ("http", "https") and urlsplit(text).netloc:
        return text
    return None


def _str(value: object) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def int_or_none(value: object) -> int | None:
    """An integer read from JSON or a header (never a bool, NaN or a huge string), else None."""
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


def clip(text: str | None, limit: int) -> str:
    """`text` on one line, the key masked, at most `limit` characters."""
    text = " ".join(redact(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
