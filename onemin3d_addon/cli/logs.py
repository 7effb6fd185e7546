"""The run's log: its file, --verbose on stderr, and what Blender prints sent to it; bpy-free."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .inputs import Config

import logging
import os
import sys


def setup_logging(config: Config) -> list[logging.Handler]:
    """Everything (tracebacks included) goes to the log file; stderr gets it too with --verbose.

    The --verbose handler writes to a copy of stderr's descriptor taken now: while Blender's own
    output is sent to the log (`_blender_output_to_log`), descriptor 2 is the log file, and log
    lines written there would land in the log twice and never on the terminal. Returns the
    handlers added, for `remove_logging` (`blender -c` may run the converter more than once in a
    process)."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    handler = logging.FileHandler(config.log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"))
    root.addHandler(handler)
    added: list[logging.Handler] = [handler]
    if config.args.verbose:
        err = logging.StreamHandler(_own_stderr())
        err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        err.setLevel(logging.INFO)
        root.addHandler(err)
        added.append(err)
    logging.captureWarnings(True)
    for noisy in ("urllib3", "PIL"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    return added


@contextlib.contextmanager
def _blender_output_to_log() -> Iterator[None]:
    """Send what Blender and its importers print (C-level stdout and stderr) to the log file.

    Importers and the renderer print progress chatter, and Python add-ons print tracebacks they
    caught themselves; none of it belongs between our progress lines, all of it belongs in the log.
    """
    log_path = _log_file_path()
    if log_path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log_path, "ab", buffering=0) as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _own_stderr() -> TextIO:
    """A stream on a copy of stderr's descriptor (sys.stderr itself when it has none)."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                     errors="replace")


def remove_logging(handlers: list[logging.Handler]) -> None:
    """Take the handlers of `setup_logging` off the root logger again, and close them."""
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        with contextlib.suppress(Exception):
            handler.close()
        stream = getattr(handler, "stream", None)
        if stream is not None and not isinstance(handler, logging.FileHandler) \
                and stream not in (sys.stderr, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.close()


def _log_file_path() -> str | None:
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.flush()
            return h.baseFilename
    return None
