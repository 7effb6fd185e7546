"""Command line: download the wheels the manifest bundles into wheels/, each checked by its pinned sha256.

    python scripts/fetch_wheels.py            # fetch what is missing (or wrong), keep what is right
    python scripts/fetch_wheels.py --check    # verify only: exit 1 if a wheel is missing or altered

The manifest's `wheels` list says which files the extension bundles; `WHEEL_SHA256` below is the
lock: the sha256 PyPI publishes for each of them. A wheel already in wheels/ with the right hash
is kept, so repeated builds do not touch the network. Downloads go through `pip download` of the
running interpreter (so pip's index, proxy and certificate settings apply), into a temporary
folder, and are moved into place only once their hash matches.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "blender_manifest.toml"
WHEELS_DIR = ROOT / "wheels"
#: The folder, relative to the manifest, that every manifest wheel path must start with.
WHEELS_PREFIX = "./wheels/"

#: The lock. Pillow is pinned to requirements.txt's version, so the add-on is tested with the
#: Pillow it ships; an unpinned resolution once gave a different version per platform. One wheel
#: per platform and Python: cp311 (Blender 4.2-5.0), cp313 (5.1+), cp314 (Linux distributions'
#: builds). Each hash is the one PyPI's index publishes for the file (`pip install --dry-run
#: --report` shows it under download_info), checked against the downloaded file.
WHEEL_SHA256: dict[str, str] = {
    "pillow-13.0.0-cp311-cp311-win_amd64.whl":
        "d7710eb676e9bb68965cb045be0d333b4c0d7f9dfbaa7fbf121385b1588683d3",
    "pillow-13.0.0-cp313-cp313-win_amd64.whl":
        "9dda0788a9932776a75d8bcc020076edc308ce2508b51f6739a45e3158b3fc42",
    "pillow-13.0.0-cp311-cp311-win_arm64.whl":
        "12fbb851cf323cc19aac3eea1df5ad17b57e91e9fe3cfd06100dba7bb8208c13",
    "pillow-13.0.0-cp313-cp313-win_arm64.whl":
        "40a266371ece581e5de13b6635ef78d7487824af80561b6ca27694a88c19bc0f",
    "pillow-13.0.0-cp311-cp311-macosx_11_0_arm64.whl":
        "37290fbef0c73e2d51d594eb78fded7dc7170d1c3ad0a890269e6fd8c8c4e061",
    "pillow-13.0.0-cp313-cp313-macosx_11_0_arm64.whl":
        "f11a3c1358bb3c68012a7b1f41b223c3db9f7bfde90b481df028cfe1c3363313",
    "pillow-13.0.0-cp311-cp311-macosx_10_10_x86_64.whl":
        "6f38f3f885a09cafc93fd667b1173a92f379e43785d635e7983c893f0da319fb",
    "pillow-13.0.0-cp313-cp313-macosx_10_13_x86_64.whl":
        "ef5fe6b7db3f501c56000ba8fe7c7e1a35ca1d45824fbeb95a67daa85cff4dbe",
    "pillow-13.0.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "a625df9a2a5597fa5e5266e01aefc82604bb85d291e3547981e863560d75da6c",
    "pillow-13.0.0-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "5f56499c1a74d2b862beb0c33b8016f99d095858455df9d21583bbbc1c15b582",
    "pillow-13.0.0-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "e91c2b1cbeae768c98752e67e717e283d68dae45717b41f2d91eaee648e37b7d",
}

#: Distributions Blender ships itself: bundling a second copy would shadow Blender's own.
PROVIDED_BY_BLENDER = frozenset({
    "numpy", "requests", "urllib3", "certifi", "idna", "charset_normalizer", "zstandard", "cython",
})


class WheelError(RuntimeError):
    """A wheel is missing, altered, not in the lock, or could not be downloaded."""


@dataclass(frozen=True)
class Wheel:
    """One bundled wheel, from its file name (PEP 427) and the lock."""

    filename: str
    name: str             # normalised distribution name, e.g. "pillow"
    version: str
    python_tag: str       # "cp311"
    abi_tag: str          # "cp311"
    platform_tags: tuple[str, ...]   # ("manylinux_2_27_x86_64", "manylinux_2_28_x86_64")
    sha256: str

    @classmethod
    def from_filename(cls, filename: str, sha256: str) -> Wheel:
        parts = filename.removesuffix(".whl").split("-")
        if not filename.endswith(".whl") or len(parts) not in (5, 6):
            raise WheelError(f"not a wheel file name: {filename!r}")
        name, version, python_tag, abi_tag, platform_tag = parts[0], parts[1], *parts[-3:]
        return cls(filename, name.lower().replace("-", "_"), version, python_tag, abi_tag,
                   tuple(platform_tag.split(".")), sha256)

    @property
    def python_version(self) -> str:
        """"3.11" for cp311."""
        digits = self.python_tag.removeprefix("cp").removeprefix("py")
        return f"{digits[0]}.{digits[1:]}" if len(digits) > 1 else digits

    def pip_download_args(self, dest: Path) -> list[str]:
        args = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                "--only-binary=:all:", "--implementation", "cp", "--python-version", self.python_version,
                "--abi", self.abi_tag, "--dest", str(dest)]
        for tag in self.platform_tags:
            args += ["--platform", tag]
        return [*args, f"{self.name}=={self.version}"]


def manifest_wheel_paths(manifest: Path = MANIFEST) -> list[str]:
    """The manifest's `wheels` list, as written (e.g. "./wheels/pillow-…whl")."""
    with manifest.open("rb") as fh:
        data = tomllib.load(fh)
    wheels = data.get("wheels", [])
    if not isinstance(wheels, list) or not all(isinstance(w, str) for w in wheels):
        raise WheelError(f"{manifest}: 'wheels' must be a list of paths")
    return wheels


def pinned_wheels(manifest: Path = MANIFEST) -> list[Wheel]:
    """The manifest's wheels, each with its locked hash; WheelError if manifest and lock disagree."""
    wheels: list[Wheel] = []
    for path in manifest_wheel_paths(manifest):
        if not path.startswith(WHEELS_PREFIX) or "/" in path.removeprefix(WHEELS_PREFIX):
            raise WheelError(f"{manifest}: wheel paths must be {WHEELS_PREFIX}<file>.whl, found {path!r}")
        filename = path.removeprefix(WHEELS_PREFIX)
        if filename not in WHEEL_SHA256:
            raise WheelError(f"{filename} is in the manifest but has no sha256 in {Path(__file__).name}")
        wheel = Wheel.from_filename(filename, WHEEL_SHA256[filename])
        if wheel.name in PROVIDED_BY_BLENDER:
            raise WheelError(f"{filename}: {wheel.name} comes with Blender and must not be bundled")
        wheels.append(wheel)
    stale = set(WHEEL_SHA256) - {w.filename for w in wheels}
    if stale:
        raise WheelError(f"locked but not in the manifest: {', '.join(sorted(stale))}")
    return wheels


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def is_intact(wheel: Wheel, dest: Path) -> bool:
    path = dest / wheel.filename
    return path.is_file() and sha256_of(path) == wheel.sha256


def _download(wheel: Wheel, dest: Path) -> None:
    # Into a temporary folder beside `dest`, then an atomic rename: a concurrent build or an
    # interrupted download never leaves a partial wheel under the final name.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        proc = subprocess.run(wheel.pip_download_args(Path(tmp)), capture_output=True, text=True, check=False)
        got = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            found = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise WheelError(f"pip could not download {wheel.filename} (got {found}):\n{tail}")
        actual = sha256_of(got)
        if actual != wheel.sha256:
            raise WheelError(f"{wheel.filename}: sha256 {actual} does not match the lock {wheel.sha256}")
        os.replace(got, dest / wheel.filename)


def fetch(dest: Path = WHEELS_DIR, *, manifest: Path = MANIFEST, download: bool = True,
          log: Callable[[str], None] = print) -> list[Path]:
    """Every manifest wheel in `dest`, hash-checked, downloading what is missing or altered.

    With `download=False` nothing is fetched: WheelError lists what is missing or altered.
    """
    wheels = pinned_wheels(manifest)
    dest.mkdir(parents=True, exist_ok=True)
    todo = [w for w in wheels if not is_intact(w, dest)]
    if todo and not download:
        raise WheelError("missing or altered in " + str(dest) + ": " + ", ".join(w.filename for w in todo)
                         + " (run scripts/fetch_wheels.py)")
    for wheel in todo:
        stale = dest / wheel.filename
        if stale.exists():
            log(f"fetch_wheels: {wheel.filename} does not match its sha256; downloading it again")
            stale.unlink()
    if todo:
        log(f"fetch_wheels: downloading {len(todo)} wheel(s) into {dest}")
        with ThreadPoolExecutor(max_workers=min(3, len(todo))) as pool:
            for _ in pool.map(lambda w: _download(w, dest), todo):
                pass
    return [dest / w.filename for w in wheels]


def _summary(paths: Iterable[Path]) -> str:
    return "\n".join(f"  {p.name}  {p.stat().st_size / 1e6:.1f} MB" for p in paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=WHEELS_DIR, help="where the wheels go (default: wheels/)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the manifest that lists the wheels")
    parser.add_argument("--check", action="store_true", help="only verify; download nothing")
    args = parser.parse_args(argv)
    try:
        paths = fetch(args.dest, manifest=args.manifest, download=not args.check)
    except WheelError as err:
        print(f"fetch_wheels: error: {err}", file=sys.stderr)
        return 1
    print(f"fetch_wheels: {len(paths)} wheel(s) in {args.dest}, sha256 verified:\n{_summary(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
