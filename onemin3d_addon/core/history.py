"""bpy-free, thread-safe: the durable job journal, one JSON file per job, always rewritten whole and atomically.

`<folder>/history/<id>.json` holds everything needed to list, re-import or resume a job after
Blender crashes or restarts: source, settings, state and stage, asset key, whether the generation
request went out, uuid, result file, credits, error and timings. Each save writes a temporary file in the same folder, fsyncs it and
renames it over the old one, so a reader only ever sees a whole old or a whole new file.

The API key is never written: `HistoryEntry` has no field for it, settings keys that name a
secret (api_key, key, token, password...) are dropped before writing, and the text written is
passed through `errors.redact()` so a registered key cannot slip in through any other value.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import Onemin3DError, get_logger, redact

log = get_logger(__name__)

SCHEMA_VERSION = 1
STATES = ("queued", "running", "done", "imported", "failed", "cancelled")
#: failures after which a job with a uuid is worth resuming: the generation was paid and may still
#: finish (StillRunning), or it finished but fetching its record or result met a fault that a later
#: try can get past (the network, the server, the rate limit, an expired or missing result link,
#: a key fixed since). Resuming polls and downloads only: it never pays again.
RESUMABLE_ERRORS = frozenset({"StillRunning", "NetworkError", "ServerError", "RateLimited",
                              "ResultUnavailable", "AuthError", "GarbledResponse"})
#: failures of a generation with a uuid after which fetching it again cannot help: it failed on
#: 1min.ai's side, or 1min.ai answered with something that names no result (or no such generation)
DEAD_ERRORS = frozenset({"GenerationFailed", "BadResponse"})

#: failures of the generation request that are the service's refusals: nothing was charged
_REFUSED = frozenset({"AuthError", "CreditsExhausted", "RateLimited", "InvalidInput", "OfflineError", "ImageError"})

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SECRET_EXACT = frozenset({"key", "auth", "authorization", "bearer", "cookie"})
_SECRET_SUFFIXES = ("apikey", "token", "secret", "password", "passwd", "credential", "credentials")


@dataclass
class HistoryEntry:
    """One job, as journalled. Paths are stored as strings; times are Unix timestamps."""

    id: str
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    source_path: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    state: str = "queued"       # queued | running | done | imported | failed | cancelled
    stage: str = "prepare"
    asset_key: str | None = None
    #: the generation request may have reached 1min.ai (see pipeline.Checkpoint.sent)
    generation_sent: bool = False
    uuid: str | None = None
    result_file: str | None = None
    result_kind: str | None = None
    credits_used: int | None = None
    credits_left: int | None = None
    error: str | None = None
    error_kind: str | None = None   # the error's class name ("StillRunning", "NetworkError", ...)
    blend_file: str | None = None   # the .blend the job was started from ("" for an unsaved file)
    times: dict[str, float] = field(default_factory=dict)   # stage -> start timestamp
    files: list[str] = field(default_factory=list)  # more files of this job (an extracted zip...)
    version: int = SCHEMA_VERSION
    # the background removal before the generation (pipeline.Checkpoint.bg_*): its request may
    # have reached 1min.ai, its uuid, and its downloaded, checked cut-out
    bg_sent: bool = False
    bg_uuid: str | None = None
    bg_file: str | None = None


_FIELDS = {f.name for f in fields(HistoryEntry)}


class History:
    """The journal in `<folder>/history/`. `folder` is the result folder; files the entries name may live there."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.dir = self.folder / "history"
        self._lock = threading.RLock()
        # path -> ((mtime_ns, size), parsed dict): listing a long history re-reads only what changed
        self._cache: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}
        self._warned: set[tuple[Path, int]] = set()

    # --- writing -----------------------------------------------------------------------------------

    def save(self, entry: HistoryEntry) -> None:
        """Write `entry` whole and atomically (bumping `entry.updated`). Secret-looking settings are dropped.

        Onemin3DError, saying what to fix, when the file cannot be written.
        """
        path = self._path(entry.id)
        with self._lock:
            entry.updated = time.time()
            data = asdict(entry)
            data["version"] = SCHEMA_VERSION
            data["settings"] = _without_secrets(data["settings"], f"history entry {entry.id}")
            data = _finite(data)
            text = redact(json.dumps(data, indent=1, ensure_ascii=False, default=str, allow_nan=False))
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                _atomic_write(path, text.encode("utf-8"))
            except OSError as exc:
                raise Onemin3DError(
                    f"Could not write the job history to {self.dir} ({exc.strerror or exc}): check the free "
                    "space and permissions of the result folder.") from exc

    def update(self, job_id: str, **changes: Any) -> HistoryEntry:
        """Load, change and save an entry in one locked step (a new entry if none exists)."""
        unknown = set(changes) - _FIELDS
        if unknown:
            raise TypeError(f"HistoryEntry has no field(s) {sorted(unknown)}")
        with self._lock:
            entry = self.load(job_id) or HistoryEntry(id=job_id)
            for name, value in changes.items():
                setattr(entry, name, value)
            self.save(entry)
            return entry

    def remove(self, id: str, *, delete_files: bool = False) -> None:
        """Forget an entry; with `delete_files`, also delete its result and other files in the result folder.

        Files outside the result folder are never deleted, whatever the JSON says.
        """
        path = self._path(id)
        with self._lock:
            entry = self.load(id)
            if delete_files and entry is not None:
                for name in [entry.result_file, entry.bg_file, *entry.files]:
                    if name:
                        self._delete_inside(Path(name))
            path.unlink(missing_ok=True)
            self._cache.pop(path, None)

    # --- reading -----------------------------------------------------------------------------------

    def load(self, id: str) -> HistoryEntry | None:
        """The entry, or None when there is none or it cannot be read (logged)."""
        return self._read(self._path(id))

    def entries(self) -> list[HistoryEntry]:
        """Every readable entry, newest first. Corrupt files are skipped with a warning, never raised."""
        try:
            paths = [p for p in self.dir.iterdir() if p.suffix == ".json" and not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot list the job history in %s: %s", self.dir, exc)
            return []
        with self._lock:
            found = [e for e in (self._read(p) for p in paths) if e is not None]
            live = set(paths)
            for stale in [p for p in self._cache if p not in live]:
                del self._cache[stale]
        found.sort(key=lambda e: (e.created, e.updated, e.id), reverse=True)
        return found

    def resumable(self) -> list[HistoryEntry]:
        """Jobs that got as far as a uuid or a result file but were neither imported nor ended for good.

        Included: queued/running (interrupted by a crash or restart) and done (downloaded, not yet
        imported); cancelled when its generation has a uuid but no result yet (paid for: the user
        stopped the waiting, not the generation); failed only when the failure is in
        RESUMABLE_ERRORS ("not finished yet", or a fault in fetching a paid generation that a later
        try can get past). Excluded: imported, other cancelled jobs and other failures.
        """
        out = []
        for e in self.entries():
            if not (e.uuid or e.result_file or _bg_paid(e)) or e.state == "imported":
                continue
            if e.state == "cancelled" and not ((e.uuid or _bg_paid(e)) and not e.result_file):
                continue
            if e.state == "failed" and e.error_kind not in RESUMABLE_ERRORS:
                continue
            out.append(e)
        return out

    # --- internals ---------------------------------------------------------------------------------

    def _path(self, id: str) -> Path:
        if not isinstance(id, str) or not _ID_RE.match(id):
            raise ValueError(f"invalid history id {id!r}: use letters, digits, '.', '_' and '-' only")
        return self.dir / f"{id}.json"

    def _read(self, path: Path) -> HistoryEntry | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(path, 0, f"cannot read it ({exc})")
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == stamp:
                return _entry(copy.deepcopy(cached[1]))
            try:
                data = json.loads(path.read_bytes().decode("utf-8"))
                entry = _validated(data, path.stem)
            except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
                self._warn(path, st.st_mtime_ns, str(exc))
                return None
            self._cache[path] = (stamp, copy.deepcopy(asdict(entry)))
            return entry

    def _warn(self, path: Path, mtime_ns: int, why: str) -> None:
        if (path, mtime_ns) not in self._warned:  # once per version of the file, not at every redraw
            self._warned.add((path, mtime_ns))
            log.warning("skipping the unreadable history file %s: %s", path, why)

    def _delete_inside(self, target: Path) -> None:
        base = self.folder.resolve()
        if not target.is_absolute():
            target = self.folder / target
        try:
            resolved = target.resolve()
            resolved.relative_to(base)
        except (OSError, ValueError):
            log.warning("not deleting %s: it is outside the result folder %s", target, self.folder)
            return
        if resolved == base or resolved == self.dir.resolve():
            log.warning("not deleting %s: it is the result or history folder itself", target)
            return
        try:
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete %s: %s", target, exc)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open a folder and needs no such step."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems (network shares) refuse it; the data itself is synced
        log.debug("fsync of %s failed: %s", folder, exc)
    finally:
        os.close(fd)


def fetchable(e: HistoryEntry) -> bool:
    """A generation with a uuid whose result polling and downloading again may still bring, free
    (whatever stopped it: a crash, a cancel, a fault while fetching, a damaged download)."""
    return (bool(e.uuid) or _bg_paid(e)) and not (e.state == "failed" and e.error_kind in DEAD_ERRORS)


def _bg_paid(e: HistoryEntry) -> bool:
    """A background removal with a uuid or a cut-out, before any generation was sent: going on
    fetches the cut-out free, then sends the generation for the first time."""
    return bool(e.bg_uuid or e.bg_file) and not (e.generation_sent or e.uuid or e.result_file)


def unanswered(e: HistoryEntry) -> bool:
    """The generation request may have reached 1min.ai (and been charged), but no uuid came back:
    nothing can fetch it, and it is never sent again without the user asking."""
    if e.uuid or e.result_file:
        return False
    return e.generation_sent or (e.bg_sent and not e.bg_uuid and not e.bg_file)


def is_secret_name(name: str) -> bool:
    """True for settings keys that name a secret: api_key, API-KEY, key, token, password, auth..."""
    norm = re.sub(r"[^a-z0-9]", "", name.lower())
    return norm in _SECRET_EXACT or norm.endswith(_SECRET_SUFFIXES)


def _without_secrets(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        clean: dict[str, Any] = {}
        for k, v in value.items():
            if is_secret_name(str(k)):
                log.warning("not writing the setting %r of %s: it looks like a secret", k, where)
                continue
            clean[str(k)] = _without_secrets(v, where)
        return clean
    if isinstance(value, list | tuple):
        return [_without_secrets(v, where) for v in value]
    return value


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them that every reader accepts."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _validated(data: Any, stem: str) -> HistoryEntry:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"bad schema version {version!r}")
    if version > SCHEMA_VERSION:
        log.info("history file %s.json has schema %d (newer than %d): reading the fields known here",
                 stem, version, SCHEMA_VERSION)
    if data.get("id") != stem:
        raise ValueError(f"its id {data.get('id')!r} does not match its file name")
    known = {k: v for k, v in data.items() if k in _FIELDS}
    if "generation_sent" not in known:
        # Written before the flag existed: an asset key with no uuid, in a job that was interrupted
        # or ended at the generation, may have been sent. Assume it was: never pay twice.
        state, stage = known.get("state"), known.get("stage")
        ended_there = stage == "generate" and (
            state == "cancelled" or (state == "failed" and known.get("error_kind") not in _REFUSED))
        known["generation_sent"] = bool(known.get("asset_key") and not known.get("uuid")
                                        and not known.get("result_file")
                                        and (state in ("queued", "running") or ended_there))
    entry = _entry(known)
    _check_types(entry)
    entry.version = SCHEMA_VERSION
    return entry


def _entry(data: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(**data)


_NUMBER = (int, float)


def _check_types(e: HistoryEntry) -> None:
    def opt(value: Any, kinds: type | tuple[type, ...]) -> bool:
        return value is None or (isinstance(value, kinds) and not isinstance(value, bool))

    checks = {
        "created": isinstance(e.created, _NUMBER), "updated": isinstance(e.updated, _NUMBER),
        "source_path": isinstance(e.source_path, str), "settings": isinstance(e.settings, dict),
        "state": isinstance(e.state, str),  # an unknown state (a newer version) is still listed "stage": isinstance(e.stage, str),
        "asset_key": opt(e.asset_key, str), "generation_sent": isinstance(e.generation_sent, bool),
        "uuid": opt(e.uuid, str), "result_file": opt(e.result_file, str),
        "result_kind": opt(e.result_kind, str), "credits_used": opt(e.credits_used, int),
        "credits_left": opt(e.credits_left, int), "error": opt(e.error, str), "error_kind": opt(e.error_kind, str),
        "blend_file": opt(e.blend_file, str),
        "times": isinstance(e.times, dict) and all(isinstance(v, _NUMBER) for v in e.times.values()),
        "files": isinstance(e.files, list) and all(isinstance(v, str) for v in e.files),
        "bg_sent": isinstance(e.bg_sent, bool), "bg_uuid": opt(e.bg_uuid, str), "bg_file": opt(e.bg_file, str),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"wrong type or value for {', '.join(bad)}")
