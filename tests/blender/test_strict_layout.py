"""The layout double the panel tests draw into refuses what a real UILayout would refuse.

Run on every bpy tier (smoke), so the RNA it checks against is each Blender version's own.
"""

from __future__ import annotations

import re

import addon_harness
import pytest
from strict_layout import LayoutError, StrictLayout

pytestmark = pytest.mark.smoke

addon = addon_harness.addon
blender = addon_harness.blender


def test_calls_that_blender_takes_pass_and_are_recorded(blender):
    import bpy

    layout = StrictLayout()
    layout.use_property_split = True
    layout.alignment = 'CENTER'
    col = layout.column(align=True)
    col.label(text="Hello", icon='INFO')
    row = col.row()
    row.scale_y = 1.4
    row.prop(bpy.context.scene, "frame_start", text="Start")
    row.operator("screen.userpref_show", text="Network", icon='PREFERENCES').section = 'SYSTEM'
    col.template_ID(bpy.context.scene, "world", new="world.new")
    assert layout.labels() == ["Hello"]
    assert layout.operators() == [("screen.userpref_show", {"section": 'SYSTEM'})]
    assert [name for name, *_ in layout.calls] == ["column", "label", "row", "prop", "operator", "template_ID"]


@pytest.mark.parametrize("draw, says", [
    (lambda lay, bpy: lay.lable(text="typo"), "no function or attribute 'lable'"),
    (lambda lay, bpy: lay.label(txt="typo"), "no keyword 'txt'"),
    (lambda lay, bpy: lay.label(text="x", icon='NO_SUCH_ICON'), "'NO_SUCH_ICON' is not one of"),
    (lambda lay, bpy: lay.label(text=3), "is not a STRING"),
    (lambda lay, bpy: lay.row(align="yes"), "is not a BOOLEAN"),
    (lambda lay, bpy: lay.prop(bpy.context.scene, "frame_begin"), "has no property 'frame_begin'"),
    (lambda lay, bpy: lay.prop(bpy.context.scene, '["missing"]'), "no ID property 'missing'"),
    (lambda lay, bpy: lay.prop(None, "frame_start"), "None for a POINTER"),
    (lambda lay, bpy: lay.prop(bpy.context.scene), "missing property"),
    (lambda lay, bpy: lay.operator("onemin3d.generat"), "no operator 'onemin3d.generat'"),
    (lambda lay, bpy: lay.operator("render"), "is not an operator id"),
    (lambda lay, bpy: setattr(lay.operator("screen.userpref_show"), "sektion", 'SYSTEM'), "no property 'sektion'"),
    (lambda lay, bpy: setattr(lay.operator("screen.userpref_show"), "section", 'NETWORK'), "'NETWORK' is not one of"),
    (lambda lay, bpy: lay.progress(factor=0.5, type='PIE'), "'PIE' is not one of"),
    (lambda lay, bpy: setattr(lay, "alignement", 'LEFT'), "no attribute 'alignement'"),
    (lambda lay, bpy: setattr(lay.row(), "alignment", 'MIDDLE'), "'MIDDLE' is not one of"),
    (lambda lay, bpy: lay.template_list("NO_UL_such", "", bpy.context.scene, "objects", bpy.context.scene,
                                        "frame_current"), "no UIList 'NO_UL_such'"),
    (lambda lay, bpy: lay.template_ID(bpy.context.scene, "world", open="image.opne"), "no operator 'image.opne'"),
])
def test_calls_that_blender_refuses_fail(blender, draw, says):
    import bpy

    with pytest.raises(LayoutError, match=re.escape(says)):
        draw(StrictLayout(), bpy)
