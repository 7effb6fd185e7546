"""One schema of import options (core.options): the Blender properties, ImportOptions and the API's defaults all say what it says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import addon_harness
import pytest
from addon_harness import addon_enabled, disable, enable, prefs

from onemin3d_addon import api
from onemin3d_addon.blender import scene_build
from onemin3d_addon.core import options

blender = addon_harness.blender


@pytest.fixture
def enabled(blender: Any) -> Iterator[Any]:
    if addon_enabled():
        disable()
    enable()
    try:
        yield blender
    finally:
        disable()


def _holders(bpy: Any) -> dict[str, Any]:
    """Every bpy struct that holds the import options, by what a user calls it."""
    return {
        "sidebar": bpy.context.scene.onemin3d.bl_rna,
        "preferences' defaults": prefs().defaults.bl_rna,
        "generate operator": bpy.ops.onemin3d.generate.get_rna_type(),
    }


def _same(a: Any, b: Any) -> bool:
    return a == pytest.approx(b, rel=1e-6) if isinstance(b, float) else a == b


@pytest.mark.smoke
def test_every_holder_declares_each_option_with_the_schemas_default_limits_choices_and_wording(enabled: Any) -> None:
    for where, rna in _holders(enabled).items():
        for option in (options.MODE, *options.OPTIONS):
            prop = rna.properties[option.name]
            what = f"{option.name} of the {where}"
            assert (prop.name, prop.description) == (option.label, option.description), what
            if option.kind is str:
                assert prop.type == "ENUM" and prop.default == option.default, what
                assert [(i.identifier, i.name, i.description) for i in prop.enum_items] == \
                    [(c.value, c.label, c.description) for c in option.choices], what
                continue
            assert prop.type == {bool: "BOOLEAN", int: "INT", float: "FLOAT"}[option.kind], what
            assert _same(prop.default, option.default), what
            if option.min is not None:
                assert _same(prop.hard_min, option.min), what
            if option.max is not None:
                assert _same(prop.hard_max, option.max), what
            if option.soft_max is not None:
                assert _same(prop.soft_max, option.soft_max), what


def test_the_preferences_defaults_and_the_api_start_from_the_schemas_defaults(enabled: Any) -> None:
    held = {name: getattr(prefs().defaults, name) for name in options.NAMES}
    for name, default in options.defaults().items():
        assert _same(held[name], default), name
        assert _same(api._default_options()[name], default), name
    assert prefs().defaults.import_mode == options.MODE.default


def test_without_the_add_on_the_api_still_has_every_default(blender: Any) -> None:
    if addon_enabled():
        disable()
    assert api._default_options() == options.defaults()


def test_scene_build_takes_the_one_import_options_class() -> None:
    from onemin3d_addon.core.import_options import ImportOptions

    assert scene_build.ImportOptions is ImportOptions
    assert scene_build.MODES == options.choices("import_mode")
    assert scene_build.SHADERS == options.choices("shader")
