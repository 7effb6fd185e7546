"""bpy-free: the add-on's version, read from blender_manifest.toml, the one place it is written.

In an installed extension the manifest sits in the package root, next to this file; in the
source tree it sits in the repository root, one folder up. Nothing else in the repository may
spell the version out: tests/test_version.py fails on any copy that disagrees.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

MANIFEST_NAME = "blender_manifest.toml"

_HERE = Path(__file__).resolve().parent
#: Where the manifest is looked for, in order: the installed extension, then the source tree.
MANIFEST_CANDIDATES: tuple[Path, ...] = (_HERE / MANIFEST_NAME, _HERE.parent / MANIFEST_NAME)

# Blender requires semantic versioning (https://semver.org) for an extension's version.
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def manifest_path() -> Path:
    """The manifest this package belongs to; FileNotFoundError names every place looked at."""
    for candidate in MANIFEST_CANDIDATES:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(p) for p in MANIFEST_CANDIDATES)
    raise FileNotFoundError(f"{MANIFEST_NAME} not found (looked at {looked})")


def read_version(path: Path | None = None) -> str:
    """The `version` of the manifest at `path` (default: `manifest_path()`), checked as semver."""
    path = manifest_path() if path is None else path
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    version = data.get("version")
    if not isinstance(version, str) or not _SEMVER_RE.match(version):
        raise ValueError(f"{path}: 'version' must be a semantic version string, found {version!r}")
    return version


def version_tuple(version: str | None = None) -> tuple[int, int, int]:
    """(major, minor, patch) of `version` (default: VERSION); pre-release and build parts are dropped."""
    text = VERSION if version is None else version
    match = _SEMVER_RE.match(text)
    if match is None:
        raise ValueError(f"not a semantic version: {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


#: The extension's version, e.g. "0.1.0". Read once, at import: the file is tiny.
VERSION: str = read_version()
