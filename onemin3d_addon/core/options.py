"""bpy-free: the import options, declared once (name, type, default, limits, choices, wording) for the properties, the API and the command line; and the photo suffixes.

Everything else is derived from `OPTIONS` and `MODE`:

* `blender/properties.py` builds the Blender properties of `ImportOptionsMixin` from them (the
  sidebar, the preferences' defaults and the generate operator);
* `ImportOptions` (core/import_options.py, re-exported by `blender/scene_build.py`) takes its
  fields' defaults and its checks from them, and is what the scene builders receive;
* `api.submit` starts from `defaults()` when the add-on is not enabled (else from the
  preferences), and checks what it is given with `ImportOptions.from_mapping`;
* the command line takes its defaults and choices from `defaults()`, `choices(name)` and
  `limits(name)`, so `--help` says what the add-on does.

The GENERATION options (`model`, `remove_background`) say what is generated, and paid for: every
caller that builds a `pipeline.Request` sends `api_model(model)` and `remove_background`, and they
are journalled with the other options, so a resume goes on with the model it was paid for.

A relief or plane is `height` = 1 unit tall and a model's longest side `target_size` = 2 units
by default: Blender's own "Import Images as Planes" makes a plane 1 unit tall, and 2 units is
the size of Blender's default cube, so a model lands beside it at a familiar scale.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

OptionValue = bool | int | float | str

_NONE: Final[Mapping[str, Any]] = MappingProxyType({})

#: The photo files the add-on offers to send (file browser, panel, drop, command line), lower case:
#: what Pillow decodes for the upload and Blender also shows as the texture of a plane or relief.
#: Not GIF: Blender loads no pixels from it, so its relief would show the missing-texture pink.
#: Here rather than in core/images.py (which re-exports it) because this module is what the add-on
#: loads to register.
IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".tga")

RELIEF: Final = "relief"
PLANE: Final = "plane"
MODEL: Final = "model"
#: what is generated (and paid for), rather than how the result is imported
GENERATION: Final = "generation"

#: the `model` option's values and the API model ids they are sent as (core.protocol's MODEL and
#: TRELLIS_MODEL; what each costs is in core/prices.py)
MODEL_IDS: Final[Mapping[str, str]] = MappingProxyType({"stable-image": "stable-image", "trellis": "Qubico/trellis"})


# Choice and Option are NamedTuples, not frozen dataclasses: this module is imported when the
# add-on registers (its properties are built from OPTIONS), and a NamedTuple class costs a tenth
# of a frozen dataclass to define (scripts/bench.py startup). ImportOptions, not needed to
# register, is defined in core/import_options.py.


class Choice(NamedTuple):
    """One item of an enumerated option: its value, and how the UI names and explains it."""

    value: str
    label: str
    description: str


class Option(NamedTuple):
    """One import option. `min`/`max` are hard limits (inclusive); `soft_max` only bounds a
    slider's drag. `ui` holds what only Blender's property shows (subtype, unit, step, precision)."""

    name: str
    kind: type[OptionValue]        # bool, int, float or str (str: one of `choices`)
    default: OptionValue
    label: str
    description: str
    group: str = ""                # RELIEF, PLANE or MODEL: which import the option changes; GENERATION: what is sent
    min: float | None = None
    max: float | None = None
    soft_max: float | None = None
    choices: tuple[Choice, ...] = ()
    aliases: Mapping[str, str] = _NONE  # another spelling -> a choice's value
    ui: Mapping[str, Any] = _NONE

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(c.value for c in self.choices)

    def check(self, value: object) -> OptionValue:
        """`value` as this option holds it (a choice in its canonical spelling, whatever the
        case; an int for an int option); ValueError with a sentence when it is not allowed."""
        if self.kind is str:
            return self._choice(value)
        if self.kind is bool:
            if not isinstance(value, numbers.Integral) or int(value) not in (0, 1):
                raise ValueError(f"{self.name} must be True or False, not {value!r}")
            return bool(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's numbers too
            raise ValueError(f"{self.name} must be a number, not {value!r}")
        as_float = float(value)
        if not math.isfinite(as_float):  # NaN would pass every comparison below
            raise ValueError(f"{self.name} must be a finite number, not {value!r}")
        number: int | float = as_float
        if self.kind is int:
            if not as_float.is_integer():
                raise ValueError(f"{self.name} must be a whole number, not {value!r}")
            number = int(as_float)
        if self.min is not None and number < self.min:
            raise ValueError(f"{self.name} must be at least {_shown(self.min)}, not {value!r}")
        if self.max is not None and number > self.max:
            raise ValueError(f"{self.name} must be at most {_shown(self.max)}, not {value!r}")
        return number

    def _choice(self, value: object) -> str:
        if isinstance(value, str):
            key = value.strip().upper()
            for choice in self.choices:
                if choice.value.upper() == key:
                    return choice.value
            for alias, target in self.aliases.items():
                if alias.upper() == key:
                    return target
        raise ValueError(f"{self.name} must be one of {', '.join(self.values)}, not {value!r}")


def _shown(number: float) -> str:
    return f"{number:g}"


#: How the result is brought into the scene. Passed beside the options (`import_result(mode=…)`).
MODE: Final = Option(
    "import_mode", str, "AUTO", "Mode", "How the result is brought into the scene",
    choices=(
        Choice("AUTO", "Auto", "Pick from the result: a 3D model is imported as is, a depth map becomes a relief "
                               "of the photo, a colour image becomes a plane"),
        Choice("PLANE", "Plane", "Show the result image on a flat, textured plane"),
        Choice("DISPLACEMENT", "Relief", "Raise the photo into a relief mesh, using the result as a depth map"),
    ),
    aliases={"RELIEF": "DISPLACEMENT"},
)

#: The import options, in the order the UI draws them.
OPTIONS: Final[tuple[Option, ...]] = (
    # relief
    Option("resolution", int, 512, "Resolution", "Vertices along the long side of the relief mesh", RELIEF,
           min=16, max=4096, soft_max=2048),
    Option("strength", float, 0.15, "Strength", "Relief depth, as a fraction of the plane's width "
                                                "(it can be changed on the object afterwards)", RELIEF,
           min=0.0, max=10.0, soft_max=1.0, ui={"step": 1, "precision": 3}),
    Option("invert", bool, False, "Invert", "Raise dark areas instead of bright ones", RELIEF),
    Option("smooth", float, 0.0, "Smooth", "Blur the depth map by this many pixels first, to remove JPEG noise",
           RELIEF, min=0.0, max=100.0, soft_max=10.0, ui={"subtype": "PIXEL"}),
    Option("solid", bool, False, "Solid", "Close the relief with a flat back and side walls (watertight, "
                                          "printable)", RELIEF),
    Option("tear", float, 0.0, "Tear", "Remove the faces that span a depth jump larger than this fraction of the "
                                       "relief depth, so a subject does not drag a sheet down to the background "
                                       "(0: off)", RELIEF, min=0.0, max=1.0, ui={"step": 1, "precision": 3}),
    # plane (and the relief's size and material)
    Option("size_mode", str, "ABSOLUTE", "Size Mode", "How the plane is sized", PLANE,
           choices=(Choice("ABSOLUTE", "Absolute", "Use the given height"),
                    Choice("DPBU", "Pixels per Unit", "So many pixels per Blender unit"))),
    Option("height", float, 1.0, "Height", "Height of the plane (or relief)", PLANE,
           min=0.001, soft_max=100.0, ui={"subtype": "DISTANCE", "unit": "LENGTH"}),
    Option("factor", float, 600.0, "Pixels per Unit", "How many pixels make one Blender unit", PLANE,
           min=1.0, soft_max=10000.0),
    Option("shader", str, "PRINCIPLED", "Shader", "The material's shader", PLANE,
           choices=(Choice("PRINCIPLED", "Principled", "Principled BSDF"),
                    Choice("EMISSION", "Emission", "Emits the image's colours"),
                    Choice("SHADELESS", "Shadeless", "Shows the image's colours unaffected by lighting"))),
    Option("use_alpha", bool, True, "Alpha", "Use the image's alpha channel for transparency", PLANE),
    Option("cutout", bool, True, "Cut Out", "Cut the relief and the plane to the subject's outline where the "
                                            "photo is transparent (a photo without alpha keeps its rectangle)", PLANE),
    Option("interpolation", str, "Linear", "Interpolation", "Texture interpolation", PLANE,
           choices=(Choice("Linear", "Linear", "Linear interpolation"),
                    Choice("Closest", "Closest", "No interpolation (sample the closest texel)"),
                    Choice("Cubic", "Cubic", "Cubic interpolation"),
                    Choice("Smart", "Smart", "Bicubic when magnifying, else mipmaps"))),
    Option("relative", bool, True, "Relative Paths", "Store image paths relative to the .blend file "
                                                      "(when it is saved)", PLANE),
    Option("align", str, "Z_UP", "Align", "How the plane or relief is oriented", PLANE,
           choices=(Choice("Z_UP", "Z Up", "Lying flat, facing up"),
                    Choice("CAMERA", "Face Camera", "Facing the active camera"),
                    Choice("VIEW", "Face View", "Facing the 3D view")),
           aliases={"CAM": "CAMERA"}),  # Blender's own image-plane operator calls it CAM
    # model
    Option("target_size", float, 2.0, "Size", "A 3D model is scaled so that its longest side has this length",
           MODEL, min=0.001, soft_max=100.0, ui={"subtype": "DISTANCE", "unit": "LENGTH"}),
    # generation: what 1min.ai is asked for, and what it costs (core/prices.py)
    Option("model", str, "stable-image", "Model", "The 1min.ai model that makes the 3D result", GENERATION,
           choices=(Choice("stable-image", "Stable Image", "Stable Image Core (Stability AI): a depth map of "
                                                           "the photo, raised into a relief"),
                    Choice("trellis", "Trellis 3D", "Trellis 3D (Microsoft): a 3D model of the subject")),
           aliases={"Qubico/trellis": "trellis"}),  # its API model id
    Option("remove_background", bool, False, "Remove Background",
           "First cut the subject out of the photo with 1min.ai's background remover (a second, paid "
           "request); the relief and plane are then cut to its outline", GENERATION),
)

_BY_NAME: Final[dict[str, Option]] = {o.name: o for o in (MODE, *OPTIONS)}

#: the option names, in drawing order (the mode is not among them)
NAMES: Final[tuple[str, ...]] = tuple(o.name for o in OPTIONS)
RELIEF_NAMES: Final[tuple[str, ...]] = tuple(o.name for o in OPTIONS if o.group == RELIEF)
PLANE_NAMES: Final[tuple[str, ...]] = tuple(o.name for o in OPTIONS if o.group == PLANE)
MODEL_NAMES: Final[tuple[str, ...]] = tuple(o.name for o in OPTIONS if o.group == MODEL)
GENERATION_NAMES: Final[tuple[str, ...]] = tuple(o.name for o in OPTIONS if o.group == GENERATION)


def get(name: str) -> Option:
    """The option called `name` (`import_mode` included); KeyError for an unknown name."""
    return _BY_NAME[name]


def defaults() -> dict[str, OptionValue]:
    """Every import option's default, by name (the mode not included: it is `MODE.default`)."""
    return {o.name: o.default for o in OPTIONS}


def choices(name: str) -> tuple[str, ...]:
    """The values an enumerated option takes (`import_mode` included), canonical spelling."""
    return get(name).values


def limits(name: str) -> tuple[float | None, float | None]:
    """(min, max) of a numeric option, inclusive; None where it has no bound."""
    option = get(name)
    return option.min, option.max


def api_model(value: object) -> str:
    """The API model id the `model` option `value` is sent as ("trellis" → "Qubico/trellis");
    ValueError for a model that is not a choice."""
    return MODEL_IDS[get("model")._choice(value)]


def generation_request(options: Mapping[str, Any]) -> dict[str, Any]:
    """The `pipeline.Request` fields the GENERATION options of `options` set: `model` (the API
    model id) and `remove_background`; a missing option takes its default, a bad one is a ValueError."""
    return {"model": api_model(options.get("model", _default("model"))),
            "remove_background": get("remove_background").check(
                options.get("remove_background", _default("remove_background")))}


def check_mode(mode: object) -> str:
    """The import mode in its canonical spelling ("relief" → DISPLACEMENT); ValueError otherwise."""
    return MODE._choice(mode if mode is not None and mode != "" else MODE.default)


def _default(name: str) -> Any:
    return _BY_NAME[name].default
