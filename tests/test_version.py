"""The manifest's version is the version: the add-on reads it, and nothing in the repository disagrees."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from onemin3d_addon import version

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "blender_manifest.toml"

# Places a copy of our version tends to creep in. Third-party versions (bpy==5.0.1,
# pillow-13.0.0, schema_version, blender_version_min) are none of these shapes.
_COPIES = (
    # dist/onemin3d-0.1.0.zip, onemin3d 0.1.0, a User-Agent "onemin3d/0.1.0"
    re.compile(r"\bonemin3d[-_ /]v?(\d+\.\d+\.\d+)"),
    re.compile(r"__version__\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]"),
    # a legacy bl_info: "version": (0, 1, 0)
    re.compile(r"['\"]version['\"]\s*:\s*\((\s*\d+\s*,\s*\d+\s*,\s*\d+\s*)\)"),
)
_TOML_VERSION = re.compile(r"(?m)^\s*version\s*=\s*['\"]([^'\"]+)['\"]")
_SKIP_DIRS = {".git", "build", "dist", "wheels", "out", "node_modules", "__pycache__"}
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".json", ".yml", ".yaml", ".sh", ".rst", ""}


def manifest_version() -> str:
    with MANIFEST.open("rb") as fh:
        value = tomllib.load(fh)["version"]
    assert isinstance(value, str)
    return value


def repository_files(root: Path) -> list[Path]:
    """The repository's own files: git's list (tracked and untracked, not ignored), else a walk."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, check=True).stdout
        files = [root / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in root.rglob("*") if p.is_file()]
    def wanted(path: Path) -> bool:
        parts = path.relative_to(root).parts
        skipped = any(part in _SKIP_DIRS or part.startswith(".venv") for part in parts[:-1])
        return path.is_file() and not skipped and (path.suffix in _TEXT_SUFFIXES or path.name == "Makefile")

    return [p for p in files if wanted(p)]


def disagreeing_copies(root: Path, expected: str) -> list[str]:
    """Every place under `root` (other than its manifest) that spells a version other than `expected`."""
    major, minor, patch = version.version_tuple(expected)
    found: list[str] = []
    for path in repository_files(root):
        if path == root / "blender_manifest.toml" or path == Path(__file__).resolve():
            continue   # the one source, and this file's own deliberately stale examples
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(root)
        for pattern in _COPIES:
            for match in pattern.finditer(text):
                value = match[1]
                if "," in value:
                    if tuple(int(x) for x in value.split(",")) != (major, minor, patch):
                        found.append(f"{rel}: bl_info version ({value})")
                elif value != expected:
                    found.append(f"{rel}: {match[0]!r}")
        if path.suffix == ".toml":
            for match in _TOML_VERSION.finditer(text):
                found.append(f"{rel}: a second version ({match[0].strip()!r}); the manifest's is the only one")
    return found


def test_the_addon_reads_the_manifests_version() -> None:
    assert version.VERSION == manifest_version()
    assert version.read_version(MANIFEST) == manifest_version()


def test_the_source_tree_finds_the_manifest_in_the_repository_root() -> None:
    assert version.manifest_path() == MANIFEST


def test_an_installed_extension_finds_the_manifest_beside_the_package(tmp_path: Path) -> None:
    # The installed layout: the manifest sits in the package root, next to version.py.
    package = tmp_path / "onemin3d"
    package.mkdir()
    (package / "version.py").write_text(Path(version.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    (package / "blender_manifest.toml").write_text('version = "7.8.9-rc.1"\n', encoding="utf-8")
    namespace: dict[str, object] = {"__file__": str(package / "version.py"), "__name__": "installed_version"}
    exec(compile((package / "version.py").read_text(encoding="utf-8"), str(package / "version.py"), "exec"),
         namespace)
    assert namespace["VERSION"] == "7.8.9-rc.1"


def test_version_tuple_is_major_minor_patch() -> None:
    assert version.version_tuple() == tuple(int(x) for x in manifest_version().split("-")[0].split("."))
    assert version.version_tuple("1.12.3-beta.2+build.5") == (1, 12, 3)
    with pytest.raises(ValueError):
        version.version_tuple("1.2")


def test_a_manifest_without_a_semantic_version_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "blender_manifest.toml"
    bad.write_text('version = "1.2"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="semantic version"):
        version.read_version(bad)


def test_pyproject_takes_its_version_from_nowhere_else() -> None:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    assert "version" not in project
    assert "version" in project.get("dynamic", [])


def test_no_file_in_the_repository_spells_another_version() -> None:
    assert disagreeing_copies(ROOT, manifest_version()) == []


def test_the_check_catches_a_stale_copy(tmp_path: Path) -> None:
    (tmp_path / "blender_manifest.toml").write_text('version = "2.0.0"\n', encoding="utf-8")
    (tmp_path / "README.md").write_text("Install dist/onemin3d-1.9.0.zip, or onemin3d-2.0.0.zip\n", encoding="utf-8")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('bl_info = {"version": (1, 9, 0)}\n__version__ = "2.0.0"\n',
                                                  encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2.0.0"\n', encoding="utf-8")
    found = disagreeing_copies(tmp_path, "2.0.0")
    assert len(found) == 3, found
    assert any("README.md" in f and "1.9.0" in f for f in found)
    assert any("bl_info" in f for f in found)
    assert any("pyproject.toml" in f for f in found)


# --- the supported Blender versions: manifest, README table and test tiers agree --------------------


def _tier_pins() -> dict[str, str]:
    """bpy version per requirements file that pins one (requirements.txt is the main tier)."""
    pins = {}
    for req in sorted(ROOT.glob("requirements*.txt")):
        m = re.search(r"(?m)^bpy==([0-9.]+)", req.read_text(encoding="utf-8"))
        if m:
            pins[req.name] = m.group(1)
    return pins


def test_the_readme_table_the_manifest_and_the_test_tiers_name_the_same_blender_versions() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    low = manifest["blender_version_min"]
    assert f'`blender_version_min = "{low}"`' in readme
    assert f"**{low.rsplit('.', 1)[0]} LTS to " in readme
    # every bpy wheel a tier tests is a row of the table, and every wheel row is a tier
    rows = set(re.findall(r"(?m)^\| [0-9.]+(?: LTS)? \(bpy ([0-9.]+)\) \|", readme))
    assert rows == set(_tier_pins().values())
    # and the Makefile runs each of them
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    tiers = set(re.findall(r"(?m)^(?:FULL|SMOKE)_TIERS \?= (.*)$", makefile))
    named = {t for line in tiers for t in line.split()}
    assert {f"requirements-{t}.txt" for t in named} | {"requirements.txt"} == set(_tier_pins())
    assert all(tuple(map(int, v.split("."))) >= tuple(map(int, low.split("."))) for v in _tier_pins().values())
