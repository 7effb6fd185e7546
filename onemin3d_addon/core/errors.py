"""bpy-free: the add-on's exception classes and the one sentence a user is shown for each.

Every failure the add-on can meet is turned into one of these classes at the edge where it
happens (HTTP, image decoding, result handling, import). `user_message(err)` is the only place
that words them for people: what went wrong, and what to do about it.

No exception here ever carries the API key: messages are built from server text that has been
passed through `redact()`, and `KeyMaskingFilter` masks the key in every log record as well.

`get_logger()` hands out loggers that import `logging` on their first use, so importing the
add-on (and enabling it) does not load the logging package.
"""

# No `from __future__ import annotations`: a NamedTuple's string annotations each cost a compile()
# when the class is defined, and this module is imported when the add-on is enabled.
import functools
import math
import re
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

if TYPE_CHECKING:
    import logging

PREFS_PATH = "Edit › Preferences › Add-ons › 1min.ai Image to 3D"
ONLINE_ACCESS_PATH = "Edit › Preferences › System › Network › Allow Online Access"
#: a Blender built without USD (Debian's are) has no exporter for Export for AR
NO_USD = ("This Blender was built without USD, so it cannot write a .usdz: export for AR from Blender's own build "
          "(blender.org), or use Export for Web.")


class Onemin3DError(Exception):
    """Base class of every error the add-on raises on purpose."""

    #: the pipeline stage the error happened in ("prepare", "upload", "generate", "poll",
    #: "download", "import"); filled in by the pipeline when known.
    stage: str | None = None
    #: the id of the generation the error happened to, once 1min.ai gave one: it is paid for, and
    #: polling that id again costs nothing. Filled in by the pipeline when known.
    uuid: str | None = None
    #: for an error of the generation request: whether that request may still have been carried
    #: out (and charged). False only when it surely never reached 1min.ai; see `may_have_run()`.
    may_have_run: bool = True
    #: (problem, advice): an error made by `advised()`, whose advice is worded where it is shown
    advice: tuple[str, str] | None = None

    def __init__(self, message: str = "", *, detail: str | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.detail = redact(detail) if detail else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class AuthError(Onemin3DError):
    """401/403: the key is missing, wrong, deleted or not allowed."""

    def __init__(self, message: str = "", *, status: int = 401, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.status = status


class RateLimited(Onemin3DError):
    """429: too many requests; `retry_after` seconds when the server said so."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CreditsExhausted(Onemin3DError):
    """The account has no credits left for this generation."""


class InvalidInput(Onemin3DError):
    """400 (and 413): the request or the image was refused. `code` is the server's errorCode."""

    def __init__(self, message: str = "", *, code: str | None = None, detail: str | None = None,
                 status: int = 400) -> None:
        super().__init__(message, detail=detail)
        self.code = code
        self.status = status


class ServerError(Onemin3DError):
    """5xx, including Cloudflare's 52x HTML pages."""

    def __init__(self, message: str = "", *, status: int = 500, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.status = status


class NetworkError(Onemin3DError):
    """DNS failure, refused connection, timeout, reset: nothing usable came back."""

    #: the API's base URL when it is not 1min.ai's own (a stand-in, a proxy, a typo): the
    #: message then names that server instead of blaming the internet connection.
    server: str | None = None


class BadResponse(Onemin3DError):
    """The server answered, but not with what the API promises (bad JSON, missing field, FAILURE)."""


class GarbledResponse(BadResponse):
    """The answer was not JSON at all (cut off, garbled, or a proxy's HTML page): it says nothing
    about the work, so a status check that got one is asked again, and a paid job stays kept.
    `may_have_run`: it answered a generation request, which may have been carried out (and paid)."""

    def __init__(self, message: str = "", *, may_have_run: bool = False) -> None:
        super().__init__(message)
        self.may_have_run = may_have_run


class GenerationFailed(BadResponse):
    """The generation ended with status FAILURE/FAILED; the message is the service's reason."""

    def __init__(self, message: str = "", *, status: str = "FAILURE", uuid: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.uuid = uuid


class StillRunning(BadResponse):
    """Polling gave up before the generation finished; `uuid` lets a later run resume it."""

    def __init__(self, message: str = "", *, uuid: str | None = None) -> None:
        super().__init__(message)
        self.uuid = uuid


class Cancelled(Onemin3DError):
    """The user (or shutdown) cancelled the job."""


class UnansweredGeneration(Onemin3DError):
    """A generation that was (or may have been) sent, whose answer, with the id to fetch it by,
    never arrived: it may have been charged, so it is never sent again unless the user asks.
    `photo` is the file name of the image it was made from."""

    def __init__(self, photo: str) -> None:
        self.photo = photo
        super().__init__(unanswered_sentence(photo))


class ImageError(Onemin3DError):
    """The source image cannot be used (missing, unreadable, corrupt, too small, too big)."""


class ResultError(Onemin3DError):
    """The downloaded result cannot be used (unknown kind, too large, unsafe archive, corrupt)."""


class ResultUnavailable(ResultError):
    """A result address answered with an HTTP error (`status`): the next address may still work,
    and a later try (a fresh link from a new status check) may too."""

    def __init__(self, message: str = "", *, status: int, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.status = status


class ImportFailed(Onemin3DError):
    """Blender could not turn the result into scene data."""


class OfflineError(Onemin3DError):
    """Blender's Allow Online Access switch is off, so no request was made."""


#: What a paid generation whose record or result could not be fetched becomes, in the add-on's
#: words (the command-line converter has its own: `Wording`, `cli.batch.CLI_WORDING`).
FETCH_LATER = ("the generation is paid for and kept in the history: it is fetched again, free, the next time "
               "the add-on starts, or when you press Re-import in the history")
#: How a result is downloaded again (free: the generation's id is known), in the add-on's words.
DOWNLOAD_AGAIN = "with Re-import in the history"
#: How an unanswered generation is generated again on purpose, in the add-on's words.
REGENERATE = "choose the photo and press Generate"

#: Errors of the generation request that are refusals before any work: nothing was charged.
_REFUSALS = (AuthError, CreditsExhausted, RateLimited, InvalidInput, OfflineError, ImageError)


def may_have_run(err: BaseException) -> bool:
    """Whether a failed generation request may still have been carried out (and charged):
    False for the service's refusals (4xx, 429) and for requests that never left this machine."""
    if isinstance(err, _REFUSALS):
        return False
    return bool(getattr(err, "may_have_run", True))


def unanswered_sentence(photo: str, *, resend: str = "it is not sent again", how: str = REGENERATE) -> str:
    """The one sentence that refuses to send an unanswered generation again, naming the photo."""
    return (f"{photo}: its generation may already have been sent and charged, but its answer never arrived, "
            f"so {resend}; to generate it again on purpose, {how}.")


class Wording(NamedTuple):
    """The places and next steps a message names, in the words of where it is shown: the add-on's
    UI (`UI`, the default) or the command line (`cli.batch.cli_wording`). Build it with keywords.
    A NamedTuple, not a frozen dataclass: this module is imported when the add-on is enabled, and
    a NamedTuple class costs a fraction of a frozen dataclass to define (scripts/bench.py startup)."""

    #: how to set a valid key
    key: str = f"set a valid key in {PREFS_PATH} or in the ONEMIN_API_KEY environment variable"
    #: where the proxy and the timeouts are set
    network: str = f"proxy and timeouts in {PREFS_PATH}"
    #: a paid generation whose record or result did not arrive: how it is fetched, free
    fetch_later: str = FETCH_LATER
    #: how a result is downloaded again, free
    download_again: str = DOWNLOAD_AGAIN
    #: a download refused for now: how to try it again later
    download_later: str = "try the download again later from the history"
    #: where the API's address is set
    base_url: str = f"the Base URL in {PREFS_PATH} (or ONEMIN_API_BASE_URL)"
    #: how a result that did not import is tried again
    reimport: str = "re-import it (that downloads it again, free)"
    #: how a result whose file is gone is downloaded again
    redownload: str = "re-download it from the history"
    #: how a photo below the minimum size is sent anyway
    upscale: str = "enable 'Allow upscaling'"
    #: where another result folder is chosen
    result_folder: str = "choose another result folder in the add-on preferences"
    #: how a photo is generated again on purpose (a new, paid generation)
    regenerate: str = "generate it again"


_E = TypeVar("_E", bound=Onemin3DError)


def advised(cls: type[_E], problem: str, advice: str, **kw: Any) -> _E:
    """An error of `cls` whose advice is worded where it is shown: `advice` is a template of
    `Wording` fields ("download it again, free, {download_again}."). Its message (for logs and
    `str()`) is in the UI's words; `user_message(err, wording)` words it as asked."""
    fields = UI._asdict()
    err = cls(problem + advice.format_map(fields), **kw)
    err.advice = (redact(problem), advice)
    return err


#: The add-on's own words.
UI = Wording()


def _paid(err: BaseException) -> bool:
    """A generation with a known id failed while its record or result was being fetched."""
    return bool(getattr(err, "uuid", None)) and getattr(err, "stage", None) in ("poll", "download")


def user_message(err: BaseException, wording: Wording = UI) -> str:
    """One sentence a Blender user can act on: the problem, then the fix, in `wording`'s words.

    The fix is true in the case at hand: a paid generation (its id known) is fetched again, free;
    a generation request that may have run is not to be sent again blindly; anything refused or
    never sent can simply be tried again."""
    msg = getattr(err, "message", "") or ""
    if getattr(err, "advice", None):
        problem, advice = err.advice  # type: ignore[attr-defined]
        msg = problem + advice.format_map(wording._asdict())
    paid = _paid(err)
    if isinstance(err, Cancelled):
        return "The job was cancelled; nothing was imported."
    if isinstance(err, UnansweredGeneration):
        return err.message
    if isinstance(err, OfflineError):
        return f"Online access is off, so nothing was sent: turn on {ONLINE_ACCESS_PATH}."
    if isinstance(err, AuthError):
        fix = wording.key
        return (f"1min.ai rejected the API key (HTTP {err.status}): {fix}"
                + (f"; {wording.fetch_later}." if paid else "."))
    if isinstance(err, CreditsExhausted):
        return "Your 1min.ai account has run out of credits: top up at 1min.ai, then try again."
    if isinstance(err, RateLimited):
        wait = f" {max(1, math.ceil(err.retry_after))} s" if err.retry_after else " a minute"
        if paid:
            return f"1min.ai is rate-limiting this key (too many requests): wait{wait}; {wording.fetch_later}."
        return f"1min.ai is rate-limiting this key (too many requests): wait{wait} and try again."
    if isinstance(err, InvalidInput):
        if err.status == 413:
            return ("1min.ai refused the image as too large: use a smaller file "
                    "(under 50 MB, at most 2048 px on the long side).")
        cause = err.detail or msg or (err.code or "invalid request")
        return f"1min.ai refused the request ({_clip(cause)}): check the image and settings, then try again."
    if isinstance(err, ServerError):
        head = f"1min.ai had a server error (HTTP {err.status})"
        if paid:
            return f"{head} while the result was being fetched: {wording.fetch_later}."
        if err.stage == "generate":
            return (f"{head} while generating, and no result arrived: the credits may have been spent, "
                    "so check your 1min.ai history before you generate it again.")
        if err.stage in ("prepare", "upload"):
            return f"{head} during the upload; nothing was generated, so wait a moment and try again."
        return f"{head}: wait a moment and try again."
    if isinstance(err, NetworkError):
        reason = _clip(msg) or "network error"
        if err.server:
            return (f"Could not reach the server at {err.server} ({reason}): check that it runs, "
                    f"or check {wording.base_url}"
                    + (f"; {wording.fetch_later}." if paid else "."))
        if paid:
            return f"Could not reach 1min.ai ({reason}): check your internet connection and proxy; {wording.fetch_later}."
        return f"Could not reach 1min.ai ({reason}): check your internet connection, {wording.network}."
    if isinstance(err, GenerationFailed):
        return (f"1min.ai could not make a 3D result from this image ({_clip(msg) or err.status}): "
                "try another photo with a clear subject, or try again later.")
    if isinstance(err, StillRunning):
        return (f"1min.ai has not finished this job yet ({_clip(msg) or 'still running'}): {wording.fetch_later}, "
                "so it is never paid for twice.")
    if isinstance(err, GarbledResponse):
        shown = _clip(msg) or "not JSON"
        if paid:
            return (f"1min.ai's answer came back garbled ({shown}): if a proxy, firewall or captive portal "
                    f"sits in between, check it; {wording.fetch_later}.")
        ran = ("the generation may still have run, so check your 1min.ai history before trying again, "
               "and " if err.may_have_run else "")
        return (f"1min.ai's answer came back garbled ({shown}): {ran}if a proxy, firewall "
                "or captive portal sits in between, check it, then try again later.")
    if isinstance(err, BadResponse):
        if err.stage == "generate" and not err.uuid:
            return (f"1min.ai sent an unexpected answer ({_clip(msg) or 'bad response'}): the generation may "
                    "still have run, so check your 1min.ai history before you generate it again, and report "
                    "it if it keeps happening.")
        return (f"1min.ai sent an unexpected answer ({_clip(msg) or 'bad response'}): try again later, "
                "and report it if it keeps happening.")
    if isinstance(err, ImageError):
        return _sentence(msg or "The image cannot be used: choose a JPEG, PNG or WebP of at least 512×512.")
    if isinstance(err, ResultUnavailable):
        fix = wording.fetch_later if paid else wording.download_later
        return f"{_clip(msg.rstrip('.'), 300) or 'The result could not be downloaded'}; {fix}."
    if isinstance(err, ResultError):
        return _sentence(msg or f"The result from 1min.ai cannot be used: download it again, free, {wording.download_again}.")
    if isinstance(err, ImportFailed):
        return _sentence(msg or f"Blender could not import the result: it is kept in the history, so "
                         f"{wording.reimport} or open the file by hand.")
    if isinstance(err, Onemin3DError):
        return _sentence(msg or "Something went wrong: see the system console for details.")
    return ("Unexpected internal error: see the system console for the details, and report it "
            "to the add-on's developers.")


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sentence(text: str) -> str:
    text = _clip(text, 300)
    return text if text.endswith((".", "!", "?")) else text + "."


# --- secrets ---------------------------------------------------------------------------------

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret (the API key) so that `redact()` and the logging filter mask it."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret, and anything sent as an API-KEY header, masked."""
    if not text:
        return text
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return re.sub(_HEADER_RE, r"\1" + _MASK, text)


#: Compiled on first use (by `re`'s cache), not when the add-on is enabled.
_HEADER_RE = r"(?i)(api[-_]key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"


@functools.cache
def _key_filter() -> "logging.Filter":
    """The one `KeyMaskingFilter`, made (and `logging` imported) on first use."""
    import logging

    class KeyMaskingFilter(logging.Filter):
        """Masks registered secrets in a record's message, arguments and traceback text."""

        def filter(self, record: logging.LogRecord) -> bool:
            try:
                rendered = record.getMessage()
            except (TypeError, ValueError):
                rendered = str(record.msg)
            record.msg = redact(rendered)
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                formatter = logging.Formatter()
                record.exc_text = redact(formatter.formatException(record.exc_info))
                record.exc_info = None
            elif record.exc_text:
                record.exc_text = redact(record.exc_text)
            return True

    return KeyMaskingFilter()


class _Logger:
    """A module's logger, looked up on its first use: `logging.getLogger(name)` with the
    key-masking filter attached. Every attribute is the real logger's."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def _real(self) -> "logging.Logger":
        logger = self._logger
        if logger is None:
            import logging

            logger = logging.getLogger(self._name)
            if _key_filter() not in logger.filters:
                logger.addFilter(_key_filter())
            self._logger = logger
        return logger

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._real(), attr)

    def __repr__(self) -> str:
        return f"<logger {self._name} (on first use)>"


def get_logger(name: str) -> "logging.Logger":
    """`logging.getLogger(name)` with the key-masking filter attached, looked up on first use.

    Logger filters only see records logged on that very logger, so every module of the add-on
    takes its logger from here rather than relying on a filter on a parent.
    """
    return cast("logging.Logger", _Logger(name))


def install_log_filter() -> None:
    """Also mask secrets in records from other libraries, at every handler of the root logger."""
    import logging

    key_filter = _key_filter()
    for handler in logging.getLogger().handlers:
        if key_filter not in handler.filters:
            handler.addFilter(key_filter)


def __getattr__(name: str) -> Any:
    # `KeyMaskingFilter` and the filter itself, for whoever named them before they became lazy
    if name == "KeyMaskingFilter":
        return type(_key_filter())
    if name == "_FILTER":
        return _key_filter()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
