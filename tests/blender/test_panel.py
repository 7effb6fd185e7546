"""The sidebar panel, history list and preferences draw what the user needs in each state.

The bpy wheel has no UI, so draw() is run against `StrictLayout` (tests/blender/strict_layout.py,
the only stand-in in the suite): each call is checked against UILayout's RNA as Blender would
(function, keywords, icons and enum values, the property on its owner, operator ids) and
recorded, and assertions are made on what would appear on screen: labels, buttons, progress
bars, lists. Real windows are the UI tier's (`make ui-test`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import addon_harness
import pytest
from addon_harness import pump_until, set_online
from strict_layout import StrictLayout

# cheap (about 3 s), and what it checks differs per Blender version: every bpy tier runs it
pytestmark = pytest.mark.smoke

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo

class WithLayout:
    """`self` for a draw() whose owner holds data (AddonPreferences): its attributes, our layout."""

    def __init__(self, target: Any, layout: StrictLayout) -> None:
        self._target = target
        self.layout = layout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def draw(panel_cls: Any, context: Any) -> StrictLayout:
    layout = StrictLayout()
    panel_cls.draw(SimpleNamespace(layout=layout), context)
    return layout


def test_idle_panel_offers_source_mode_and_generate(addon):
    import bpy

    from onemin3d_addon.blender import panels

    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    assert layout.use_property_split
    props = [args[1] for args, _kw in layout.named("prop")]
    assert props[:2] == ["source_type", "import_mode"] or {"source_type", "import_mode"} <= set(props)
    assert layout.named("template_ID")[0][0][1] == "image"
    assert ("onemin3d.generate", {}) in layout.operators()
    assert layout.named("context_pointer_set")[0][0][0] == "onemin3d_settings"
    assert not layout.named("progress")
    assert "No API key" not in layout.text() and "Online access" not in layout.text()

    history = draw(panels.VIEW3D_PT_onemin3d_history, bpy.context)
    assert "No jobs yet" in history.text()

    options = draw(panels.VIEW3D_PT_onemin3d_options, bpy.context)
    drawn = {args[1] for args, _kw in options.named("prop")}
    assert {"resolution", "strength", "invert", "smooth", "solid", "shader", "target_size"} <= drawn


def test_panel_says_where_the_key_comes_from_and_what_is_missing(addon, monkeypatch):
    import bpy

    from onemin3d_addon.blender import panels

    addon.api_key = ""
    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    assert "No API key" in layout.text()
    assert ("preferences.addon_show", {"module": addon_harness.MODULE}) in layout.operators()

    monkeypatch.setenv("ONEMIN_API_KEY", "env-key-0123456789")
    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    assert "Using the API key from ONEMIN_API_KEY" in layout.text()

    set_online(False)
    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    assert "Online access is off" in layout.text()
    # the button opens Preferences › System, where Network is, as Blender's Extensions panel does
    assert ("screen.userpref_show", {"section": 'SYSTEM'}) in layout.operators()


def test_running_jobs_show_stage_progress_and_a_cancel_button(addon, stand_in, photo):
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import panels

    addon.request_mode = 'SYNC'
    stand_in.hold("generate")  # the service says nothing until the job is cancelled
    job = api.submit(photo)
    item = bpy.context.window_manager.onemin3d.jobs
    # while the service is silent the bar creeps past the stage's start, and the text counts seconds
    pump_until(lambda: job.stage == "generate" and len(item) == 1 and item[0].progress > 0.2
               and item[0].status.endswith(" s"))
    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    (bar_args, bar) = layout.named("progress")[0]
    assert 0.2 < bar["factor"] < 0.75
    assert bar["text"].startswith("Generating on 1min.ai") and bar["text"].endswith(" s")
    assert "dress" in layout.labels()
    assert ("onemin3d.cancel", {"job_id": job.id}) in layout.operators()
    job.cancel()
    pump_until(lambda: job.done)
    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    assert not layout.named("progress")


def test_the_last_error_is_shown_with_what_to_do(addon, stand_in, photo):
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import panels

    stand_in.inject("credits", stage="generate")
    job = api.submit(photo)
    pump_until(lambda: job.done)
    assert job.state == "failed"
    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    text = " ".join(layout.labels())
    assert "run out of credits" in text and "top up" in text


def test_the_panel_offers_the_model_and_background_removal_and_says_what_generate_costs(addon):
    import bpy

    from onemin3d_addon.blender import panels

    settings, state = bpy.context.scene.onemin3d, bpy.context.window_manager.onemin3d
    layout = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    props = [args[1] for args, _kw in layout.named("prop")]
    assert props.index("model") < props.index("remove_background")
    assert "Cost: 20,000 credits" in layout.labels()  # credits left not known yet: the cost alone
    options = draw(panels.VIEW3D_PT_onemin3d_options, bpy.context)
    assert "model" not in {args[1] for args, _kw in options.named("prop")}  # drawn once, beside Generate

    try:
        settings.model, settings.remove_background = "trellis", True
        state.credits_left = 1_234_000
        assert "Cost: 60,000 credits · 1,234,000 left" in \
            draw(panels.VIEW3D_PT_onemin3d_main, bpy.context).labels()
        state.credits_left = 50_000  # not enough: the line turns red
        assert panels.cost_text(settings, state.credits_left) == ("Cost: 60,000 credits · 50,000 left", True)
        settings.remove_background = False
        assert panels.cost_text(settings, -1) == ("Cost: 40,000 credits", False)
    finally:  # the scene outlives the test
        settings.property_unset("model")
        settings.property_unset("remove_background")
        state.credits_left = -1


def test_history_lists_results_with_thumbnails_reimport_and_remove(addon, stand_in, photo):
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import panels

    job = api.submit(photo)
    pump_until(lambda: job.done)
    assert job.state == "imported"
    main = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    left = bpy.context.window_manager.onemin3d.credits_left
    assert left >= 0 and f"Cost: 20,000 credits · {left:,} left" in main.labels()

    layout = draw(panels.VIEW3D_PT_onemin3d_history, bpy.context)
    (args, _kw) = layout.named("template_list")[0]
    assert args[:3] == ("ONEMIN3D_UL_history", "", bpy.context.window_manager.onemin3d)
    ops = [name for name, _values in layout.operators()]
    assert {"onemin3d.reimport", "onemin3d.remove_history"} <= set(ops)
    assert any("dress: Imported" in label for label in layout.labels())

    state = bpy.context.window_manager.onemin3d
    row = StrictLayout()
    ui_list = SimpleNamespace(layout_type='DEFAULT')
    panels.ONEMIN3D_UL_history.draw_item(ui_list, bpy.context, row, state, state.history[0], 0, state,
                                         "history_index", 0)
    (first, kw) = row.named("label")[0]
    assert kw["text"] == "dress"
    assert "icon_value" in kw or kw.get("icon") == 'IMAGE_DATA'
    assert panels._previews is not None and job.id in panels._previews  # the thumbnail is being made
    assert row.named("label")[1][1]["text"] == "Imported"


def test_preferences_draw_every_setting(addon, monkeypatch):
    import bpy

    layout = StrictLayout()
    type(addon).draw(WithLayout(addon, layout), bpy.context)
    drawn = {args[1] for args, _kw in layout.named("prop")}
    assert {"api_key", "base_url", "request_mode", "connect_timeout", "generate_timeout", "read_timeout",
            "parallel_jobs", "result_folder", "proxy_url", "ca_bundle"} <= drawn
    assert ("onemin3d.check_key", {}) in layout.operators()
    monkeypatch.setenv("ONEMIN_API_BASE_URL", "http://gateway.example")
    addon.api_key = ""
    monkeypatch.setenv("ONEMIN_API_KEY", "env-key-0123456789")
    layout = StrictLayout()
    type(addon).draw(WithLayout(addon, layout), bpy.context)
    assert "ONEMIN_API_BASE_URL overrides it: http://gateway.example" in layout.text()
    assert "Using the key from the ONEMIN_API_KEY environment variable" in layout.text()


class _Prefs:
    """`context.preferences` as a window at UI scale `scale` sees it."""

    def __init__(self, scale: float) -> None:
        import bpy

        self._prefs = bpy.context.preferences
        self.system = SimpleNamespace(ui_scale=scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._prefs, name)


class SidebarContext:
    """bpy.context as a panel in the sidebar sees it: a region of the default width at `scale`."""

    def __init__(self, scale: float, width: int | None = None) -> None:
        from onemin3d_addon.blender import panels

        self.region = SimpleNamespace(width=int((width or panels.DEFAULT_REGION_WIDTH) * scale))
        self.preferences = _Prefs(scale)

    def __getattr__(self, name: str) -> Any:
        import bpy

        return getattr(bpy.context, name)


def _too_wide(layout: StrictLayout, context: Any) -> list[str]:
    """The labels whose text is wider than the region leaves it (measured in Blender's UI font)."""
    import blf

    from onemin3d_addon.blender import panels

    width, size = panels.text_width(context)
    blf.size(0, size)
    return [text for text in layout.labels() if blf.dimensions(0, text)[0] > width]


def test_every_message_fits_the_default_sidebar_at_1x_and_2x(addon, stand_in, photo, monkeypatch):
    from onemin3d_addon import api
    from onemin3d_addon.blender import panels

    stand_in.inject("401", stage="generate")  # the longest message there is: the key refused
    job = api.submit(photo)
    pump_until(lambda: job.done)
    assert job.state == "failed"
    addon.api_key = ""
    set_online(False)
    seen: dict[str, str] = {}
    for scale in (1.0, 2.0):
        context = SidebarContext(scale)
        for panel in (panels.VIEW3D_PT_onemin3d_main, panels.VIEW3D_PT_onemin3d_history,
                      panels.VIEW3D_PT_onemin3d_options):
            layout = StrictLayout()
            panel.draw(SimpleNamespace(layout=layout), context)
            assert not _too_wide(layout, context), (panel.__name__, scale)
            seen[f"{panel.__name__}@{scale}"] = layout.text()
        monkeypatch.setenv("ONEMIN_API_KEY", "env-key-0123456789")
        layout = draw(panels.VIEW3D_PT_onemin3d_main, context)
        assert not _too_wide(layout, context)
        monkeypatch.delenv("ONEMIN_API_KEY")
    main = seen["VIEW3D_PT_onemin3d_main@1.0"]
    assert "No API key" in main and "Online access is off" in main and "1min.ai rejected the API key" in main
    assert "rejected the API key" in seen["VIEW3D_PT_onemin3d_history@1.0"]  # the job's details
    # at 2x: the same words, in twice the pixels, none cut
    assert seen["VIEW3D_PT_onemin3d_main@1.0"] == seen["VIEW3D_PT_onemin3d_main@2.0"]


def test_a_long_file_name_is_broken_where_it_can_be():
    from onemin3d_addon.blender import panels

    lines = panels.wrap_text("Result: 0123456789abcdef0123456789abcdef_3d_generated_result.png (png)", 150, 11)
    assert len(lines) > 2 and "".join(lines).replace(" ", "") == \
        "Result:0123456789abcdef0123456789abcdef_3d_generated_result.png(png)"
