"""bpy-free: where an earlier generation goes on from — the one policy of the panel's Re-import and the converter's --resume.

For a history entry, in this order:

* IMPORT: its result is on disk, whole (`results.sniff_file`), and its import did not fail; it
  is imported from there, with no request;
* FETCH: its generation has a uuid and may still be fetched: polled and downloaded again, free
  (after a crash, a cancel, a fault while fetching, a damaged download or a failed import); or
  its background removal has a uuid or a cut-out and no generation was sent yet: the cut-out is
  fetched again, free, and the generation is sent for the first time;
* REFUSE: it (or its background removal) was sent but never answered (`history.unanswered`): it may have been charged and
  nothing can fetch it, so it is never sent again unless the user asks (Generate, --regenerate);
* NOTHING: nothing usable; a new generation is the only way to a result.

A result on disk whose import failed is fetched again when it can be; when it cannot, it is
offered for import again only where the user asked for that entry (Re-import: `retry_import`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .history import HistoryEntry, fetchable, unanswered

if TYPE_CHECKING:
    from .pipeline import Checkpoint

IMPORT: Final = "import"
FETCH: Final = "fetch"
REFUSE: Final = "refuse"
NOTHING: Final = "nothing"


@dataclass(frozen=True)
class Decision:
    action: str                      # IMPORT, FETCH, REFUSE or NOTHING
    entry: HistoryEntry
    result_file: Path | None = None  # for IMPORT: the file to import


def readable_result(entry: HistoryEntry) -> Path | None:
    """The entry's result file, when it is on disk and reads as a result."""
    from . import results  # Pillow and the sniffers: loaded on first use

    if not entry.result_file:
        return None
    path = Path(entry.result_file)
    return path if path.is_file() and results.sniff_file(path) is not None else None


def decide(entry: HistoryEntry, *, retry_import: bool = False, new_options: bool = False) -> Decision:
    """What to do with `entry` (see the module docstring). `retry_import`: the user asked to
    import this very entry again, so a readable result whose import failed is imported again
    when its generation cannot be fetched; `new_options`: with other import settings than the
    ones that failed, so the file on disk is tried first."""
    result = readable_result(entry)
    import_failed = entry.state == "failed" and entry.stage == "import"
    if result is not None and (not import_failed or new_options):
        return Decision(IMPORT, entry, result)
    if fetchable(entry):
        return Decision(FETCH, entry)
    if unanswered(entry):
        return Decision(REFUSE, entry)
    if result is not None and retry_import:
        return Decision(IMPORT, entry, result)
    return Decision(NOTHING, entry)


def checkpoint_for(entry: HistoryEntry) -> Checkpoint:
    """The pipeline checkpoint that goes on from `entry` (FETCH or REFUSE): everything journalled
    of both paid steps, so `pipeline.run` pays for neither again."""
    from .pipeline import Checkpoint

    return Checkpoint(asset_key=entry.asset_key, uuid=entry.uuid, sent=entry.generation_sent,
                      bg_sent=entry.bg_sent, bg_uuid=entry.bg_uuid,
                      bg_file=Path(entry.bg_file) if entry.bg_file else None)
