"""The converter's command line takes its import options' defaults, choices and limits from core.options (bpy-free)."""

from __future__ import annotations

import pytest

from onemin3d_addon.cli import arguments
from onemin3d_addon.core import options


def _parse(*extra: str):  # type: ignore[no-untyped-def]
    return arguments.build_parser().parse_args(["a.jpg", "--output-dir", "out", *extra])


def test_the_defaults_are_the_schemas() -> None:
    args = _parse()
    chosen = arguments.import_options(args)
    schema = options.defaults()
    for name, value in chosen.items():
        assert value == schema[name], name
    # without --size each size keeps its own default: a relief 1 unit tall, a model 2 units long
    assert "height" not in chosen and "target_size" not in chosen
    assert (schema["height"], schema["target_size"]) == (1.0, 2.0)
    assert args.mode == str(options.MODE.default).lower()


def test_no_cutout_keeps_the_rectangle_and_tear_takes_a_threshold() -> None:
    assert arguments.import_options(_parse())["cutout"] is True
    assert arguments.import_options(_parse())["tear"] == 0.0
    chosen = arguments.import_options(_parse("--no-cutout", "--tear", "0.25"))
    assert chosen["cutout"] is False and chosen["tear"] == 0.25


def test_export_takes_web_and_usdz_and_names_the_web_glb_apart() -> None:
    assert _parse("--export", "web").export == "web" and _parse("--export", "usdz").export == "usdz"
    assert arguments.export_name("dress", "web") == "dress.web.glb"
    assert arguments.export_name("dress", "usdz") == "dress.usdz"
    assert arguments.export_name("dress", "glb") == "dress.glb"


def test_size_sets_both_sizes() -> None:
    assert arguments.import_options(_parse("--size", "3"))[("height")] == 3.0
    assert arguments.import_options(_parse("--size", "3"))["target_size"] == 3.0


def test_the_mode_choices_are_the_schemas_in_any_case() -> None:
    assert set(arguments.MODES) == {v.lower() for v in (*options.choices("import_mode"), *options.MODE.aliases)}
    assert _parse("--mode", "Relief").mode == "relief"
    assert options.check_mode(_parse("--mode", "relief").mode) == "DISPLACEMENT"
    with pytest.raises(SystemExit):
        _parse("--mode", "sculpture")


@pytest.mark.parametrize(("flag", "name"), [("--resolution", "resolution"), ("--strength", "strength"),
                                            ("--smooth", "smooth"), ("--tear", "tear")])
def test_the_limits_are_the_schemas(flag: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    low, high = options.limits(name)
    assert low is not None and high is not None
    assert getattr(_parse(flag, f"{low:g}"), name) == low
    assert getattr(_parse(flag, f"{high:g}"), name) == high
    for bad in (low - 1, high + 1):
        with pytest.raises(SystemExit):
            _parse(flag, f"{bad:g}")
        assert f"{name} must be" in capsys.readouterr().err


def test_help_states_the_schemas_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        arguments.build_parser("blender -c onemin3d").parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "usage: blender -c onemin3d" in text
    assert f"(default: {options.get('resolution').default})" in text
    assert "1 for a plane or relief, 2 for a model" in text
