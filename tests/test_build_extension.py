"""The extension zip: built by Blender's own builder, accepted by Blender's own validator, laid out to install.

The zips are built once per module, through the command line, with whichever bpy wheel this venv
holds: on the bpy 4.2 / 4.5 LTS venvs the smoke tier therefore builds and validates with their
copy of blender_ext.py. Wheels are cached (sha256-checked) in wheels/, so only a fresh clone
downloads them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

import build_extension
import fetch_wheels
import pytest

from onemin3d_addon.version import VERSION

ROOT = Path(__file__).resolve().parent.parent


def read_manifest() -> dict[str, object]:
    with (ROOT / "blender_manifest.toml").open("rb") as fh:
        return tomllib.load(fh)


MANIFEST = read_manifest()
PLATFORMS: list[str] = list(MANIFEST["platforms"])  # type: ignore[call-overload]
WHEELS = [PurePosixPath(w).name for w in MANIFEST["wheels"]]  # type: ignore[attr-defined]
#: The Python of every official Blender from 4.2 LTS on: 3.11 (4.2 to 5.0) and 3.13 (5.1 on).
BLENDER_PYTHONS = ("cp311", "cp313")
#: Linux distributions build Blender against their own Python (Debian unstable's 5.2 uses 3.14).
EXTRA_PYTHONS = {"linux-x64": ("cp314",)}


def python_tag(wheel: str) -> str:
    return wheel.removesuffix(".whl").split("-")[-3]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "not" / "yet" / "there"
    assert build_extension.main(["--split-platforms", "--output-dir", str(out)]) == 0
    return out


def universal_zip(dist: Path) -> Path:
    return dist / f"onemin3d-{VERSION}.zip"


def platform_zip(dist: Path, platform: str) -> Path:
    return dist / f"onemin3d-{VERSION}-{platform.replace('-', '_')}.zip"


def names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return zf.namelist()


def zip_manifest(archive: Path) -> dict[str, object]:
    with zipfile.ZipFile(archive) as zf:
        return tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))


def blender_validate(archive: Path) -> subprocess.CompletedProcess[str]:
    """`blender_ext.py validate` from this venv's bpy wheel, with Blender's tag list."""
    cmd = [sys.executable, str(build_extension.blender_ext_path()), "validate",
           "--valid-tags", str(build_extension.valid_tags_path()), str(archive)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.smoke
def test_the_build_writes_one_zip_for_all_platforms_and_one_per_platform(dist: Path) -> None:
    expected = {universal_zip(dist).name} | {platform_zip(dist, p).name for p in PLATFORMS}
    assert {p.name for p in dist.iterdir() if p.suffix == ".zip"} == expected


@pytest.mark.smoke
def test_blenders_validator_accepts_every_zip(dist: Path) -> None:
    for archive in [universal_zip(dist), *(platform_zip(dist, p) for p in PLATFORMS)]:
        proc = blender_validate(archive)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Success" in proc.stdout


def test_the_zip_root_is_the_package_with_its_manifest(dist: Path) -> None:
    listing = names(universal_zip(dist))
    assert "blender_manifest.toml" in listing
    assert "__init__.py" in listing
    assert "version.py" in listing
    assert "core/errors.py" in listing
    assert not any(n.startswith("onemin3d_addon/") for n in listing)


def test_the_zip_ships_no_caches_tests_or_dot_files(dist: Path) -> None:
    for archive in dist.glob("*.zip"):
        for name in names(archive):
            parts = PurePosixPath(name).parts
            assert "__pycache__" not in parts and not name.endswith((".pyc", ".pyo")), name
            assert "tests" not in parts and not parts[-1].startswith(("test_", "conftest")), name
            assert not any(part.startswith(".") for part in parts), name


def test_the_universal_zip_bundles_every_pillow_wheel_and_nothing_blender_ships(dist: Path) -> None:
    listing = names(universal_zip(dist))
    assert sorted(n for n in listing if n.startswith("wheels/")) == sorted(f"wheels/{w}" for w in WHEELS)
    bundled = {n.split("/")[1].split("-")[0].lower() for n in listing if n.startswith("wheels/")}
    assert bundled == {"pillow"}
    top = {PurePosixPath(n).parts[0].lower() for n in listing}
    assert not top & {"numpy", "requests", "urllib3", "pil"}


def test_each_platform_zip_ships_every_pythons_wheel_for_its_platform_and_no_other(dist: Path) -> None:
    served = build_extension.wheels_by_platform(WHEELS)
    for platform in PLATFORMS:
        archive = platform_zip(dist, platform)
        wheels = sorted(PurePosixPath(n).name for n in names(archive) if n.startswith("wheels/"))
        assert wheels == served[platform], platform
        generated = zip_manifest(archive)["build"]["generated"]  # type: ignore[index]
        assert generated["platforms"] == [platform]
        assert sorted(PurePosixPath(w).name for w in generated["wheels"]) == wheels


def test_the_manifest_platforms_are_exactly_those_its_wheels_serve() -> None:
    served = build_extension.wheels_by_platform(WHEELS)
    assert sorted(served) == sorted(PLATFORMS)
    assert sorted(PLATFORMS) == sorted(["windows-x64", "windows-arm64", "macos-arm64", "macos-x64", "linux-x64"])


def test_every_platform_has_one_wheel_for_each_python_blender_runs() -> None:
    served = build_extension.wheels_by_platform(WHEELS)
    for platform in PLATFORMS:
        tags = sorted(python_tag(w) for w in served[platform])
        # One wheel per Python, no more: Blender keeps a single wheel per distribution name.
        assert tags == sorted({*BLENDER_PYTHONS, *EXTRA_PYTHONS.get(platform, ())}), (platform, served[platform])


def test_every_bundled_wheel_is_pillow_for_one_cpython_at_the_tested_version() -> None:
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    pin = re.search(r"(?im)^pillow==([^\s#]+)", requirements)
    assert pin is not None, "requirements.txt must pin pillow"
    for wheel in fetch_wheels.pinned_wheels():
        assert (wheel.name, wheel.version) == ("pillow", pin[1]), wheel.filename
        # A version-specific ABI: Blender installs it only on that exact Python.
        assert re.fullmatch(r"cp3\d+", wheel.python_tag) and wheel.abi_tag == wheel.python_tag, wheel.filename


def test_the_lock_holds_a_sha256_for_exactly_the_manifest_wheels() -> None:
    assert sorted(fetch_wheels.WHEEL_SHA256) == sorted(WHEELS)
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in fetch_wheels.WHEEL_SHA256.values())


def test_fetch_keeps_intact_wheels_and_downloads_an_altered_one_again(dist: Path, tmp_path: Path) -> None:
    for wheel in fetch_wheels.pinned_wheels():
        shutil.copy2(fetch_wheels.WHEELS_DIR / wheel.filename, tmp_path / wheel.filename)
    smallest = min(tmp_path.iterdir(), key=lambda p: p.stat().st_size)
    smallest.write_bytes(b"PK\x03\x04 not the wheel that was locked")
    with pytest.raises(fetch_wheels.WheelError, match=re.escape(smallest.name)):
        fetch_wheels.fetch(tmp_path, download=False)

    said: list[str] = []
    paths = fetch_wheels.fetch(tmp_path, log=said.append)
    assert len(said) == 2 and "1 wheel" in said[1], said   # "does not match", then one download
    assert all(fetch_wheels.sha256_of(p) == fetch_wheels.WHEEL_SHA256[p.name] for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(WHEELS)   # no temporary leftovers


def test_a_tag_blender_does_not_know_fails_the_build(dist: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "blender_manifest.toml"
    text = (ROOT / "blender_manifest.toml").read_text(encoding="utf-8")
    manifest.write_text(text.replace('"Import-Export"', '"Photo Magic"'), encoding="utf-8")
    with pytest.raises(build_extension.BuildError, match="Photo Magic"):
        build_extension.build(tmp_path / "dist", manifest_path=manifest, download=False)
    assert not list((tmp_path / "dist").glob("*.zip"))


def test_staging_never_empties_a_folder_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(build_extension.BuildError, match="refusing"):
        build_extension.stage(precious, [])
    assert (precious / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize(("lts", "series"), [("requirements-bpy42.txt", "4.2."), ("requirements-bpy45.txt", "4.5.")])
def test_the_lts_tiers_pin_everything_but_bpy_as_the_main_venv_does(lts: str, series: str) -> None:
    def pins(name: str) -> dict[str, str]:
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
        pairs = (line.split("#")[0].strip().split("==") for line in lines)
        return {p[0].lower(): p[1] for p in pairs if len(p) == 2}

    main, tier = pins("requirements.txt"), pins(lts)
    assert tier.pop("bpy").startswith(series)
    assert {name: main.get(name) for name in tier} == tier
