"""The sidebar panel, history list and preferences draw what the user needs in each state.

The bpy wheel has no UI, so draw() is run against a recording stand-in for UILayout (the
only stand-in in the suite): every call is recorded with its arguments, and assertions are
made on what would appear on screen: labels, buttons, progress bars, lists.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import addon_harness
from addon_harness import pump_until, set_online

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo

_CONTAINERS = frozenset({"row", "column", "box", "split", "column_flow", "grid_flow", "panel_prop"})


class OperatorProperties:
    """What layout.operator() returns: records the properties the panel sets on the button."""

    def __init__(self) -> None:
        object.__setattr__(self, "values", {})

    def __setattr__(self, name: str, value: Any) -> None:
        self.values[name] = value


class RecordingLayout:
    """Records UILayout calls into one shared list; containers return nested recorders."""

    def __init__(self, calls: list[tuple[str, tuple, dict, Any]] | None = None, depth: int = 0) -> None:
        self.calls = [] if calls is None else calls
        self.depth = depth
        self.use_property_split = False
        self.use_property_decorate = True
        self.enabled = True
        self.alert = False
        self.scale_y = 1.0
        self.alignment = 'EXPAND'

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result: Any = None
            if name in _CONTAINERS:
                result = RecordingLayout(self.calls, self.depth + 1)
            elif name == "operator":
                result = OperatorProperties()
            self.calls.append((name, args, kwargs, result))
            return result

        return call

    # what a user would see
    def labels(self) -> list[str]:
        return [kw.get("text", "") for name, _a, kw, _r in self.calls if name == "label"]

    def text(self) -> str:
        return "\n".join(self.labels())

    def operators(self) -> list[tuple[str, dict[str, Any]]]:
        return [(args[0], result.values) for name, args, _kw, result in self.calls if name == "operator"]

    def named(self, name: str) -> list[tuple[tuple, dict]]:
        return [(args, kw) for n, args, kw, _r in self.calls if n == name]


class WithLayout:
    """`self` for a draw() whose owner holds data (AddonPreferences): its attributes, our layout."""

    def __init__(self, target: Any, layout: RecordingLayout) -> None:
        self._target = target
        self.layout = layout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def draw(panel_cls: Any, context: Any) -> RecordingLayout:
    layout = RecordingLayout()
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
    assert "Online access is off" in layout.text() and "Allow Online" in layout.text()


def test_running_jobs_show_stage_progress_and_a_cancel_button(addon, stand_in, photo):
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import panels

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


def test_history_lists_results_with_thumbnails_reimport_and_remove(addon, stand_in, photo):
    import bpy

    from onemin3d_addon import api
    from onemin3d_addon.blender import panels

    job = api.submit(photo)
    pump_until(lambda: job.done)
    assert job.state == "imported"
    main = draw(panels.VIEW3D_PT_onemin3d_main, bpy.context)
    assert any(label.startswith("Credits left: ") for label in main.labels())

    layout = draw(panels.VIEW3D_PT_onemin3d_history, bpy.context)
    (args, _kw) = layout.named("template_list")[0]
    assert args[:3] == ("ONEMIN3D_UL_history", "", bpy.context.window_manager.onemin3d)
    ops = [name for name, _values in layout.operators()]
    assert {"onemin3d.reimport", "onemin3d.remove_history"} <= set(ops)
    assert any("dress: Imported" in label for label in layout.labels())

    state = bpy.context.window_manager.onemin3d
    row = RecordingLayout()
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

    layout = RecordingLayout()
    type(addon).draw(WithLayout(addon, layout), bpy.context)
    drawn = {args[1] for args, _kw in layout.named("prop")}
    assert {"api_key", "base_url", "request_mode", "connect_timeout", "generate_timeout", "read_timeout",
            "parallel_jobs", "result_folder", "proxy_url", "ca_bundle"} <= drawn
    assert ("onemin3d.check_key", {}) in layout.operators()
    monkeypatch.setenv("ONEMIN_API_BASE_URL", "http://gateway.example")
    addon.api_key = ""
    monkeypatch.setenv("ONEMIN_API_KEY", "env-key-0123456789")
    layout = RecordingLayout()
    type(addon).draw(WithLayout(addon, layout), bpy.context)
    assert "ONEMIN_API_BASE_URL overrides it: http://gateway.example" in layout.text()
    assert "Using the key from the ONEMIN_API_KEY environment variable" in layout.text()
