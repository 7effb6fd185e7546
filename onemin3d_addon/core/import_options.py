"""bpy-free: `ImportOptions`, the options `scene_build.import_result` receives, frozen and checked against the one schema in `core/options.py`.

Apart from `core/options.py` because the add-on does not need it to register: enabling the add-on
loads `options` (its properties are built from `OPTIONS`), and defining this class there cost a
tenth of a millisecond of that (scripts/bench.py startup). `blender/scene_build.py` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .options import _BY_NAME, NAMES, OptionValue, _default


class ImportOptions(NamedTuple):
    """The options of `scene_build.import_result`, frozen and checked; defaults from `OPTIONS`."""

    # relief
    resolution: int = _default("resolution")
    strength: float = _default("strength")
    invert: bool = _default("invert")
    smooth: float = _default("smooth")
    solid: bool = _default("solid")
    tear: float = _default("tear")
    # plane and relief
    size_mode: str = _default("size_mode")
    height: float = _default("height")
    factor: float = _default("factor")
    shader: str = _default("shader")
    use_alpha: bool = _default("use_alpha")
    cutout: bool = _default("cutout")
    interpolation: str = _default("interpolation")
    relative: bool = _default("relative")
    align: str = _default("align")
    # model
    target_size: float = _default("target_size")
    # generation (journalled with the entry, so a resume goes on with the same model)
    model: str = _default("model")
    remove_background: bool = _default("remove_background")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | ImportOptions | None) -> ImportOptions:
        """Options from a mapping of option names (unknown names are a TypeError), checked."""
        if options is None:
            return cls()
        if isinstance(options, ImportOptions):
            return options.checked()
        unknown = sorted(set(options) - set(NAMES))
        if unknown:
            raise TypeError(f"unknown import option(s): {', '.join(unknown)}")
        return cls(**dict(options)).checked()

    def checked(self) -> ImportOptions:
        """These options with every value checked against its option and in its canonical
        spelling ("linear" → "Linear", "CAM" → "CAMERA"); ValueError naming the first bad one."""
        values: dict[str, Any] = {name: _BY_NAME[name].check(getattr(self, name)) for name in self._fields}
        return self._replace(**values)

    def as_dict(self) -> dict[str, OptionValue]:
        return dict(self._asdict())
