"""The model and background removal from the api, the operator and the preferences: sent as chosen, charged as core.prices says, journalled, and kept by a fetch again."""

from __future__ import annotations

import json
from pathlib import Path

import addon_harness
import pytest
from addon_harness import prefs, pump_until

# fixtures
addon = addon_harness.addon
blender = addon_harness.blender
photo = addon_harness.photo


def _entry(folder: Path, job_id: str) -> dict:
    from onemin3d_addon.blender import runtime

    rt = runtime.peek_runtime()
    assert rt is not None and rt.flush()
    return json.loads((folder / "history" / f"{job_id}.json").read_text(encoding="utf-8"))


def _sent(stand_in) -> list[tuple[str, str]]:
    return sorted((r.get("type") or r.get("feature"), r.get("model")) for r in stand_in.records.values())


@pytest.mark.smoke
def test_trellis_with_background_removal_is_sent_charged_and_journalled_as_priced(addon, stand_in, photo,
                                                                                   tmp_path):
    from onemin3d_addon import api
    from onemin3d_addon.core import prices, protocol

    used = stand_in.used_credit
    job = api.submit(photo, model="Qubico/trellis", remove_background=True, import_result=False)
    pump_until(lambda: job.done)
    assert job.state == "done", job.error_message
    # what the panel and --dry-run say it costs is what the service charged
    assert stand_in.used_credit - used == prices.cost(protocol.TRELLIS_MODEL, True).credits == 60_000
    assert stand_in.count("POST", "/api/features") == 2
    options = _entry(tmp_path / "results", job.id)["settings"]["options"]
    assert (options["model"], options["remove_background"]) == ("trellis", True)


def test_the_operator_sends_the_preferences_default_model_and_a_fetch_again_keeps_the_journalled_one(
        addon, stand_in, photo, tmp_path):
    import bpy

    from onemin3d_addon.blender import runtime
    from onemin3d_addon.core import protocol

    addon.defaults.model = "trellis"
    used = stand_in.used_credit
    assert bpy.ops.onemin3d.generate(filepath=str(photo), wait='WAIT') == {'FINISHED'}
    assert stand_in.used_credit - used == 40_000 and stand_in.result != "glb"  # Trellis answers a GLB anyway
    rt = runtime.get_runtime()
    (job,) = rt.jobs.values()
    assert job.state == "imported" and job.result.kind == "glb"
    assert _entry(tmp_path / "results", job.id)["settings"]["options"]["model"] == "trellis"

    # the result is gone: Re-import fetches it again (free) as Trellis, whatever the defaults say now
    addon.defaults.model = "stable-image"
    Path(job.result.file).unlink()
    features = stand_in.count("POST", "/api/features")
    rt.reimport(job.id, wait=True)
    assert stand_in.count("POST", "/api/features") == features and stand_in.used_credit - used == 40_000
    assert runtime._journalled_generation(rt.jobs[job.id].entry.settings) == \
        {"model": protocol.TRELLIS_MODEL, "remove_background": False}
    assert rt.jobs[job.id].state == "imported" and prefs().defaults.model == "stable-image"
