"""Main thread only: the few places where Blender's Python API differs between 4.2 LTS and 5.3.

Every difference is found by feature detection (an attribute or an RNA property that exists or
not), never by comparing version numbers, so a point release that back-ports or removes a
feature is handled the day it ships. What differs, and since when:

- **Geometry Nodes modifier inputs.** Up to 5.1 they are ID properties of the modifier
  (``mod["Socket_2"]``, drawn as ``layout.prop(mod, '["Socket_2"]')``). From 5.2 they are RNA
  structs under ``mod.properties.inputs`` (``mod.properties.inputs.Socket_2.value``), and
  ``mod["Socket_2"] = x`` raises "id properties not supported for this type".
- **Material.use_nodes** is deprecated from 5.0 (a new material always has its node tree;
  setting it does nothing) and goes in 6.0: it is only set where a material has no tree yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModifierInput", "ensure_node_tree", "modifier_input"]


@dataclass(frozen=True)
class ModifierInput:
    """One input of a Geometry Nodes modifier: read it, write it, or draw it with `layout.prop(owner, prop)`.

    `owner` and `prop` are what `UILayout.prop` takes; `get` and `set` read and write the value
    the same way on every Blender version.
    """

    owner: Any
    prop: str
    #: True where the input is an ID property of the modifier (Blender 4.2 to 5.1)
    id_property: bool

    def get(self) -> Any:
        if self.id_property:
            return self.owner[self.prop[2:-2]]
        return getattr(self.owner, self.prop)

    def set(self, value: Any) -> None:
        """Write the value and re-evaluate the object, as the UI's slider does."""
        if self.id_property:
            self.owner[self.prop[2:-2]] = value
        else:
            setattr(self.owner, self.prop, value)
        # An ID property written from Python tags nothing: tag the object, or the depsgraph keeps
        # the old geometry (the UI's slider tags it through the RNA update).
        self.owner.id_data.update_tag()


def modifier_input(mod: Any, identifier: str) -> ModifierInput:
    """The modifier input whose node-group interface socket has `identifier` (e.g. "Socket_2").

    Raises KeyError when the modifier has no such input.
    """
    inputs = getattr(getattr(mod, "properties", None), "inputs", None)
    if inputs is not None:  # Blender 5.2 and later: an RNA struct per input, its value in `.value`
        slot = getattr(inputs, identifier, None)
        if slot is None:
            raise KeyError(f"the modifier '{mod.name}' has no input {identifier}")
        return ModifierInput(slot, "value", id_property=False)
    if identifier not in mod.keys():
        raise KeyError(f"the modifier '{mod.name}' has no input {identifier}")
    return ModifierInput(mod, f'["{identifier}"]', id_property=True)


def ensure_node_tree(id_block: Any) -> Any:
    """The node tree of a material or world, turning nodes on only where it has none (before 5.0)."""
    if getattr(id_block, "node_tree", None) is None and hasattr(id_block, "use_nodes"):
        id_block.use_nodes = True
    return id_block.node_tree
