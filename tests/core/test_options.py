"""core.options without Blender: one schema, and ImportOptions checks every value against it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onemin3d_addon.core import options
from onemin3d_addon.core.import_options import ImportOptions


def test_import_options_has_one_field_per_option_in_drawing_order_with_the_schemas_defaults() -> None:
    assert ImportOptions._fields == options.NAMES
    assert ImportOptions().as_dict() == options.defaults()
    assert options.RELIEF_NAMES + options.PLANE_NAMES + options.MODEL_NAMES + options.GENERATION_NAMES \
        == options.NAMES


def test_every_default_passes_its_own_check_and_sits_within_its_limits() -> None:
    for option in (options.MODE, *options.OPTIONS):
        assert option.check(option.default) == option.default, option.name
        assert isinstance(option.default, option.kind), option.name
        if option.kind is str:
            assert option.default in option.values and len(set(option.values)) == len(option.values)
            assert all(c.label and c.description for c in option.choices), option.name
        assert option.label and option.description, option.name


def test_a_relief_is_one_unit_tall_and_a_model_two_units_long_by_default() -> None:
    assert options.defaults()["height"] == 1.0
    assert options.defaults()["target_size"] == 2.0
    assert options.defaults()["resolution"] == 512 and options.defaults()["strength"] == 0.15


def test_choices_come_back_in_their_canonical_spelling_whatever_the_case() -> None:
    checked = ImportOptions.from_mapping({"interpolation": "closest", "shader": "emission", "align": "cam",
                                          "size_mode": " dpbu "})
    assert (checked.interpolation, checked.shader, checked.align, checked.size_mode) == \
        ("Closest", "EMISSION", "CAMERA", "DPBU")
    assert options.check_mode("relief") == options.check_mode("Displacement") == "DISPLACEMENT"
    assert options.check_mode(None) == options.check_mode("") == "AUTO"
    assert options.choices("import_mode") == ("AUTO", "PLANE", "DISPLACEMENT")


@pytest.mark.parametrize(("name", "bad"), [
    ("resolution", 15), ("resolution", 4097), ("resolution", 64.5), ("resolution", "64"),
    ("strength", -0.01), ("strength", 10.5), ("strength", math.nan), ("smooth", -1.0), ("smooth", 101.0),
    ("height", 0.0), ("height", math.inf), ("factor", 0.5), ("target_size", -2.0),
    ("invert", "yes"), ("invert", 2), ("solid", 0.5),
    ("shader", "TOON"), ("align", "SIDEWAYS"), ("size_mode", 3), ("interpolation", None),
    ("model", "Qubico/other"), ("model", None), ("remove_background", "yes"),
])
def test_a_value_outside_its_option_is_refused_with_the_options_name(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=name):
        ImportOptions.from_mapping({name: bad})


def test_limits_are_inclusive_and_numpy_numbers_are_taken() -> None:
    lo, hi = options.limits("resolution")
    assert (lo, hi) == (16, 4096)
    assert ImportOptions.from_mapping({"resolution": 16}).resolution == 16
    assert ImportOptions.from_mapping({"resolution": np.int64(4096), "strength": np.float32(0.5),
                                       "invert": 1}).as_dict()["resolution"] == 4096
    assert options.limits("invert") == (None, None)


def test_unknown_names_are_a_type_error_and_the_mode_is_not_an_option() -> None:
    with pytest.raises(TypeError, match="resolutoin"):
        ImportOptions.from_mapping({"resolutoin": 10})
    with pytest.raises(TypeError, match="import_mode"):
        ImportOptions.from_mapping({"import_mode": "AUTO"})
    with pytest.raises(ValueError, match="AUTO, PLANE, DISPLACEMENT"):
        options.check_mode("sideways")


def test_the_model_is_stable_image_by_default_and_trellis_is_sent_by_its_api_id() -> None:
    from onemin3d_addon.core import protocol

    assert options.GENERATION_NAMES == ("model", "remove_background")
    assert options.defaults()["model"] == "stable-image" and options.defaults()["remove_background"] is False
    assert options.choices("model") == ("stable-image", "trellis")
    assert [c.label for c in options.get("model").choices] == ["Stable Image", "Trellis 3D"]
    assert ImportOptions.from_mapping({"model": "Qubico/trellis"}).model == "trellis"
    assert options.api_model("trellis") == options.api_model("QUBICO/TRELLIS") == protocol.TRELLIS_MODEL
    assert options.api_model("Stable-Image") == protocol.MODEL
    assert set(options.MODEL_IDS.values()) == set(protocol.MODELS)
    assert options.generation_request({}) == {"model": protocol.MODEL, "remove_background": False}
    assert options.generation_request({"model": "trellis", "remove_background": 1}) == \
        {"model": protocol.TRELLIS_MODEL, "remove_background": True}
