"""Blender-tier fixtures: an empty scene per test, a temp folder, and datablock counting for all-or-nothing checks.

`empty_blend` resets Blender with `bpy.ops.wm.read_homefile(use_empty=True)` (factory
settings, no objects) and yields a `Blend` holding bpy and a temp folder. Its `names()` /
`counts()`, `assert_unchanged(before)` and `orphans()` let any test assert that a failed
operation left bpy.data exactly as it was (test modules are not a package here, so the
helpers travel on the fixture rather than by import).
BLENDER_USER_RESOURCES is set by tests/conftest.py before anything imports bpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: bpy.data collections that are not scene content (the UI's own, always present)
_NOT_CONTENT = {"window_managers", "workspaces", "screens"}


def id_collections() -> tuple[str, ...]:
    """Names of the bpy.data collections holding IDs (objects, meshes, images, node_groups…)."""
    import bpy

    names = []
    for prop in bpy.types.BlendData.bl_rna.properties:
        if prop.type != "COLLECTION" or prop.identifier in _NOT_CONTENT:
            continue
        struct = getattr(prop, "fixed_type", None)
        if getattr(struct, "identifier", None) == "ID":  # 5.3's bpy.data.all_ids: a view, not a kind
            continue
        while struct is not None and getattr(struct, "identifier", None) != "ID":
            struct = getattr(struct, "base", None)
        if struct is not None:
            names.append(prop.identifier)
    return tuple(names)


def datablock_counts() -> dict[str, int]:
    """How many datablocks of each kind bpy.data holds now."""
    import bpy

    return {name: len(getattr(bpy.data, name)) for name in id_collections()}


def datablock_names() -> dict[str, set[str]]:
    """The names per kind, for a readable diff when counts differ."""
    import bpy

    return {name: {i.name for i in getattr(bpy.data, name)} for name in id_collections()}


def orphans() -> list[str]:
    """Datablocks nobody uses (and no fake user keeps): what a failed import must never leave."""
    import bpy

    found = []
    for name in id_collections():
        if name in {"scenes", "libraries", "brushes", "palettes", "workspaces"}:
            continue
        for block in getattr(bpy.data, name):
            if block.users == 0 and not block.use_fake_user:
                found.append(f"{name}:{block.name}")
    return found


def assert_unchanged(before: dict[str, set[str]]) -> None:
    """bpy.data holds exactly the datablocks named in `before` (from datablock_names())."""
    after = datablock_names()
    diff = {k: (sorted(after[k] - before.get(k, set())), sorted(before.get(k, set()) - after[k]))
            for k in after if after[k] != before.get(k, set())}
    assert not diff, f"datablocks changed (added, removed): {diff}"


@dataclass
class Blend:
    """An empty Blender session for one test."""

    bpy: Any
    tmp: Path

    def counts(self) -> dict[str, int]:
        return datablock_counts()

    def names(self) -> dict[str, set[str]]:
        return datablock_names()

    def orphans(self) -> list[str]:
        return orphans()

    def assert_unchanged(self, before: dict[str, set[str]]) -> None:
        assert_unchanged(before)

    def evaluated_mesh(self, obj: Any) -> Any:
        """The mesh a user sees (modifiers applied), for `obj` in the current view layer."""
        depsgraph = self.bpy.context.evaluated_depsgraph_get()
        return obj.evaluated_get(depsgraph).data


@pytest.fixture
def empty_blend(tmp_path: Path) -> Iterator[Blend]:
    """bpy reset to an empty scene, with a temp folder for the test's files."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    yield Blend(bpy, tmp_path)
    bpy.ops.wm.read_homefile(use_empty=True)  # release what the test built (meshes can be large)
