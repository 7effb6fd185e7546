"""Command line: build the extension zip with Blender's own builder, then validate it with Blender's own validator.

    python scripts/build_extension.py                     # dist/onemin3d-<version>.zip
    python scripts/build_extension.py --split-platforms   # ... plus one zip per platform
    python scripts/build_extension.py --blender /path/to/blender   # use that Blender's CLI instead

Steps: fetch the bundled wheels (scripts/fetch_wheels.py; cached in wheels/, sha256-checked),
stage blender_manifest.toml + the contents of onemin3d_addon/ (the zip root) + wheels/ into a
clean folder, run `blender_ext.py build` with Blender's list of valid tags, run
`blender_ext.py validate` on every zip built, and finally check each zip's contents (manifest
and __init__.py at the root, exactly the right wheels, no caches or tests, nothing Blender ships).

blender_ext.py is a standalone script inside the bpy wheel (bl_pkg/cli/): it is found through
the installed bpy package, without importing bpy, and run with this same interpreter.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fetch_wheels  # noqa: E402  (a sibling script, importable once scripts/ is on the path)

MANIFEST_NAME = "blender_manifest.toml"
MANIFEST = ROOT / MANIFEST_NAME
PACKAGE_DIR = ROOT / "onemin3d_addon"
DIST_DIR = ROOT / "dist"

#: Never staged: caches, tests, editor and VCS lint, Blender backups, a stray manifest copy.
STAGE_IGNORE = ("__pycache__", "*.pyc", "*.pyo", "tests", "test_*.py", "conftest.py", ".*", "*~",
                "*.orig", "*.rej", "*.blend[1-9]", "*.zip", MANIFEST_NAME)


class BuildError(RuntimeError):
    """The extension could not be built, or a built zip failed validation or inspection."""


# --- Blender's tools ---------------------------------------------------------------------------

def bpy_scripts_dir() -> Path:
    """`bpy/<major.minor>/scripts` of the installed bpy wheel, found without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy wheel is not installed for this Python: run this script with the "
                         "project's venv (.venv/bin/python), or pass --blender /path/to/blender")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1].parents[3]
    raise BuildError(f"the bpy package at {list(spec.submodule_search_locations)} has no bl_pkg/cli/blender_ext.py")


def blender_ext_path(scripts: Path | None = None) -> Path:
    """Blender's extension builder and validator, from the bpy wheel."""
    return (scripts or bpy_scripts_dir()) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def valid_tags_path(scripts: Path | None = None) -> Path:
    """The tag list Blender itself passes to blender_ext.py (see bl_pkg/bl_extension_cli.py)."""
    path = (scripts or bpy_scripts_dir()) / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    if not path.is_file():
        raise BuildError(f"Blender's tag list is missing from the bpy wheel: {path}")
    return path


class Tool:
    """How to call Blender's extension CLI: blender_ext.py from the bpy wheel, or `blender --command extension`."""

    def __init__(self, blender: str | None = None) -> None:
        if blender:
            self.prefix = [blender, "--command", "extension"]   # the documented form; implies --background
            self.tags_args: list[str] = []   # Blender's own CLI already checks against its tag list
            self.label = f"{blender} --command extension"
            self.blender_ext: Path | None = None
        else:
            scripts = bpy_scripts_dir()
            self.blender_ext = blender_ext_path(scripts)
            self.prefix = [sys.executable, str(self.blender_ext)]
            self.tags_args = ["--valid-tags", str(valid_tags_path(scripts))]
            self.label = f"blender_ext.py ({scripts.parent.name})"

    def run(self, *args: str) -> str:
        cmd = [*self.prefix, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            raise BuildError(f"{self.label} {args[0]} failed (exit {proc.returncode}):\n{output}")
        return output

    def build(self, source: Path, output_dir: Path, *, split_platforms: bool) -> str:
        split = ["--split-platforms"] if split_platforms else []
        return self.run("build", "--source-dir", str(source), "--output-dir", str(output_dir),
                        *self.tags_args, *split)

    def validate(self, archive: Path) -> str:
        return self.run("validate", *self.tags_args, str(archive))


# --- staging -----------------------------------------------------------------------------------

def read_manifest(path: Path = MANIFEST) -> dict[str, object]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def stage(dest: Path, wheels: list[Path], *, manifest: Path = MANIFEST, package: Path = PACKAGE_DIR) -> Path:
    """Lay out the extension source in `dest`: manifest, package contents, wheels/.

    `dest` must not exist, be empty, or be an earlier staging folder (it is then emptied).
    """
    if dest.exists():
        if any(dest.iterdir()) and not (dest / MANIFEST_NAME).is_file():
            raise BuildError(f"refusing to empty {dest}: it is not empty and not a staging folder")
        shutil.rmtree(dest)
    shutil.copytree(package, dest, ignore=shutil.ignore_patterns(*STAGE_IGNORE))
    if not (dest / "__init__.py").is_file():
        raise BuildError(f"{package} has no __init__.py: it is not an add-on package")
    shutil.copy2(manifest, dest / MANIFEST_NAME)
    (dest / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, dest / "wheels" / wheel.name)
    return dest


# --- inspection --------------------------------------------------------------------------------

def expected_zips(output_dir: Path, ext_id: str, version: str, platforms: list[str],
                  split_platforms: bool) -> dict[Path, str | None]:
    """zip path -> its platform (None: the universal zip), named the way blender_ext.py names them."""
    zips: dict[Path, str | None] = {output_dir / f"{ext_id}-{version}.zip": None}
    if split_platforms:
        for platform in platforms:
            zips[output_dir / f"{ext_id}-{version}-{platform.replace('-', '_')}.zip"] = platform
    return zips


def wheel_platforms(filename: str, blender_ext: Path | None = None) -> set[str]:
    """Blender platforms ("linux-x64", …) a wheel file serves, by Blender's own rules in blender_ext.py."""
    module = sys.modules.get("_onemin3d_blender_ext")
    if module is None:
        spec = importlib.util.spec_from_file_location("_onemin3d_blender_ext", blender_ext or blender_ext_path())
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    tag = filename.removesuffix(".whl").split("-")[-1]
    result: set[str] = set()
    for part in tag.split("."):   # compressed tag sets: manylinux_2_27_x86_64.manylinux_2_28_x86_64
        result.update(module.blender_platforms_from_wheel_platform(part))
    return result


def wheels_by_platform(wheels: list[str], blender_ext: Path | None = None) -> dict[str, list[str]]:
    """Blender platform -> the sorted wheel file names that serve it (one per Python version)."""
    served: dict[str, list[str]] = {}
    for wheel in wheels:
        for platform in wheel_platforms(wheel, blender_ext):
            served.setdefault(platform, []).append(wheel)
    return {platform: sorted(names) for platform, names in served.items()}


def inspect_zip(archive: Path, wheels: list[str], platform: str | None,
                platform_wheels: list[str] | None = None) -> list[str]:
    """The wheels `archive` ships; BuildError unless it is laid out as Blender installs it.

    The universal zip must ship exactly `wheels`; a per-platform zip ships the subset that
    Blender's builder recorded in its `[build.generated]` table, and at least one. When
    `platform_wheels` is given, that subset must be exactly it: every Python's wheel for the
    platform, since Blender installs only the one matching the Python it runs.
    """
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        bad = zf.testzip()
        manifest = tomllib.loads(zf.read(MANIFEST_NAME).decode("utf-8")) if MANIFEST_NAME in names else {}
    problems: list[str] = []
    if bad is not None:
        problems.append(f"corrupt member {bad}")
    for required in (MANIFEST_NAME, "__init__.py"):
        if required not in names:
            problems.append(f"{required} is not at the zip root")
    for name in names:
        parts = PurePosixPath(name).parts
        if "__pycache__" in parts or name.endswith((".pyc", ".pyo")) or "tests" in parts[:-1]:
            problems.append(f"must not ship {name}")
        if parts and parts[0].lower() in fetch_wheels.PROVIDED_BY_BLENDER:
            problems.append(f"bundles {parts[0]}, which Blender ships")
    shipped = sorted(PurePosixPath(n).name for n in names if n.startswith("wheels/") and not n.endswith("/"))
    if platform is None:
        wanted = sorted(wheels)
    else:
        generated = manifest.get("build", {}).get("generated", {})
        if generated.get("platforms") != [platform]:
            problems.append(f"[build.generated] platforms is {generated.get('platforms')!r}, not [{platform!r}]")
        wanted = sorted(PurePosixPath(w).name for w in generated.get("wheels", []))
        if not wanted:
            problems.append(f"no wheel serves {platform}")
        elif platform_wheels is not None and wanted != sorted(platform_wheels):
            problems.append(f"the builder kept {wanted} for {platform}, expected {sorted(platform_wheels)}")
    if shipped != wanted:
        problems.append(f"ships wheels {shipped}, expected {wanted}")
    if problems:
        raise BuildError(f"{archive.name}: " + "; ".join(problems))
    return shipped


# --- the build ---------------------------------------------------------------------------------

def build(output_dir: Path = DIST_DIR, *, split_platforms: bool = False, blender: str | None = None,
          wheels_dir: Path = fetch_wheels.WHEELS_DIR, download: bool = True, staging_dir: Path | None = None,
          verbose: bool = False, package: Path | None = None, manifest_path: Path | None = None) -> list[Path]:
    """Build, validate and inspect the extension zip(s); return their paths (universal zip first).

    `package` and `manifest_path` default to onemin3d_addon/ and blender_manifest.toml.
    """
    package = package or PACKAGE_DIR
    manifest_path = manifest_path or MANIFEST

    def say(text: str) -> None:
        print(f"build_extension: {text}")

    manifest = read_manifest(manifest_path)
    ext_id, version = str(manifest["id"]), str(manifest["version"])
    raw_platforms = manifest.get("platforms", [])
    platforms = [str(p) for p in raw_platforms] if isinstance(raw_platforms, list) else []
    tool = Tool(blender)

    wheels = fetch_wheels.fetch(wheels_dir, manifest=manifest_path, download=download, log=say)
    per_platform: dict[str, list[str]] = {}
    if tool.blender_ext is not None:
        per_platform = wheels_by_platform([w.name for w in wheels], tool.blender_ext)
        if set(per_platform) != set(platforms):
            raise BuildError(f"manifest platforms {sorted(platforms)} differ from the platforms "
                             f"its wheels serve {sorted(per_platform)}")

    output_dir.mkdir(parents=True, exist_ok=True)
    zips = expected_zips(output_dir.resolve(), ext_id, version, platforms, split_platforms)
    for stale in zips:   # so that a zip left by an earlier build can never pass for this one
        stale.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="onemin3d-stage-") as tmp:
        source = stage(staging_dir or Path(tmp) / ext_id, wheels, manifest=manifest_path, package=package)
        say(f"staged {source} ({sum(1 for p in source.rglob('*') if p.is_file())} files); building with {tool.label}")
        for split in sorted({False, split_platforms}):
            # blender_ext.py writes either the universal zip or only the per-platform ones: two runs.
            output = tool.build(source, output_dir.resolve(), split_platforms=split)
            if verbose:
                print(output)

    served: set[str] = set()
    for archive, platform in zips.items():
        if not archive.is_file():
            raise BuildError(f"the builder did not write {archive}")
        output = tool.validate(archive)
        if verbose:
            print(output)
        shipped = inspect_zip(archive, [w.name for w in wheels], platform,
                              per_platform.get(platform) if platform else None)
        if platform is not None:
            served.update(shipped)
        say(f"{archive} ({archive.stat().st_size / 1e6:.1f} MB): validated by {tool.label}")
    if split_platforms and served != {w.name for w in wheels}:
        raise BuildError(f"no platform zip ships {sorted({w.name for w in wheels} - served)}")
    return list(zips)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=DIST_DIR, help="where the zips go (default: dist/)")
    parser.add_argument("--split-platforms", action="store_true",
                        help="also build one zip per platform, each with only its own wheels")
    parser.add_argument("--blender", metavar="BIN",
                        help="build and validate with `BIN --command extension` instead of the bpy wheel's blender_ext.py")
    parser.add_argument("--wheels-dir", type=Path, default=fetch_wheels.WHEELS_DIR,
                        help="the wheel cache (default: wheels/)")
    parser.add_argument("--offline", action="store_true", help="download no wheel: use only what wheels/ holds")
    parser.add_argument("--staging-dir", type=Path, help="stage here and keep it (default: a temporary folder)")
    parser.add_argument("--verbose", action="store_true", help="print the builder's and validator's output")
    args = parser.parse_args(argv)
    try:
        build(args.output_dir, split_platforms=args.split_platforms, blender=args.blender,
              wheels_dir=args.wheels_dir, download=not args.offline, staging_dir=args.staging_dir,
              verbose=args.verbose)
    except (BuildError, fetch_wheels.WheelError) as err:
        print(f"build_extension: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
